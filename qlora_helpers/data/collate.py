"""Dynamic padding of token-id rows into a batch of tensors, without walking every token in Python.

`DataCollatorWithPadding` spends most of a batch's host time in a Python pass over every token; on a host-bound
GPU step that shows (recipe_notes.md, "Several GPUs"). `PaddingCollator` gives the same tensors (tests compare
them key by key) by copying each row into a preallocated numpy array.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from qlora_helpers.data.tokens import as_rows  # noqa: F401  (where callers have found it)

LABEL_KEYS = ("label", "label_ids", "labels")  # the stock collator renames the first two to "labels"


def pad_values(tokenizer) -> dict[str, int]:
    """What each padded key is filled with, as `tokenizer.pad` fills it."""
    return {
        "input_ids": tokenizer.pad_token_id,
        "token_type_ids": tokenizer.pad_token_type_id,
        "attention_mask": 0,
        "special_tokens_mask": 1,
    }


def padded_length(longest: int, pad_to_multiple_of: int | None, max_width: int | None = None) -> int:
    """The batch's width: its longest row, rounded up to a multiple (tensor-core friendly shapes on a GPU,
    or a compiled step's few buckets), but never past `max_width` (the truncation length) for the rounding."""
    if pad_to_multiple_of and longest % pad_to_multiple_of:
        rounded = (longest // pad_to_multiple_of + 1) * pad_to_multiple_of
        return max(longest, min(rounded, max_width)) if max_width else rounded
    return longest


def pad_rows(rows: list, value: int, length: int, left: bool) -> torch.Tensor:
    """Rows of ints (lists or arrays) as one int64 tensor of width `length`, `value` where a row is short."""
    out = np.full((len(rows), length), value, dtype=np.int64)
    for i, row in enumerate(rows):
        if left:
            out[i, length - len(row) :] = row
        else:
            out[i, : len(row)] = row
    return torch.from_numpy(out)


@dataclass
class PaddingCollator:
    """Pads a list of tokenized examples into a batch, as `DataCollatorWithPadding(tokenizer, pad_to_multiple_of)`.

    Examples with keys it does not know how to pad (anything beyond the tokenizer's outputs and a label)
    go to the stock collator, so the result never differs from it.
    """

    tokenizer: Any
    pad_to_multiple_of: int | None = None
    max_width: int | None = None

    def __post_init__(self) -> None:
        self.values = pad_values(self.tokenizer)
        self.stock = DataCollatorWithPadding(self.tokenizer, pad_to_multiple_of=self.pad_to_multiple_of)

    def handles(self, features: list[dict[str, Any]]) -> bool:
        """Whether these examples are plain tokenizer output (and a label) that this collator pads itself."""
        keys = set(features[0]) - set(LABEL_KEYS) if features else set()
        adds_mask = "attention_mask" in self.tokenizer.model_input_names  # tokenizer.pad would add a missing one
        return (
            "input_ids" in keys
            and keys <= set(self.values)
            and self.values["input_ids"] is not None
            and ("attention_mask" in keys or not adds_mask)
        )

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not self.handles(features):
            return dict(self.stock(features))
        token_keys = [k for k in features[0] if k not in LABEL_KEYS]
        length = padded_length(max(len(f["input_ids"]) for f in features), self.pad_to_multiple_of, self.max_width)
        left = self.tokenizer.padding_side == "left"
        batch = {k: pad_rows([f[k] for f in features], self.values[k], length, left) for k in token_keys}
        for key in LABEL_KEYS:
            if key in features[0]:
                batch["labels"] = torch.tensor([f[key] for f in features])
        return batch
