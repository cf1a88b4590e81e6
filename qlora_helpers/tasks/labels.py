"""Label cells as the files hold them -> the label space a model is trained on, and back.

A `LabelSpace` is what a trained model needs to know of its labels: their names in id order, the values
the label column held for them, and how the column was read. The parsing here is shared by the tasks
(tasks.py): one class per row (integers sort numerically, text is stripped before it is made unique), a
set of labels per row (a delimited cell, a JSON list, or 0/1 columns), or a number per row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qlora_helpers.errors import UserError, require

OTHER_DELIMITERS = (",", ";", "|", "\t")


@dataclass(frozen=True)
class LabelSpace:
    """Names in id order, the raw values they stand for, and where the labels were read from."""

    names: tuple[str, ...]
    values: tuple[Any, ...] = ()
    column: str = "label"
    delimiter: str = ","
    columns: tuple[str, ...] | None = None  # multi-label as one 0/1 column per label
    extras: dict[str, Any] = field(default_factory=dict, compare=False)  # e.g. a score's range

    @property
    def num_labels(self) -> int:
        return len(self.names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.names))

    @property
    def label2id(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.names)}

    def record(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "values": list(self.values),
            "column": self.column,
            "delimiter": self.delimiter,
            "columns": list(self.columns) if self.columns else None,
            **({"extras": self.extras} if self.extras else {}),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LabelSpace:
        return cls(
            tuple(record["names"]),
            tuple(record.get("values", ())),
            record.get("column", "label"),
            record.get("delimiter", ","),
            tuple(record["columns"]) if record.get("columns") else None,
            dict(record.get("extras", {})),
        )


def read_label_names_file(path: str) -> list[str]:
    """One label name per line; line i names label id i."""
    file = Path(path).expanduser()
    require(file.is_file(), f"label names file not found: {file}; give a text file with one label name per line")
    lines = [line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines()]
    while lines and not lines[-1]:  # trailing blank lines name nothing
        lines.pop()
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if blank:
        raise UserError(
            f"{file} has a blank line {blank[0]}: line i names label id i, so every later name would move up one; "
            f"name every label or delete the line"
        )
    names = lines
    require(len(names) >= 2, f"{file} names {len(names)} label(s); a classifier needs at least two")
    require(len(set(names)) == len(names), f"{file} names a label twice; each line must name a different label")
    return names


def present(cell: Any) -> bool:
    """Whether a label cell holds anything (None, NaN and blank text do not)."""
    if cell is None or (isinstance(cell, float) and np.isnan(cell)):
        return False
    return not (isinstance(cell, str) and cell.strip() == "")


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


# ---- one class per row ----------------------------------------------------------------------------


def class_key(cell: Any) -> Any:
    """The value a class is known by: an int for whole numbers (5, 5.0, "5"), else the stripped text."""
    if isinstance(cell, (bool, np.bool_)):
        return str(cell)
    if isinstance(cell, (int, np.integer)):
        return int(cell)
    if isinstance(cell, (float, np.floating)) and float(cell).is_integer():
        return int(cell)
    text = str(cell).strip()
    return int(text) if _is_int(text) else text


def class_values(cells: pd.Series, column: str) -> list[Any]:
    """The sorted distinct classes: integers numerically, text alphabetically (never a mix of the two)."""
    keys = [class_key(c) for c in cells]
    numbers = sorted({k for k in keys if isinstance(k, int)})
    texts = sorted({k for k in keys if not isinstance(k, int)})
    if numbers and texts:
        raise UserError(
            f"label column {column!r} mixes numbers {numbers[:3]} and names {texts[:3]}; use one kind "
            f"(e.g. 0/1 or neg/pos) throughout the file"
        )
    spellings: dict[int, set[str]] = {}
    for cell, key in zip(cells, keys):
        if isinstance(key, int):
            spellings.setdefault(key, set()).add(cell.strip() if isinstance(cell, str) else str(key))
    merged = {k: sorted(v) for k, v in spellings.items() if len(v) > 1}
    if merged:  # `01` and `1` would silently become one class
        key, written = next(iter(sorted(merged.items())))
        raise UserError(
            f"label column {column!r} writes the class {key} in {len(written)} ways ({', '.join(written)}), which "
            f"would be read as one class; write each class one way, or use names if they are different classes"
        )
    return numbers or texts


def encode_classes(cells: pd.Series, space: LabelSpace, where: str) -> pd.Series:
    """Class ids of `cells`, read as the training values or as the label names; an unknown one is an error."""
    by_value = {class_key(v): i for i, v in enumerate(space.values)}
    by_name = {n: i for i, n in enumerate(space.names)}

    def one(cell: Any) -> int | None:
        key = class_key(cell)
        return by_value.get(key, by_name.get(str(cell).strip()))

    ids = [one(c) for c in cells]  # a list: Series.map would turn None into NaN
    unknown = sorted({str(c).strip() for c, i in zip(cells, ids) if i is None})
    require(
        not unknown,
        f"{len(unknown)} label(s) {[u[:40] for u in unknown[:3]]}{' ...' if len(unknown) > 3 else ''} in {where} "
        f"are not among the classes the model knows "
        f"({', '.join(map(str, space.values[:8]))}{' ...' if len(space.values) > 8 else ''}"
        + (f"; names {', '.join(space.names[:8])}" if list(space.names) != [str(v) for v in space.values] else "")
        + "); fix or drop those rows, or relabel the file as training was labelled",
    )
    return pd.Series(ids, index=cells.index, dtype=int)


# ---- a set of labels per row --------------------------------------------------------------------


def split_label_cell(value: Any, delimiter: str) -> tuple[str, ...]:
    """'4,27' -> ('4', '27'); a list such as [4, 27] (JSON) -> ('4', '27'); empty or missing -> ()."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return tuple(str(class_key(v)) for v in value if present(v))
    if not present(value):
        return ()
    text = str(class_key(value)) if isinstance(value, (float, np.floating, int, np.integer)) else str(value).strip()
    if text.startswith("[") and text.endswith("]"):  # a list written as text, e.g. a CSV export of ["a", "b"]
        text = text[1:-1].replace('"', "").replace("'", "")
        return tuple(p.strip() for p in text.split(",") if p.strip())
    return tuple(part.strip() for part in text.split(delimiter) if part.strip())


