"""Measured efficiency: the same model and data trained under four arms, each in its own process.

Arms
- `full_fp32`: every weight trainable, fp32 maths, AdamW (torch).
- `full_16bit`: every weight trainable, fp32 master weights with bf16/fp16 autocast, AdamW (torch).
- `lora_16bit`: base weights stored in bf16/fp16, the recipe's LoRA adapters and head, the recipe's optimizer.
- `qlora`: the project's recipe - NF4 + double quantization base, LoRA, paged 8-bit AdamW.

A record holds weight memory after load, peak allocated/reserved memory while training, samples/s and
seconds per epoch from synchronised timing after warm-up steps, parameter counts, and (when the arm is
run to completion) test accuracy and weighted F1. `run_arms` starts one subprocess per arm so no arm
inherits another's allocator state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from qlora_helpers.config import TrainConfig
from qlora_helpers.hardware import synchronize
from qlora_helpers.run_files import write_json

ARMS = ("full_fp32", "full_16bit", "lora_16bit", "qlora")
MIB = 2**20


def build_arm_model(arm: str, cfg: TrainConfig, data, hw) -> tuple[Any, bool]:
    """The model for one arm, on the device, with only the arm's parameters trainable, and whether its encoder
    layers are compiled. The QLoRA arm is the product's own model builder (model_builder.py)."""
    from peft import get_peft_model
    from transformers import AutoModelForSequenceClassification

    from qlora_helpers.modeling.builder import build_model
    from qlora_helpers.modeling.lora import make_lora_config

    if arm == "qlora":
        built = build_model(cfg, hw, data.num_labels, data.id2label, data.task.problem_type)
        return built.model, built.compiled
    dtype = hw.compute_dtype if arm == "lora_16bit" else torch.float32
    model = AutoModelForSequenceClassification.from_pretrained(
        cfg.model,
        num_labels=data.num_labels,
        id2label=data.id2label,
        label2id={v: k for k, v in data.id2label.items()},
        problem_type=data.task.problem_type,
        dtype=dtype,
    )
    model.to(hw.device)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if arm == "lora_16bit":
            model.enable_input_require_grads()
    if arm == "lora_16bit":
        model = get_peft_model(
            model, make_lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules)
        )
        for p in model.parameters():  # trainable head/adapters in fp32, as in the QLoRA arm (and for fp16's scaler)
            if p.requires_grad:
                p.data = p.data.float()
    return model, False


def memory_probe(cfg: TrainConfig, warmup_steps: int):
    """The allocator's history over a warm-up step (tracing slows it, so it is not timed); none with
    checkpointing, whose recomputing backward breaks the recording of stacks."""
    from benchmarks.kinds.memory_breakdown import StepMemoryTrace

    return None if cfg.gradient_checkpointing else StepMemoryTrace(min(2, warmup_steps - 1))


def time_probe(cfg: TrainConfig, warmup_steps: int):
    """torch.profiler over ten steps after the timed warm-up (the run needs warmup_steps + 12 steps)."""
    from benchmarks.kinds.time_breakdown import StepTimeProfile

    return StepTimeProfile(warmup_steps + 1)


PROBES = {"memory": memory_probe, "time": time_probe}


def weight_arithmetic_mb(total_params: int, trainable_params: int, embedding_params: int, arm: str) -> float:
    """Weight bytes by arithmetic alone (no activations, no optimizer): labelled as arithmetic wherever shown.

    NF4 with double quantization is counted at 4.127 bits a weight (Dettmers et al. 2023); embeddings and
    other unquantized weights at fp32, as k-bit preparation leaves them.
    """
    quantizable = total_params - embedding_params - trainable_params
    if arm == "qlora":
        return (quantizable * 4.127 / 8 + (embedding_params + trainable_params) * 4) / MIB
    if arm == "lora_16bit":
        return ((total_params - trainable_params) * 2 + trainable_params * 4) / MIB
    return total_params * 4 / MIB


