"""Data: load a Hub dataset or a local file, find the columns, clean, map labels, split, tokenize.

Everything downstream sees the same shape: three pandas frames (`train`, `validation`, `test`) with
columns `text` and `label` (an integer id; for a multi-label task a tuple of ids), and `text_pair` for a
sentence-pair task, plus the label mapping.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import labels as ml
from .errors import UserError, require
from .text_input import TextInput, check_pairs, from_mapping, resolve

TEXT_CANDIDATES = ("text", "review", "sentence", "content", "document", "comment")
LABEL_CANDIDATES = ("label", "labels", "sentiment", "class", "target", "category")
FILE_READERS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass
class PreparedData:
    """Clean, labelled, split data and how it was obtained (all of it goes into metrics.json)."""

    splits: dict[str, pd.DataFrame]
    id2label: dict[int, str]
    label_values: list[Any]  # the label column's original values, in id order
    source: str
    text_column: str
    label_column: str
    split_origin: str
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)
    multi_label: bool = False
    label_delimiter: str = ","
    label_columns: list[str] | None = None
    text_input: TextInput | None = None

    @property
    def pairs(self) -> bool:
        return bool(self.text_input and self.text_input.pair_column)

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in self.id2label.items()}

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "text_column": self.text_column,
            "label_column": self.label_column,
            "split_origin": self.split_origin,
            "dropped_rows": self.dropped_rows,
            "notes": self.notes,
            "sizes": {k: len(v) for k, v in self.splits.items()},
            "label_counts": {k: self.label_counts(k) for k in self.splits},
            "multi_label": self.multi_label,
            **(self.text_input.record() if self.text_input else {}),
            "id2label": {str(k): v for k, v in self.id2label.items()},
            "label_values": self.label_values,
        }

    def label_counts(self, split: str) -> dict[str, int]:
        """Rows per class; for multi-label, positives per label and the rows with no label."""
        frame = self.splits[split]
        if self.multi_label:
            return ml.label_counts(list(frame["label"]), self.id2label)
        return {self.id2label[i]: int(n) for i, n in sorted(frame["label"].value_counts().items())}

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        kind = "labels (multi-label)" if self.multi_label else "classes"
        shown = list(self.id2label.values())
        shown_text = str(shown) if len(shown) <= 12 else f"[{', '.join(shown[:10])}, ...]"
        return (
            f"{self.source}: text={self.text_input.name if self.text_input else self.text_column!r}, "
            f"label={self.label_column!r}, "
            f"{self.num_labels} {kind} {shown_text}; {sizes} ({self.split_origin}); "
            f"{self.dropped_rows} rows with empty text or label dropped" + "".join(f"; {n}" for n in self.notes)
        )


# ---- reading ---------------------------------------------------------------------------------


def _file_kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    return FILE_READERS.get(suffixes[-1]) if suffixes else None


def _read_table(path: Path, kind: str, encoding_errors: str, header: bool = True) -> pd.DataFrame:
    if kind == "tsv":  # TSV has no quoting: a bare " is text (GLUE files hold many), so a row is a line
        return pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            header=0 if header else None,
            encoding="utf-8-sig",
            encoding_errors=encoding_errors,
            keep_default_na=False,
            na_values=[""],
        )
    if kind == "csv":
        return pd.read_csv(path, header=0 if header else None, encoding="utf-8-sig", encoding_errors=encoding_errors)
    if kind == "jsonl":
        return pd.read_json(path, lines=True, encoding_errors=encoding_errors)
    if kind == "json":
        try:
            return pd.read_json(path, encoding_errors=encoding_errors)
        except UnicodeDecodeError:
            raise
        except ValueError:
            return pd.read_json(path, lines=True, encoding_errors=encoding_errors)
    return pd.read_parquet(path)


def _count_replaced(df: pd.DataFrame) -> int:
    """Rows where a cell holds U+FFFD, the character that stands for undecodable bytes."""
    text = df.select_dtypes(include=["object", "string"])
    return int(text.apply(lambda col: col.map(lambda v: isinstance(v, str) and "\ufffd" in v)).any(axis=1).sum())


def read_local_file(path: Path, header: bool = True) -> pd.DataFrame:
    """Read CSV/TSV/JSON/JSONL/Parquet (compressed too) with pandas; one-line errors for the usual mistakes.

    Bytes that are not UTF-8 are replaced by U+FFFD and the affected rows are counted in
    `df.attrs["notes"]`, so the run reports them instead of failing on one stray byte or hiding it.
    A headerless CSV/TSV (`header=False`) gets the column names "0", "1", ... so columns are chosen by index.
    A leading byte-order mark is dropped.
    """
    kind = _file_kind(path)
    require(kind is not None, f"cannot read {path}: use a .csv, .tsv, .json, .jsonl or .parquet file (optionally .gz)")
    require(path.is_file(), f"dataset file not found: {path}; check the path (relative to {Path.cwd()})")
    notes = []
    try:
        try:
            df = _read_table(path, kind, "strict", header)
        except UnicodeDecodeError:
            df = _read_table(path, kind, "replace", header)
            notes.append(
                f"{_count_replaced(df)} row(s) of {path.name} held bytes that are not UTF-8; "
                f"they were replaced by U+FFFD (re-save the file as UTF-8 to keep those characters)"
            )
    except pd.errors.EmptyDataError:
        raise UserError(
            f"dataset file is empty: {path}; it needs a header row and at least two classes of rows"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not parse {path} as {kind}: {first}") from None
    require(len(df) > 0, f"dataset file has no rows: {path}")
    if not header:
        require(kind in ("csv", "tsv"), f"--no-header applies to CSV/TSV files; {path.name} is {kind}")
        df.columns = [str(c) for c in df.columns]
    df.attrs["notes"] = notes
    return df


def read_hub_dataset(name: str) -> dict[str, pd.DataFrame]:
    """Load every split of a Hub dataset with `datasets`; offline or a wrong id gives a one-line error."""
    try:
        import datasets
        from datasets import load_dataset

        datasets.logging.set_verbosity_error()
        loaded = load_dataset(name)
    except ImportError:
        raise UserError("reading Hub datasets needs the datasets package: pip install datasets") from None
    except Exception as e:  # network, auth, missing repo: all end the same way for the user
        raise UserError(
            f"could not load the dataset {name!r} from the Hugging Face Hub ({type(e).__name__}); check the id and "
            f"your network, or pass a local file: --dataset path/to/data.csv"
        ) from None
    return {split: ds.to_pandas() for split, ds in loaded.items()}


def read_source(source: str, header: bool = True) -> dict[str, pd.DataFrame]:
    """A local file becomes one unsplit table (`all`); a Hub dataset keeps its own splits."""
    path = Path(source).expanduser()
    if _file_kind(path) is not None or path.exists():
        require(not path.is_dir(), f"{path} is a directory; pass a data file (.csv, .json, .jsonl, .parquet)")
        return {"all": read_local_file(path, header)}
    return read_hub_dataset(source)


# ---- columns and labels -------------------------------------------------------------------------


def find_column(columns: list[str], explicit: str | None, candidates: tuple[str, ...], kind: str) -> str:
    flag = f"--{kind}-column"
    headerless = all(str(c).isdigit() for c in columns)
    if explicit is not None and headerless:
        require(
            explicit.isdigit(),
            f"{kind} column {explicit!r} is a name, but with --no-header columns are 0-based indices "
            f"(0-{len(columns) - 1}); pass {flag} N, or drop --no-header if the first row names the columns",
        )
        require(
            explicit in columns,
            f"{kind} column index {explicit} is out of range: the file has {len(columns)} columns "
            f"(0-{len(columns) - 1}); pass {flag} with one of them",
        )
    if explicit is not None:
        require(
            explicit in columns or not explicit.isdigit(),
            f"{kind} column {explicit!r} looks like a column index, but the file's first row was read as "
            f"names {columns[:6]}; if the file has no header row, pass --no-header",
        )
        require(
            explicit in columns,
            f"{kind} column {explicit!r} not found; the data has columns {columns}; pass one of them with {flag}",
        )
        return explicit
    lowered = {c.lower(): c for c in columns}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    if headerless:
        raise UserError(f"the file was read without a header row: name the {kind} column by index with {flag} N")
    first_row_is_data = any(str(c).replace(".", "").isdigit() or len(str(c)) > 40 for c in columns)
    hint = (
        "; the first row looks like data: if the file has no header row, pass --no-header" if first_row_is_data else ""
    )
    shown = [str(c)[:40] for c in columns[:8]]
    raise UserError(f"no {kind} column found among {shown} (looked for {list(candidates)}); name it with {flag}{hint}")


def _clean(
    df: pd.DataFrame, text_input: TextInput, label_col: str, where: str = "the data"
) -> tuple[pd.DataFrame, int]:
    """Rows with a text and a label (counted when dropped); a pair task's rows must also have a second text."""
    out = text_input.extract(df).assign(label=df[label_col])
    text_ok = out["text"].map(lambda t: isinstance(t, str) and t.strip() != "")
    label_ok = out["label"].notna()
    if text_input.pair_column:
        check_pairs(out[text_ok & label_ok], text_input.pair_column, where)
    kept = out[text_ok & label_ok].reset_index(drop=True)
    return kept, int(len(out) - len(kept))