def check_delimiter(cells: pd.Series, delimiter: str, column: str) -> None:
    """A cell that holds another common delimiter but not ours was written with a different one: stop."""
    others = [d for d in OTHER_DELIMITERS if d != delimiter]
    for cell in cells.dropna():
        if isinstance(cell, (list, tuple, np.ndarray)):
            continue
        cell = str(cell)
        if delimiter not in cell and not cell.startswith("["):
            found = next((d for d in others if d in cell), None)
            require(
                found is None,
                f"label cell {cell!r} in column {column!r} holds {found!r} but the label delimiter is "
                f"{delimiter!r}; pass --label-delimiter {found!r} or fix the file so every cell uses one delimiter",
            )


def looks_multi_label(cells: pd.Series, delimiter: str) -> str | None:
    """A label cell holding several labels (the delimiter, or a list), when the run was not told so."""
    for cell in cells.dropna():
        if isinstance(cell, (list, tuple, np.ndarray)) or (isinstance(cell, str) and delimiter in cell):
            return str(list(cell) if not isinstance(cell, str) else cell)
    return None


def set_values(sets: list[tuple[str, ...]], label_names: list[str] | None, column: str) -> tuple[list, list[str]]:
    """(values, names) of a multi-label column. Integer ids keep their own numbers (named by `label_names`
    when given); names map to the order of `label_names`, or sorted order when none are given."""
    values = sorted({v for s in sets for v in s})
    require(values, f"no labels at all in column {column!r}; check --label-column and --label-delimiter")
    ints = [v for v in values if _is_int(v)]
    if ints and len(ints) == len(values):
        ids = sorted(int(v) for v in values)
        require(ids[0] >= 0, f"label id {ids[0]} in column {column!r} is negative; ids count from 0")
        if label_names is not None:
            require(
                ids[-1] < len(label_names),
                f"label id {ids[-1]} in column {column!r} is outside the {len(label_names)} names given "
                f"(ids 0-{len(label_names) - 1}); check --label-names-file",
            )
        count = len(label_names) if label_names is not None else ids[-1] + 1
        names = list(label_names) if label_names is not None else [str(i) for i in range(count)]
        return [str(i) for i in range(count)], names
    if label_names is not None:
        unknown = [v for v in values if v not in label_names and not (_is_int(v) and int(v) < len(label_names))]
        if unknown:
            raise UserError(
                f"label {unknown[0]!r} in column {column!r} is not among the {len(label_names)} names given "
                f"({', '.join(label_names[:6])}{', ...' if len(label_names) > 6 else ''}); fix the row or the names"
            )
        return list(label_names), list(label_names)
    require(len(values) >= 2, f"only one label ({values[0]!r}) in column {column!r}; a classifier needs at least two")
    return values, values