def run_arm(
    arm: str, cfg: TrainConfig, warmup_steps: int = 5, evaluate_test: bool = False, probes: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Train one arm in this process and return its record (see the module docstring); `probes` (PROBES) add
    what the first steps after warm-up are made of: `memory` (the peak's tensors), `time` (the GPU's kernels)."""
    from transformers import set_seed

    from qlora_helpers.modeling.lora import count_parameters
    from qlora_helpers.pipeline import prepare
    from qlora_helpers.run_files import library_versions
    from qlora_helpers.train.training import TrainingJob, train

    assert arm in ARMS, arm
    ready = prepare(cfg)  # as `train` does: the recipe's attention kernels, seed, split and token ids
    hw, data, tokenizer = ready.hw, ready.data, ready.tokenizer
    set_seed(cfg.seed)
    if hw.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if hw.device == "cuda" else 0
    model, compiled_layers = build_arm_model(arm, cfg, data, hw)
    synchronize()
    weight_mb = (torch.cuda.memory_allocated() - base) / MIB if hw.device == "cuda" else None
    counts = count_parameters(model)
    embeddings = sum(p.numel() for n, p in model.named_parameters() if "embeddings" in n)
    arm_cfg = cfg if arm in ("qlora", "lora_16bit") else cfg.replace(optim="adamw_torch", lr=min(cfg.lr, 5e-5))
    if hw.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    watching = {name: probe for name in probes if (probe := PROBES[name](cfg, warmup_steps)) is not None}
    outcome = train(
        TrainingJob.of(ready, model, compiled_layers),
        arm_cfg,
        hw,
        evaluation=evaluate_test,
        mixed_precision=arm != "full_fp32",
        timing_warmup=warmup_steps,
        extra_callbacks=list(watching.values()) or None,
    )
    synchronize()
    sps = outcome.metrics["train_step_samples_per_second"]  # training steps only, synchronised, after warm-up
    record: dict[str, Any] = {
        "arm": arm,
        "model": cfg.model,
        "dataset": cfg.dataset,
        "device": hw.name,
        "compute_dtype": hw.dtype_name if arm != "full_fp32" else "float32",
        "batch_size": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "max_length": cfg.max_length,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "optimizer": arm_cfg.optim,
        "lr": arm_cfg.lr,
        "truncation": cfg.truncation,
        "group_by_length": cfg.group_by_length,
        "cudnn_attention": cfg.cudnn_attention,
        "target_modules": cfg.target_modules,
        "compiled_layers": compiled_layers,
        "seed": cfg.seed,
        "profile": cfg.profile,
        "lora_r": cfg.lora_r if "lora" in arm else None,
        "train_rows": len(data.splits["train"]),
        "optimizer_steps": outcome.metrics["optimizer_steps"],
        "timed_steps": outcome.metrics["timed_steps"],
        "warmup_steps": warmup_steps,
        "step_ms": outcome.metrics["step_ms"],
        "timing_includes_evaluation": False,  # steps with an evaluation or a save are left out of the timing
        "samples_per_second": sps,
        "seconds_per_epoch": round(len(data.splits["train"]) / sps, 2) if sps else None,
        "weight_memory_mb": round(weight_mb, 1) if weight_mb is not None else None,
        "peak_allocated_mb": outcome.metrics["peak_gpu_memory_mb"],
        "peak_train_memory_mb": outcome.metrics["peak_train_memory_mb"],  # training steps alone
        "peak_eval_memory_mb": outcome.metrics["peak_eval_memory_mb"],
        "peak_reserved_mb": outcome.metrics["peak_reserved_memory_mb"],
        "dataloader_workers": cfg.dataloader_workers,
        "lora_dropout": cfg.lora_dropout if "lora" in arm else None,
        "weight_arithmetic_mb": round(
            weight_arithmetic_mb(counts["total_params"], counts["trainable_params"], embeddings, arm), 1
        ),
        **counts,
        "test_accuracy": None,
        "test_f1_weighted": None,
        "versions": library_versions(),
    }
    for name, probe in watching.items():
        record[f"{name}_breakdown"] = probe.result
    if evaluate_test:
        record.update(test_record(cfg, data, model, tokenizer, outcome))
    return record


def test_record(cfg: TrainConfig, data, model, tokenizer, outcome) -> dict[str, Any]:
    """A finished arm's test-split scores, with the decision rule fitted on validation as `train` fits it."""
    from qlora_helpers.infer.evaluation import evaluate_split, tune_decision
    from qlora_helpers.pipeline import classifier_config

    clf_config = classifier_config(cfg, data)
    clf_config = clf_config.with_thresholds(
        tune_decision(model, tokenizer, data.splits["validation"], clf_config, cfg.eval_batch_size)
    )
    test = data.splits["test"]
    metrics, logits = evaluate_split(
        model, tokenizer, test, clf_config, cfg.eval_batch_size, clf_config.decision_thresholds()
    )
    record = dict(
        **{f"test_{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) or v is None},
        **{f"best_val_{data.task.selection_metric}": outcome.metrics.get(f"best_val_{data.task.selection_metric}")},
        train_runtime_s=round(outcome.metrics["train_runtime"], 1),
        test_rows=len(test),
    )
    if clf_config.thresholds:
        half = clf_config.scores_at_thresholds(test["label"], logits, ("0.5",))["0.5"]
        record["thresholds"] = {k: clf_config.thresholds[k] for k in ("global", "validation_f1_macro")}
        record["test_at_threshold_0.5"] = {k: half[k] for k in ("f1_macro", "f1_micro")}
    return record


def record_from_child(command: list[str], prefix: str, identity: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process and read its JSON record (the last stdout line after `prefix`).

    A child that fails gives `identity` plus an `error` holding the last lines it printed, so one broken
    configuration does not lose the others' measurements.
    """
    proc = subprocess.run(command, capture_output=True, text=True, env=os.environ.copy())
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(prefix)]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1].removeprefix(prefix))
    return {**identity, "error": " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])}


def measure_arm(
    arm: str,
    settings: dict[str, Any],
    warmup_steps: int = 5,
    evaluate_test: bool = False,
    profile: str = "full",
    probes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One arm of one preset (`settings` on top of it) trained in a fresh process; its record."""
    child = [
        sys.executable,
        "-m",
        "benchmarks.run",
        "_arm",
        "--arm",
        arm,
        "--profile",
        profile,
        "--warmup-steps",
        str(warmup_steps),
        "--settings",
        json.dumps(settings),
    ]
    if evaluate_test:
        child.append("--evaluate-test")
    for name in probes:
        child += ["--probe", name]
    started = time.perf_counter()
    record = record_from_child(
        child,
        "BENCH_RECORD ",
        {"arm": arm, "profile": profile, "gradient_checkpointing": settings.get("gradient_checkpointing")},
    )
    record["process_seconds"] = round(time.perf_counter() - started, 1)
    print(summary_line(record), flush=True)
    return record


def write_result(output: Path, result: dict[str, Any]) -> dict[str, Any]:
    write_json(output, result)  # after every run: a cut-off benchmark keeps what it measured
    return result


def run_arms(
    arms: list[str],
    settings: dict[str, Any],
    output: Path,
    warmup_steps: int = 5,
    evaluate_test: bool = False,
    checkpointing: tuple[bool, ...] = (True,),
    label: str = "",
    seeds: tuple[int, ...] | None = None,
    probes: tuple[str, ...] = (),
    variants: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Each (variant, arm, checkpointing, seed) in its own subprocess; all records in one JSON file.

    A variant (`{"name", "set", "arms"}`) changes settings for its own arms, e.g. LoRA dropout for QLoRA alone.
    """
    records: list[dict[str, Any]] = []
    result = result_payload(label, records)
    for variant in variants or [{"name": None, "set": {}}]:
        for seed in seeds or (settings.get("seed", 42),):
            for ckpt in checkpointing:
                for arm in variant.get("arms", arms):
                    own = {**settings, **variant.get("set", {}), "gradient_checkpointing": ckpt, "seed": seed}
                    record = measure_arm(arm, own, warmup_steps, evaluate_test, probes=probes)
                    if variant["name"]:
                        record["variant"] = variant["name"]
                    records.append(record)
                    result = write_result(output, result_payload(label, records))
    return result


def result_payload(label: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "label": label,
        "command": " ".join(sys.argv),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "records": records,
    }


def summary_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r.get('profile', 'full')}:{r['arm']:<11} ckpt={r['gradient_checkpointing']!s:<5} ERROR {r['error']}"
    acc = f" acc {r['test_accuracy']:.4f}" if r.get("test_accuracy") is not None else ""
    return (
        f"{r.get('profile', 'full')}:{r['arm']:<11} ckpt={r['gradient_checkpointing']!s:<5} "
        f"weights {r['weight_memory_mb']} MB, "
        f"peak alloc {r['peak_allocated_mb']} MB, reserved {r['peak_reserved_mb']} MB, "
        f"{r['samples_per_second']} samples/s (step ms {r.get('step_ms')}), trainable {r['trainable_params']:,}{acc}"
    )


def make_random_model_dir(
    config_dir: str | Path, out_dir: str | Path, seed: int = 0, shape: dict[str, Any] | None = None
) -> Path:
    """A model directory with the architecture of `config_dir/config.json` (`shape` changed, e.g. bert-large's
    sizes) and random weights.

    For speed and memory only (bert-base weights are not needed for that): the tokenizer files are copied,
    the weights are freshly initialised, and the directory loads with `from_pretrained` like a Hub model.
    """
    import shutil

    from transformers import AutoConfig, AutoModel

    config_dir, out_dir = Path(config_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (config_dir / name).is_file():
            shutil.copy(config_dir / name, out_dir / name)
    torch.manual_seed(seed)
    config = AutoConfig.from_pretrained(config_dir)
    for key, value in (shape or {}).items():
        setattr(config, key, value)
    AutoModel.from_config(config).save_pretrained(out_dir)
    return out_dir
