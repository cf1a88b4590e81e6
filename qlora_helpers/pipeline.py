"""A run's steps, each a small function: check and prepare, build the model, and after training score, save and
plot. `run.Run` carries a run's state through them; the notebook, the command line and the tests drive a Run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qlora_helpers import distributed
from qlora_helpers.config import TrainConfig
from qlora_helpers.data.prepare import DataSettings, PreparedData, prepare_data
from qlora_helpers.data.tables import check_local_files
from qlora_helpers.data.tokens import check_max_length, token_lengths, tokenize_splits
from qlora_helpers.dependencies import check_dependencies
from qlora_helpers.figures import run_caption
from qlora_helpers.hardware import Hardware, choose_attention_kernels, cpu_notes, detect_hardware
from qlora_helpers.hub import check_hub_sources, model_location
from qlora_helpers.infer.evaluation import (
    evaluate_split,
    logits_of,
    one_answer_note,
    predictions_table,
    save_seen_rows,
    save_table,
    tune_decision,
)
from qlora_helpers.modeling.builder import BuiltModel, build_model
from qlora_helpers.modeling.classifier_config import ClassifierConfig
from qlora_helpers.modeling.quantization import load_tokenizer
from qlora_helpers.report.model_card import write_model_card
from qlora_helpers.report.plots import plot_dataset_stats, plot_training_curves
from qlora_helpers.run_files import (
    check_output_dir,
    clear_replaced_outputs,
    command_line,
    save_run,
    score_fields,
)
from qlora_helpers.tasks import calibration
from qlora_helpers.tasks.labels import read_label_names_file
from qlora_helpers.train.loss import check_class_weights
from qlora_helpers.train.training import TrainOutcome


def start(cfg: TrainConfig, resume: bool = False) -> Hardware:
    """Validate the configuration, pick the hardware and dtype, seed everything; print one line each."""
    from transformers import set_seed

    check_dependencies()
    cfg.validate()
    check_output_dir(cfg.output_dir, cfg.overwrite, resume, cfg.plots_dir)
    if cfg.overwrite and not resume and distributed.is_main_process():
        clear_replaced_outputs(cfg.output_dir)
    check_hub_sources(cfg.model, cfg.dataset)
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


def load_data(cfg: TrainConfig, tokenizer=None) -> PreparedData:
    """The configuration's data, split, with the task decided and the labels mapped; one line says what."""
    from qlora_helpers.data.text_input import separator_text

    names = read_label_names_file(cfg.label_names_file) if cfg.label_names_file else None
    joiner = " [SEP] "
    if cfg.text_columns:
        joiner = separator_text(cfg.text_separator, tokenizer or load_tokenizer(cfg.model))
    data = prepare_data(DataSettings.from_config(cfg, joiner, names))
    print(data.describe())
    return data


def classifier_config(cfg: TrainConfig, data: PreparedData) -> ClassifierConfig:
    """What the trained model will need at prediction: saved with it, read back by predict and evaluate."""
    return ClassifierConfig(
        data.task.name,
        data.labels,
        data.text_input,
        cfg.max_length,
        cfg.truncation,
        model_location(cfg.model),  # predict and merge may run from another folder than train did
        cfg.quant_type,
        cfg.double_quant,
        cfg.cudnn_attention,
    )


@dataclass
class Prepared:
    """What every run has before its model exists: the hardware, the split data and its token ids."""

    hw: Hardware
    data: PreparedData
    tokenizer: Any
    tokenized: Any  # a DatasetDict of token ids per split


def prepare(cfg: TrainConfig, resume: bool = False, without_test: bool = False) -> Prepared:
    """Check the configuration, pick the hardware, load, split and tokenize the data.

    Every run, the benchmark runner and the probes start here, so they measure the same setup.
    `without_test`: the test split is dropped before tokenizing (a tuning trial must never see it); the
    training and validation splits are those of the full run.
    """
    hw = start(cfg, resume)
    check_local_files(cfg.dataset, cfg.test_file)
    tokenizer = load_tokenizer(cfg.model)
    check_max_length(cfg.max_length, tokenizer, cfg.model)
    data = load_data(cfg, tokenizer)
    if without_test:
        data.splits.pop("test")
    check_class_weights(cfg.class_weights, data.task, data.labels)
    tokenized = tokenize_splits(data, tokenizer, cfg.max_length, cfg.truncation)
    return Prepared(hw, data, tokenizer, tokenized)


