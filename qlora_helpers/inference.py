"""Using a trained adapter: reload it (4-bit, 16-bit or merged), merge and export it, predict in batches."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .collate import PaddingCollator, as_rows
from .data import encode_texts
from .errors import UserError, require
from .hardware import Hardware, choose_attention_kernels, detect_hardware
from .metrics import sigmoid, softmax
from .windows import LONG_TEXT, check_window, combine, encode_windows

TRAINING_CONFIG = "training_config.json"


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
    require(long_text in LONG_TEXT, f"--long-text must be one of {LONG_TEXT}, got {long_text!r}")
    require(pairs is None or len(pairs) == len(texts), f"{len(texts)} texts but {len(pairs or [])} second texts")
    model.eval()
    if long_text == "window":
        stride = check_window(max_length, stride, tokenizer, pairs is not None)
        encoded, owner = encode_windows(tokenizer, texts, max_length, stride)
        rows = as_rows(encoded)
        return combine(_logits_of_rows(model, tokenizer, rows, batch_size, device, progress), owner, len(texts))
    sizes = [len(t) + (len(pairs[i]) if pairs else 0) for i, t in enumerate(texts)]
    order = np.argsort(sizes, kind="stable")
    rows: list[dict[str, Any]] = [{}] * len(texts)
    for start in range(0, len(texts), 1024):  # tokenized in slices: one call per text would be slow
        idx = order[start : start + 1024]
        encoded = encode_texts(
            tokenizer, [texts[i] for i in idx], max_length, truncation, [pairs[i] for i in idx] if pairs else None
        )
        for i, row in zip(idx, as_rows(encoded)):
            rows[i] = row
    return _logits_of_rows(model, tokenizer, rows, batch_size, device, progress)


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
class LoadedAdapter:
    model: Any
    tokenizer: Any
    id2label: dict[int, str]
    max_length: int
    hardware: Hardware
    base_model: str
    mode: str = "4bit"
    truncation: str = "head"
    multi_label: bool = False
    threshold_record: dict[str, Any] | None = None  # thresholds.json of a multi-label run
    mapping: dict[str, Any] | None = None  # label_mapping.json: labels and the input columns training read

    @property
    def pair_column(self) -> str | None:
        """The column of second texts when the model reads sentence pairs, else None."""
        return (self.mapping or {}).get("text_pair_column")

    @property
    def names(self) -> list[str]:
        return [self.id2label[i] for i in range(len(self.id2label))]

    def thresholds(self, mode: str | None = None) -> np.ndarray:
        """Per-label decision thresholds of a multi-label model (`mode`: per_label, global or 0.5)."""
        from . import thresholds

        return thresholds.vector(self.threshold_record or {}, self.names, mode)

    def logits(
        self,
        texts: list[str],
        batch_size: int = 64,
        progress: bool = True,
        pairs: list[str] | None = None,
        long_text: str = "truncate",
        stride: int | None = None,
    ) -> np.ndarray:
        self.check_pairs(texts, pairs)
        return predict_logits(
            self.model,
            self.tokenizer,
            texts,
            self.max_length,
            batch_size,
            progress=progress,
            truncation=self.truncation,
            pairs=pairs,
            long_text=long_text,
            stride=stride,
        )

    def check_pairs(self, texts: list[str], pairs: list[str] | None) -> None:
        """A pair model needs a second text for every text; a single-text model takes none."""
        if self.pair_column and pairs is None:
            raise UserError(
                f"this model reads sentence pairs (second texts from {self.pair_column!r} in training); give a "
                f"second text for each: --text-pair on the command line, or --dataset with both columns"
            )
        require(
            pairs is None or self.pair_column,
            "this model was trained on single texts; leave out the second texts (--text-pair)",
        )
        require(
            pairs is None or len(pairs) == len(texts),
            f"{len(texts)} text(s) but {len(pairs or [])} second text(s); give one --text-pair per text, in order",
        )

    def predict(
        self,
        texts: list[str],
        batch_size: int = 64,
        progress: bool = True,
        top_k: int | None = None,
        threshold_mode: str | None = None,
        pairs: list[str] | None = None,
        long_text: str = "truncate",
        stride: int | None = None,
    ) -> list[dict[str, Any]]:
        """One dict per text: the predicted label and its probability (for label sets: every label above its
        threshold, most probable first), then every label's probability (only the `top_k` highest if given)."""
        logits = self.logits(texts, batch_size, progress, pairs, long_text, stride)
        names = self.names
        inputs = [{"text": t, **({"text_pair": pairs[i]} if pairs else {})} for i, t in enumerate(texts)]
        if not self.multi_label:
            probs = softmax(logits)
            return [
                {
                    **given,
                    "label": names[int(p.argmax())],
                    "probability": round(float(p.max()), 6),
                    "probabilities": _ranked(names, p, top_k),
                }
                for given, p in zip(inputs, probs)
            ]
        probs, cut = sigmoid(logits), self.thresholds(threshold_mode)
        rows = []
        for given, p in zip(inputs, probs):
            chosen = [j for j in np.argsort(-p, kind="stable") if p[j] >= cut[j]]
            rows.append(
                {
                    **given,
                    "labels": [names[j] for j in chosen],
                    "label_probabilities": {names[j]: round(float(p[j]), 6) for j in chosen},
                    "probabilities": _ranked(names, p, top_k),
                }
            )
        return rows


