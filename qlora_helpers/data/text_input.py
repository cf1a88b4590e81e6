"""What a model reads from a row: one text column, several columns joined into one text, or two columns as
BERT's sentence pair (two segments told apart by token type ids).

Training, `predict --dataset` and `evaluate` all take a row's input through `TextInput.extract`, and the
trained run records its `TextInput` in label_mapping.json, so a model is always fed the way it was trained.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qlora_helpers.data.tables import find_column
from qlora_helpers.errors import UserError, require

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

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TextInput:
        return cls(tuple(record["text_columns"]), record.get("text_pair_column"), record.get("separator", " [SEP] "))


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


def from_saved(
    saved: TextInput,
    columns: list[str],
    text_column: str | None = None,
    pair_column: str | None = None,
    candidates: tuple[str, ...] = (),
    text_columns: list[str] | None = None,
) -> TextInput:
    """The input a trained model read, found in another file's `columns`; flags name other columns of the
    same shape (one text, the same number of joined columns, a pair only for a pair model)."""
    trained, trained_pair = list(saved.columns), saved.pair_column
    require(
        not (text_columns and len(text_columns) != len(trained)),
        f"the model was trained on {len(trained)} text column(s) {trained}; --text-columns names "
        f"{len(text_columns or [])}: name the same number of columns, in the same order",
    )
    require(
        not pair_column or trained_pair,
        "--text-pair-column given, but this model was trained on single texts; leave it out",
    )
    if text_columns:
        names = list(text_columns)
    elif text_column is None and all(c in columns for c in trained):
        names = trained
    else:
        require(
            text_column is not None or len(trained) == 1,
            f"the model was trained on the columns {trained} joined; this file lacks some of them "
            f"(it has {columns[:8]}): rename them, or pass --text-columns with the file's own names",
        )
        names = [text_column]
    pair = pair_column or trained_pair
    if trained_pair and pair_column is None and trained_pair not in columns:
        raise UserError(
            f"the model reads sentence pairs (second text from column {trained_pair!r}), which this file lacks "
            f"(it has {columns[:8]}); pass --text-pair-column with the column of second texts"
        )
    return resolve(
        columns,
        names[0] if len(names) == 1 else None,
        names if len(names) > 1 else None,
        pair,
        saved.separator,
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


def texts_from_file(path: str | Path) -> list[str]:
    """One text per non-empty line of a text file (UTF-8, or UTF-16 by its byte-order mark)."""
    from qlora_helpers.data.tables import text_encoding

    path = Path(path)
    require(not path.is_dir(), f"{path} is a folder; --file takes a text file, one text per line")
    require(path.is_file(), f"text file not found: {path}")
    encoding = text_encoding(path)
    raw = path.read_text(encoding=encoding, errors="replace")
    texts = [t for t in (line.strip() for line in raw.splitlines()) if t]
    replaced = sum("\ufffd" in t for t in texts)
    if replaced:  # said, as train says it for a table, rather than classifying altered text without a word
        print(
            f"note: {replaced} line(s) of {path.name} held bytes that are not {encoding.replace('-sig', '').upper()}; "
            f"they were replaced by U+FFFD (re-save the file as UTF-8 to keep those characters)",
            file=sys.stderr,
        )
    if not texts:
        raise UserError(f"{path} has no non-empty lines; put one text per line")
    return texts


def check_pair_texts(pair_column: str | None, texts: list[str], pairs: list[str] | None) -> None:
    """A pair model (trained with second texts from `pair_column`) needs a second text for every text; a
    single-text model takes none."""
    if pair_column and pairs is None:
        raise UserError(
            f"this model reads sentence pairs (second texts from {pair_column!r} in training); give a "
            f"second text for each: --text-pair on the command line, or --dataset with both columns"
        )
    require(
        pairs is None or pair_column,
        "this model was trained on single texts; leave out the second texts (--text-pair)",
    )
    require(
        pairs is None or len(pairs) == len(texts),
        f"{len(texts)} text(s) but {len(pairs or [])} second text(s); give one --text-pair per text, in order",
    )
    empty = [i + 1 for i, p in enumerate(pairs or []) if not (isinstance(p, str) and p.strip())]
    if empty:  # train and evaluate drop such rows; a prediction would classify half a pair
        raise UserError(f"second text {empty[0]} is empty; a pair model needs both texts of every pair")