def encode_sets(sets: list[tuple[str, ...]], space: LabelSpace, where: str) -> list[tuple[int, ...]]:
    """Label tuples -> sorted id tuples. Each label may be given as its value or its name, and integer
    values may stand for ids (an evaluation file may use names where training used ids, or the reverse)."""
    by_value = {str(v): i for i, v in enumerate(space.values)}
    by_name = {n: i for i, n in enumerate(space.names)}
    out = []
    for labels in sets:
        ids = set()
        for v in labels:
            key = str(int(v)) if _is_int(v) else v
            i = by_value.get(key, by_name.get(v))
            if i is None:
                raise UserError(
                    f"label {v!r} in {where} is not among the {space.num_labels} labels the model knows "
                    f"({', '.join(space.names[:8])}{' ...' if space.num_labels > 8 else ''}); fix or drop those rows"
                )
            ids.add(i)
        out.append(tuple(sorted(ids)))
    return out


def sets_from_columns(df: pd.DataFrame, columns: list[str]) -> list[tuple[str, ...]]:
    """Several 0/1 columns, one per label -> label-name tuples; anything but 0/1 is an error naming it."""
    missing = [c for c in columns if c not in df.columns]
    require(not missing, f"label columns {missing} not found; the data has columns {list(df.columns)}")
    block = df[columns]
    for c in columns:
        bad = block[c][~block[c].isin([0, 1, "0", "1", True, False])]
        if not bad.empty:
            raise UserError(
                f"label column {c!r} must hold 0/1 (one column per label), but holds {bad.iloc[0]!r} "
                f"({len(bad)} row(s)); fix those cells"
            )
    flags = block.astype(int).to_numpy()
    return [tuple(columns[j] for j in np.flatnonzero(row)) for row in flags]


def multi_hot(label_sets: list[tuple[int, ...]], num_labels: int) -> np.ndarray:
    """Id tuples -> a (rows, labels) 0/1 float matrix: the targets of a sigmoid per label."""
    out = np.zeros((len(label_sets), num_labels), dtype=np.float32)
    for i, ids in enumerate(label_sets):
        out[i, list(ids)] = 1.0
    return out


# ---- a number per row -----------------------------------------------------------------------------


def as_scores(cells: pd.Series, where: str) -> pd.Series:
    """Cells as floats; a cell that is not a number is an error naming it."""
    numbers = pd.to_numeric(cells.map(lambda c: str(c).strip() if isinstance(c, str) else c), errors="coerce")
    bad = cells[numbers.isna() | ~np.isfinite(numbers.fillna(0))]
    require(
        bad.empty,
        f"{len(bad)} label(s) in {where} are not numbers (first: {bad.iloc[0] if len(bad) else ''!r}); "
        f"a regression reads one number per row: fix or drop those rows",
    )
    return numbers.astype(float)


def looks_like_scores(cells: pd.Series) -> bool:
    """Numbers with fractions (3.8, 0.25): a score to predict rather than a class id."""
    numbers = pd.to_numeric(cells, errors="coerce")
    return bool(numbers.notna().all() and len(numbers) and not (numbers == numbers.round()).all())


def a_fraction(cells: pd.Series) -> str:
    """The first label with a fraction, as the file shows it (for messages)."""
    numbers = pd.to_numeric(cells, errors="coerce")
    found = numbers[numbers.notna() & (numbers != numbers.round())]
    return f"{found.iloc[0]:g}" if len(found) else str(cells.iloc[0])
