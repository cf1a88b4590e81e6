"""The package's house rules, checked on its source: imports run one way, from the command line down through
the pipeline and the stages to the configuration and the errors, and no two modules import each other."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# bottom to top: a module may import its own layer and the layers below it (ARCHITECTURE.md draws them)
LAYERS = ["core", "config", "tasks", "data", "modeling", "report", "train", "infer", "pipeline", "tune", "cli"]
CORE = {"errors", "library_logs", "hub", "hardware", "dependencies", "distributed", "run_files", "figures"}


def layer(module: str) -> str:
    top = (module.split(".") + [""])[1]
    if top in ("config", "presets"):
        return "config"
    if top in ("pipeline", "run"):
        return "pipeline"
    return "core" if top in CORE or not top else top


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(name: str) -> str | None:
    """The module that `name` (a module, or a name inside one) lives in."""
    while name:
        base = ROOT / name.replace(".", "/")
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(package: str) -> dict[str, set[str]]:
    """Every import of the package's own modules, lazy ones inside functions included."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        here = module_name(path)
        targets = graph.setdefault(here, set())
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:  # relative: from the module's own package
                base = here.split(".")[: len(here.split(".")) - node.level + (path.name == "__init__.py")]
                module = ".".join([*base, node.module] if node.module else base)
                names = [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == package:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.split(".")[0] == package]
            else:
                continue
            targets |= {t for t in map(resolve, names) if t and t != here}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(trail[trail.index(nxt) :] + [nxt] if nxt in trail else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = "done"

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_imports_run_one_way_from_the_command_line_down_to_the_config():
    wrong = [
        f"{a} ({layer(a)}) imports {b} ({layer(b)})"
        for a, targets in import_graph("qlora_helpers").items()
        for b in targets
        if a not in ("qlora_helpers", "qlora_helpers.__main__") and LAYERS.index(layer(b)) > LAYERS.index(layer(a))
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", ["qlora_helpers", "benchmarks"])
def test_no_two_modules_import_each_other(package):
    assert not cycles(import_graph(package)), cycles(import_graph(package))


def test_every_subpackage_says_what_it_owns_and_what_it_may_import():
    for init in (ROOT / "qlora_helpers").glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "May import" in doc or init.parent.name == "cli", init


def test_paths_a_module_finds_from_its_own_file_lead_to_the_checkout():
    """A module moved one folder deeper finds its files one folder further up (the committed results the notebook
    quotes, the checkout a tuning trial's process imports)."""
    from qlora_helpers.report import results

    assert results.RESULTS_DIR.is_dir() and results.FIGURES_DIR.is_dir()
    for path in (ROOT / "qlora_helpers").rglob("*.py"):
        for line in path.read_text().splitlines():
            if "Path(__file__)" in line and "parents[" in line:
                depth = len(path.relative_to(ROOT).parts) - 1  # parents[depth] is the checkout
                assert f"parents[{depth}]" in line, f"{path}: {line.strip()}"


# a function's length counts its logic: one keyword-argument call, literal or text template inside it is set aside
LONGEST_FUNCTION, LONGEST_MODULE = 60, 400
OVER_LENGTH = {  # what is still longer, and why it waits (each entry only shrinks)
    "benchmarks/studies/exporter_comparison.py::main": "a one-off study, kept as it ran",
}


def logic_lines(fn: ast.FunctionDef) -> int:
    inner = [
        n.end_lineno - n.lineno + 1
        for n in ast.walk(fn)
        if n is not fn
        and (
            isinstance(n, (ast.Dict, ast.List, ast.Tuple, ast.JoinedStr))
            or (isinstance(n, ast.Call) and len(n.keywords) >= 4)
        )
    ]
    return fn.end_lineno - fn.lineno + 1 - max([0, *inner]) + (1 if inner else 0)


def test_modules_and_functions_stay_short_enough_to_read():
    long_modules, long_functions = [], []
    for path in sorted([*(ROOT / "qlora_helpers").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        source = path.read_text()
        where = path.relative_to(ROOT).as_posix()
        if source.count("\n") > LONGEST_MODULE:
            long_modules.append(where)
        for fn in ast.walk(ast.parse(source)):
            if isinstance(fn, ast.FunctionDef) and logic_lines(fn) > LONGEST_FUNCTION:
                long_functions.append(f"{where}::{fn.name}")
    assert not long_modules, long_modules
    assert sorted(set(long_functions) - set(OVER_LENGTH)) == [], "split these functions"
    assert sorted(set(OVER_LENGTH) - set(long_functions)) == [], "short now: take them off OVER_LENGTH"
