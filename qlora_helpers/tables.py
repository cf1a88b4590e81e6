"""Tables: read a Hub dataset or a local file (CSV/TSV/JSON/JSONL/Parquet, compressed too) into pandas,
and find the columns a run reads, with one-line errors for the usual mistakes."""

from __future__ import annotations

import csv
from pathlib import Path

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
