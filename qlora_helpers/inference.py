"""Using a trained adapter: reload it onto the 4-bit base, predict, evaluate."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import UserError, require
from .hardware import Hardware, detect_hardware
from .metrics import softmax

TRAINING_CONFIG = "training_config.json"


@torch.no_grad()
def predict_logits(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64,
                   device: str | None = None, progress: bool = True) -> np.ndarray:
    """Logits for `texts` in their original order; batches of similar length waste little on padding."""
    model.eval()
    device = device or next(p.device for p in model.parameters())
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    for start in tqdm(range(0, len(texts), batch_size), desc="Predicting", disable=not progress, unit="batch"):
        idx = order[start:start + batch_size]
        batch = tokenizer([texts[i] for i in idx], truncation=True, max_length=max_length, padding=True,
                          return_tensors="pt").to(device)
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

    def logits(self, texts: list[str], batch_size: int = 64, progress: bool = True) -> np.ndarray:
        return predict_logits(self.model, self.tokenizer, texts, self.max_length, batch_size, progress=progress)

    def predict(self, texts: list[str], batch_size: int = 64, progress: bool = True) -> list[dict[str, Any]]:
        """One dict per text: predicted label name, its probability, and every class's probability."""
        probs = softmax(self.logits(texts, batch_size, progress))
        names = [self.id2label[i] for i in range(len(self.id2label))]
        return [{"text": t, "label": names[int(p.argmax())], "probability": round(float(p.max()), 6),
                 "probabilities": {n: round(float(x), 6) for n, x in zip(names, p)}}
                for t, p in zip(texts, probs)]


def read_training_config(adapter_dir: Path) -> dict[str, Any]:
    path = adapter_dir / TRAINING_CONFIG
    require(path.is_file(), f"{adapter_dir} is not a training output directory (no {TRAINING_CONFIG}); "
                            f"pass the --output-dir of a finished `train` run")
    return json.loads(path.read_text())


def load_adapter(adapter_dir: str | Path, compute_dtype: str = "auto") -> LoadedAdapter:
    """The 4-bit base model (as in training) with the saved LoRA adapter and classifier head on top."""
    from peft import PeftModel

    from .data import load_label_mapping
    from .quantization import load_4bit_model, load_tokenizer

    adapter_dir = Path(adapter_dir)
    require(adapter_dir.is_dir(), f"adapter directory not found: {adapter_dir}")
    require((adapter_dir / "adapter_config.json").is_file(),
            f"{adapter_dir} has no adapter_config.json; pass the --output-dir of a finished `train` run")
    cfg = read_training_config(adapter_dir)
    id2label = load_label_mapping(adapter_dir)
    hw = detect_hardware(compute_dtype)
    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = load_4bit_model(base, len(id2label), id2label, hw.compute_dtype, hw.device,
                            cfg["quant_type"], cfg["double_quant"])
    model = PeftModel.from_pretrained(model, str(adapter_dir))
    model.eval()
    return LoadedAdapter(model, load_tokenizer(str(adapter_dir)), id2label, int(cfg["max_length"]), hw, base)


def texts_from_file(path: str | Path) -> list[str]:
    """One text per non-empty line of a UTF-8 file."""
    path = Path(path)
    require(path.is_file(), f"text file not found: {path}")
    texts = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise UserError(f"{path} has no non-empty lines; put one text per line")
    return texts
