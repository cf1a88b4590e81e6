"""Predicting from an ONNX export with onnxruntime and the tokenizer alone: no torch, no transformers.

An export folder (`qlora-bert export`) holds `model.onnx` (fp32), optionally `model_int8.onnx`, the tokenizer
(`tokenizer.json`) and `classifier_config.json`. Texts are cut exactly as in PyTorch (tokens.encode_rows: head or
head + tail truncation, sentence pairs, overlapping windows for long texts), batched by length, and the logits
are divided by the saved temperature before they become probabilities and decisions (tasks.py).

transformers' tokenizer classes import torch (5.17), so the tokenizer is read with the `tokenizers` library that
they wrap; `TokenizerFile` answers the few calls this package makes of a tokenizer, and a test checks that it
gives the same token ids as transformers' on the same file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from qlora_helpers.data.tokens import encode_rows
from qlora_helpers.data.windows import combine
from qlora_helpers.errors import UserError, require
from qlora_helpers.infer.predictor import Predictor
from qlora_helpers.modeling.classifier_config import FILE as CONFIG_FILE
from qlora_helpers.modeling.classifier_config import ClassifierConfig

FP32, INT8 = "model.onnx", "model_int8.onnx"
FILES = {"fp32": FP32, "int8": INT8}
TOKENIZER = "tokenizer.json"
REPORT = "export_report.json"
INSTALL = "pip install -r requirements-export.txt, in the project's folder (the package is not on PyPI)"


def require_extra(*modules: str) -> None:
    """One line naming the install command when an optional package of the export extra is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    require(not missing, f"{', '.join(missing)} not installed: ONNX export and serving need the extra: {INSTALL}")


class TokenizerFile:
    """A saved fast tokenizer (`tokenizer.json`) called the way this package calls transformers' tokenizers."""

    def __init__(self, directory: Path):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(directory / TOKENIZER))
        self.tokenizer.no_padding()
        settings = directory / "tokenizer_config.json"
        config = json.loads(settings.read_text()) if settings.is_file() else {}
        special = {i: t for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        self.all_special_ids = sorted(special)
        pad = config.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        self.pad_token_id = self.tokenizer.token_to_id(pad) if pad else None
        if self.pad_token_id is None:
            self.pad_token_id = next((i for i, t in special.items() if t.content in ("[PAD]", "<pad>")), 0)
        self.pad_token_type_id = int(config.get("pad_token_type_id", 0))
        self.truncation_side = config.get("truncation_side", "right")

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return self.tokenizer.post_processor.num_special_tokens_to_add(pair) if self.tokenizer.post_processor else 0

    def __call__(
        self,
        texts: list[str],
        pairs: list[str] | None = None,
        truncation: bool | str = False,
        max_length: int | None = None,
        stride: int = 0,
        return_overflowing_tokens: bool = False,
        **_: Any,
    ) -> dict[str, list]:
        """Token ids, token type ids and attention masks, unpadded; overflowing windows follow their text, with
        `overflow_to_sample_mapping`, as transformers' fast tokenizers return them."""
        if truncation and max_length:
            strategy = "longest_first" if truncation is True else truncation
            self.tokenizer.enable_truncation(
                max_length, stride=stride, strategy=strategy, direction=self.truncation_side
            )
        else:
            self.tokenizer.no_truncation()
        encodings = self.tokenizer.encode_batch(list(zip(texts, pairs)) if pairs is not None else list(texts))
        out: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": []}
        owner = []
        for i, encoding in enumerate(encodings):
            for e in [encoding, *(encoding.overflowing if return_overflowing_tokens else [])]:
                out["input_ids"].append(e.ids)
                out["token_type_ids"].append(e.type_ids)
                out["attention_mask"].append(e.attention_mask)
                owner.append(i)
        if return_overflowing_tokens:
            out["overflow_to_sample_mapping"] = owner
        return out


def pad_batch(rows: list[dict[str, list]], names: list[str], pad_values: dict[str, int]) -> dict[str, np.ndarray]:
    """The rows' token lists as int64 arrays of the batch's longest length (right padding), one per model input."""
    width = max(len(r["input_ids"]) for r in rows)
    out = {}
    for name in names:
        array = np.full((len(rows), width), pad_values.get(name, 0), dtype=np.int64)
        for i, r in enumerate(rows):
            array[i, : len(r[name])] = r[name]
        out[name] = array
    return out


def verified_forms(directory: Path) -> dict[str, bool] | None:
    """Which precisions met their targets at export time ({"fp32": True, "int8": False}); None without a report."""
    path = directory / REPORT
    if not path.is_file():
        return None
    try:
        return {f["precision"]: bool(f["passed"]) for f in json.loads(path.read_text())["verification"]}
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{path} is damaged ({str(e)[:80]}): whether the export was verified is unknown; export it again"
        ) from None


