"""Using a trained model: reload it (4-bit, 16-bit or merged) and predict in batches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from qlora_helpers.data.collate import PaddingCollator
from qlora_helpers.data.tokens import encode_rows
from qlora_helpers.data.windows import combine
from qlora_helpers.errors import UserError, require
from qlora_helpers.hardware import Hardware, choose_attention_kernels, detect_hardware, peak_gpu_memory_mb
from qlora_helpers.infer.predictor import Predictor
from qlora_helpers.modeling.classifier_config import ClassifierConfig


@torch.no_grad()
def predict_logits(
    model,
    tokenizer,
    texts: list[str],
    max_length: int,
    batch_size: int = 64,
    device: str | None = None,
    progress: bool = True,
    truncation: str = "head",
    pairs: list[str] | None = None,
    long_text: str = "truncate",
    stride: int | None = None,
) -> np.ndarray:
    """Logits for `texts` (with their `pairs`' second texts) in their original order; batches of similar
    length waste little on padding.

    `truncation` must be the one the model was trained with (it is recorded in training_config.json).
    `long_text="window"` reads every token of a long text through overlapping windows (windows.py).
    """
    model.eval()
    rows, owner = encode_rows(tokenizer, texts, max_length, truncation, pairs, long_text, stride)
    try:
        logits = _logits_of_rows(model, tokenizer, rows, batch_size, device, progress)
    except torch.OutOfMemoryError:
        raise UserError(
            f"out of GPU memory while evaluating with batch size {batch_size} (peak allocated "
            f"{peak_gpu_memory_mb()} MiB); lower the evaluation batch size (--eval-batch-size in train, "
            f"--batch-size in evaluate and predict)"
        ) from None
    return logits if owner is None else combine(logits, owner, len(texts))


def _logits_of_rows(model, tokenizer, rows: list[dict[str, Any]], batch_size, device, progress) -> np.ndarray:
    """Logits of tokenized rows, in their order, batched by length."""
    device = device or next(p.device for p in model.parameters())
    order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
    out = np.zeros((len(rows), model.config.num_labels), dtype=np.float32)
    collate = PaddingCollator(tokenizer)
    for start in tqdm(range(0, len(rows), batch_size), desc="Predicting", disable=not progress, unit="batch"):
        idx = order[start : start + batch_size]
        batch = {k: v.to(device) for k, v in collate([rows[i] for i in idx]).items()}
        out[idx] = model(**batch).logits.float().cpu().numpy()
    return out


@dataclass
class LoadedModel(Predictor):
    """A trained model reloaded in PyTorch (4-bit, 16-bit or merged), with its saved classifier configuration."""

    model: Any
    tokenizer: Any
    classifier_config: ClassifierConfig
    hardware: Hardware
    mode: str = "4bit"

    def backend_logits(self, texts, batch_size, progress, pairs, long_text, stride):
        return predict_logits(
            self.model,
            self.tokenizer,
            texts,
            self.classifier_config.max_length,
            batch_size,
            progress=progress,
            truncation=self.classifier_config.truncation,
            pairs=pairs,
            long_text=long_text,
            stride=stride,
        )


MODES = ("4bit", "16bit", "merged")


def is_merged_model_dir(path: Path) -> bool:
    """A standalone model written by `merge` (config + weights, no adapter)."""
    return (path / "config.json").is_file() and not (path / "adapter_config.json").is_file()


def check_model_files(path: Path) -> None:
    """The adapter's (or merged model's) own files can be read: a truncated config or weights file is one line
    naming it, said before the base model loads."""
    import json

    from safetensors import SafetensorError, safe_open

    merged = is_merged_model_dir(path)
    config = path / ("config.json" if merged else "adapter_config.json")
    weights = path / ("model.safetensors" if merged else "adapter_model.safetensors")
    fix = "copy the folder again from the training run (or run `train` again)"
    try:
        json.loads(config.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{config} is damaged ({str(e)[:80]}); {fix}") from None
    require(
        weights.is_file() or weights.with_suffix(".bin").is_file(),
        f"{path} has no {weights.name}: the trained weights are missing; {fix}",
    )
    if weights.is_file():
        try:
            with safe_open(str(weights), "np"):
                pass
        except (SafetensorError, OSError) as e:
            raise UserError(f"{weights} is damaged ({str(e)[:80]}); {fix}") from None


def _inference_dtype(hw: Hardware) -> torch.dtype:
    """16-bit on a GPU (bf16, or fp16 without bf16); fp32 on the CPU, where 16-bit maths is slow."""
    return hw.compute_dtype if hw.device == "cuda" else torch.float32


def load_for_inference(path: str | Path, mode: str = "4bit", compute_dtype: str = "auto") -> LoadedModel:
    """A trained model ready to predict, in one of three forms.

    - `4bit`: the quantized base exactly as in training, adapter on top: least memory, several adapters
      can share one base.
    - `16bit`: the 4-bit base dequantized to 16-bit (fp32 on the CPU), adapter kept separate.
    - `merged`: as `16bit`, with the adapter folded into the weights by peft's `merge_and_unload`: a plain
      transformers model, no peft at run time. A merged model directory (from `merge`) also loads here.
    """
    from transformers import AutoModelForSequenceClassification

    from qlora_helpers.modeling.quantization import load_4bit_model, load_tokenizer

    path = Path(path)
    require(mode in MODES, f"unknown mode {mode!r}; choose one of {MODES}")
    classifier_config = ClassifierConfig.load(path)
    hw = detect_hardware(compute_dtype)
    # the attention kernels the run trained with (a process-wide switch): prediction batches change their padded
    # length, and cuDNN's kernel would plan anew for each (config.TrainConfig.cudnn_attention)
    choose_attention_kernels(classifier_config.cudnn_attention)
    if is_merged_model_dir(path):
        check_model_files(path)
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=_inference_dtype(hw)).to(hw.device)
        model.eval()
        return LoadedModel(model, load_tokenizer(str(path)), classifier_config, hw, "merged")
    require(
        (path / "adapter_config.json").is_file(),
        f"{path} has no adapter_config.json; pass the --output-dir of a finished `train` run or a merged model",
    )
    check_model_files(path)
    model = load_4bit_model(
        classifier_config.base_model,
        classifier_config.labels.num_labels,
        classifier_config.labels.id2label,
        hw.compute_dtype,
        hw.device,
        classifier_config.quant_type,
        classifier_config.double_quant,
        problem_type=classifier_config.problem_type,
        say_remade=False,  # the adapter brings the trained head
    )
    if mode != "4bit":
        model = model.dequantize(dtype=_inference_dtype(hw)).to(_inference_dtype(hw))
    model = _with_adapter(model, path, classifier_config.labels.num_labels)
    if mode != "4bit":
        model = model.to(_inference_dtype(hw))
    if mode == "merged":
        model = model.merge_and_unload()
    model.eval()
    return LoadedModel(model, load_tokenizer(str(path)), classifier_config, hw, mode)


def _with_adapter(model, path: Path, num_labels: int):
    """The saved adapter (LoRA and the trained head) on the base model, with one line for a head that is missing
    or of another size."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(model, str(path))
    except KeyError as e:  # peft reads the head's weights by name from the adapter file
        raise UserError(
            f"{path / 'adapter_model.safetensors'} lacks {e.args[0] if e.args else e}: the trained head was not "
            f"saved with the adapter; copy the folder again from the training run (or run `train` again)"
        ) from None
    except RuntimeError as e:
        if "size mismatch" not in str(e):
            raise
        raise UserError(
            f"the adapter in {path} does not fit the {num_labels} label(s) its classifier_config.json "
            f"names (the saved head has another size): the file was edited or comes from another run; copy the "
            f"folder again from the training run"
        ) from None


def load_adapter(adapter_dir: str | Path, compute_dtype: str = "auto") -> LoadedModel:
    """The 4-bit base model (as in training) with the saved LoRA adapter and classifier head on top."""
    return load_for_inference(adapter_dir, "4bit", compute_dtype)


def mode_agreement(adapter_dir: str | Path, texts: list[str], modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """Decision agreement and max |logit difference| (raw logits) of each mode against `4bit`, on `texts` (in this
    process)."""
    classifier_config = ClassifierConfig.load(adapter_dir)
    logits = {m: load_for_inference(adapter_dir, m).raw_logits(texts, progress=False) for m in modes}
    ref = logits["4bit"]
    return {
        m: {
            "label_agreement": classifier_config.task.agreement(
                classifier_config.calibrated(v),
                classifier_config.calibrated(ref),
                classifier_config.labels,
                classifier_config.decision_thresholds(),
            ),
            "max_abs_logit_diff": float(np.abs(v - ref).max()),
            "texts": len(texts),
        }
        for m, v in logits.items()
    }
