"""Test helpers: a tiny BERT configuration with the embedded model's vocabulary, inputs for any loss, and a fixed
torch thread count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import AutoTokenizer, BertConfig

from bench.models import DEFAULT_MODEL, resolve_model
from losses.base import Loss

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


BATCH = 8
NUM_CLASSES = 3
EMBEDDING_SIZE = 6
CLASS_COUNTS = (50, 30, 5)
# Regression residuals (prediction - target) away from 0 and +-1, where mae, huber and smooth_l1 have kinks.
RESIDUALS = (0.3, -0.5, 1.7, -2.4, 0.45, -1.3, 2.2, -0.7)


def loss_inputs(
    loss: Loss,
    problem_type: str,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    away_from_kinks: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """Leaf logits (requiring grad), labels and extra inputs shaped as the trainer passes them to ``loss``.

    Sets the class counts of losses that need them; labels repeat classes so contrastive losses have positives.
    """
    generator = torch.Generator().manual_seed(seed)
    num_labels = NUM_CLASSES if problem_type == "classification" else 1
    logits = torch.randn(BATCH, loss.head_size(num_labels), generator=generator, dtype=torch.float64)
    if problem_type == "classification":
        labels = torch.arange(BATCH) % NUM_CLASSES
        if loss.needs_class_counts:
            loss.set_class_counts(list(CLASS_COUNTS))
    elif away_from_kinks:
        labels = (logits[:, 0] - torch.tensor(RESIDUALS, dtype=torch.float64)).to(dtype)
    else:
        labels = torch.randn(BATCH, generator=generator, dtype=torch.float64).to(dtype)
    extra = {}
    if loss.needs_embeddings:
        embeddings = torch.randn(BATCH, EMBEDDING_SIZE, generator=generator, dtype=torch.float64)
        extra["embeddings"] = embeddings.to(dtype).requires_grad_()
    if problem_type == "regression" and dtype != torch.float64:
        labels = labels.float()
    return logits.to(dtype).requires_grad_(), labels, extra


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """This process's torch threads set to ``threads`` inside the block, restored afterwards.

    Results are compared exactly only at one thread count: another count splits float sums differently (on the real
    model a trec run scored macro-F1 0.65919 with 1 thread and 0.65935 with 2), and training amplifies those last
    digits, so no tolerance derived from one sum's rounding would bound a trained run's metrics.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
