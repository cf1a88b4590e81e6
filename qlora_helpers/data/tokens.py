"""Texts to token ids: truncation as the run says (head, or head + tail), pairs as two segments."""

from __future__ import annotations

from typing import Any

import numpy as np

from qlora_helpers.config import TRUNCATIONS
from qlora_helpers.data.windows import LONG_TEXT, check_window, encode_windows
from qlora_helpers.errors import require


def check_max_length(max_length: int, tokenizer, model_name: str) -> None:
    """A text longer than the model's position embeddings fails inside its first forward pass (a shape error in
    the embeddings): checked against the tokenizer's limit, or the config's where the tokenizer names none."""
    limit = tokenizer.model_max_length if tokenizer.model_max_length < 100_000 else None
    if limit is None:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model_name)
        absolute = getattr(config, "position_biased_input", True)  # DeBERTa-v3's relative positions have no limit
        limit = getattr(config, "max_position_embeddings", None) if absolute else None
    require(
        limit is None or max_length <= limit,
        f"--max-length {max_length} is beyond the {limit} positions this model reads; use --max-length {limit} "
        f"or less (and --long-text window at prediction for longer texts)",
    )


def encode_texts(
    tokenizer, texts: list[str], max_length: int, truncation: str = "head", pairs: list[str] | None = None
) -> dict[str, list]:
    """Token ids (unpadded) of at most `max_length` tokens per text (or per pair of texts).

    A pair goes in as BERT's two segments (`[CLS] a [SEP] b [SEP]`, token type ids 0 then 1); when it is
    too long, tokens come off the longer of the two first, so the budget is shared.

    `head` keeps the beginning. `head_tail` keeps the first quarter of the budget from the beginning
    and the rest from the end: a review's verdict is often in its last sentences, and Sun et al. (2019)
    measured head+tail above head-only truncation for BERT on IMDb.
    """
    if pairs is not None:
        return dict(tokenizer(texts, pairs, truncation="longest_first", max_length=max_length))
    if truncation == "head":
        return dict(tokenizer(texts, truncation=True, max_length=max_length))
    require(truncation == "head_tail", f"truncation must be one of {TRUNCATIONS}, got {truncation!r}")
    encoded = dict(tokenizer(texts, truncation=False, verbose=False))
    special = set(tokenizer.all_special_ids)
    probe = encoded["input_ids"][0] if encoded["input_ids"] else []
    prefix = next((i for i, t in enumerate(probe) if t not in special), 0)  # [CLS] for BERT
    head = prefix + (max_length - tokenizer.num_special_tokens_to_add()) // 4
    tail = max_length - head  # includes the closing [SEP]
    for i, ids in enumerate(encoded["input_ids"]):
        if len(ids) > max_length:
            for key in encoded:
                encoded[key][i] = encoded[key][i][:head] + encoded[key][i][-tail:]
    return encoded


def as_rows(encoded: dict[str, list]) -> list[dict[str, Any]]:
    """Tokenizer output (one list per key) as one example per text, the form a collator takes."""
    keys = list(encoded)
    return [dict(zip(keys, values)) for values in zip(*(encoded[k] for k in keys))]


def encode_rows(
    tokenizer,
    texts: list[str],
    max_length: int,
    truncation: str = "head",
    pairs: list[str] | None = None,
    long_text: str = "truncate",
    stride: int | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """Token ids of each text (with its pair) as the model reads it at prediction: one row per text in order,
    or with `long_text="window"` one row per window and, for each, the index of its text (windows.py).

    Shared by every runtime (PyTorch, ONNX Runtime), so a text is cut the same way whichever one reads it."""
    require(long_text in LONG_TEXT, f"--long-text must be one of {LONG_TEXT}, got {long_text!r}")
    require(pairs is None or len(pairs) == len(texts), f"{len(texts)} texts but {len(pairs or [])} second texts")
    if long_text == "window":
        stride = check_window(max_length, stride, tokenizer, pairs is not None)
        encoded, owner = encode_windows(tokenizer, texts, max_length, stride)
        return as_rows(encoded), owner
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
    return rows, None


def tokenize_splits(data, tokenizer, max_length: int, truncation: str = "head"):
    """Token ids of every split of a `PreparedData`, cut as `truncation` says; the task gives the targets.
    Padding is left to the collator."""
    from datasets import Dataset, DatasetDict

    def encode(batch: dict[str, list]) -> dict[str, list]:
        return encode_texts(tokenizer, batch["text"], max_length, truncation, batch.get("text_pair"))

    inputs = ["text", "text_pair"] if data.pairs else ["text"]
    out = {}
    for name, frame in data.splits.items():
        rows = frame[inputs].assign(label=data.task.targets(frame["label"], data.labels))
        ds = Dataset.from_pandas(rows, preserve_index=False)
        out[name] = ds.map(encode, batched=True, remove_columns=inputs, desc=f"Tokenizing {name}")
    print(truncation_report(out, max_length, "pair" if data.pairs else truncation))
    return DatasetDict(out)


def truncation_report(tokenized: dict, max_length: int, truncation: str = "head") -> str:
    """How many texts per split reached `max_length` tokens, i.e. lost part of their text to truncation."""
    parts = []
    for name, ds in tokenized.items():
        cut = sum(len(ids) >= max_length for ids in ds["input_ids"])
        parts.append(f"{name} {cut:,} of {len(ds):,} ({cut / max(1, len(ds)):.0%})")
    kept = {"head_tail": "beginning and end kept", "pair": "the longer text shortened first"}.get(
        truncation, "beginning kept"
    )
    return f"texts cut to max_length={max_length} tokens ({kept}): " + ", ".join(parts)


def token_lengths(texts: list[str], tokenizer, limit: int = 2000, seed: int = 0) -> np.ndarray:
    """Untruncated token counts of up to `limit` texts (a random sample), to see what truncation cuts."""
    if len(texts) > limit:
        rng = np.random.default_rng(seed)
        texts = [texts[i] for i in rng.choice(len(texts), size=limit, replace=False)]
    ids = tokenizer(list(texts), truncation=False, verbose=False)["input_ids"]
    return np.array([len(x) for x in ids])