def build_label_mapping(
    values: pd.Series, label_names: list[str] | None, label_col: str
) -> tuple[dict[Any, int], dict[int, str]]:
    """Sorted unique label values -> ids 0..K-1; names from `label_names` or the values themselves."""
    numeric = pd.api.types.is_numeric_dtype(values)
    if numeric:
        require(
            bool((values == values.round()).all()),
            f"label column {label_col!r} holds non-integer numbers; labels must be classes, not scores",
        )
        uniques = sorted(int(v) for v in values.unique())
    else:
        uniques = sorted(str(v).strip() for v in values.unique())
    require(
        len(uniques) >= 2,
        f"only one class ({uniques[0]!r}) in label column {label_col!r}; a classifier needs "
        f"at least two - check --label-column or the file",
    )
    if label_names is not None:
        require(
            len(label_names) == len(uniques),
            f"{len(label_names)} label names {label_names} given for {len(uniques)} classes {uniques}; "
            f"give one name per class, in sorted order of the values",
        )
        names = list(label_names)
    else:
        names = [str(u) for u in uniques]
    return {u: i for i, u in enumerate(uniques)}, dict(enumerate(names))


def encode_labels(df: pd.DataFrame, value_to_id: dict[Any, int], label_col: str) -> pd.DataFrame:
    """Replace label values by ids; a value outside the mapping is an error naming it."""
    numeric = isinstance(next(iter(value_to_id)), int)
    try:
        key = df["label"].map(lambda v: int(v) if numeric else str(v).strip())
    except (TypeError, ValueError):
        key = df["label"].map(str)
    unknown = sorted(set(key) - set(value_to_id), key=str)
    require(
        not unknown,
        f"labels {unknown[:5]} in column {label_col!r} are not among the known labels "
        f"{list(value_to_id)}; fix those rows or drop them",
    )
    return df.assign(label=key.map(value_to_id).astype(int))


