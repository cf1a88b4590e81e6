"""The whole run, step by step: each step is a small function the notebook calls one at a time,
and `train_pipeline` chains them for the command line and the tests."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import compiled, distributed, thresholds
from .config import TrainConfig
from .data import PreparedData, prepare_data, save_label_mapping, token_lengths, tokenize_splits
from .dependencies import check_dependencies
from .errors import UserError, require
from .hardware import Hardware, choose_attention_kernels, cpu_notes, detect_hardware, peak_gpu_memory_mb
from .inference import TRAINING_CONFIG, predict_logits
from .labels import multi_hot, read_label_names_file
from .lora import add_lora_adapters, count_parameters
from .metrics import classification_metrics, multi_label_metrics, sigmoid, softmax
from .model_card import write_model_card
from .plots import (
    plot_confusion_matrix,
    plot_dataset_stats,
    plot_label_confusion,
    plot_per_label_scores,
    plot_training_curves,
    run_caption,
)
from .quantization import load_4bit_model, load_tokenizer
from .tracking import choose_report_to
from .training import TrainOutcome, selection_metric, train


def library_versions() -> dict[str, str]:
    from importlib import metadata

    import bitsandbytes
    import peft
    import torch
    import transformers

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "bitsandbytes": bitsandbytes.__version__,
    }
    for name in ("accelerate", "datasets"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_json(path: Path, payload: Any) -> Path:
    """Write atomically: a crash mid-write never leaves half a file where a whole one was."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)
    return path


