"""Data: from the data settings to three clean, labelled splits, with the task and label space decided once.

Everything downstream sees the same shape: three pandas frames (`train`, `validation`, `test`) with
columns `text`, `text_pair` for a sentence-pair task, and `label` as the task encodes it (a class id, a
tuple of label ids, or a number), plus the task and the label space.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from qlora_helpers import tasks
from qlora_helpers.config import TrainConfig
from qlora_helpers.data.splits import make_splits, stratified_sample
from qlora_helpers.data.tables import (
    LABEL_CANDIDATES,
    SPLIT_ALIASES,
    TEXT_CANDIDATES,
    find_column,
    read_local_file,
    read_source,
)
from qlora_helpers.data.text_input import TextInput, check_pairs, resolve
from qlora_helpers.errors import UserError, require
from qlora_helpers.tasks import labels as lb
from qlora_helpers.tasks.labels import LabelSpace

# the recipe's defaults, from the one place that holds them (TrainConfig), for settings made without a config
DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


@dataclass(frozen=True)
class DataSettings:
    """What to read and how to split it: the data part of a run's configuration (`DataSettings.from_config`)."""

    dataset: str
    text_column: str | None = None
    text_columns: tuple[str, ...] | None = None
    text_pair_column: str | None = None
    text_separator: str = " [SEP] "  # resolved: the tokenizer's separator token, or the user's text
    label_column: str | None = None
    label_columns: tuple[str, ...] | None = None
    label_names: tuple[str, ...] | None = None
    label_delimiter: str = DEFAULTS["label_delimiter"]
    task: str = DEFAULTS["task"]
    header: bool = DEFAULTS["header"]
    test_file: str | None = None
    max_samples: int | None = None
    val_fraction: float = DEFAULTS["val_fraction"]
    test_fraction: float = DEFAULTS["test_fraction"]
    seed: int = DEFAULTS["seed"]

    @classmethod
    def from_config(cls, cfg, text_separator: str = " [SEP] ", label_names: list[str] | None = None) -> DataSettings:
        """The data part of a run's configuration; `text_separator` resolved
        from --text-separator and the tokenizer, `label_names` read from --label-names-file when given."""
        names = label_names if label_names is not None else cfg.label_names
        return cls(
            dataset=cfg.dataset,
            text_column=cfg.text_column,
            text_columns=tuple(cfg.text_columns) if cfg.text_columns else None,
            text_pair_column=cfg.text_pair_column,
            text_separator=text_separator,
            label_column=cfg.label_column,
            label_columns=tuple(cfg.label_columns) if cfg.label_columns else None,
            label_names=tuple(names) if names else None,
            label_delimiter=cfg.label_delimiter,
            task=cfg.task,
            header=cfg.header,
            test_file=cfg.test_file,
            max_samples=cfg.max_samples,
            val_fraction=cfg.val_fraction,
            test_fraction=cfg.test_fraction,
            seed=cfg.seed if cfg.split_seed is None else cfg.split_seed,
        )


@dataclass
class PreparedData:
    """Clean, labelled, split data and how it was obtained (all of it goes into metrics.json)."""

    splits: dict[str, pd.DataFrame]
    task: Any  # tasks.SingleLabel | MultiLabel | Regression
    labels: LabelSpace
    text_input: TextInput
    source: str
    split_origin: str
    dropped_rows: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> bool:
        return bool(self.text_input.pair_column)

    @property
    def num_labels(self) -> int:
        return self.labels.num_labels

    @property
    def id2label(self) -> dict[int, str]:
        return self.labels.id2label

    def label_counts(self, split: str) -> dict[str, int]:
        return self.task.counts(self.splits[split]["label"], self.labels)

    def summary(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "task": self.task.name,
            "text_column": self.text_input.name,
            "label_column": self.labels.column,
            "split_origin": self.split_origin,
            "dropped_rows": self.dropped_rows,
            "notes": self.notes,
            "sizes": {k: len(v) for k, v in self.splits.items()},
            "label_counts": {k: self.label_counts(k) for k in self.splits},
            **self.text_input.record(),
            "labels": self.labels.record(),
        }

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v):,}" for k, v in self.splits.items())
        shown = list(self.labels.names)
        shown_text = str(shown) if len(shown) <= 12 else f"[{', '.join(shown[:10])}, ...]"
        what = (
            f"scores {self.labels.extras.get('min'):g} to {self.labels.extras.get('max'):g}"
            if self.task.unit == "score"
            else f"{self.num_labels} {self.task.noun} {shown_text}"
        )
        return (
            f"{self.source}: task {self.task.name}; text={self.text_input.name!r}, label={self.labels.column!r}, "
            f"{what}; {sizes} ({self.split_origin}); {self.dropped_rows} rows with empty text or label dropped"
            + "".join(f"; {n}" for n in self.notes)
        )