def default_precision(directory: Path) -> str:
    """int8 where the export has it and it met its targets, else fp32. A file the export rejected is served only
    when asked for by name (`--precision`): one that fails every check is refused here."""
    forms = verified_forms(directory)
    has_int8 = (directory / INT8).is_file()
    if forms is None:  # an export without its report: the files alone say what there is
        return "int8" if has_int8 else "fp32"
    if has_int8 and forms.get("int8"):
        return "int8"
    require(
        forms.get("fp32", False),
        f"{directory} missed its export targets in every precision (its README.md); export it again, or pass "
        f"--precision fp32 (or int8) to serve it anyway",
    )
    if has_int8:
        print(
            f"note: serving {FP32} of {directory}: its int8 file missed its export targets (its README.md); "
            f"--precision int8 serves it anyway",
            file=sys.stderr,
        )
    return "fp32"


def check_export_folder(directory: Path, precision: str | None) -> Path:
    """The model file to serve; a folder that lacks its model, configuration or tokenizer is named as such."""
    require(
        not directory.is_file(),
        f"{directory} is a file; --onnx takes the export's folder ({directory.parent}), which holds its tokenizer and "
        f"configuration too (--precision picks fp32 or int8)",
    )
    require(directory.is_dir(), f"ONNX folder not found: {directory}; pass the --output of `qlora-bert export`")
    if precision is None:
        model = directory / (INT8 if (directory / INT8).is_file() else FP32)
    else:
        require(precision in FILES, f"precision must be one of {sorted(FILES)}, got {precision!r}")
        model = directory / FILES[precision]
    fix = "export it again with `qlora-bert export --adapter RUN --output DIR`"
    require(
        not (precision == "int8" and (directory / FP32).is_file() and not model.is_file()),
        f"{directory} has no {model.name}: it was exported without --quantize int8; drop --precision int8, or "
        f"export it again with `qlora-bert export --adapter RUN --output DIR --quantize int8`",
    )
    require(
        model.is_file(), f"{directory} has no {model.name}: it is not an ONNX export (or not a complete one); {fix}"
    )
    require(
        (directory / CONFIG_FILE).is_file(),
        f"{directory} has {model.name} but no {CONFIG_FILE} (its labels, task and input columns); {fix}",
    )
    require(
        (directory / TOKENIZER).is_file(),
        f"{directory} has {model.name} but no tokenizer ({TOKENIZER}): texts cannot be turned into token ids; {fix}",
    )
    return model


@dataclass
class OnnxClassifier(Predictor):
    """An exported model ready to predict on the CPU: an onnxruntime session, its tokenizer and its configuration."""

    session: Any
    tokenizer: TokenizerFile
    classifier_config: ClassifierConfig
    file: Path
    batch_size: ClassVar[int] = 32
    progress: ClassVar[bool] = False

    @classmethod
    def load(cls, directory: str | Path, precision: str | None = None, threads: int | None = None) -> OnnxClassifier:
        """`precision`: fp32 or int8 (default: `default_precision`, the verified file)."""
        directory = Path(directory)
        model = check_export_folder(directory, precision or default_precision(directory))
        classifier_config = ClassifierConfig.load(directory)
        require_extra("onnxruntime")
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for a damaged file
            raise UserError(f"{model} cannot be loaded by onnxruntime ({str(e)[:120]}); export it again") from None
        outputs = session.get_outputs()[0].shape[-1]
        require(
            not isinstance(outputs, int) or outputs == classifier_config.labels.num_labels,
            f"{model.name} gives {outputs} outputs but {directory / CONFIG_FILE} names "
            f"{classifier_config.labels.num_labels} labels: the two come from different models; export it again",
        )
        try:
            tokenizer = TokenizerFile(directory)
        except Exception as e:  # tokenizers raises a bare Exception for a damaged tokenizer.json
            raise UserError(
                f"the tokenizer files of {directory} are damaged ({str(e)[:100]}); export it again"
            ) from None
        return cls(session, tokenizer, classifier_config, model)

    @property
    def precision(self) -> str:
        return "int8" if self.file.name == INT8 else "fp32"

    @property
    def hardware(self) -> SimpleNamespace:
        """What `evaluate` records about where it ran, as `LoadedModel.hardware` tells it."""
        return SimpleNamespace(name="cpu (onnxruntime)", dtype_name=self.precision)

    def backend_logits(self, texts, batch_size, progress, pairs, long_text, stride):
        """onnxruntime's logits, in the texts' order; batches of similar length."""
        from tqdm.auto import tqdm

        classifier_config = self.classifier_config
        rows, owner = encode_rows(
            self.tokenizer, texts, classifier_config.max_length, classifier_config.truncation, pairs, long_text, stride
        )
        names = [i.name for i in self.session.get_inputs()]
        pad_values = {"input_ids": self.tokenizer.pad_token_id, "token_type_ids": self.tokenizer.pad_token_type_id}
        order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
        out = np.zeros((len(rows), classifier_config.labels.num_labels), dtype=np.float32)
        for start in tqdm(
            range(0, len(rows), batch_size),
            desc="Predicting",
            disable=not progress,
            unit="batch",
        ):
            idx = order[start : start + batch_size]
            batch = pad_batch([rows[i] for i in idx], names, pad_values)
            out[idx] = self.session.run(None, batch)[0]
        return out if owner is None else combine(out, owner, len(texts))
