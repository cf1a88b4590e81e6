"""A model card (`README.md` in an output directory) written from the run's own `metrics.json`."""

from __future__ import annotations

import json
from pathlib import Path

from qlora_helpers import tasks
from qlora_helpers.hub import base_model_hub_id, is_hub_id


def write_model_card(directory: str | Path, merged_from: str | None = None, dtype: str | None = None) -> Path:
    """Base model, data, recipe, measured metrics and hardware, intended use and limits."""
    directory = Path(directory)
    m = json.loads((directory / "metrics.json").read_text())
    c, d = m["config"], m["data"]
    task = tasks.get(m.get("task", "single_label"))
    labels = ", ".join(m["labels"])
    sizes = ", ".join(f"{k} {v:,}" for k, v in d["sizes"].items())
    report = m.get("test_report", {})
    rows = "\n".join(
        f"| {name} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1-score']:.4f} | {int(r['support'])} |"
        for name, r in report.items()
        if name in m["labels"]
    )
    table = f"| {task.unit} | precision | recall | F1 | support |\n|---|---|---|---|---|\n{rows}" if rows else ""
    if merged_from:
        form = (
            f"A standalone `transformers` model: the NF4 base dequantized and the LoRA adapter merged in "
            f"(peft `merge_and_unload`), saved in {dtype}. Load it with "
            f"`AutoModelForSequenceClassification.from_pretrained(dir)`; no peft needed. Merged from "
            f"`{local_name(merged_from)}`."
        )
    else:
        form = (
            "A LoRA adapter (with the classifier head) for the 4-bit base model. Load it with "
            "`qlora_helpers.infer.inference.load_for_inference(dir, mode='4bit' | '16bit' | 'merged')`, or "
            "`qlora-bert predict --adapter dir TEXT`."
        )
    gpu = f"{m['peak_gpu_memory_mb']} MiB peak GPU memory" if m.get("peak_gpu_memory_mb") is not None else "CPU run"
    headline = task.headline(m).capitalize() + "."
    if m.get("test_at_threshold_0.5"):
        headline += (
            f" Label sets at the thresholds tuned on validation (saved in `classifier_config.json`); at 0.5: "
            f"macro-F1 {m['test_at_threshold_0.5']['f1_macro']:.4f}."
        )
    headline += calibration_note(m)
    hub_id = base_model_hub_id(c["model"])
    title = f"{hub_id or local_name(c['model'])} fine-tuned with QLoRA for text classification"
    text = f"""{front_matter(hub_id, "transformers" if merged_from else "peft")}# {title}

{form}

## Base model and data
- Base model: {base_model_line(c["model"], hub_id)}
- Data: `{source_name(c["dataset"])}`, text column `{d["text_column"]}`, label column `{d["label_column"]}`
- Task: {task.name}; labels: {labels}
- Splits: {sizes} ({d["split_origin"]}); {d["dropped_rows"]} rows with empty text or label dropped

## Recipe
NF4 {"with" if c["double_quant"] else "without"} double quantization, compute dtype {m["compute_dtype"]};
LoRA r={c["lora_r"]}, alpha={c["lora_alpha"]}, dropout={c["lora_dropout"]} on {", ".join(c["target_modules"])};
{m.get("epochs", c["epochs"])} epochs, batch {c["batch_size"]} x {c["grad_accum"]}, lr {c["lr"]} ({c["lr_scheduler"]},
{c["warmup"]:.0%} warm-up), optimizer {c["optim"]}, max_length {c["max_length"]}, seed {c["seed"]}.
Trainable parameters: {m["trainable_params"]:,} of {m["total_params"]:,} ({m["trainable_percent"]:.2f}%).

## Measured results (test split)
{headline}

{table}

Measured on {m["device"]} ({gpu}); training {m["train_runtime_s"]} s at {m["train_samples_per_second"]} samples/s;
torch {m["versions"]["torch"]}, transformers {m["versions"]["transformers"]}, peft {m["versions"]["peft"]},
bitsandbytes {m["versions"]["bitsandbytes"]}; finished {m["finished_at"]}.

## Intended use and limits
Classifying texts like the training data ({labels}). {cut_sentence(c)}.
Accuracy is measured on one held-out split of the same source; other domains, languages or writing styles will
score lower. The model inherits the biases of its base model and data;
do not use it for decisions about people without a review of those.
"""
    path = directory / "README.md"
    path.write_text(text)
    return path


def cut_sentence(c: dict) -> str:
    """How the run read a long text, as its configuration says (a card must say what the run did)."""
    n = c["max_length"]
    if c.get("truncation", "head") == "head_tail":
        return (
            f"A text longer than {n} tokens is read as its first quarter and its end (head + tail), so its middle "
            f"is not seen; `predict --long-text window` reads every token"
        )
    return f"Texts are cut to their first {n} tokens, so the end of a long text is not seen"


def calibration_note(m: dict) -> str:
    """One paragraph on the probabilities: the temperature and what it did to ECE and Brier score on test."""
    record = m.get("calibration")
    if not tasks.get(m.get("task", "single_label")).classifies:
        return "\n\nA regression outputs a score, not a probability: nothing to calibrate."
    if not record:
        return ""
    t = record.get("test") or record["validation"]
    split = "test" if record.get("test") else "validation"
    return (
        f"\n\nProbabilities are calibrated: logits divided by a temperature of {record['temperature']:.3f} fitted on "
        f"validation (saved in `classifier_config.json`). On the {split} split ({record['judged']}, "
        f"{record['bins']} bins): ECE {t['ece_before']:.4f} -> {t['ece_after']:.4f}, Brier score "
        f"{t['brier_before']:.4f} -> {t['brier_after']:.4f}."
    )


def front_matter(hub_id: str | None, library: str) -> str:
    """The Hub's card metadata: which library loads the folder (peft, transformers, onnx), the task, and the base
    model where its id is known (the Hub then links the two)."""
    lines = ["---", f"library_name: {library}", "pipeline_tag: text-classification"]
    lines += [f"base_model: {hub_id}"] if hub_id else []
    return "\n".join([*lines, "tags:", "- qlora", "- lora", "- text-classification", "---", "", ""])


def base_model_line(model: str, hub_id: str | None) -> str:
    """The base model by its Hub id (linked), or a local folder by its own name, never by this machine's path."""
    if hub_id:
        return f"[`{hub_id}`](https://huggingface.co/{hub_id})"
    return f"`{local_name(model)}`, a local model with no Hub id (not a Hub name, nor from the Hub cache)"


def local_name(path: str) -> str:
    """A local file or folder by its own name, never by this machine's path (a card may be published)."""
    return Path(path).expanduser().resolve().name


def source_name(name: str) -> str:
    """A dataset as a reader can know it: its Hub id, or a local file's own name."""
    return name if is_hub_id(name) else local_name(name)
