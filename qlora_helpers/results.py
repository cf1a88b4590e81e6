"""Reading the committed measurements in `benchmarks/results/`, so the notebook shows numbers from files
that name their hardware, versions, date and command, never numbers typed into a cell."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import require

RESULTS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
FIGURES_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "figures"


def load_result(name: str | Path) -> dict[str, Any]:
    """A result file by name (`efficiency_bert_base_shapes.json`) or path."""
    path = Path(name)
    if not path.is_file():
        path = RESULTS_DIR / name
    require(path.is_file(), f"no result file {name} (looked in {RESULTS_DIR}); run the benchmark that writes it")
    return json.loads(path.read_text())
