"""The data of a run, shared by both protocols: the tokenizer and a task's tokenized splits (each computed once per
process), the run's training split (subset and stressors) and its label statistics."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import datasets
import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from bench.api.task import TaskMetadata
from bench.config import RunSpec
from bench.data import loaded_task, tokenize
from bench.registry import TASKS
from bench.stressors import stress_training_split, stress_validation_split


@cache
def tokenizer(model_path: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer, loaded once per process."""
    return AutoTokenizer.from_pretrained(model_path)


@cache
def tokenized_splits(task_name: str, model_path: str, max_length: int) -> datasets.DatasetDict:
    """A task's tokenized splits, computed once per process and shared by every loss, seed and stressor."""
    meta = TASKS.get(task_name).metadata
    splits = tokenize(loaded_task(task_name), tokenizer(model_path), meta.text_fields, max_length)
    # Evaluation order does not change the metrics; sorting by length makes each padded batch nearly full.
    for name in ("validation", "test"):
        lengths = [len(ids) for ids in splits[name]["input_ids"]]
        splits[name] = splits[name].select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return splits


def training_split(
    spec: RunSpec, model_path: str, splits: datasets.DatasetDict | None = None
) -> tuple[datasets.Dataset, datasets.DatasetDict]:
    """The run's (possibly stressed) training split, with a ``clean_label`` column, and the task's other splits (the
    validation split with its labels flipped under ``val_noise``; the test split always clean).

    ``splits`` replaces the task's tokenized splits by the same rows with more columns (the probe's row index).
    """
    meta = TASKS.get(spec.task.base).metadata
    if splits is None:
        splits = tokenized_splits(spec.task.base, model_path, spec.train.max_length)
    train = stress_training_split(
        splits["train"],
        spec.task.stressors,
        seed=spec.seed,
        problem_type=meta.problem_type,
        num_labels=meta.num_labels,
        noise_targets=tuple(meta.label_names.index(target) for target in meta.noise_targets),
        train_size=spec.train.train_size,
        split_seed=meta.split_seed,
    )
    validation = stress_validation_split(
        splits["validation"], spec.task.stressors, seed=spec.seed, num_labels=meta.num_labels
    )
    if validation is not splits["validation"]:
        splits = datasets.DatasetDict({**splits, "validation": validation})
    return train, splits


@dataclass(frozen=True)
class LabelStats:
    """The training labels a run trains on: the realised noise rate (the share of labels that differ from the clean
    ones) and, for classification, the class counts (None for regression); for regression, the mean target (None for
    classification), the constant predictor of ``bench.collapse``."""

    noise_rate: float
    class_counts: list[int] | None
    train_mean: float | None = None


def label_stats(train: datasets.Dataset, meta: TaskMetadata) -> LabelStats:
    """The ``LabelStats`` of a training split with a ``clean_label`` column."""
    noise_rate = float(np.mean(np.asarray(train["label"]) != np.asarray(train["clean_label"])))
    if meta.problem_type != "classification":
        return LabelStats(noise_rate, None, float(np.mean(np.asarray(train["label"], dtype=np.float64))))
    return LabelStats(noise_rate, np.bincount(train["label"], minlength=meta.num_labels).tolist())
