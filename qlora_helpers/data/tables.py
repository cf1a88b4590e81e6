"""Tables: read a Hub dataset or a local file (CSV/TSV/JSON/JSONL/Parquet, compressed too) into pandas,
and find the columns a run reads, with one-line errors for the usual mistakes."""

from __future__ import annotations

import csv
import importlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from qlora_helpers.errors import UserError, require

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


COMPRESSED = {".gz": "gzip", ".bz2": "bz2", ".xz": "lzma"}  # suffixes whose first bytes can be read to look inside
DELIMITERS = {"csv": ",", "tsv": "\t"}
NOT_TEXT = (  # first bytes -> what the file is, and how to make a table of it
    (b"PK\x03\x04", None, None),  # a zip archive: an .xlsx, or a zip with the table inside (told apart below)
    (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) or other Office file", "save the sheet as CSV UTF-8 in Excel"),
    (b"PAR1", "a Parquet file", "rename it to end in .parquet"),
    (b"\x1f\x8b", "gzip-compressed", "rename it to end in .gz (e.g. data.csv.gz)"),
    (b"%PDF", "a PDF document", "export its table as CSV"),
)


@dataclass(frozen=True)
class FileLook:
    """What a text table's first bytes say: its encoding and (CSV/TSV) its delimiter, and notes for the run."""

    encoding: str = "utf-8-sig"
    delimiter: str | None = None
    notes: tuple[str, ...] = ()


def _head(path: Path, size: int = 65536) -> bytes | None:
    """The first bytes of the file's content (decompressed where the name says so); None where they cannot be read."""
    opener = COMPRESSED.get(path.suffix.lower())
    try:
        if opener is not None:
            with importlib.import_module(opener).open(path, "rb") as f:
                return f.read(size)
        if path.suffix.lower() in (".zip", ".zst"):
            return None
        with open(path, "rb") as f:
            return f.read(size)
    except (OSError, EOFError, ValueError):
        return None  # pandas reports a damaged archive in its own words


def _not_a_table(path: Path, head: bytes, kind: str) -> None:
    """A binary file named like a text table (an Excel workbook renamed .csv): one line saying what it is."""
    for magic, what, fix in NOT_TEXT:
        if not head.startswith(magic):
            continue
        if what is None:
            import zipfile

            names = zipfile.ZipFile(path).namelist() if zipfile.is_zipfile(path) else []
            if any(n.startswith("xl/") for n in names):
                what, fix = "an Excel workbook (.xlsx)", "save the sheet as CSV UTF-8 in Excel (File > Save As)"
            else:
                what, fix = "a zip archive", f"unzip it, or name it {path.name}.zip if it holds one {kind} file"
        raise UserError(f"{path} is {what}, not a {kind.upper() if kind != 'text' else 'text'} file: {fix}")


def _encoding(path: Path, head: bytes) -> tuple[str, list[str]]:
    """UTF-8 (a BOM dropped), or UTF-16/32 told by its byte-order mark, or by the NUL bytes of UTF-16 text."""
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "utf-32", [f"{path.name} read as UTF-32 (its byte-order mark)"]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "utf-16", [f"{path.name} read as UTF-16 (its byte-order mark)"]
    if b"\x00" not in head:
        return "utf-8-sig", []
    even, odd = head[0::2], head[1::2]
    for order, nuls, other in (("le", odd, even), ("be", even, odd)):
        if nuls.count(0) > 0.9 * len(nuls) and other.count(0) < 0.1 * len(other):
            return f"utf-16-{order}", [f"{path.name} read as UTF-16-{order.upper()} (NUL bytes, no byte-order mark)"]
    raise UserError(
        f"{path} holds NUL bytes, so it is not a text file (a binary or damaged file?); export the table as CSV UTF-8"
    )


