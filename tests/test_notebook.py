"""The notebook runs headless, top to bottom, in the offline profile (real MiniLM, real reviews, NF4 + LoRA)."""

import json
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "QLoRA_BERT_TextClassification.ipynb"
SOURCE = ROOT / "notebook" / "QLoRA_BERT_TextClassification.py"


def test_committed_notebook_matches_its_jupytext_source():
    import jupytext

    source = jupytext.read(SOURCE)
    committed = nbformat.read(NOTEBOOK, as_version=4)
    assert [(c.cell_type, c.source) for c in committed.cells] == [(c.cell_type, c.source) for c in source.cells], (
        "the notebook differs from notebook/QLoRA_BERT_TextClassification.py: edit the .py, then run make notebook"
    )
    assert [c.metadata.get("tags") for c in committed.cells] == [c.metadata.get("tags") for c in source.cells]
    assert not any(c.get("outputs") for c in committed.cells), "commit the notebook without outputs"


def test_install_cell_reads_its_pins_from_requirements():
    install = next(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if "pip" in c.source)
    assert 'open("requirements.txt")' in install and "==" not in install


def test_notebook_has_a_parameters_cell_and_calls_the_package():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and 'PROFILE = "auto"' in tagged[0].source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert max(len(src.splitlines()) for src in code) <= 16  # cells stay short; the package does the work
    assert not any(line.lstrip().startswith(("def ", "class ")) for src in code for line in src.splitlines())


def test_offline_notebook_runs_end_to_end(tmp_path):
    out_dir, plots = tmp_path / "adapter", tmp_path / "plots"
    executed = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(executed),
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
        parameters={"PROFILE": "offline", "OUTPUT_DIR": str(out_dir), "PLOTS_DIR": str(plots)},
    )
    text = executed.read_text()
    assert "PROFILE RUNNING: offline" in text
    assert "reloaded adapter: same decisions on 100.00% of 150 test rows" in text and " - PASSED" in text
    for name in ("dataset_stats.png", "training_curves.png", "confusion_matrix.png"):
        assert (plots / name).stat().st_size > 10_000
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["config"]["profile"] == "offline" and metrics["device"] == "cpu"
    assert metrics["data"]["sizes"] == {"train": 1200, "validation": 150, "test": 150}
    assert metrics["test_accuracy"] >= 0.75, metrics["test_accuracy"]  # measured: see README
    nb = nbformat.read(executed, as_version=4)
    assert sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})) >= 3


@pytest.mark.parametrize("results", ["committed", "absent"])
def test_the_project_tables_show_their_files_or_skip_with_a_line(tmp_path, monkeypatch, results):
    """Section 8's cells, run alone: with the committed result files they draw their tables; in a copy without
    benchmarks/results (an installed package) each says so and the notebook goes on."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    imports = "\n".join(
        [
            "import pandas as pd",
            "from IPython.display import display",
            "from qlora_helpers.report.results import optional_result",
        ]
    )
    tables = [c.source for c in cells if c.cell_type == "code" and "= optional_result(" in c.source]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(src) for src in [imports, *tables]])
    nbformat.write(nb, tmp_path / "tables.ipynb")
    if results == "absent":
        monkeypatch.setenv("QLORA_RESULTS_DIR", str(tmp_path / "no-results"))
    papermill.execute_notebook(
        str(tmp_path / "tables.ipynb"),
        str(tmp_path / "out.ipynb"),
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    outputs = [o for c in nbformat.read(tmp_path / "out.ipynb", as_version=4).cells for o in c.get("outputs", [])]
    skipped = [o for o in outputs if "this table is skipped" in str(o.get("text", ""))]
    tables_drawn = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 3
    assert (len(skipped), len(tables_drawn)) == ((0, 3) if results == "committed" else (3, 0))
