"""Data: load a Hub dataset or a local file, find the columns, clean, map labels, split, tokenize.

Everything downstream sees the same shape: three pandas frames (`train`, `validation`, `test`) with
columns `text` and `label` (an integer id), plus the label mapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UserError, require

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
            "label_counts": {
                k: {self.id2label[i]: int(n) for i, n in sorted(v["label"].value_counts().items())}
                for k, v in self.splits.items()
            },
            "id2label": {str(k): v for k, v in self.id2label.items()},
            "label_values": self.label_values,
        }

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        return (
            f"{self.source}: text={self.text_column!r}, label={self.label_column!r}, "
            f"{self.num_labels} classes {list(self.id2label.values())}; {sizes} ({self.split_origin}); "
            f"{self.dropped_rows} rows with empty text or label dropped" + "".join(f"; {n}" for n in self.notes)
        )


# ---- reading ---------------------------------------------------------------------------------


def _file_kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bz2", ".zip", ".xz", ".zst"):
        suffixes = suffixes[:-1]
    return FILE_READERS.get(suffixes[-1]) if suffixes else None


def _read_table(path: Path, kind: str, encoding_errors: str) -> pd.DataFrame:
    if kind in ("csv", "tsv"):
        return pd.read_csv(path, sep="\t" if kind == "tsv" else ",", encoding_errors=encoding_errors)
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


def read_local_file(path: Path) -> pd.DataFrame:
    """Read CSV/TSV/JSON/JSONL/Parquet (compressed too) with pandas; one-line errors for the usual mistakes.

    Bytes that are not UTF-8 are replaced by U+FFFD and the affected rows are counted in
    `df.attrs["notes"]`, so the run reports them instead of failing on one stray byte or hiding it.
    """
    kind = _file_kind(path)
    require(kind is not None, f"cannot read {path}: use a .csv, .tsv, .json, .jsonl or .parquet file (optionally .gz)")
    require(path.is_file(), f"dataset file not found: {path}; check the path (relative to {Path.cwd()})")
    notes = []
    try:
        try:
            df = _read_table(path, kind, "strict")
        except UnicodeDecodeError:
            df = _read_table(path, kind, "replace")
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


def read_source(source: str) -> dict[str, pd.DataFrame]:
    """A local file becomes one unsplit table (`all`); a Hub dataset keeps its own splits."""
    path = Path(source).expanduser()
    if _file_kind(path) is not None or path.exists():
        require(not path.is_dir(), f"{path} is a directory; pass a data file (.csv, .json, .jsonl, .parquet)")
        return {"all": read_local_file(path)}
    return read_hub_dataset(source)


# ---- columns and labels -------------------------------------------------------------------------


def find_column(columns: list[str], explicit: str | None, candidates: tuple[str, ...], kind: str) -> str:
    flag = f"--{kind}-column"
    if explicit is not None:
        require(
            explicit in columns,
            f"{kind} column {explicit!r} not found; the data has columns {columns}; pass one of them with {flag}",
        )
        return explicit
    lowered = {c.lower(): c for c in columns}
    for c in candidates:
        if c in lowered:
            return lowered[c]
    raise UserError(f"no {kind} column found among {columns} (looked for {list(candidates)}); name it with {flag}")


def _clean(df: pd.DataFrame, text_col: str, label_col: str) -> tuple[pd.DataFrame, int]:
    out = pd.DataFrame({"text": df[text_col], "label": df[label_col]})
    text_ok = out["text"].map(lambda t: isinstance(t, str) and t.strip() != "")
    label_ok = out["label"].notna()
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


def _stratified_sample(df: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    from sklearn.model_selection import train_test_split

    if n >= len(df):
        return df
    try:
        part, _ = train_test_split(df, train_size=n, stratify=df["label"], random_state=seed)
    except ValueError:
        part = df.sample(n=n, random_state=seed)
    return part.reset_index(drop=True)


def stratified_split(
    df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, pd.DataFrame]:
    """Train/validation/test with each class in the same proportion (80/10/10 by default), fixed seed."""
    from sklearn.model_selection import train_test_split

    smallest = df["label"].value_counts().min()
    require(
        smallest >= 3,
        f"a class has only {smallest} row(s); a stratified train/validation/test split needs "
        f"at least 3 per class - add rows or merge rare classes",
    )
    try:
        rest, test = train_test_split(df, test_size=test_fraction, stratify=df["label"], random_state=seed)
        train, val = train_test_split(
            rest, test_size=val_fraction / (1 - test_fraction), stratify=rest["label"], random_state=seed
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
) -> PreparedData:
    """Load, clean, label-map and split `source`; the dataset's own validation/test splits are used when present."""
    return prepare_data_from_frames(
        read_source(source),
        source,
        text_column,
        label_column,
        label_names,
        max_samples,
        val_fraction,
        test_fraction,
        seed,
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
) -> PreparedData:
    """`prepare_data` for tables already in memory (one `all` table, or named splits)."""
    named = {SPLIT_ALIASES.get(k.lower(), k): v for k, v in raw.items()}
    columns = list(next(iter(named.values())).columns)
    text_col = find_column(columns, text_column, TEXT_CANDIDATES, "text")
    label_col = find_column(columns, label_column, LABEL_CANDIDATES, "label")
    for name, frame in named.items():
        require(
            text_col in frame.columns and label_col in frame.columns,
            f"split {name!r} lacks column {text_col!r} or {label_col!r}",
        )

    cleaned, dropped = {}, 0
    for name, frame in named.items():
        cleaned[name], n = _clean(frame, text_col, label_col)
        dropped += n
    require(
        sum(len(v) for v in cleaned.values()) > 0, f"no rows with text left in {source} after dropping empty texts"
    )
    value_to_id, id2label = build_label_mapping(pd.concat(list(cleaned.values()))["label"], label_names, label_col)
    encoded = {k: encode_labels(v, value_to_id, label_col) for k, v in cleaned.items()}

    notes = [note for frame in raw.values() for note in frame.attrs.get("notes", [])]
    pool_name = "train" if "train" in encoded else ("all" if "all" in encoded else next(iter(encoded)))
    pool = encoded[pool_name]
    own = {k: encoded[k] for k in ("validation", "test") if k in encoded and k != pool_name}
    total = len(pool) + sum(len(v) for v in own.values())
    if max_samples is not None and max_samples < total:
        scale = max_samples / total
        pool = _stratified_sample(pool, max(3 * len(value_to_id), round(len(pool) * scale)), seed)
        own = {k: _stratified_sample(v, max(len(value_to_id), round(len(v) * scale)), seed) for k, v in own.items()}
        notes.append(f"max_samples={max_samples}: stratified sample of {total} rows")

    if "validation" in own and "test" in own:
        splits = {"train": pool, **own}
        origin = "the dataset's own splits"
    elif own:
        from sklearn.model_selection import train_test_split

        have = next(iter(own))
        need = "test" if have == "validation" else "validation"
        fraction = test_fraction if need == "test" else val_fraction
        train, carved = train_test_split(pool, test_size=fraction, stratify=pool["label"], random_state=seed)
        splits = {"train": train.reset_index(drop=True), have: own[have], need: carved.reset_index(drop=True)}
        origin = f"the dataset's {have} split; {need} carved from train ({fraction:.0%}, stratified, seed {seed})"
    else:
        splits = stratified_split(pool, val_fraction, test_fraction, seed)
        tr = 1 - val_fraction - test_fraction
        origin = f"stratified {tr:.0%}/{val_fraction:.0%}/{test_fraction:.0%} split, seed {seed}"
    splits = {k: splits[k] for k in ("train", "validation", "test")}
    seen = set(splits["train"]["text"])
    overlap = {k: int(splits[k]["text"].isin(seen).sum()) for k in ("validation", "test")}
    if any(overlap.values()):  # duplicated rows leak training texts into evaluation: say so, keep the split
        notes.append(
            f"texts also in train: {overlap['validation']} validation, {overlap['test']} test "
            f"(duplicate rows in the source)"
        )
    return PreparedData(splits, id2label, list(value_to_id), source, text_col, label_col, origin, dropped, notes)


