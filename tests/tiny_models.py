"""Tiny random encoders of each supported family, saved like Hub checkpoints (no classification head).

Each model uses the real bert-base-uncased tokenizer (shared/models), saved beside it with the family's own
`model_input_names` (no token_type_ids where the family has no segment embeddings), and a config whose special
token ids match that tokenizer. What is saved is the pretraining checkpoint a Hub repository holds: the bare
encoder, or the encoder under its prefix with a pretraining head (MLM, ELECTRA's discriminator), so the
classification head is genuinely new at load, as it is for a real checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TOKENIZER = Path(__file__).resolve().parents[2] / "shared" / "models" / "bert-base-uncased-tokenizer"
HIDDEN, LAYERS, HEADS, FFN = 32, 2, 2, 64
MAX_POSITIONS = 130  # RoBERTa's positions start after the pad id


@dataclass(frozen=True)
class Family:
    name: str
    input_names: tuple[str, ...]  # what the family's real tokenizer returns
    adapted: tuple[str, ...]  # short names of the encoder's attention and feed-forward projections
    head: tuple[str, ...]  # modules of the classification head, new at load


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "bert",
            ("input_ids", "token_type_ids", "attention_mask"),
            ("query", "key", "value", "dense"),
            ("classifier",),
        ),
        Family(
            "distilbert",
            ("input_ids", "attention_mask"),
            ("q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"),
            ("classifier", "pre_classifier"),
        ),
        Family("roberta", ("input_ids", "attention_mask"), ("query", "key", "value", "dense"), ("classifier",)),
        Family(
            "electra",
            ("input_ids", "token_type_ids", "attention_mask"),
            ("query", "key", "value", "dense"),
            ("classifier",),
        ),
        Family(
            "deberta-v2",
            ("input_ids", "token_type_ids", "attention_mask"),
            ("query_proj", "key_proj", "value_proj", "dense"),
            ("classifier", "pooler"),
        ),
        Family("modernbert", ("input_ids", "attention_mask"), ("Wqkv", "Wo", "Wi"), ("classifier", "head")),
    )
}


def _pretraining_checkpoint(name: str, tok):
    """The model a Hub repository of this family holds, randomly initialised at tiny size."""
    import transformers as t

    special = dict(pad_token_id=tok.pad_token_id, bos_token_id=None, eos_token_id=None)  # BERT's have none
    common = dict(vocab_size=len(tok), max_position_embeddings=MAX_POSITIONS, **special)
    bert_like = dict(
        hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS, intermediate_size=FFN, **common
    )
    if name == "bert":  # bert-base-uncased: BertForPreTraining, keys under `bert.` (pooler included)
        return t.BertForPreTraining(t.BertConfig(**bert_like))
    if name == "distilbert":  # distilbert-base-uncased: the bare encoder, keys without a prefix
        config = t.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN, **common)
        return t.DistilBertModel(config)
    if name == "roberta":  # roberta-base: RobertaForMaskedLM, one segment type, positions after the pad id
        config = t.RobertaConfig(type_vocab_size=1, **bert_like)
        return t.RobertaForMaskedLM(config)
    if name == "electra":  # google/electra-*-discriminator: ElectraForPreTraining, embeddings narrower
        config = t.ElectraConfig(embedding_size=24, **bert_like)
        return t.ElectraForPreTraining(config)
    if name == "deberta-v2":  # microsoft/deberta-v3-*: relative positions, no segment embeddings, bare encoder
        config = t.DebertaV2Config(
            type_vocab_size=0,
            relative_attention=True,
            position_buckets=32,
            pos_att_type=["p2c", "c2p"],
            position_biased_input=False,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            **bert_like,
        )
        return t.DebertaV2Model(config)
    if name == "modernbert":  # answerdotai/ModernBERT-*: ModernBertForMaskedLM, keys under `model.`
        config = t.ModernBertConfig(
            hidden_size=HIDDEN,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            intermediate_size=FFN,
            global_attn_every_n_layers=2,
            local_attention=16,
            cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id,
            **common,
        )
        return t.ModernBertForMaskedLM(config)
    raise ValueError(f"unknown family {name!r}; choose one of {sorted(FAMILIES)}")


def build_tiny_encoder(name: str, directory: Path, bare: bool = False) -> Path:
    """Save a tiny random `name` checkpoint and its tokenizer in `directory`, loadable with `from_pretrained`.

    `bare`: save only the encoder (no prefix, no pretraining head), as some Hub repositories hold it.
    """
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(
        TOKENIZER, model_input_names=list(FAMILIES[name].input_names), model_max_length=MAX_POSITIONS - 2
    )
    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = _pretraining_checkpoint(name, tok)
    (model.base_model if bare else model).save_pretrained(directory)
    tok.save_pretrained(directory)
    return directory
