"""Reading the committed measurements in `benchmarks/results/`, so the notebook shows numbers from files
that name their hardware, versions, date and command, never numbers typed into a cell.

The files belong to the repository, not to the package: an installed wheel has none, so they are looked for
where a user's checkout puts them (`QLORA_RESULTS_DIR` if set, else `benchmarks/results` under the working
directory, then beside the package's source), and a missing one is a line, not a stop."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from qlora_helpers.errors import require

RESULTS_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "results"  # in a checkout
FIGURES_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "figures"


def result_places() -> list[Path]:
    """Where result files are looked for, first match wins: `QLORA_RESULTS_DIR` alone when it is set."""
    if os.environ.get("QLORA_RESULTS_DIR"):
        return [Path(os.environ["QLORA_RESULTS_DIR"])]
    return [Path.cwd() / "benchmarks" / "results", RESULTS_DIR]


def find_result(name: str | Path) -> Path | None:
    """A result file by path, or by name (`memory_bert_base_shapes.json`) in `result_places`; None if absent."""
    path = Path(name)
    if path.is_file():
        return path
    return next((p / name for p in result_places() if (p / name).is_file()), None)


def load_result(name: str | Path) -> dict[str, Any]:
    """A result file's content; a missing one is an error naming where it was looked for."""
    path = find_result(name)
    places = ", ".join(dict.fromkeys(str(p) for p in result_places()))
    require(path is not None, f"no result file {name} (looked in {places}); run the benchmark that writes it")
    return json.loads(path.read_text())


def optional_result(name: str) -> dict[str, Any] | None:
    """A result file's content, or None after one printed line (the notebook's tables of project measurements
    skip themselves in a copy without `benchmarks/results/`, such as an installed package)."""
    path = find_result(name)
    if path is None:
        print(
            f"no result file {name} here (a copy without benchmarks/results/, or set QLORA_RESULTS_DIR): this table "
            f"is skipped; the project's repository holds it"
        )
        return None
    return json.loads(path.read_text())
