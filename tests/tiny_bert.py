"""A tiny BERT built locally and saved like a Hub model, so tests load it back with `from_pretrained`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qlora_helpers.config import SAMPLE_DATA


def build_tiny_bert(directory: Path, texts: list[str] | None = None, hidden: int = 64, layers: int = 2) -> Path:
    """WordPiece tokenizer trained on real reviews + a randomly initialised 2-layer BERT."""
    import json

    from tokenizers import BertWordPieceTokenizer
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    if texts is None:
        texts = pd.read_csv(SAMPLE_DATA)["review"].tolist()
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=2000, min_frequency=2)
    directory.mkdir(parents=True, exist_ok=True)
    wp.save_model(str(directory))  # vocab.txt, as bert-base-uncased ships it
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512})
    )
    tok = AutoTokenizer.from_pretrained(directory)  # the user path (BertTokenizer(vocab_file=...) gives all-[UNK])
    tok.save_pretrained(directory)
    config = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=512,
        pad_token_id=tok.pad_token_id,
    )
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(directory)
    return directory
