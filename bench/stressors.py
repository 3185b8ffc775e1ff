"""Stressors: seeded changes to a task's training split, named in the task spec, that make the data harder.

    rt_polarity@noise=0.3              30% of training labels flipped to a uniformly drawn other class
    trec@noise_asym=0.3                30% of each class flipped to its confusable class
    trec@imbalance=0.1                 long-tailed: the rarest class keeps 0.1 x the largest class's examples
    sms_spam@fewshot=32                32 training examples per class (regression: 32 in all)
    vader_movies@train=2000            a training subset of 2000 (instead of --train-size)
    trec@imbalance=0.1@noise=0.2       stressors compose, applied left to right

Only the training split changes: validation and test stay clean. Every draw is seeded by the run seed and the
stressor's position in the spec, never by the loss, so every loss of one seed trains on exactly the same examples
and labels: comparisons stay paired.
"""

from __future__ import annotations

import difflib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bench.data import training_subset

if TYPE_CHECKING:  # the spec parsing above the draws is needed before datasets is imported
    import datasets

SEPARATOR = "@"
VERSION = "1"  # bump when a stressor's draw changes: it is part of a stressed run's task version


@dataclass(frozen=True)
class StressorKind:
    """A stressor's value type and valid range, and whether it needs class labels."""

    value_type: type
    low: float
    high: float
    low_inclusive: bool
    high_inclusive: bool
    classification_only: bool
    example: str

    def interval(self) -> str:
        return f"{'[' if self.low_inclusive else '('}{self.low}, {self.high}{']' if self.high_inclusive else ')'}"

    def contains(self, value: float) -> bool:
        above = value >= self.low if self.low_inclusive else value > self.low
        below = value <= self.high if self.high_inclusive else value < self.high
        return above and below


INF = float("inf")
KINDS = {
    "noise": StressorKind(float, 0.0, 1.0, True, False, True, "noise=0.3"),
    "noise_asym": StressorKind(float, 0.0, 1.0, True, False, True, "noise_asym=0.3"),
    "imbalance": StressorKind(float, 0.0, 1.0, False, True, True, "imbalance=0.1"),
    "fewshot": StressorKind(int, 1, INF, True, False, False, "fewshot=32"),
    "train": StressorKind(int, 1, INF, True, False, False, "train=2000"),
}
SUBSET_STRESSORS = ("fewshot", "train")  # these choose the training examples, in place of --train-size


@dataclass(frozen=True)
class Stressor:
    name: str
    value: float | int

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


def parse_task_spec(spec: str) -> tuple[str, tuple[Stressor, ...]]:
    """Split ``'trec@imbalance=0.1@noise=0.2'`` into the task name and its stressors, checked and typed."""
    base, *parts = spec.strip().split(SEPARATOR)
    stressors: list[Stressor] = []
    for part in parts:
        key, sep, raw = part.strip().partition("=")
        key = key.strip()
        if key not in KINDS:
            close = difflib.get_close_matches(key, KINDS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            valid = ", ".join(kind.example for kind in KINDS.values())
            raise ValueError(f"Unknown stressor {key!r} in task spec {spec!r}.{hint} Valid stressors: {valid}")
        kind = KINDS[key]
        if not sep:
            raise ValueError(f"Stressor {key!r} in {spec!r} needs a value, e.g. '{base}@{kind.example}'")
        try:
            value = kind.value_type(raw.strip())
        except ValueError:
            name = kind.value_type.__name__
            raise ValueError(f"Stressor {key}={raw!r} in {spec!r} is not a valid {name}, e.g. {kind.example}") from None
        if not kind.contains(value):
            raise ValueError(f"Stressor {key}={value!r} in {spec!r} is out of range; valid range is {kind.interval()}")
        if any(s.name == key for s in stressors):
            raise ValueError(f"Stressor {key!r} appears twice in {spec!r}")
        stressors.append(Stressor(key, value))
    subsets = [s.name for s in stressors if s.name in SUBSET_STRESSORS]
    if len(subsets) > 1:
        raise ValueError(f"Task spec {spec!r} has both {' and '.join(subsets)}: each chooses the training examples")
    return base.strip(), tuple(stressors)


def task_spec(base: str, stressors: tuple[Stressor, ...]) -> str:
    """The canonical spec string: ``noise=0.30`` and ``noise=.3`` both become ``noise=0.3``."""
    return SEPARATOR.join([base, *(str(s) for s in stressors)])


def check_applicable(base: str, stressors: tuple[Stressor, ...], problem_type: str) -> None:
    """Raise before any training when a stressor needs class labels and the task is a regression."""
    for stressor in stressors:
        if KINDS[stressor.name].classification_only and problem_type != "classification":
            raise ValueError(
                f"Stressor {stressor} needs class labels; task {base!r} is {problem_type}. "
                f"For regression tasks use {' or '.join(SUBSET_STRESSORS)}."
            )


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
