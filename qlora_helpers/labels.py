"""Multi-label targets: read label sets from a delimited column or from 0/1 columns, map them to ids.

A row's labels become a tuple of ids (an empty tuple is a valid row: no label applies). Ids that are
integers sort numerically, so `10` comes after `2`; a names file (one name per line, line i names id i)
names them, as GoEmotions' `labels.txt` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UserError, require

OTHER_DELIMITERS = (",", ";", "|", "\t")


def read_label_names_file(path: str) -> list[str]:
    """One label name per line; line i names label id i."""
    file = Path(path).expanduser()
    require(file.is_file(), f"label names file not found: {file}; give a text file with one label name per line")
    names = [line.strip() for line in file.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    require(len(names) >= 2, f"{file} names {len(names)} label(s); a classifier needs at least two")
    require(len(set(names)) == len(names), f"{file} names a label twice; each line must name a different label")
    return names


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def split_label_cell(value: Any, delimiter: str) -> tuple[str, ...]:
    """'4,27' -> ('4', '27'); an empty or missing cell -> () (no label applies)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ()
    text = str(value).strip()
    if isinstance(value, float) and value.is_integer():
        text = str(int(value))
    return tuple(part.strip() for part in text.split(delimiter) if part.strip())


def check_delimiter(cells: pd.Series, delimiter: str, column: str) -> None:
    """A cell that holds another common delimiter but not ours was written with a different one: stop."""
    others = [d for d in OTHER_DELIMITERS if d != delimiter]
    for cell in cells.dropna().astype(str):
        if delimiter not in cell:
            found = next((d for d in others if d in cell), None)
            require(
                found is None,
                f"label cell {cell!r} in column {column!r} holds {found!r} but the label delimiter is "
                f"{delimiter!r}; pass --label-delimiter {found!r} or fix the file so every cell uses one delimiter",
            )


def looks_multi_label(cells: pd.Series, delimiter: str) -> str | None:
    """A label cell that holds the delimiter, e.g. '4,27', when the run was not told it is multi-label."""
    if not (pd.api.types.is_object_dtype(cells) or pd.api.types.is_string_dtype(cells)):
        return None
    hit = cells.dropna().astype(str)
    hit = hit[hit.str.contains(delimiter, regex=False)]
    return None if hit.empty else str(hit.iloc[0])


def build_multi_label_mapping(
    sets: list[tuple[str, ...]], label_names: list[str] | None, column: str
) -> tuple[dict[str, int], dict[int, str]]:
    """Label values -> ids. Integer ids keep their own numbers (named by `label_names` when given);
    names map to the order of `label_names`, or sorted order when none are given."""
    values = sorted({v for s in sets for v in s})
    require(values, f"no labels at all in column {column!r}; check --label-column and --label-delimiter")
    if all(_is_int(v) for v in values):
        ids = sorted(int(v) for v in values)
        require(ids[0] >= 0, f"label id {ids[0]} in column {column!r} is negative; ids count from 0")
        if label_names is not None:
            outside = [i for i in ids if i >= len(label_names)]
            if outside:
                raise UserError(
                    f"label id {outside[0]} in column {column!r} is outside the {len(label_names)} names given "
                    f"(ids 0-{len(label_names) - 1}); check --label-names-file"
                )
            count = len(label_names)
        else:
            count = ids[-1] + 1
        names = list(label_names) if label_names is not None else [str(i) for i in range(count)]
        return {str(i): i for i in range(count)}, dict(enumerate(names))
    if label_names is not None:
        unknown = [v for v in values if v not in label_names]
        if unknown:
            raise UserError(
                f"label {unknown[0]!r} in column {column!r} is not among the {len(label_names)} names given "
                f"({', '.join(label_names[:6])}{', ...' if len(label_names) > 6 else ''}); fix the row or the names"
            )
        names = list(label_names)
    else:
        names = values
    require(len(names) >= 2, f"only one label ({names[0]!r}) in column {column!r}; a classifier needs at least two")
    return {n: i for i, n in enumerate(names)}, dict(enumerate(names))


def encode_label_sets(
    sets: list[tuple[str, ...]], value_to_id: dict[str, int], column: str, names: list[str] | None = None
) -> list[tuple[int, ...]]:
    """Label value tuples -> sorted id tuples; a value outside the mapping is an error naming it.
    Label names are accepted too (an evaluation file may use names where training used ids)."""
    by_name = {n: i for i, n in enumerate(names or [])}
    out = []
    for labels in sets:
        ids = []
        for v in labels:
            key = str(int(v)) if _is_int(v) else v
            if key in value_to_id:
                ids.append(value_to_id[key])
            elif v in by_name:
                ids.append(by_name[v])
            else:
                raise UserError(
                    f"label {v!r} in column {column!r} is not among the known labels "
                    f"{list(value_to_id)[:8]}{' ...' if len(value_to_id) > 8 else ''}; fix those rows or drop them"
                )
        out.append(tuple(sorted(set(ids))))
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


def label_counts(label_sets: list[tuple[int, ...]], id2label: dict[int, str]) -> dict[str, int]:
    """Positives per label, plus the rows with no label at all."""
    counts = np.zeros(len(id2label), dtype=int)
    for ids in label_sets:
        counts[list(ids)] += 1
    out = {id2label[i]: int(n) for i, n in enumerate(counts)}
    out["(no label)"] = int(sum(1 for ids in label_sets if not ids))
    return out