def check_output_dir(cfg: TrainConfig, resume: bool = False) -> Path:
    """Refuse to overwrite a finished run unless asked; nothing is written before this check."""
    out = Path(cfg.output_dir)
    require(not out.is_file(), f"output_dir {out} is a file; pass a directory")
    finished = (out / "metrics.json").exists()
    require(not (resume and finished), f"{out} holds a finished run; nothing to resume")
    require(
        cfg.overwrite or not finished,
        f"{out} already holds a finished run (metrics.json); "
        f"pass --overwrite to replace it or choose another --output-dir",
    )
    return out


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint that was saved to the end; half-written ones (a kill during a save) are removed.

    The Trainer writes `trainer_state.json` last, so a checkpoint without it was interrupted mid-save and
    cannot be resumed from.
    """
    import shutil

    root = Path(output_dir) / "checkpoints"
    found = sorted(
        root.glob("checkpoint-*"),
        key=lambda p: int(p.name.rsplit("-", 1)[-1]) if p.name.rsplit("-", 1)[-1].isdigit() else -1,
    )
    complete = [c for c in found if (c / "trainer_state.json").is_file()]
    for c in found:
        if c not in complete:
            print(f"removing {c}: interrupted while it was being saved")
            shutil.rmtree(c, ignore_errors=True)
    return complete[-1] if complete else None


def resume_point(cfg: TrainConfig, resume: bool) -> str | None:
    """The checkpoint to continue from when resuming (None for a fresh run); an error if there is none."""
    if not resume:
        return None
    checkpoint = last_complete_checkpoint(cfg.output_dir)
    require(
        checkpoint is not None,
        f"nothing to resume in {cfg.output_dir}: no complete checkpoint; start again without --resume",
    )
    print(f"resuming from {checkpoint}")
    return str(checkpoint)


def start(cfg: TrainConfig, resume: bool = False) -> Hardware:
    """Validate the configuration, pick the hardware and dtype, seed everything; print one line each."""
    from transformers import set_seed

    check_dependencies()
    cfg.validate()
    check_output_dir(cfg, resume)
    hw = detect_hardware(cfg.compute_dtype)
    set_seed(cfg.seed)
    print(f"profile: {cfg.profile}; model: {cfg.model}; data: {cfg.dataset}")
    print(hw.describe())
    attention = choose_attention_kernels(cfg.cudnn_attention)
    if attention:
        print(attention)
    for line in cpu_notes(cfg.optim, cfg.oom_retry) if hw.device == "cpu" else []:
        print(line)
    if distributed.world_size() > 1:
        print(distributed.describe(cfg.batch_size, cfg.grad_accum, cfg.lr, cfg.lr_for(distributed.world_size())))
    elif hw.device == "cuda" and torch.cuda.device_count() > 1:
        print(
            f"{torch.cuda.device_count()} GPUs visible but one process: training on cuda:0 only; to use all, "
            f"launch with torchrun --nproc-per-node {torch.cuda.device_count()} -m qlora_helpers train ..."
        )
    return hw


def load_data(cfg: TrainConfig) -> PreparedData:
    from .text_input import separator_text

    names = read_label_names_file(cfg.label_names_file) if cfg.label_names_file else cfg.label_names
    joiner = separator_text(cfg.text_separator, load_tokenizer(cfg.model)) if cfg.text_columns else " [SEP] "
    data = prepare_data(
        cfg.dataset,
        cfg.text_column,
        cfg.label_column,
        names,
        cfg.max_samples,
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.seed if cfg.split_seed is None else cfg.split_seed,
        cfg.header,
        cfg.multi_label,
        cfg.label_delimiter,
        cfg.label_columns,
        cfg.test_file,
        text_columns=cfg.text_columns,
        text_pair_column=cfg.text_pair_column,
        text_separator=joiner,
    )
    print(data.describe())
    return data


@dataclass
class Prepared:
    """What every run has before its model exists: the hardware, the split data and its token ids."""

    hw: Hardware
    data: PreparedData
    tokenizer: Any
    tokenized: Any  # a DatasetDict of token ids per split


def prepare(cfg: TrainConfig, resume: bool = False) -> Prepared:
    """Check the configuration, pick the hardware, load, split and tokenize the data.

    `train_pipeline`, the benchmark runner and the probes all start here, so they measure the same setup.
    """
    from .loss import check_class_weights

    hw = start(cfg, resume)
    data = load_data(cfg)
    check_class_weights(cfg.class_weights, data.num_labels, data.multi_label)
    tokenizer = load_tokenizer(cfg.model)
    tokenized = tokenize_splits(data, tokenizer, cfg.max_length, cfg.truncation)
    return Prepared(hw, data, tokenizer, tokenized)


def plot_data(cfg: TrainConfig, hw: Hardware, data: PreparedData, tokenizer) -> Path:
    """Label balance per split and token lengths against max_length."""
    train = data.splits["train"]
    texts = (train["text"] + " " + train["text_pair"]) if data.pairs else train["text"]  # a pair shares the budget
    lengths = token_lengths(texts.tolist(), tokenizer, seed=cfg.seed)
    return plot_dataset_stats(
        data.summary()["label_counts"],
        lengths,
        cfg.max_length,
        cfg.plots_dir,
        run_caption(cfg.model, cfg.profile, hw.name),
    )


def plot_results(
    cfg: TrainConfig,
    hw: Hardware,
    outcome: TrainOutcome,
    test_metrics: dict[str, Any],
    data: PreparedData | None = None,
    test_logits: np.ndarray | None = None,
    cut: np.ndarray | float = 0.5,
) -> dict[str, Path]:
    """The learning curves and the test confusion matrix (for label sets: per-label scores and a
    label-by-label confusion view), each titled with model, profile, device and date."""
    caption = run_caption(cfg.model, cfg.profile, hw.name)
    curves = plot_training_curves(
        outcome.log_history, cfg.plots_dir, outcome.schedule.steps_per_epoch, caption, selection_metric(cfg)
    )
    if data is not None and data.multi_label:
        targets = multi_hot(list(data.splits["test"]["label"]), data.num_labels)
        predicted = sigmoid(test_logits) >= cut
        return {
            "training_curves": curves,
            "per_label_scores": plot_per_label_scores(test_metrics, cfg.plots_dir, caption=caption),
            "label_confusion": plot_label_confusion(
                targets, predicted, test_metrics["labels"], cfg.plots_dir, caption
            ),
        }
    return {
        "training_curves": curves,
        "confusion_matrix": plot_confusion_matrix(
            test_metrics["confusion_matrix"], test_metrics["labels"], cfg.plots_dir, caption=caption
        ),
    }


def build_model(cfg: TrainConfig, data: PreparedData, hw: Hardware):
    """The 4-bit base with LoRA adapters; prints what is trainable."""
    from transformers import set_seed

    set_seed(cfg.seed)  # head and LoRA initialisation
    model = load_4bit_model(
        cfg.model,
        data.num_labels,
        data.id2label,
        hw.compute_dtype,
        hw.device,
        cfg.quant_type,
        cfg.double_quant,
        data.multi_label,
    )
    model = add_lora_adapters(
        model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules, cfg.gradient_checkpointing
    )
    if compiled.active(cfg, hw):
        compiled.prepare_4bit_biases(model)
        how = compiled.mode(cfg, hw)
        layers = compiled.compile_for_training(model, how)
        graphs = " as CUDA graphs" if how == "reduce-overhead" else ""
        print(f"{layers} encoder layers set to compile for training{graphs}, at the first step")
    counts = count_parameters(model)
    print(
        f"trainable parameters: {counts['trainable_params']:,} of {counts['total_params']:,} "
        f"({counts['trainable_percent']:.2f}%) - LoRA matrices and the classifier head"
    )
    return model, counts


def evaluate_split(
    model,
    tokenizer,
    frame: pd.DataFrame,
    id2label: dict[int, str],
    max_length: int,
    batch_size: int,
    truncation: str = "head",
    thresholds: np.ndarray | float = 0.5,
    long_text: str = "truncate",
    stride: int | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Scores of `frame` and the logits behind them; label sets are scored at `thresholds`."""
    try:
        logits = predict_logits(
            model,
            tokenizer,
            frame["text"].tolist(),
            max_length,
            batch_size,
            truncation=truncation,
            pairs=frame["text_pair"].tolist() if "text_pair" in frame else None,
            long_text=long_text,
            stride=stride,
        )
    except torch.OutOfMemoryError:
        raise UserError(
            f"out of GPU memory while evaluating with batch size {batch_size} (peak allocated "
            f"{peak_gpu_memory_mb()} MiB); lower the evaluation batch size (--eval-batch-size in train, "
            f"--batch-size in evaluate and predict)"
        ) from None
    if is_multi_label(frame):
        return score_label_sets(frame, logits, id2label, thresholds), logits
    metrics = classification_metrics(frame["label"].to_numpy(), logits.argmax(-1), id2label)
    return metrics, logits