def _delimiter(path: Path, text: str, kind: str) -> tuple[str, list[str]]:
    """The delimiter a .csv/.tsv really uses: its own when its header (first line) holds it, else the one
    csv.Sniffer finds (a semicolon CSV from a European Excel, a TSV named .csv), said in a note."""
    expected = DELIMITERS[kind]
    lines = text.splitlines()
    if not lines or expected in lines[0]:
        return expected, []
    try:
        found = csv.Sniffer().sniff("\n".join(lines[:50]), delimiters=",;\t|").delimiter
    except csv.Error:
        return expected, []
    if found == expected or found not in lines[0]:
        return expected, []
    note = f"{path.name} read with the delimiter {found!r} found in it (a .{kind} file usually uses {expected!r})"
    return found, [note]


def _duplicate_columns(path: Path, first_line: str, delimiter: str) -> None:
    """pandas renames a repeated column name to `name.1`, and the run would read the first: stop instead."""
    names = [n.strip() for n in next(csv.reader([first_line], delimiter=delimiter), [])]
    repeated = sorted({n for n in names if names.count(n) > 1 and n})
    if repeated:
        where = [i for i, n in enumerate(names) if n == repeated[0]]
        raise UserError(
            f"{path} names the column {repeated[0]!r} {len(where)} times in its header (columns {where}); "
            f"give each column its own name"
        )


def look_at(path: Path, kind: str, header: bool = True) -> FileLook:
    """What the file is before pandas reads it: not a table at all (one line naming the fix), its text
    encoding, and for CSV/TSV the delimiter and a header that names a column twice."""
    if kind == "parquet":
        return FileLook()
    head = _head(path)
    if head is None:
        return FileLook()
    _not_a_table(path, head, kind)
    encoding, notes = _encoding(path, head)
    if kind not in DELIMITERS:
        return FileLook(encoding, None, tuple(notes))
    text = head.decode(encoding, errors="replace")
    if len(head) == 65536:  # the last line may be cut
        text = text.rsplit("\n", 1)[0]
    delimiter, more = _delimiter(path, text.lstrip("\ufeff"), kind)
    if header and text.strip():
        _duplicate_columns(path, text.lstrip("\ufeff").splitlines()[0], delimiter)
    return FileLook(encoding, delimiter, tuple(notes + more))


def text_encoding(path: Path) -> str:
    """The encoding of a plain text file (e.g. `predict --file`): UTF-8, or UTF-16/32 by its BOM or NUL bytes;
    a binary file (a workbook, an archive, a PDF) is one line naming what it is."""
    head = _head(path) or b""
    _not_a_table(path, head, "text")
    return _encoding(path, head)[0]


def _read_table(path: Path, kind: str, encoding_errors: str, header: bool, look: FileLook) -> pd.DataFrame:
    if kind in DELIMITERS and look.delimiter == "\t":  # no quoting: a bare " is text (GLUE files hold many)
        return pd.read_csv(
            path,
            sep="\t",
            quoting=csv.QUOTE_NONE,
            header=0 if header else None,
            encoding=look.encoding,
            encoding_errors=encoding_errors,
            keep_default_na=False,
            na_values=[""],
        )
    if kind in DELIMITERS:
        return pd.read_csv(
            path,
            sep=look.delimiter or ",",
            header=0 if header else None,
            encoding=look.encoding,
            encoding_errors=encoding_errors,
        )
    if kind == "jsonl":
        return pd.read_json(path, lines=True, encoding=look.encoding, encoding_errors=encoding_errors)
    if kind == "json":
        try:
            return pd.read_json(path, encoding=look.encoding, encoding_errors=encoding_errors)
        except UnicodeDecodeError:
            raise
        except ValueError:
            return pd.read_json(path, lines=True, encoding=look.encoding, encoding_errors=encoding_errors)
    return pd.read_parquet(path)


def _count_replaced(df: pd.DataFrame) -> int:
    """Rows where a cell holds U+FFFD, the character that stands for undecodable bytes."""
    text = df.select_dtypes(include=["object", "string"])
    return int(text.apply(lambda col: col.map(lambda v: isinstance(v, str) and "\ufffd" in v)).any(axis=1).sum())


