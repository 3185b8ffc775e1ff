"""A task's data, step by step: its loaded splits (once per process), a fixed training subset, tokenized inputs."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from bench.registry import TASKS

if TYPE_CHECKING:  # imported where used: the command line imports this module (via the stressors) before training
    import datasets
    from transformers import PreTrainedTokenizerBase


@cache
def loaded_task(name: str) -> datasets.DatasetDict:
    """A registered task's ``load()`` (its cleaned splits), once per process: the runs and the data fingerprint
    (``bench.fingerprint.data_hash``) share it."""
    return TASKS.get(name)().load()


def training_subset(train: datasets.Dataset, size: int | None, *, seed: int, stratify: bool) -> datasets.Dataset:
    """The first ``size`` examples of a seeded (stratified for classification) draw; the full split when None.

    The draw depends on the task's split seed only, so every loss and every run seed trains on the same examples.
    """
    if size is None or size >= len(train):
        return train
    if size < 1:
        raise ValueError(f"train size must be a positive integer, got {size}")
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(train))
    labels = np.asarray(train["label"]) if stratify else None
    min_class = np.bincount(labels).min() if stratify else 0
    if stratify and (size < len(np.unique(labels)) or min_class < 2):
        labels = None  # too small to stratify: fall back to a plain seeded draw
    chosen, _ = train_test_split(indices, train_size=size, random_state=seed, stratify=labels)
    return train.select(sorted(chosen.tolist()))


def tokenize(
    splits: datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    text_fields: tuple[str, ...],
    max_length: int,
) -> datasets.DatasetDict:
    """Token ids truncated to ``max_length`` and not padded: the collator pads each batch to its longest example."""

    def encode(batch: dict) -> dict:
        texts = [batch[field] for field in text_fields]
        return tokenizer(*texts, truncation=True, max_length=max_length)

    columns = list(text_fields)
    return splits.map(encode, batched=True, remove_columns=columns, desc=None)