def score_label_sets(
    frame: pd.DataFrame, logits: np.ndarray, id2label: dict[int, str], cut: np.ndarray | float
) -> dict[str, Any]:
    """Scores of the label sets in `frame` from their logits, at `cut` (one threshold, or one per label)."""
    return multi_label_metrics(multi_hot(list(frame["label"]), len(id2label)), sigmoid(logits), cut, id2label)


def is_multi_label(frame: pd.DataFrame) -> bool:
    return len(frame) > 0 and isinstance(frame["label"].iloc[0], tuple)


def inputs_of(frame: pd.DataFrame) -> dict[str, pd.Series]:
    """The columns a row was read from, for tables written back to the user: text, and text_pair for pairs."""
    return {k: frame[k] for k in ("text", "text_pair") if k in frame}


def save_predictions(
    frame: pd.DataFrame,
    logits: np.ndarray,
    id2label: dict[int, str],
    path: Path,
    thresholds: np.ndarray | None = None,
    delimiter: str = ",",
) -> Path:
    names = np.array([id2label[i] for i in range(len(id2label))])
    if is_multi_label(frame):
        probs = sigmoid(logits)
        chosen = probs >= thresholds
        pd.DataFrame(
            {
                **inputs_of(frame),
                "true": [delimiter.join(names[list(ids)]) for ids in frame["label"]],
                "predicted": [delimiter.join(names[row]) for row in chosen],
                "probabilities": [delimiter.join(f"{p:.4f}" for p in probs[i][chosen[i]]) for i in range(len(frame))],
            }
        ).to_csv(path, index=False)
        return path
    probs = softmax(logits)
    pd.DataFrame(
        {
            **inputs_of(frame),
            "true": names[frame["label"].to_numpy()],
            "predicted": names[logits.argmax(-1)],
            "probability": probs.max(-1).round(6),
        }
    ).to_csv(path, index=False)
    return path


def save_mistakes(
    frame: pd.DataFrame,
    logits: np.ndarray,
    id2label: dict[int, str],
    path: Path,
    cut: np.ndarray | float = 0.5,
    delimiter: str = ",",
) -> int:
    """Writes `mistakes_table` as CSV; returns how many texts were wrong."""
    table = mistakes_table(frame, logits, id2label, cut, delimiter)
    table.to_csv(path, index=False)
    return len(table)


