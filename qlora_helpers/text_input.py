"""What a model reads from a row: one text column, several columns joined into one text, or two columns as
BERT's sentence pair (two segments told apart by token type ids).

Training, `predict --dataset` and `evaluate` all take a row's input through `TextInput.extract`, and the
trained run records its `TextInput` in label_mapping.json, so a model is always fed the way it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from .errors import UserError, require

SEP = "sep"  # --text-separator sep: the tokenizer's own separator token ([SEP] for BERT)


@dataclass(frozen=True)
class TextInput:
    columns: tuple[str, ...]
    pair_column: str | None = None
    separator: str = " [SEP] "  # between joined columns; resolved from --text-separator

    @property
    def name(self) -> str:
        """How metrics.json and messages name the input: `title+description`, or `question | answer` for a pair."""
        joined = "+".join(self.columns)
        return f"{joined} | {self.pair_column}" if self.pair_column else joined

    def extract(self, df: pd.DataFrame) -> pd.DataFrame:
        """`text` (the columns joined in order, empty parts skipped) and, for pairs, `text_pair`, per row."""
        if len(self.columns) == 1:
            text = df[self.columns[0]]
        else:
            parts = [df[c].map(_as_text) for c in self.columns]
            text = pd.Series(
                [self.separator.join(p for p in row if p) for row in zip(*parts)], index=df.index, dtype=object
            )
        out = pd.DataFrame({"text": text})
        if self.pair_column:
            out["text_pair"] = df[self.pair_column]
        return out

    def record(self) -> dict[str, Any]:
        return {"text_columns": list(self.columns), "text_pair_column": self.pair_column, "separator": self.separator}


def _as_text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def separator_text(choice: str, tokenizer) -> str:
    """The string that joins --text-columns: the tokenizer's separator token for `sep`, else `choice` itself."""
    if choice != SEP:
        return choice
    require(tokenizer.sep_token is not None, "this tokenizer has no separator token; pass --text-separator ' | '")
    return f" {tokenizer.sep_token} "


def resolve(
    columns: list[str],
    text_column: str | None,
    text_columns: list[str] | None,
    pair_column: str | None,
    separator: str,
    candidates: tuple[str, ...],
) -> TextInput:
    """The columns named by the flags (by name, or by index for a headerless file), checked against the data."""
    from .data import find_column

    require(
        not (text_column and text_columns),
        "give the text either with --text-column or with --text-columns (several, joined), not both",
    )
    if text_columns:
        chosen = tuple(find_column(columns, c, candidates, "text") for c in text_columns)
        require(len(set(chosen)) == len(chosen), f"--text-columns names a column twice: {list(text_columns)}")
    else:
        chosen = (find_column(columns, text_column, candidates, "text"),)
    pair = find_column(columns, pair_column, (), "text-pair") if pair_column else None
    require(pair not in chosen, f"the pair column {pair!r} is also a text column; name two different columns")
    return TextInput(chosen, pair, separator)


def from_mapping(
    mapping: dict[str, Any],
    columns: list[str],
    text_column: str | None = None,
    pair_column: str | None = None,
    candidates: tuple[str, ...] = (),
) -> TextInput:
    """The input a trained run read (label_mapping.json), found in another file's `columns`; flags override."""
    trained = mapping.get("text_columns") or [mapping.get("text_column")]
    trained_pair = mapping.get("text_pair_column")
    if text_column is None and all(c in columns for c in trained):
        names = list(trained)
    else:
        names = [text_column] if text_column is not None else None
        require(
            names is not None or len(trained) == 1,
            f"the model was trained on the columns {trained} joined; this file lacks some of them "
            f"(it has {columns[:8]}): rename them, or pass --text-column with one column that holds the joined text",
        )
    pair = pair_column or (trained_pair if trained_pair else None)
    if trained_pair and pair_column is None and trained_pair not in columns:
        raise UserError(
            f"the model reads sentence pairs (second text from column {trained_pair!r}), which this file lacks "
            f"(it has {columns[:8]}); pass --text-pair-column with the column of second texts"
        )
    require(
        not pair or trained_pair,
        "--text-pair-column given, but this model was trained on single texts; leave it out",
    )
    return resolve(
        columns,
        names[0] if names and len(names) == 1 else None,
        names if names and len(names) > 1 else None,
        pair,
        mapping.get("separator", " [SEP] "),
        candidates,
    )


def check_pairs(frame: pd.DataFrame, pair_column: str, where: str) -> None:
    """Every row of a pair task needs its second text: say how many lack one and what to do, rather than guess."""
    empty = ~frame["text_pair"].map(lambda t: isinstance(t, str) and t.strip() != "")
    if empty.any():
        first = frame.index[empty.to_numpy()][0]  # the row's position in the file, header not counted
        raise UserError(
            f"{int(empty.sum()):,} of {len(frame):,} rows of {where} have no second text in column {pair_column!r} "
            f"(first: data row {first}); a pair model reads both texts, so fill or drop those rows"
        )