def read_local_file(path: Path, header: bool = True) -> pd.DataFrame:
    """Read CSV/TSV/JSON/JSONL/Parquet (compressed too) with pandas; one-line errors for the usual mistakes.

    The file is looked at first (`look_at`): a workbook or archive under a table's name is named, UTF-16 is
    read by its byte-order mark, a CSV/TSV by the delimiter it really uses, and a header naming a column twice
    stops the run. Bytes that are not UTF-8 are replaced by U+FFFD and the affected rows are counted in
    `df.attrs["notes"]`, so the run reports them instead of failing on one stray byte or hiding it.
    A headerless CSV/TSV (`header=False`) gets the column names "0", "1", ... so columns are chosen by index.
    """
    kind = _file_kind(path)
    require(kind is not None, f"cannot read {path}: use a .csv, .tsv, .json, .jsonl or .parquet file (optionally .gz)")
    require(path.is_file(), f"dataset file not found: {path}; check the path (relative to {Path.cwd()})")
    look = look_at(path, kind, header)
    notes = list(look.notes)
    try:
        try:
            df = _read_table(path, kind, "strict", header, look)
        except UnicodeDecodeError:
            df = _read_table(path, kind, "replace", header, look)
            encoding = look.encoding.replace("-sig", "").upper()
            notes.append(
                f"{_count_replaced(df)} row(s) of {path.name} held bytes that are not {encoding}; "
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


def hub_name_and_config(source: str) -> tuple[str, str | None]:
    """`glue:mrpc` -> ("glue", "mrpc"): a Hub dataset with several configurations names one after a colon."""
    name, _, config = source.partition(":")
    return name, config or None


def read_hub_dataset(source: str) -> dict[str, pd.DataFrame]:
    """Load every split of a Hub dataset (`name` or `name:config`) with `datasets`; offline, a wrong id or a
    missing configuration gives a one-line error."""
    name, config = hub_name_and_config(source)
    try:
        import datasets
        from datasets import load_dataset

        datasets.logging.set_verbosity_error()
        loaded = load_dataset(name, config)
    except ImportError:
        raise UserError("reading Hub datasets needs the datasets package: pip install datasets") from None
    except Exception as e:  # network, auth, missing repo or configuration: all end the same way for the user
        which = "configuration" if "config" in str(e).lower() and not config else "id"
        raise UserError(
            f"could not load the dataset {source!r} from the Hugging Face Hub ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:160] if str(e) else ''}); check the {which} (a dataset with several "
            f"configurations is named as name:config, e.g. glue:mrpc) and your network, or pass a local file"
        ) from None
    return {split: ds.to_pandas() for split, ds in loaded.items()}


def check_local_files(dataset: str, test_file: str | None = None) -> None:
    """A data file named but missing is said before the tokenizer or model loads (with a Hub model, offline, the
    tokenizer's error came first and named the wrong thing)."""
    path = Path(dataset).expanduser()
    for name, given in (("--dataset", path), ("--test-file", Path(test_file).expanduser() if test_file else None)):
        require(
            given is None or not given.is_dir(),
            f"{name} {given} is a folder; pass a data file (.csv, .tsv, .json, .jsonl, .parquet) inside it",
        )
    if _file_kind(path) is not None:
        require(path.is_file(), f"dataset file not found: {dataset}; check the path (relative to {Path.cwd()})")
    if test_file is not None:
        require(Path(test_file).expanduser().is_file(), f"test file not found: {test_file}; pass a labelled data file")


def is_local_source(source: str) -> bool:
    """Whether `--dataset` names a local file (one that exists, or a name with a data file's extension, so a
    mistyped file is said to be missing rather than looked for on the Hub); otherwise it is a Hub dataset."""
    path = Path(source).expanduser()
    return _file_kind(path) is not None or path.exists()


def read_source(source: str, header: bool = True) -> dict[str, pd.DataFrame]:
    """A local file becomes one unsplit table (`all`); a Hub dataset keeps its own splits."""
    path = Path(source).expanduser()
    if is_local_source(source):
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