# ---- reading rows ----------------------------------------------------------------------------------


@dataclass
class _Rows:
    """One table's inputs and raw label cells, rows with empty text already dropped."""

    inputs: pd.DataFrame  # text (and text_pair)
    cells: pd.Series  # label cells as the file holds them (tuples of names for 0/1 label columns)
    dropped: int


def _rows(frame: pd.DataFrame, text_input: TextInput, label_col: str, label_columns, where: str) -> _Rows:
    inputs = text_input.extract(frame)
    cells = (
        pd.Series(lb.sets_from_columns(frame, list(label_columns)), index=frame.index, dtype=object)
        if (label_columns)
        else frame[label_col]
    )
    ok = inputs["text"].map(lambda t: isinstance(t, str) and t.strip() != "")
    if text_input.pair_column:
        check_pairs(inputs[ok], text_input.pair_column, where)
    return _Rows(inputs[ok].reset_index(drop=True), cells[ok].reset_index(drop=True), int((~ok).sum()))


def _labelled(rows: _Rows, task, space: LabelSpace, where: str) -> tuple[pd.DataFrame, int]:
    """The rows with a label, encoded; rows without one are dropped (counted) unless the task keeps them."""
    keep = task.keep(rows.cells)
    frame = rows.inputs[keep.to_numpy()].reset_index(drop=True)
    encoded = task.encode(rows.cells[keep].reset_index(drop=True), space, where)
    return frame.assign(label=encoded.to_numpy()), int((~keep).sum())


def prepare_data(settings: DataSettings) -> PreparedData:
    """Read, clean, decide the task, map labels, and split; the dataset's own validation/test splits are used
    when present. A `test_file` is a separate labelled file (same columns) that becomes the test split as it
    is: read with the label space of the training data, never sampled, never adding a class."""
    raw = read_source(settings.dataset, settings.header)
    given_test = None
    if settings.test_file:
        path = Path(settings.test_file).expanduser()
        require(path.is_file(), f"test file not found: {settings.test_file}; pass a labelled data file")
        require(
            not Path(settings.dataset).expanduser().is_file()
            or not path.samefile(Path(settings.dataset).expanduser()),
            f"--test-file {settings.test_file} is the --dataset itself, whose rows train the model; pass a separate "
            f"labelled file, or leave --test-file out to split a test set off the data",
        )
        given_test = read_local_file(path, settings.header)
    return prepare_data_from_frames(raw, settings, given_test)


