"""Test helpers: a tiny BERT configuration that uses the embedded model's vocabulary."""

from __future__ import annotations

from transformers import AutoTokenizer, BertConfig

from bench.models import DEFAULT_MODEL, resolve_model

TINY_CONFIG = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 128,
}


def tiny_bert_config(*, dropout: float = 0.1, **overrides) -> BertConfig:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    return BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        **TINY_CONFIG,
        **overrides,
    )