def _ranked(names: list[str], probs: np.ndarray, top_k: int | None) -> dict[str, float]:
    """Every label's probability (in label order), or the `top_k` most probable, highest first."""
    if not top_k:
        return {n: round(float(x), 6) for n, x in zip(names, probs)}
    best = np.argsort(-probs, kind="stable")[:top_k]
    return {names[j]: round(float(probs[j]), 6) for j in best}


def read_training_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / TRAINING_CONFIG
    require(
        path.is_file(),
        f"{adapter_dir} is not a training output directory (no {TRAINING_CONFIG}); "
        f"pass the --output-dir of a finished `train` run",
    )
    return json.loads(path.read_text())


MODES = ("4bit", "16bit", "merged")


def is_merged_model_dir(path: Path) -> bool:
    """A standalone model written by `merge` (config + weights, no adapter)."""
    return (path / "config.json").is_file() and not (path / "adapter_config.json").is_file()


def _inference_dtype(hw: Hardware) -> torch.dtype:
    """16-bit on a GPU (bf16, or fp16 without bf16); fp32 on the CPU, where 16-bit maths is slow."""
    return hw.compute_dtype if hw.device == "cuda" else torch.float32


def load_for_inference(path: str | Path, mode: str = "4bit", compute_dtype: str = "auto") -> LoadedAdapter:
    """A trained model ready to predict, in one of three forms.

    - `4bit`: the quantized base exactly as in training, adapter on top: least memory, several adapters
      can share one base.
    - `16bit`: the 4-bit base dequantized to 16-bit (fp32 on the CPU), adapter kept separate.
    - `merged`: as `16bit`, with the adapter folded into the weights by peft's `merge_and_unload`: a plain
      transformers model, no peft at run time. A merged model directory (from `merge`) also loads here.
    """
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    from . import thresholds
    from .data import read_label_mapping
    from .quantization import load_4bit_model, load_tokenizer

    path = Path(path)
    require(mode in MODES, f"unknown mode {mode!r}; choose one of {MODES}")
    require(path.is_dir(), f"adapter directory not found: {path}")
    hw = detect_hardware(compute_dtype)
    # the attention kernels the run trained with (a process-wide switch): prediction batches change their padded
    # length, and cuDNN's kernel would plan anew for each (config.TrainConfig.cudnn_attention)
    settings = read_training_config(path) if (path / TRAINING_CONFIG).is_file() else {}
    choose_attention_kernels(bool(settings.get("cudnn_attention", False)))
    mapping = read_label_mapping(path) if (path / "label_mapping.json").is_file() else {}
    multi_label = bool(mapping.get("multi_label"))
    if is_merged_model_dir(path):
        model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=_inference_dtype(hw)).to(hw.device)
        model.eval()
        id2label = {int(k): v for k, v in model.config.id2label.items()}
        multi_label = multi_label or model.config.problem_type == "multi_label_classification"
        trained = {"max_length": 512, **settings}
        names = [id2label[i] for i in range(len(id2label))]
        return LoadedAdapter(
            model,
            load_tokenizer(str(path)),
            id2label,
            int(trained["max_length"]),
            hw,
            str(path),
            "merged",
            trained.get("truncation", "head"),
            multi_label,
            thresholds.load(path, names) if multi_label else None,
            mapping or None,
        )
    require(
        (path / "adapter_config.json").is_file(),
        f"{path} has no adapter_config.json; pass the --output-dir of a finished `train` run or a merged model",
    )
    cfg = settings or read_training_config(path)  # read above when present; else the one-line error
    mapping = mapping or read_label_mapping(path)
    id2label = {int(k): v for k, v in mapping["id2label"].items()}
    record = thresholds.load(path, [id2label[i] for i in range(len(id2label))]) if multi_label else None
    base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = load_4bit_model(
        base,
        len(id2label),
        id2label,
        hw.compute_dtype,
        hw.device,
        cfg["quant_type"],
        cfg["double_quant"],
        multi_label,
    )
    if mode != "4bit":
        model = model.dequantize(dtype=_inference_dtype(hw)).to(_inference_dtype(hw))
    model = PeftModel.from_pretrained(model, str(path))
    if mode != "4bit":
        model = model.to(_inference_dtype(hw))
    if mode == "merged":
        model = model.merge_and_unload()
    model.eval()
    return LoadedAdapter(
        model,
        load_tokenizer(str(path)),
        id2label,
        int(cfg["max_length"]),
        hw,
        base,
        mode,
        cfg.get("truncation", "head"),  # runs saved before `truncation` existed cut the end
        multi_label,
        record,
        mapping,
    )