def prepare_data_from_frames(
    raw: dict[str, pd.DataFrame], settings: DataSettings, given_test: pd.DataFrame | None = None
) -> PreparedData:
    """`prepare_data` for tables already in memory (one `all` table, or named splits)."""
    named = {SPLIT_ALIASES.get(k.lower(), k): v for k, v in raw.items()}
    if given_test is not None:
        named.pop("test", None)
    tables = {**named, **({"test file": given_test} if given_test is not None else {})}
    text_input, label_col, label_columns = _input_columns(tables, settings)
    rows = {
        name: _rows(frame, text_input, label_col, label_columns, f"split {name!r}") for name, frame in named.items()
    }
    dropped = sum(r.dropped for r in rows.values())
    require(sum(len(r.inputs) for r in rows.values()) > 0, f"no rows with text left in {settings.dataset}")
    cells = pd.concat([r.cells for r in rows.values()], ignore_index=True)
    hint = (
        "; the first row looks like a header: drop --no-header"
        if not settings.header and _first_row_is_header(next(iter(named.values())), label_col)
        else ""
    )
    task, space = _task_and_space(cells, settings, label_col, label_columns, hint)
    encoded = {}
    for name, r in rows.items():
        encoded[name], n = _labelled(r, task, space, f"split {name!r} of {settings.dataset}")
        dropped += n
    notes = [note for frame in tables.values() for note in frame.attrs.get("notes", [])]
    pool_name = "train" if "train" in encoded else ("all" if "all" in encoded else next(iter(encoded)))
    pool = encoded[pool_name]
    own = {k: encoded[k] for k in ("validation", "test") if k in encoded and k != pool_name}
    pool, own = _sampled(pool, own, settings, task, space, notes, given_test is not None)
    if given_test is not None:
        test_rows = _rows(given_test, text_input, label_col, label_columns, f"test file {settings.test_file}")
        own["test"], n = _labelled(test_rows, task, space, f"the test file {settings.test_file}")
        dropped += test_rows.dropped + n
        require(len(own["test"]) > 0, f"the test file {settings.test_file} has no rows with text and label")
    splits, origin = make_splits(pool, own, settings, task, space, hint)
    splits = {k: splits[k].reset_index(drop=True) for k in ("train", "validation", "test")}
    notes += _overlap_notes(splits, text_input, "the test file" if given_test is not None else "")
    notes += _label_notes(splits, task, space)
    return PreparedData(splits, task, space, text_input, settings.dataset, origin + task.split_note, dropped, notes)


def _input_columns(tables: dict[str, pd.DataFrame], settings: DataSettings) -> tuple[TextInput, str, list | None]:
    """What the model reads and the label column(s), named or found, and present in every table."""
    columns = list(next(iter(tables.values())).columns)
    text_input = resolve(
        columns,
        settings.text_column,
        list(settings.text_columns) if settings.text_columns else None,
        settings.text_pair_column,
        settings.text_separator,
        TEXT_CANDIDATES,
    )
    label_columns = list(settings.label_columns) if settings.label_columns else None
    label_col = (
        "+".join(label_columns)
        if label_columns
        else find_column(columns, settings.label_column, LABEL_CANDIDATES, "label")
    )
    needed = [*text_input.columns, *([text_input.pair_column] if text_input.pair_column else [])]
    require(
        label_col not in needed,
        f"column {label_col!r} is named as both text and label; name the text with --text-column and the label "
        f"with --label-column",
    )
    needed += label_columns or [label_col]
    for name, frame in tables.items():
        lacking = [c for c in needed if c not in frame.columns]
        require(
            not lacking,
            f"{f'the test file {settings.test_file}' if name == 'test file' else f'split {name!r}'} lacks column(s) "
            f"{lacking}; its columns are "
            f"{[str(c)[:40] for c in frame.columns[:12]]}{' ...' if len(frame.columns) > 12 else ''}",
        )
    return text_input, label_col, label_columns


def _task_and_space(cells: pd.Series, settings: DataSettings, label_col: str, label_columns, hint: str):
    """The task and its label space, decided once from every split's label cells."""
    try:
        task = tasks.choose(settings.task, cells, settings.label_delimiter, label_columns)
        names = list(settings.label_names) if settings.label_names else None
        require(
            bool(task.keep(cells).any()) and cells.map(lb.present).any(),
            f"no row has a label in column {label_col!r}; name the label column with --label-column",
        )
        space = task.label_space(
            cells[task.keep(cells)], names, label_col, delimiter=settings.label_delimiter, columns=label_columns
        )
    except UserError as e:  # e.g. 'mixes numbers and names' when the header was read as a row
        raise UserError(f"{e}{hint}") from None
    return task, space


def _sampled(pool, own: dict, settings: DataSettings, task, space: LabelSpace, notes: list, test_file: bool):
    """`max_samples`: a stratified sample of the pool and of the data's own splits (a test file stays whole)."""
    total = len(pool) + sum(len(v) for v in own.values())
    if settings.max_samples is None or settings.max_samples >= total:
        return pool, own
    scale = settings.max_samples / total

    def sample(frame: pd.DataFrame, least: int) -> pd.DataFrame:
        return stratified_sample(
            frame, max(least, round(len(frame) * scale)), settings.seed, task.strata(frame["label"])
        )

    kept = "; the test file is kept whole" if test_file else ""
    notes.append(f"max_samples={settings.max_samples}: stratified sample of {total} rows{kept}")
    return sample(pool, max(20, 3 * space.num_labels)), {k: sample(v, space.num_labels) for k, v in own.items()}


