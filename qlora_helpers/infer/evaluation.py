"""Scoring a labelled table with a model: logits, the task's metrics, the decision rule tuned on validation,
and the tables written back to the user (every prediction; the mistakes, most confident first).

torch is imported where a PyTorch model runs: the tables and seen-row checks serve `evaluate --onnx` too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def logits_of(
    model, tokenizer, frame: pd.DataFrame, classifier_config, batch_size: int, long_text="truncate", stride=None
):
    """Logits of a table's rows, read as the model was trained to read them (pairs with their second texts), divided
    by the saved temperature (calibration.py)."""
    from qlora_helpers.infer.inference import predict_logits

    pairs = frame["text_pair"].tolist() if "text_pair" in frame else None
    texts = frame["text"].tolist()
    logits = predict_logits(
        model, tokenizer, texts, classifier_config.max_length, batch_size,
        truncation=classifier_config.truncation, pairs=pairs, long_text=long_text, stride=stride,
    )  # fmt: skip
    return classifier_config.calibrated(logits)


def evaluate_split(
    model,
    tokenizer,
    frame: pd.DataFrame,
    classifier_config,
    batch_size: int,
    thresholds=None,
    long_text="truncate",
    stride=None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The task's scores of `frame` (label sets at `thresholds`) and the logits behind them."""
    logits = logits_of(model, tokenizer, frame, classifier_config, batch_size, long_text, stride)
    return classifier_config.task.scores(frame["label"], logits, classifier_config.labels, thresholds), logits


def tune_decision(
    model, tokenizer, validation: pd.DataFrame, classifier_config, batch_size: int, logits: np.ndarray | None = None
) -> dict[str, Any] | None:
    """The task's decision rule fitted on the validation split (never on test): per-label thresholds for label
    sets, nothing for the other tasks. `logits`: the split's (calibrated) logits, when already computed."""
    logits = logits_of(model, tokenizer, validation, classifier_config, batch_size) if logits is None else logits
    record = classifier_config.task.tune(validation["label"], logits, classifier_config.labels)
    if record is not None:
        scores = record["validation_f1_macro"]
        print(
            f"thresholds tuned on validation: macro-F1 {scores['0.5']:.4f} at 0.5, {scores['global']:.4f} at one "
            f"global threshold ({record['global']:.2f}), {scores['per_label']:.4f} per label "
            f"({len(record['fallback_labels'])} label(s) with < {record['min_positives']} positives keep the "
            f"global one)"
        )
    return record


def one_answer_note(classifier_config, logits: np.ndarray, thresholds=None) -> str | None:
    """A warning when the model gives every row the same decision: it learned the majority baseline (or nothing),
    whatever its score says."""
    if len(logits) < 2 or not classifier_config.task.classifies:
        return None
    decided = np.asarray(classifier_config.task.decide(logits, thresholds))
    if (decided == decided[0]).all():
        rows = classifier_config.task.rows(logits[:1], classifier_config.labels, thresholds)[0]
        answer = rows.get("label", rows.get("labels"))
        return (
            f"warning: the model gives all {len(logits):,} rows the same answer ({answer}): it has learned no more "
            f"than the majority baseline; train longer (--epochs), raise --lr, or check the labels"
        )
    return None


def inputs_of(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The columns a row was read from, for tables written back to the user: text, and text_pair for pairs."""
    return {k: frame[k].reset_index(drop=True) for k in ("text", "text_pair") if k in frame}


def predictions_table(frame: pd.DataFrame, logits: np.ndarray, classifier_config, thresholds=None) -> pd.DataFrame:
    """Every row: its input, the true and the predicted label (or score) and how sure the model was."""
    table = classifier_config.task.table(
        frame["label"].reset_index(drop=True), logits, classifier_config.labels, thresholds
    )
    return pd.DataFrame({**inputs_of(frame), **{k: v for k, v in table.items() if not k.startswith("_")}})


def mistakes_table(frame: pd.DataFrame, logits: np.ndarray, classifier_config, thresholds=None) -> pd.DataFrame:
    """The rows the model got wrong, most confident mistake first (for scores: the largest error first):
    where to look when a score disappoints."""
    table = classifier_config.task.table(
        frame["label"].reset_index(drop=True), logits, classifier_config.labels, thresholds
    )
    wrong = table["_wrong"].to_numpy()
    shown = pd.DataFrame({**inputs_of(frame), **{k: v for k, v in table.items() if not k.startswith("_")}})
    order = np.argsort(-table["_sort"].to_numpy()[wrong], kind="stable")
    return shown[wrong].iloc[order].reset_index(drop=True)


SEEN_ROWS = "seen_rows.npz"  # hashes of the training and validation rows, to spot them in an evaluation file


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """A 64-bit hash per row of its input (text, and second text for a pair): compact enough to keep with a
    model, enough to tell whether a row was seen in training."""
    import hashlib

    pairs = frame["text_pair"] if "text_pair" in frame else [""] * len(frame)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(f"{t}\x00{p}".encode(), digest_size=8).digest(), "little")
            for t, p in zip(frame["text"], pairs)
        ],
        dtype=np.uint64,
    )


def save_seen_rows(directory: Path, splits: dict[str, pd.DataFrame]) -> Path:
    path = Path(directory) / SEEN_ROWS
    np.savez_compressed(path, train=row_hashes(splits["train"]), validation=row_hashes(splits["validation"]))
    return path


def seen_rows(directory: Path, frame: pd.DataFrame) -> dict[str, int] | None:
    """How many of `frame`'s rows the model trained on or was selected on (None for a model saved without
    the hashes, e.g. by an earlier version)."""
    path = Path(directory) / SEEN_ROWS
    if not path.is_file():
        return None
    with np.load(path) as known:
        mine = row_hashes(frame)
        return {split: int(np.isin(mine, known[split]).sum()) for split in ("train", "validation")}


def save_table(table: pd.DataFrame, path: Path) -> Path:
    table.to_csv(path, index=False)
    return path
