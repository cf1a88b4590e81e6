"""The recipe's padding collator gives exactly the tensors of transformers' DataCollatorWithPadding."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithPadding

from qlora_helpers.data.collate import PaddingCollator, as_rows, padded_length
from qlora_helpers.data.tokens import encode_texts

SAMPLE = "qlora_helpers/sample_data/imdb_sample_1500.csv.gz"


@pytest.fixture(scope="module")
def reviews() -> pd.DataFrame:
    return pd.read_csv(SAMPLE).head(96)


def tokenizer_for(tiny_bert, side: str = "right"):
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    tok.padding_side = side
    return tok


def examples(tok, reviews, max_length=256, labels=None):
    rows = as_rows(encode_texts(tok, list(reviews.review), max_length))
    for row, label in zip(rows, labels if labels is not None else reviews.sentiment):
        row["label"] = label
    return rows


def assert_same_batch(ours: dict, stock) -> None:
    assert list(ours) == list(stock)
    for key in stock:
        assert ours[key].dtype == stock[key].dtype, key
        assert torch.equal(ours[key], stock[key]), key


@pytest.mark.parametrize("side", ["right", "left"])
@pytest.mark.parametrize("multiple", [None, 8])
def test_same_tensors_as_the_stock_collator(tiny_bert, reviews, side, multiple):
    tok = tokenizer_for(tiny_bert, side)
    rows = examples(tok, reviews)
    lengths = {len(r["input_ids"]) for r in rows}
    assert len(lengths) > 20 and max(lengths) == 256  # ragged batches, some cut at max_length
    ours, stock = PaddingCollator(tok, multiple), DataCollatorWithPadding(tok, pad_to_multiple_of=multiple)
    for start in range(0, len(rows), 16):
        batch = ours(rows[start : start + 16])
        assert_same_batch(batch, stock(rows[start : start + 16]))
        assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
        assert multiple is None or batch["input_ids"].shape[1] % multiple == 0


def test_padding_values_and_sides(tiny_bert):
    tok = tokenizer_for(tiny_bert)
    rows = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "token_type_ids": [0, 0, 0], "label": 1},
        {"input_ids": [8], "attention_mask": [1], "token_type_ids": [0], "label": 0},
    ]
    collator = PaddingCollator(tok, pad_to_multiple_of=4)
    batch = collator(rows)
    pad = tok.pad_token_id
    assert batch["input_ids"].tolist() == [[5, 6, 7, pad], [8, pad, pad, pad]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.int64
    tok.padding_side = "left"  # read at every call, as tokenizer.pad reads it
    assert collator(rows)["input_ids"].tolist() == [[pad, 5, 6, 7], [pad, pad, pad, 8]]
    assert_same_batch(collator(rows), DataCollatorWithPadding(tok, pad_to_multiple_of=4)(rows))


def test_float_labels_and_rows_without_token_types(tiny_bert, reviews):
    tok = tokenizer_for(tiny_bert)
    rows = examples(tok, reviews.head(16), labels=[i / 10 for i in range(16)])
    for row in rows:
        del row["token_type_ids"]
    batch = PaddingCollator(tok)(rows)
    assert "token_type_ids" not in batch and batch["labels"].dtype == torch.float32
    assert_same_batch(batch, DataCollatorWithPadding(tok)(rows))


@pytest.mark.parametrize("change", ["extra_key", "no_attention_mask"])
def test_examples_it_does_not_pad_itself_go_to_the_stock_collator(tiny_bert, reviews, change):
    tok = tokenizer_for(tiny_bert)
    rows = examples(tok, reviews.head(8))
    for i, row in enumerate(rows):
        if change == "extra_key":
            row["idx"] = i
        else:
            del row["attention_mask"]
    collator = PaddingCollator(tok)
    assert not collator.handles(rows)
    batch = collator(rows)
    assert_same_batch(batch, DataCollatorWithPadding(tok)(rows))
    assert "attention_mask" in batch  # the stock collator adds the mask the model needs


def test_padded_length():
    assert [padded_length(n, 8) for n in (1, 8, 9, 256)] == [8, 8, 16, 256]
    assert padded_length(13, None) == 13


def test_training_and_prediction_use_it(tiny_config):
    from qlora_helpers.pipeline import model_for, prepare
    from qlora_helpers.train.training import TrainingJob, build_trainer

    cfg = tiny_config()
    ready = prepare(cfg)
    job = TrainingJob.of(ready, model_for(cfg, ready).model)
    trainer, _ = build_trainer(job, cfg, ready.hw, evaluation=False)
    assert isinstance(trainer.data_collator, PaddingCollator)
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape == batch["attention_mask"].shape and batch["labels"].shape[0] == cfg.batch_size