def model_for(cfg: TrainConfig, ready: Prepared) -> BuiltModel:
    """The one model builder (model_builder.py) on this run's labels and task."""
    return build_model(cfg, ready.hw, ready.data.num_labels, ready.data.id2label, ready.data.task.problem_type)


def plot_data(cfg: TrainConfig, hw: Hardware, data: PreparedData, tokenizer) -> Path:
    """Label balance per split (score ranges for a regression) and token lengths against max_length."""
    train = data.splits["train"]
    texts = (train["text"] + " " + train["text_pair"]) if data.pairs else train["text"]  # a pair shares the budget
    lengths = token_lengths(texts.tolist(), tokenizer, seed=cfg.seed)
    counts = {k: data.label_counts(k) for k in data.splits}
    return plot_dataset_stats(
        counts, lengths, cfg.max_length, cfg.plots_dir, run_caption(cfg.model, cfg.profile, hw.name)
    )


def plot_results(cfg, hw, data: PreparedData, outcome: TrainOutcome, test_metrics, test_logits, clf_config) -> dict:
    """The learning curves and the task's picture of the test split, each titled with model, profile, device
    and date."""
    caption = run_caption(cfg.model, cfg.profile, hw.name)
    curves = plot_training_curves(
        outcome.log_history, cfg.plots_dir, outcome.schedule.steps_per_epoch, caption, data.task.selection_metric
    )
    test = data.splits["test"]["label"]
    pictures = data.task.plot(
        test, test_logits, test_metrics, data.labels, clf_config.decision_thresholds(), cfg.plots_dir, caption
    )
    if clf_config.temperature:  # the test logits are calibrated: the diagram shows them and the raw ones behind them
        raw = test_logits * clf_config.temperature
        pictures["reliability"] = calibration.plot(
            data.task, test, raw, data.labels, clf_config.temperature, cfg.plots_dir, caption
        )
    return {"training_curves": curves, **pictures}


@dataclass
class RunResult:
    metrics: dict[str, Any]
    output_dir: Path
    plots: dict[str, Path]
    test_logits: np.ndarray
    outcome: TrainOutcome
    classifier_config: ClassifierConfig
    test_metrics: dict[str, Any]  # the task's scores of the test split, as task.report shows them