# ---- tokenization -----------------------------------------------------------------------------

TRUNCATIONS = ("head", "head_tail")


def encode_texts(tokenizer, texts: list[str], max_length: int, truncation: str = "head") -> dict[str, list]:
    """Token ids (unpadded) of at most `max_length` tokens per text.

    `head` keeps the beginning. `head_tail` keeps the first quarter of the budget from the beginning
    and the rest from the end: a review's verdict is often in its last sentences, and Sun et al. (2019)
    measured head+tail above head-only truncation for BERT on IMDb.
    """
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
        return encode_texts(tokenizer, batch["text"], max_length, truncation)

    out = {}
    for name, frame in data.splits.items():
        ds = Dataset.from_pandas(frame[["text", "label"]], preserve_index=False)
        out[name] = ds.map(encode, batched=True, remove_columns=["text"], desc=f"Tokenizing {name}")
    print(truncation_report(out, max_length, truncation))
    return DatasetDict(out)


def truncation_report(tokenized: dict, max_length: int, truncation: str = "head") -> str:
    """How many texts per split reached `max_length` tokens, i.e. lost part of their text to truncation."""
    parts = []
    for name, ds in tokenized.items():
        cut = sum(len(ids) >= max_length for ids in ds["input_ids"])
        parts.append(f"{name} {cut:,} of {len(ds):,} ({cut / max(1, len(ds)):.0%})")
    kept = "beginning and end kept" if truncation == "head_tail" else "beginning kept"
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
    path: str, mapping: dict[str, Any], text_column: str | None = None, label_column: str | None = None
) -> pd.DataFrame:
    """A labelled evaluation file encoded with a trained run's mapping (raw values or label names)."""
    df = read_local_file(Path(path).expanduser())
    columns = list(df.columns)
    text_col = find_column(
        columns,
        text_column or (mapping.get("text_column") if mapping.get("text_column") in columns else None),
        TEXT_CANDIDATES,
        "text",
    )
    label_col = find_column(
        columns,
        label_column or (mapping.get("label_column") if mapping.get("label_column") in columns else None),
        LABEL_CANDIDATES,
        "label",
    )
    frame, _ = _clean(df, text_col, label_col)
    require(len(frame) > 0, f"{path} has no rows with text and label")
    values = mapping["label_values"]
    names = [mapping["id2label"][str(i)] for i in range(len(values))]
    as_names = frame["label"].map(lambda v: str(v).strip()).isin(names).all()
    value_to_id = {n: i for i, n in enumerate(names)} if as_names else {v: i for i, v in enumerate(values)}
    return encode_labels(frame, value_to_id, label_col)
