"""Stressors: seeded changes to a task's training split, named in the task spec (``bench.taskspec``), that make the
data harder.

Only the training split changes, except ``val_noise``, which flips validation labels (the split checkpoint selection
scores); the test split stays clean. Every draw is seeded by the run seed and the
stressor's position in the spec, never by the loss, so every loss of one seed trains on exactly the same examples
and labels: comparisons stay paired.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from bench.data import training_subset
from bench.taskspec import SUBSET_STRESSORS, VALIDATION_STRESSORS, Stressor

if TYPE_CHECKING:
    import datasets

VERSION = "1"  # bump when a stressor's draw changes: it is part of a stressed run's task version


# --- the draws: labels in, (kept indices, new labels) out --------------------------------------------------------


def symmetric_noise(labels: np.ndarray, rate: float, num_labels: int, _targets, rng) -> tuple[np.ndarray, np.ndarray]:
    """round(rate * n) examples, drawn uniformly, each get a uniformly drawn *different* class."""
    noisy = labels.copy()
    flip = rng.choice(len(labels), size=round(rate * len(labels)), replace=False)
    noisy[flip] = (labels[flip] + rng.integers(1, num_labels, size=len(flip))) % num_labels
    return np.arange(len(labels)), noisy


def asymmetric_noise(labels: np.ndarray, rate: float, num_labels: int, targets, rng) -> tuple[np.ndarray, np.ndarray]:
    """round(rate * n_c) examples of each class c are flipped to the class ``targets[c]`` (class-conditional)."""
    noisy = labels.copy()
    for label in range(num_labels):
        members = np.flatnonzero(labels == label)
        flip = rng.choice(members, size=round(rate * len(members)), replace=False)
        noisy[flip] = targets[label]
    return np.arange(len(labels)), noisy


def long_tail(labels: np.ndarray, ratio: float, num_labels: int, _targets, rng) -> tuple[np.ndarray, np.ndarray]:
    """Exponential profile over the classes ranked by size: the class of rank i keeps
    floor(n_max * ratio ** (i / (K - 1))) examples (at least 1), so the rarest keeps ratio x the largest. A class
    already below its target keeps all its examples. For two classes: minority = ratio x majority.
    (Cui et al., CVPR 2019; Cao et al., NeurIPS 2019.)"""
    counts = np.bincount(labels, minlength=num_labels)
    present = [label for label in np.argsort(-counts, kind="stable") if counts[label] > 0]
    largest = counts[present[0]]
    keep = []
    for rank, label in enumerate(present):
        exponent = rank / (len(present) - 1) if len(present) > 1 else 0.0
        target = max(1, int(largest * ratio**exponent))
        members = np.flatnonzero(labels == label)
        keep.append(rng.choice(members, size=min(target, len(members)), replace=False))
    indices = np.sort(np.concatenate(keep))
    return indices, labels[indices]


STRESS_DRAWS: dict[str, Callable] = {"noise": symmetric_noise, "noise_asym": asymmetric_noise, "imbalance": long_tail}


def few_shot(labels: np.ndarray, k: int, problem_type: str, rng) -> np.ndarray:
    """k examples per class (k in all for regression), drawn with the run's seed."""
    if problem_type != "classification":
        if k > len(labels):
            raise ValueError(f"fewshot={k} asks for more than the {len(labels)} training examples")
        return np.sort(rng.choice(len(labels), size=k, replace=False))
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if len(members) < k:
            raise ValueError(f"fewshot={k}: class {label} has only {len(members)} training examples")
        chosen.append(rng.choice(members, size=k, replace=False))
    return np.sort(np.concatenate(chosen))


def _rng(seed: int, position: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, position, zlib.crc32(name.encode())])


def stress_training_split(
    train: datasets.Dataset,
    stressors: tuple[Stressor, ...],
    *,
    seed: int,
    problem_type: str,
    num_labels: int,
    noise_targets: tuple[int, ...],
    train_size: int | None,
    split_seed: int,
) -> datasets.Dataset:
    """The training split a run trains on.

    Without ``train`` or ``fewshot``, the ``train_size`` subset (drawn with the task's split seed, the same for every
    run seed) comes first; then each stressor in order. Adds a ``clean_label`` column (the label before any noise),
    which the runner uses to measure the realised noise rate and drops before training.
    """
    stratify = problem_type == "classification"
    if not any(s.name in SUBSET_STRESSORS for s in stressors):
        train = training_subset(train, train_size, seed=split_seed, stratify=stratify)
    train = train.add_column("clean_label", list(train["label"]))
    targets = np.asarray(noise_targets or [(label + 1) % num_labels for label in range(num_labels)])
    for position, stressor in enumerate(stressors):
        rng = _rng(seed, position, stressor.name)
        labels = np.asarray(train["label"])
        if stressor.name in VALIDATION_STRESSORS:
            continue  # stress_validation_split
        if stressor.name == "train":
            train = training_subset(train, int(stressor.value), seed=split_seed, stratify=stratify)
        elif stressor.name == "fewshot":
            train = train.select(few_shot(labels, int(stressor.value), problem_type, rng).tolist())
        else:
            draw = STRESS_DRAWS[stressor.name]
            indices, new_labels = draw(labels, stressor.value, num_labels, targets, rng)
            feature = train.features["label"]
            train = train.select(indices.tolist()).remove_columns("label")
            train = train.add_column("label", new_labels.tolist()).cast_column("label", feature)
    return train


def stress_validation_split(
    validation: datasets.Dataset, stressors: tuple[Stressor, ...], *, seed: int, num_labels: int
) -> datasets.Dataset:
    """The validation split with ``val_noise``: that share of its labels flipped to a uniformly drawn other class
    (``symmetric_noise``), seeded by the run seed and the stressor's position, never by the loss. Without it the
    split is returned unchanged."""
    for position, stressor in enumerate(stressors):
        if stressor.name in VALIDATION_STRESSORS:
            labels = np.asarray(validation["label"])
            _, noisy = symmetric_noise(
                labels, float(stressor.value), num_labels, None, _rng(seed, position, stressor.name)
            )
            feature = validation.features["label"]
            validation = validation.rename_column("label", "label_before_noise").add_column("label", noisy.tolist())
            validation = validation.cast_column("label", feature).remove_columns("label_before_noise")
    return validation