def _label_notes(splits: dict[str, pd.DataFrame], task, space: LabelSpace) -> list[str]:
    """Labels that look like another task's, and classes or labels a split has no row of."""
    notes = [n for n in [task.fit_note(pd.concat([f["label"] for f in splits.values()]))] if n]
    for name, frame in splits.items():
        absent = task.absent(frame["label"], space)
        if absent:
            notes.append(f"{task.noun} with no row in {name}: {absent[:8]}{' ...' if len(absent) > 8 else ''}")
    return notes


def _first_row_is_header(frame: pd.DataFrame, label_col: str) -> bool:
    """Under --no-header: the first row's cells look like column names (text where the rest hold labels)."""
    if label_col not in frame.columns or len(frame) < 3:
        return False
    first, rest = frame[label_col].iloc[0], frame[label_col].iloc[1:]
    return isinstance(first, str) and first not in set(rest.astype(str))


def _overlap_notes(splits: dict[str, pd.DataFrame], text_input: TextInput, test_from: str = "") -> list[str]:
    """Duplicated rows leak training texts into evaluation: say so, keep the split."""

    def key(frame: pd.DataFrame) -> pd.Series:  # a pair is a duplicate only when both of its texts are
        return frame["text"] + "\x00" + frame["text_pair"] if text_input.pair_column else frame["text"]

    seen = set(key(splits["train"]))
    overlap = {k: int(key(splits[k]).isin(seen).sum()) for k in ("validation", "test")}
    if not any(overlap.values()):
        return []
    source = f"rows of {test_from} that are also in the training data" if test_from else "duplicate rows in the source"
    return [f"texts also in train: {overlap['validation']} validation, {overlap['test']} test ({source})"]


# ---- a labelled file read as a trained model reads it -------------------------------------------


def read_evaluation_table(source: str, header: bool = True, split: str | None = None) -> pd.DataFrame:
    """A local file, or one split of a Hub dataset (`name` or `name:config`): `split`, else its test split, else
    its validation split."""
    from qlora_helpers.data.tables import is_local_source, read_hub_dataset

    if is_local_source(source):
        require(split is None, f"--split picks a split of a Hub dataset; {source} is a local file")
        return read_local_file(Path(source).expanduser(), header)
    splits = read_hub_dataset(source)
    chosen = split or next((s for s in ("test", "validation") if s in splits), None)
    require(
        chosen in splits,
        f"{source} has the splits {sorted(splits)}"
        + (f", not {split!r}" if split else ", neither test nor validation")
        + "; pick one with --split",
    )
    return splits[chosen]


def read_labelled_file(
    path: str,
    classifier_config,
    text_column: str | None = None,
    label_column: str | None = None,
    header: bool = True,
    text_pair_column: str | None = None,
    text_columns: list[str] | None = None,
    split: str | None = None,
) -> pd.DataFrame:
    """A labelled file (e.g. for `evaluate`) with the saved classifier's input and labels: the columns training
    read (or those the flags name), labels given as training's values or as the label names."""
    from qlora_helpers.data.text_input import from_saved

    df = read_evaluation_table(path, header, split)
    columns = list(df.columns)
    text_input = from_saved(
        classifier_config.text_input, columns, text_column, text_pair_column, TEXT_CANDIDATES, text_columns
    )
    space, task = classifier_config.labels, classifier_config.task
    if space.columns:
        label_col = "+".join(space.columns)
    else:
        trained = space.column if space.column in columns else None
        label_col = find_column(columns, label_column or trained, LABEL_CANDIDATES, "label")
    rows = _rows(df, text_input, label_col, list(space.columns) if space.columns else None, str(path))
    try:
        frame, _ = _labelled(rows, task, space, str(path))
    except UserError as e:
        if header or not _first_row_is_header(df, label_col):
            raise
        raise UserError(f"{e}; the first row looks like a header: drop --no-header") from None
    require(len(frame) > 0, f"{path} has no rows with text and label")
    frame.attrs["dropped_rows"] = len(df) - len(frame)  # empty text or label: said by evaluate, as train says it
    return frame
