"""A tiny BERT built locally and saved like a Hub model, so tests load it back with `from_pretrained`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qlora_helpers.config import SAMPLE_DATA


def build_tiny_bert(directory: Path, texts: list[str] | None = None, hidden: int = 64, layers: int = 2) -> Path:
    """WordPiece tokenizer trained on real reviews + a randomly initialised 2-layer BERT."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

    if texts is None:
        texts = pd.read_csv(SAMPLE_DATA)["review"].tolist()
    wp = BertWordPieceTokenizer(lowercase=True)
    wp.train_from_iterator(texts, vocab_size=2000, min_frequency=2)
    tok = PreTrainedTokenizerFast(tokenizer_object=wp._tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                                  pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]", model_max_length=512)
    directory.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(directory)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=512,
                        pad_token_id=tok.pad_token_id)
    import torch

    torch.manual_seed(0)
    BertForSequenceClassification(config).bert.save_pretrained(directory)
    return directory