def mistakes_table(
    frame: pd.DataFrame,
    logits: np.ndarray,
    id2label: dict[int, str],
    cut: np.ndarray | float = 0.5,
    delimiter: str = ",",
) -> pd.DataFrame:
    """The texts the model got wrong, most confident mistake first: where to look when a score disappoints.

    For label sets, a text is wrong when its predicted set differs from the true one; its confidence is the
    highest probability among the wrongly predicted labels (or of the missed ones, whichever is further off).
    """
    names = np.array([id2label[i] for i in range(len(id2label))])
    if is_multi_label(frame):
        probs = sigmoid(logits)
        truth = multi_hot(list(frame["label"]), len(id2label)).astype(bool)
        chosen = probs >= cut
        wrong = (chosen != truth).any(axis=1)
        off = np.abs(probs - truth).max(axis=1)
        table = pd.DataFrame(
            {
                **inputs_of(frame),
                "true": [delimiter.join(names[row]) for row in truth],
                "predicted": [delimiter.join(names[row]) for row in chosen],
                "probability": off.round(6),
            }
        )[wrong]
    else:
        probs = softmax(logits)
        predicted = logits.argmax(-1)
        table = pd.DataFrame(
            {
                **inputs_of(frame),
                "true": names[frame["label"].to_numpy()],
                "predicted": names[predicted],
                "probability": probs.max(-1).round(6),
            }
        )[predicted != frame["label"].to_numpy()]
    return table.sort_values("probability", ascending=False, kind="stable").reset_index(drop=True)


@dataclass
class RunResult:
    metrics: dict[str, Any]
    output_dir: Path
    plots: dict[str, Path]
    test_logits: np.ndarray
    outcome: TrainOutcome


