"""The README's results tables quote only figures that their named result file holds."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?")


def numbers_in(value) -> list[float]:
    """Every number a result file holds, wherever it sits."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int | float):
        return [float(value)]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [n for item in value for n in numbers_in(item)]
    return []


def sourced_tables(text: str) -> list[tuple[list[str], list[str]]]:
    """(source files, table body rows) for each table that follows a `Source:` line."""
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        if not line.startswith("Source:"):
            continue
        files = re.findall(r"`([^`]+\.json)`", line)
        start = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("|"))
        end = next((j for j in range(start, len(lines)) if not lines[j].startswith("|")), len(lines))
        out.append((files, lines[start + 2 : end]))
    return out


def source_column_tables(text: str) -> list[tuple[list[str], list[str]]]:
    """(source files, [row]) for each row of a table whose last column is headed `source`: the row names its files."""
    lines, out = text.splitlines(), []
    for i, line in enumerate(lines):
        cells = [c.strip().lower() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[-1].startswith("source") and (i == 0 or not lines[i - 1].startswith("|")):
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                last = row.strip().strip("|").split("|")[-1]
                names = re.findall(r"`([^`]+\.json)`", last)
                out.append((names, ["|".join(row.strip().strip("|").split("|")[:-1])]))
    return out


def quoted_figures(row: str) -> list[tuple[str, bool]]:
    """The numbers of a table row after its first column, with whether each is a percentage; ratios (a number
    followed by x) are arithmetic on the row's figures, labelled so, and left out."""
    cells = [c.strip() for c in row.strip().strip("|").split("|")][1:]
    return [
        (m.group(), cell[m.end() :].startswith("%"))
        for cell in cells
        for m in NUMBER.finditer(cell)
        if not cell[m.end() :].startswith("x")
    ]


def held(figure: str, percent: bool, values: list[float]) -> bool:
    quoted = float(figure.replace(",", ""))
    places = len(figure.split(".")[1]) if "." in figure else 0
    scales = (1, 100) if percent else (1,)
    return any(round(v * s, places) == quoted for v in values for s in scales)


def test_readme_stays_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_every_results_table_figure_is_in_its_source_file():
    text = (ROOT / "README.md").read_text()
    tables = sourced_tables(text) + source_column_tables(text)
    assert len(tables) >= 6
    for files, rows in tables:
        assert files and rows
        values = [n for name in files for n in numbers_in(json.loads((RESULTS / name).read_text()))]
        for row in rows:
            missing = [f for f, pct in quoted_figures(row) if not held(f, pct, values)]
            assert not missing, f"{files}: {row!r} quotes {missing}, which the file does not hold"


def test_the_check_catches_a_figure_the_file_lacks():
    values = numbers_in({"acc": 0.9163, "runs": [{"mb": 2636.0}]})
    assert held("91.63", True, values) and held("2,636.0", False, values)
    assert not held("91.7", True, values) and not held("2,637", False, values)


def test_every_result_file_the_docs_name_exists():
    for doc in (ROOT / "README.md", ROOT / "benchmarks" / "README.md", ROOT / "benchmarks" / "recipe_notes.md"):
        text = doc.read_text()
        named = re.findall(r"benchmarks/results/([\w./-]+\.json)", text)
        named += [f for files, _ in sourced_tables(text) for f in files]
        for name in set(named):
            assert (RESULTS / name).exists(), f"{doc.name} names benchmarks/results/{name}, which does not exist"


def test_a_table_with_a_source_column_is_checked_row_by_row():
    text = (
        "intro\n| what | measured | source |\n|---|---|---|\n"
        "| a | 1,853 vs 2.46x | `x.json` |\n| b | 7% | `y.json`, `z.json` |\n"
    )
    rows = source_column_tables(text)
    assert rows == [(["x.json"], [" a | 1,853 vs 2.46x "]), (["y.json", "z.json"], [" b | 7% "])]
    assert quoted_figures(rows[0][1][0]) == [("1,853", False)]  # the ratio is arithmetic, left out