def finish(
    cfg: TrainConfig, ready: Prepared, built: BuiltModel, outcome: TrainOutcome, report_line: str, command: str = ""
) -> RunResult:
    """After training: the decision rule tuned on validation, the test split scored once, everything saved
    (metrics.json last) and plotted."""
    hw, data, model, tokenizer = ready.hw, ready.data, built.model, ready.tokenizer
    if outcome.trainer is None:  # trained and saved by the processes `fit` launched: read, score, show
        return already_saved(cfg, ready, built, outcome)
    clf_config, validation = classifier_config(outcome.config, data), data.splits["validation"]
    val_logits = logits_of(model, tokenizer, validation, clf_config, cfg.eval_batch_size)  # raw: no temperature yet
    calibrated = calibration.calibrate(data.task, validation["label"], val_logits, data.labels)
    if calibrated:
        clf_config = clf_config.with_temperature(calibrated["temperature"])
        print(calibration.describe(calibrated))
    clf_config = clf_config.with_thresholds(  # tuned on the calibrated probabilities that predict prints
        tune_decision(model, tokenizer, validation, clf_config, cfg.eval_batch_size, clf_config.calibrated(val_logits))
    )
    test = data.splits["test"]
    test_metrics, test_logits = evaluate_split(
        model, tokenizer, test, clf_config, cfg.eval_batch_size, clf_config.decision_thresholds()
    )
    warning = one_answer_note(clf_config, test_logits, clf_config.decision_thresholds())
    if warning:
        print(warning)
    if calibrated:
        raw = test_logits * clf_config.temperature
        calibrated["test"] = calibration.measure(data.task, test["label"], raw, data.labels, clf_config.temperature)
    out = Path(outcome.config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_table(
        predictions_table(test, test_logits, clf_config, clf_config.decision_thresholds()),
        out / "test_predictions.csv",
    )
    save_seen_rows(out, data.splits)
    metrics = {"task": data.task.name, **score_fields(test_metrics, "test"), "warning": warning}
    if calibrated:
        metrics["calibration"] = calibrated
    if clf_config.thresholds:
        metrics["thresholds"] = {k: clf_config.thresholds[k] for k in ("mode", "global", "validation_f1_macro")}
        metrics["test_at_threshold_0.5"] = clf_config.scores_at_thresholds(test["label"], test_logits, ("0.5",))["0.5"]
    metrics |= run_record(cfg, hw, data, built, outcome, report_line, command)
    metrics = save_run(out, model, tokenizer, clf_config, outcome.config.to_dict(), outcome.log_history, metrics)
    write_model_card(out)
    plots = plot_results(cfg, hw, data, outcome, test_metrics, test_logits, clf_config)
    print(f"test {data.task.headline(metrics)}; outputs in {out}, plots in {cfg.plots_dir}")
    return RunResult(metrics, out, plots, test_logits, outcome, clf_config, test_metrics)


def already_saved(cfg: TrainConfig, ready: Prepared, built: BuiltModel, outcome: TrainOutcome) -> RunResult:
    import json

    out = Path(cfg.output_dir)
    clf_config = ClassifierConfig.load(out)
    test = ready.data.splits["test"]
    test_metrics, test_logits = evaluate_split(
        built.model, ready.tokenizer, test, clf_config, cfg.eval_batch_size, clf_config.decision_thresholds()
    )
    metrics = json.loads((out / "metrics.json").read_text())
    plots = plot_results(cfg, ready.hw, ready.data, outcome, test_metrics, test_logits, clf_config)
    print(f"test {ready.data.task.headline(metrics)} (saved by the training processes in {out})")
    return RunResult(metrics, out, plots, test_logits, outcome, clf_config, test_metrics)


# training's own names for how it went -> metrics.json's: `run_record` writes them, `saved_outcome` reads them back
SAVED_AS = {
    "peak_gpu_memory_mb": "peak_gpu_memory_mb",  # the larger of the two below
    "peak_train_memory_mb": "peak_train_memory_mb",
    "peak_eval_memory_mb": "peak_eval_memory_mb",
    "train_runtime": "train_runtime_s",
    "train_samples_per_second": "train_samples_per_second",
    "optimizer_steps": "optimizer_steps",
    "best_checkpoint": "best_checkpoint",
    "train_step_samples_per_second": "train_step_samples_per_second",
    "step_ms": "train_step_ms",  # percentiles of the timed steps: a slow tail shows here, not in a mean
    "first_step_seconds": "first_step_seconds",  # the compile wait, when the layers are compiled
    "length_check": "length_check",  # where the best validation score came; still rising at the end or not
}
DIGITS = {"train_runtime": 2, "train_samples_per_second": 3}


def saved_outcome(m: dict) -> dict:
    """Training's metrics as a finished run's metrics.json holds them (for a run other processes trained)."""
    selection = m["selection_metric"]
    own = {name: m.get(saved) for name, saved in SAVED_AS.items()}
    return own | {f"best_val_{selection}": m.get(f"best_val_{selection}"), "world_size": m["world_size"]}


def run_record(cfg, hw, data, built: BuiltModel, outcome: TrainOutcome, report_line: str, command: str) -> dict:
    """metrics.json's account of how the run went: what trained, how fast, in how much memory, on what."""
    m = outcome.metrics
    selection = data.task.selection_metric
    trained = {
        saved: round(m[name], DIGITS[name]) if name in DIGITS else m.get(name) for name, saved in SAVED_AS.items()
    }
    return {
        "labels": list(data.labels.names),
        **built.counts,
        **trained,
        "selection_metric": selection,
        f"best_val_{selection}": m.get(f"best_val_{selection}"),
        "effective_batch_size": outcome.config.effective_batch_size * distributed.world_size(),
        "world_size": distributed.world_size(),
        "learning_rate": outcome.config.lr_for(distributed.world_size()),
        "steps_per_epoch": outcome.schedule.steps_per_epoch,
        "epochs": round(outcome.schedule.epochs, 4),  # as run: `auto` resolved from the data
        "schedule": outcome.schedule.reason,
        "compiled_layers": built.compiled,
        "cuda_graphs": built.graphs,
        "compute_dtype": hw.dtype_name,
        "device": hw.name,
        "logging": report_line,
        "data": data.summary(),
        "config": outcome.config.to_dict(),
        "command": command or command_line(),
    }