def save_run(
    hw: Hardware,
    data: PreparedData,
    model,
    tokenizer,
    outcome: TrainOutcome,
    counts: dict[str, Any],
    test_metrics: dict[str, Any],
    test_logits: np.ndarray,
    report_line: str,
    threshold_record: dict[str, Any] | None = None,
    test_at_half: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Adapter (+ head), tokenizer, label mapping, training config, predictions and metrics.json.

    The configuration recorded is the one training finished with (`outcome.config`), which differs from
    the one it started with only in batch size and accumulation after an out-of-memory retry.
    """
    cfg = outcome.config
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    save_label_mapping(data, out)
    write_json(out / TRAINING_CONFIG, cfg.to_dict())
    write_json(out / "training_log.json", outcome.log_history)
    names = [data.id2label[i] for i in range(data.num_labels)]
    cut = thresholds.vector(threshold_record, names) if threshold_record else None
    if threshold_record:
        thresholds.save(threshold_record, out)
    save_predictions(
        data.splits["test"], test_logits, data.id2label, out / "test_predictions.csv", cut, data.label_delimiter
    )
    m = outcome.metrics
    metrics = {**score_fields(test_metrics, "test")}
    if threshold_record:
        metrics["thresholds"] = {k: threshold_record[k] for k in ("mode", "global", "validation_f1_macro")}
        metrics["test_at_threshold_0.5"] = {
            k: test_at_half[k] for k in ("f1_macro", "f1_micro", "f1_weighted", "subset_accuracy")
        }
    metrics |= {
        "labels": test_metrics["labels"],
        **counts,
        "peak_gpu_memory_mb": m.get("peak_gpu_memory_mb"),  # the larger of the two below
        "peak_train_memory_mb": m.get("peak_train_memory_mb"),
        "peak_eval_memory_mb": m.get("peak_eval_memory_mb"),
        "train_runtime_s": round(m["train_runtime"], 2),
        "train_samples_per_second": round(m["train_samples_per_second"], 3),
        "optimizer_steps": m["optimizer_steps"],
        "selection_metric": m.get("selection_metric"),
        "best_val_accuracy": m.get("best_val_accuracy"),
        "best_val_f1_macro": m.get("best_val_f1_macro"),
        "best_checkpoint": m.get("best_checkpoint"),
        "effective_batch_size": cfg.effective_batch_size * distributed.world_size(),
        "world_size": distributed.world_size(),
        "steps_per_epoch": outcome.schedule.steps_per_epoch,
        "train_step_samples_per_second": m.get("train_step_samples_per_second"),
        "train_step_ms": m.get("step_ms"),  # percentiles of the timed steps: a slow tail shows here, not in a mean
        "first_step_seconds": m.get("first_step_seconds"),  # the compile wait, when the layers are compiled
        "compute_dtype": hw.dtype_name,
        "device": hw.name,
        "logging": report_line,
        "data": data.summary(),
        "config": cfg.to_dict(),
        "versions": library_versions(),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write_json(out / "metrics.json", metrics)  # its presence marks a finished run
    write_model_card(out)
    return metrics


def score_fields(scores: dict[str, Any], prefix: str) -> dict[str, Any]:
    """metrics.json's names for one split's scores (single-label or label sets)."""
    keys = ("accuracy", "f1_macro", "f1_positive", "f1_micro", "f1_weighted", "subset_accuracy", "roc_auc_macro")
    out = {f"{prefix}_{k}": scores[k] for k in keys if k in scores}
    if "majority_baseline_accuracy" in scores:
        out[f"{prefix}_majority_baseline_accuracy"] = scores["majority_baseline_accuracy"]
    out[f"{prefix}_report"] = scores["report"]
    if "confusion_matrix" in scores:
        out[f"{prefix}_confusion_matrix"] = scores["confusion_matrix"]
    return out


def tune_thresholds(model, tokenizer, cfg: TrainConfig, data: PreparedData) -> dict[str, Any]:
    """Decision thresholds of a multi-label model, tuned on the validation split (never on test)."""
    frame = data.splits["validation"]
    logits = predict_logits(
        model, tokenizer, frame["text"].tolist(), cfg.max_length, cfg.eval_batch_size, truncation=cfg.truncation
    )
    names = [data.id2label[i] for i in range(data.num_labels)]
    record = thresholds.tune(multi_hot(list(frame["label"]), data.num_labels), sigmoid(logits), names)
    scores = record["validation_f1_macro"]
    print(
        f"thresholds tuned on validation: macro-F1 {scores['0.5']:.4f} at 0.5, {scores['global']:.4f} at one "
        f"global threshold ({record['global']:.2f}), {scores['per_label']:.4f} per label "
        f"({len(record['fallback_labels'])} label(s) with < {record['min_positives']} positives keep the global one)"
    )
    return record


def train_pipeline(cfg: TrainConfig, resume: bool = False) -> RunResult | None:
    """Data -> 4-bit model + LoRA -> Trainer -> test metrics -> adapter, metrics.json and plots.

    `resume=True` continues an interrupted run from its last complete checkpoint (same configuration).
    Under `torchrun`/`accelerate launch` every process trains its share of each batch on its own GPU;
    only the main process evaluates on the test split, writes outputs and plots, and gets a RunResult
    (the others get None).
    """
    with distributed.main_process_prints():
        ready = prepare(cfg, resume)
        hw, data, tokenizer, tokenized = ready.hw, ready.data, ready.tokenizer, ready.tokenized
        checkpoint = resume_point(cfg, resume)
        report_to, report_line = choose_report_to(cfg.report_to)
        print(report_line)
        plots = {"dataset_stats": plot_data(cfg, hw, data, tokenizer)} if distributed.is_main_process() else {}
        model, counts = build_model(cfg, data, hw)
        outcome = train(model, tokenized, tokenizer, cfg, hw, report_to, resume_from_checkpoint=checkpoint)
    if distributed.world_size() > 1:
        distributed.report_rank(
            f"trained {outcome.metrics['optimizer_steps']} optimizer steps on its share of "
            f"{len(tokenized['train']):,} training texts; peak GPU memory "
            f"{outcome.metrics['peak_gpu_memory_mb']} MiB"
        )
    if not distributed.is_main_process():
        return None
    record, cut, at_half = None, 0.5, None
    if data.multi_label:
        record = tune_thresholds(model, tokenizer, cfg, data)
        cut = thresholds.vector(record, [data.id2label[i] for i in range(data.num_labels)])
    test_metrics, test_logits = evaluate_split(
        model,
        tokenizer,
        data.splits["test"],
        data.id2label,
        cfg.max_length,
        cfg.eval_batch_size,
        cfg.truncation,
        cut,
    )
    if data.multi_label:
        at_half = score_label_sets(data.splits["test"], test_logits, data.id2label, 0.5)
    metrics = save_run(
        hw, data, model, tokenizer, outcome, counts, test_metrics, test_logits, report_line, record, at_half
    )
    plots.update(plot_results(cfg, hw, outcome, test_metrics, data, test_logits, cut))
    if data.multi_label:
        print(
            f"test macro-F1 {metrics['test_f1_macro']:.4f} (at 0.5: {at_half['f1_macro']:.4f}), micro-F1 "
            f"{metrics['test_f1_micro']:.4f}; outputs in {cfg.output_dir}, plots in {cfg.plots_dir}"
        )
    else:
        print(
            f"test accuracy {metrics['test_accuracy']:.4f}, macro F1 {metrics['test_f1_macro']:.4f}; "
            f"outputs in {cfg.output_dir}, plots in {cfg.plots_dir}"
        )
    return RunResult(metrics, Path(cfg.output_dir), plots, test_logits, outcome)