def load_adapter(adapter_dir: str | Path, compute_dtype: str = "auto") -> LoadedAdapter:
    """The 4-bit base model (as in training) with the saved LoRA adapter and classifier head on top."""
    return load_for_inference(adapter_dir, "4bit", compute_dtype)


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, dtype: str = "float16") -> Path:
    """Write a standalone model: dequantized base + adapter merged, loadable without peft.

    Saved in `dtype` (fp16 by default: half the bytes of fp32, more mantissa than bf16), with the tokenizer,
    label mapping, training configuration and a model card.
    """
    import shutil

    from .model_card import write_model_card

    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    require(
        dtype in ("float16", "bfloat16", "float32"), f"--dtype must be float16, bfloat16 or float32, got {dtype!r}"
    )
    require(not (output_dir / "config.json").exists(), f"{output_dir} already holds a model; choose another --output")
    loaded = load_for_inference(adapter_dir, "merged", "float32" if not torch.cuda.is_available() else "auto")
    model = loaded.model.to(getattr(torch, dtype))
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir))
    loaded.tokenizer.save_pretrained(str(output_dir))
    for name in ("label_mapping.json", TRAINING_CONFIG, "metrics.json", "thresholds.json"):
        if (adapter_dir / name).is_file():
            shutil.copy(adapter_dir / name, output_dir / name)
    write_model_card(output_dir, merged_from=str(adapter_dir), dtype=dtype)
    return output_dir


def mode_agreement(adapter_dir: str | Path, texts: list[str], modes: tuple[str, ...] = MODES) -> dict[str, Any]:
    """Label agreement and max |logit difference| of each mode against `4bit`, on `texts` (in this process)."""
    logits = {m: load_for_inference(adapter_dir, m).logits(texts, progress=False) for m in modes}
    ref = logits["4bit"]
    return {
        m: {
            "label_agreement": float((v.argmax(-1) == ref.argmax(-1)).mean()),
            "max_abs_logit_diff": float(np.abs(v - ref).max()),
            "texts": len(texts),
        }
        for m, v in logits.items()
    }


def texts_from_file(path: str | Path) -> list[str]:
    """One text per non-empty line of a UTF-8 file."""
    path = Path(path)
    require(path.is_file(), f"text file not found: {path}")
    texts = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise UserError(f"{path} has no non-empty lines; put one text per line")
    return texts
