"""Reading all of a text longer than `max_length` at inference: overlapping windows, logits averaged.

Training keeps `max_length` tokens per text (head or head + tail); at prediction time a long review can
instead be cut into windows of `max_length` tokens that overlap by `stride` tokens (the tokenizer's own
`return_overflowing_tokens`), each window classified on its own, and the text's logits taken as the mean of
its windows' logits: every part of the text gets an equal say, and a text that fits is one window.
"""

from __future__ import annotations

import numpy as np

from qlora_helpers.errors import require

LONG_TEXT = ("truncate", "window")


def default_stride(max_length: int) -> int:
    """A quarter of the window overlaps its neighbour, so a sentence cut at one window's edge is whole in the next."""
    return max_length // 4


def check_window(max_length: int, stride: int | None, tokenizer=None, pairs: bool = False) -> int:
    """The overlap to use; a stride that leaves no new tokens per window is a one-line error."""
    stride = default_stride(max_length) if stride is None else stride
    special = tokenizer.num_special_tokens_to_add() if tokenizer is not None else 2
    require(not pairs, "--long-text window reads single texts; a sentence-pair model shares max_length between them")
    require(
        isinstance(stride, int) and stride >= 0,
        f"--stride {stride} must be 0 or more: it counts the tokens a window shares with the previous one; "
        f"e.g. --stride {default_stride(max_length)}",
    )
    require(
        stride < max_length - special,
        f"--stride {stride} must be below max_length ({max_length}) minus the {special} special tokens, so each "
        f"window reads new tokens; e.g. --stride {default_stride(max_length)}",
    )
    return stride


def encode_windows(tokenizer, texts: list[str], max_length: int, stride: int) -> tuple[dict[str, list], np.ndarray]:
    """Token ids of every window of every text, and for each window the index of its text."""
    encoded = tokenizer(texts, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True)
    owner = np.asarray(encoded.pop("overflow_to_sample_mapping"), dtype=np.int64)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask") if k in encoded]
    return {k: encoded[k] for k in keys}, owner


def combine(window_logits: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
    """Each text's logits: the mean over its windows."""
    sums = np.zeros((n_texts, window_logits.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, window_logits)
    counts = np.bincount(owner, minlength=n_texts)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