# ---- splitting ---------------------------------------------------------------------------------


def strata(df: pd.DataFrame) -> pd.Series:
    """What a split stratifies on: the class; for label sets, each row's rarest label (-1: no label).

    Stratifying on the rarest label puts rows of rare labels into every split in proportion, which a
    random split of a 28-label set like GoEmotions would not; labels with fewer than 3 such rows share
    one stratum, so the split still works.
    """
    if len(df) == 0 or not isinstance(df["label"].iloc[0], tuple):
        return df["label"]
    counts: dict[int, int] = {}
    for ids in df["label"]:
        for i in ids:
            counts[i] = counts.get(i, 0) + 1
    key = df["label"].map(lambda ids: min(ids, key=lambda i: (counts[i], i)) if ids else -1)
    small = key.map(key.value_counts()) < 3
    return key.where(~small, -2)


def _stratified_sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    from sklearn.model_selection import train_test_split

    if n >= len(df):
        return df
    try:
        part, _ = train_test_split(df, train_size=n, stratify=strata(df), random_state=seed)
    except ValueError:
        part = df.sample(n=n, random_state=seed)
    return part.reset_index(drop=True)


def stratified_split(
    df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Train/validation/test with each class in the same proportion (80/10/10 by default), fixed seed."""
    from sklearn.model_selection import train_test_split

    multi = len(df) > 0 and isinstance(df["label"].iloc[0], tuple)
    smallest = 3 if multi else df["label"].value_counts().min()
    require(
        smallest >= 3,
        f"a class has only {smallest} row(s); a stratified train/validation/test split needs "
        f"at least 3 per class - add rows or merge rare classes",
    )
    try:
        rest, test = train_test_split(df, test_size=test_fraction, stratify=strata(df), random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1 - test_fraction), stratify=strata(rest), random_state=seed
        )
    except ValueError as e:
        raise UserError(
            f"cannot make a stratified split of {len(df)} rows: {e}; use more rows or fewer classes"
        ) from None
    return {k: v.reset_index(drop=True) for k, v in (("train", train), ("validation", val), ("test", test))}


def prepare_data(
    source: str,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    header: bool = True,
    multi_label: bool = False,
    label_delimiter: str = ",",
    label_columns: list[str] | None = None,
    test_file: str | None = None,
    *,
    text_columns: list[str] | None = None,
    text_pair_column: str | None = None,
    text_separator: str = " [SEP] ",
) -> PreparedData:
    """Load, clean, label-map and split `source`; the dataset's own validation/test splits are used when present.

    `test_file` is a separate labelled file (same columns) that becomes the test split; validation is then
    carved from `source`.
    """
    raw = read_source(source, header)
    if test_file:
        require(Path(test_file).expanduser().is_file(), f"test file not found: {test_file}; pass a labelled data file")
        raw["test"] = read_local_file(Path(test_file).expanduser(), header)
    return prepare_data_from_frames(
        raw,
        source,
        text_column,
        label_column,
        label_names,
        max_samples,
        val_fraction,
        test_fraction,
        seed,
        multi_label,
        label_delimiter,
        label_columns,
        text_columns=text_columns,
        text_pair_column=text_pair_column,
        text_separator=text_separator,
    )


def prepare_data_from_frames(
    raw: dict[str, pd.DataFrame],
    source: str,
    text_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    max_samples: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    multi_label: bool = False,
    label_delimiter: str = ",",
    label_columns: list[str] | None = None,
    *,
    text_columns: list[str] | None = None,
    text_pair_column: str | None = None,
    text_separator: str = " [SEP] ",
) -> PreparedData:
    """`prepare_data` for tables already in memory (one `all` table, or named splits)."""
    named = {SPLIT_ALIASES.get(k.lower(), k): v for k, v in raw.items()}
    columns = list(next(iter(named.values())).columns)
    text_input = resolve(columns, text_column, text_columns, text_pair_column, text_separator, TEXT_CANDIDATES)
    text_col = text_input.columns[0]
    if label_columns:
        require(multi_label, "--label-columns (one 0/1 column per label) needs --multi-label")
        label_col = "+".join(label_columns)
    else:
        label_col = find_column(columns, label_column, LABEL_CANDIDATES, "label")
    needed = label_columns or [label_col]
    for name, frame in named.items():
        inputs = [*text_input.columns, *([text_input.pair_column] if text_input.pair_column else [])]
        lacking = [c for c in [*inputs, *needed] if c not in frame.columns]
        require(not lacking, f"split {name!r} lacks column(s) {lacking}")

    notes = [note for frame in raw.values() for note in frame.attrs.get("notes", [])]
    cleaned, dropped = {}, 0
    if multi_label:
        encoded, id2label, values, dropped = _multi_label_frames(
            named, text_input, label_col, label_names, label_delimiter, label_columns, notes
        )
    else:
        for name, frame in named.items():
            cleaned[name], n = _clean(frame, text_input, label_col, f"split {name!r}")
            dropped += n
        require(
            sum(len(v) for v in cleaned.values()) > 0,
            f"no rows with text left in {source} after dropping empty texts",
        )
        several = ml.looks_multi_label(pd.concat(list(cleaned.values()))["label"], label_delimiter)
        require(
            several is None,
            f"label cell {several!r} in column {label_col!r} holds several labels separated by "
            f"{label_delimiter!r}; pass --multi-label to train one output per label "
            f"(or another --label-delimiter if {label_delimiter!r} is part of a class name)",
        )
        value_to_id, id2label = build_label_mapping(pd.concat(list(cleaned.values()))["label"], label_names, label_col)
        encoded = {k: encode_labels(v, value_to_id, label_col) for k, v in cleaned.items()}
        values = list(value_to_id)
    pool_name = "train" if "train" in encoded else ("all" if "all" in encoded else next(iter(encoded)))
    pool = encoded[pool_name]
    own = {k: encoded[k] for k in ("validation", "test") if k in encoded and k != pool_name}
    total = len(pool) + sum(len(v) for v in own.values())
    if max_samples is not None and max_samples < total:
        scale = max_samples / total
        pool = _stratified_sample(pool, max(3 * len(id2label), round(len(pool) * scale)), seed)
        own = {k: _stratified_sample(v, max(len(id2label), round(len(v) * scale)), seed) for k, v in own.items()}
        notes.append(f"max_samples={max_samples}: stratified sample of {total} rows")

    if "validation" in own and "test" in own:
        splits = {"train": pool, **own}
        origin = "the dataset's own splits"
    elif own:
        from sklearn.model_selection import train_test_split

        have = next(iter(own))
        need = "test" if have == "validation" else "validation"
        fraction = test_fraction if need == "test" else val_fraction
        train, carved = train_test_split(pool, test_size=fraction, stratify=strata(pool), random_state=seed)
        splits = {"train": train.reset_index(drop=True), have: own[have], need: carved.reset_index(drop=True)}
        origin = f"the dataset's {have} split; {need} carved from train ({fraction:.0%}, stratified, seed {seed})"
    else:
        splits = stratified_split(pool, val_fraction, test_fraction, seed)
        tr = 1 - val_fraction - test_fraction
        origin = f"stratified {tr:.0%}/{val_fraction:.0%}/{test_fraction:.0%} split, seed {seed}"
    splits = {k: splits[k] for k in ("train", "validation", "test")}

    def key(frame: pd.DataFrame) -> pd.Series:  # a pair is a duplicate only when both of its texts are
        return frame["text"] + "\x00" + frame["text_pair"] if text_input.pair_column else frame["text"]

    seen = set(key(splits["train"]))
    overlap = {k: int(key(splits[k]).isin(seen).sum()) for k in ("validation", "test")}
    if any(overlap.values()):  # duplicated rows leak training texts into evaluation: say so, keep the split
        notes.append(
            f"texts also in train: {overlap['validation']} validation, {overlap['test']} test "
            f"(duplicate rows in the source)"
        )
    if multi_label:
        absent = {
            k: [id2label[i] for i in range(len(id2label)) if i not in {j for ids in v["label"] for j in ids}]
            for k, v in splits.items()
        }
        for k, names in absent.items():
            if names:
                notes.append(f"labels with no row in {k}: {names[:8]}{' ...' if len(names) > 8 else ''}")
        origin += "; label sets stratified by each row's rarest label"
    return PreparedData(
        splits,
        id2label,
        values,
        source,
        text_col,
        label_col,
        origin,
        dropped,
        notes,
        multi_label,
        label_delimiter,
        list(label_columns) if label_columns else None,
        text_input,
    )


def _multi_label_frames(
    named: dict[str, pd.DataFrame],
    text_input: TextInput,
    label_col: str,
    label_names: list[str] | None,
    delimiter: str,
    label_columns: list[str] | None,
    notes: list[str],
) -> tuple[dict[str, pd.DataFrame], dict[int, str], list[str], int]:
    """Frames whose `label` is a tuple of ids; rows with empty text dropped, rows with no label kept."""
    raw_sets, texts, dropped = {}, {}, 0
    for name, frame in named.items():
        inputs = text_input.extract(frame)
        ok = inputs["text"].map(lambda t: isinstance(t, str) and t.strip() != "")
        dropped += int((~ok).sum())
        if text_input.pair_column:
            check_pairs(inputs[ok], text_input.pair_column, f"split {name!r}")
        frame, inputs = frame[ok].reset_index(drop=True), inputs[ok].reset_index(drop=True)
        texts[name] = inputs
        if label_columns:
            raw_sets[name] = ml.sets_from_columns(frame, label_columns)
        else:
            ml.check_delimiter(frame[label_col], delimiter, label_col)
            raw_sets[name] = [ml.split_label_cell(v, delimiter) for v in frame[label_col]]
    all_sets = [s for sets in raw_sets.values() for s in sets]
    require(all_sets, "no rows with text left after dropping empty texts")
    if label_columns:
        names = list(label_names) if label_names is not None else list(label_columns)
        require(
            len(names) == len(label_columns),
            f"{len(names)} label names given for {len(label_columns)} label columns; give one name per column",
        )
        value_to_id, id2label = {c: i for i, c in enumerate(label_columns)}, dict(enumerate(names))
    else:
        value_to_id, id2label = ml.build_multi_label_mapping(all_sets, label_names, label_col)
        if max(len(s) for s in all_sets) <= 1:
            notes.append(
                f"--multi-label: no label cell holds {delimiter!r}, so each text has at most one label; "
                f"a single-label run (without --multi-label) fits such data better"
            )
    names_list = [id2label[i] for i in range(len(id2label))]
    encoded = {
        name: texts[name].assign(label=ml.encode_label_sets(sets, value_to_id, label_col, names_list))
        for name, sets in raw_sets.items()
    }
    return encoded, id2label, list(value_to_id), dropped


# ---- tokenization -----------------------------------------------------------------------------

TRUNCATIONS = ("head", "head_tail")


def encode_texts(
    tokenizer, texts: list[str], max_length: int, truncation: str = "head", pairs: list[str] | None = None
) -> dict[str, list]:
    """Token ids (unpadded) of at most `max_length` tokens per text (or per pair of texts).

    A pair goes in as BERT's two segments (`[CLS] a [SEP] b [SEP]`, token type ids 0 then 1); when it is
    too long, tokens come off the longer of the two first, so the budget is shared.

    `head` keeps the beginning. `head_tail` keeps the first quarter of the budget from the beginning
    and the rest from the end: a review's verdict is often in its last sentences, and Sun et al. (2019)
    measured head+tail above head-only truncation for BERT on IMDb.
    """
    if pairs is not None:
        return dict(tokenizer(texts, pairs, truncation="longest_first", max_length=max_length))
    if truncation == "head":
        return dict(tokenizer(texts, truncation=True, max_length=max_length))
    require(truncation == "head_tail", f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    encoded = dict(tokenizer(texts, truncation=False, verbose=False))
    special = set(tokenizer.all_special_ids)
    probe = encoded["input_ids"][0] if encoded["input_ids"] else []
    prefix = next((i for i, t in enumerate(probe) if t not in special), 0)  # [CLS] for BERT
    head = prefix + (max_length - tokenizer.num_special_tokens_to_add()) // 4
    tail = max_length - head  # includes the closing [SEP]
    for i, ids in enumerate(encoded["input_ids"]):
        if len(ids) > max_length:
            for key in encoded:
                encoded[key][i] = encoded[key][i][:head] + encoded[key][i][-tail:]
    return encoded


def tokenize_splits(data: PreparedData, tokenizer, max_length: int, truncation: str = "head"):
    """Token ids of every split, cut to `max_length` as `truncation` says; padding is left to the collator."""
    from datasets import Dataset, DatasetDict

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return encode_texts(tokenizer, batch["text"], max_length, truncation, batch.get("text_pair"))

    inputs = ["text", "text_pair"] if data.pairs else ["text"]
    out = {}
    for name, frame in data.splits.items():
        if data.multi_label:
            frame = frame.assign(label=list(ml.multi_hot(list(frame["label"]), data.num_labels).tolist()))
        ds = Dataset.from_pandas(frame[[*inputs, "label"]], preserve_index=False)
        out[name] = ds.map(encode, batched=True, remove_columns=inputs, desc=f"Tokenizing {name}")
    print(truncation_report(out, max_length, "pair" if data.pairs else truncation))
    return DatasetDict(out)


def truncation_report(tokenized: dict, max_length: int, truncation: str = "head") -> str:
    """How many texts per split reached `max_length` tokens, i.e. lost part of their text to truncation."""
    parts = []
    for name, ds in tokenized.items():
        cut = sum(len(ids) >= max_length for ids in ds["input_ids"])
        parts.append(f"{name} {cut:,} of {len(ds):,} ({cut / max(1, len(ds)):.0%})")
    kept = {"head_tail": "beginning and end kept", "pair": "the longer text shortened first"}.get(
        truncation, "beginning kept"
    )
    return f"texts cut to max_length={max_length} tokens ({kept}): " + ", ".join(parts)


def token_lengths(texts: list[str], tokenizer, limit: int = 2000, seed: int = 0) -> np.ndarray:
    """Untruncated token counts of up to `limit` texts (a random sample), to see what truncation cuts."""
    if len(texts) > limit:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in rng.choice(len(texts), size=limit, replace=False)]
    ids = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    return np.array([len(x) for x in ids])


def save_label_mapping(data: PreparedData, directory: Path) -> Path:
    path = Path(directory) / "label_mapping.json"
    path.write_text(
        json.dumps(
            {
                "id2label": {str(k): v for k, v in data.id2label.items()},
                "label2id": data.label2id,
                "label_values": data.label_values,
                "label_column": data.label_column,
                "text_column": data.text_column,
                "multi_label": data.multi_label,
                "label_delimiter": data.label_delimiter,
                "label_columns": data.label_columns,
                **(data.text_input.record() if data.text_input else {}),
            },
            indent=2,
        )
    )
    return path


def read_label_mapping(directory: Path) -> dict[str, Any]:
    path = Path(directory) / "label_mapping.json"
    require(path.is_file(), f"{directory} has no label_mapping.json; pass the output directory of a training run")
    return json.loads(path.read_text())


def load_label_mapping(directory: Path) -> dict[int, str]:
    return {int(k): v for k, v in read_label_mapping(directory)["id2label"].items()}


def load_labelled_file(
    path: str,
    mapping: dict[str, Any],
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
    text_pair_column: str | None = None,
) -> pd.DataFrame:
    """A labelled evaluation file encoded with a trained run's mapping (raw values or label names).

    Its input columns are the ones training read (joined or paired the same way) unless the flags name others.
    For a multi-label run, `label` holds tuples of ids, read as training read them (delimiter or 0/1 columns).
    """
    df = read_local_file(Path(path).expanduser(), header)
    columns = list(df.columns)
    text_input = from_mapping(mapping, columns, text_column, text_pair_column, TEXT_CANDIDATES)

    def column(explicit: str | None, kind: str, candidates: tuple[str, ...]) -> str:
        """The flag's column, else the one training used when the file has it, else found by name."""
        trained = mapping.get(f"{kind}_column")
        return find_column(columns, explicit or (trained if trained in columns else None), candidates, kind)

    values = mapping["label_values"]
    names = [mapping["id2label"][str(i)] for i in range(len(mapping["id2label"]))]
    label_columns = mapping.get("label_columns")
    label_col = "+".join(label_columns) if label_columns else column(label_column, "label", LABEL_CANDIDATES)
    if mapping.get("multi_label"):
        encoded, *_ = _multi_label_frames(
            {"all": df}, text_input, label_col, names, mapping.get("label_delimiter", ","), label_columns, []
        )
        frame = encoded["all"]
        require(len(frame) > 0, f"{path} has no rows with text")
        return frame
    frame, _ = _clean(df, text_input, label_col, str(path))
    require(len(frame) > 0, f"{path} has no rows with text and label")
    as_names = frame["label"].map(lambda v: str(v).strip()).isin(names).all()
    value_to_id = {n: i for i, n in enumerate(names)} if as_names else {v: i for i, v in enumerate(values)}
    return encode_labels(frame, value_to_id, label_col)
