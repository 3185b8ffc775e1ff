"""A task spec: a task's name and the stressors that change its training split, parsed once from the user's string.

    rt_polarity@noise=0.3              30% of training labels flipped to a uniformly drawn other class
    trec@noise_asym=0.3                30% of each class flipped to its confusable class
    trec@imbalance=0.1                 long-tailed: the rarest class keeps 0.1 x the largest class's examples
    sms_spam@fewshot=32                32 training examples per class (regression: 32 in all)
    vader_movies@train=2000            a training subset of 2000 (instead of --train-size)
    trec@imbalance=0.1@noise=0.2       stressors compose, applied left to right
    trec@noise=0.4@val_noise=0.4       also 40% of validation labels flipped (symmetric): the checkpoint is chosen on a
                                       noisy validation split, as it would be in practice; the test split stays clean

The matrix builder parses each spec into a ``TaskSpec`` and every run carries that object (``RunSpec.task``); the
draws themselves are in ``bench.stressors``. Light on imports: the command line checks specs before training loads.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

SEPARATOR = "@"


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
    "val_noise": StressorKind(float, 0.0, 1.0, True, False, True, "val_noise=0.4"),
}
VALIDATION_STRESSORS = ("val_noise",)  # these change the validation split (checkpoint selection), not training
SUBSET_STRESSORS = ("fewshot", "train")  # these choose the training examples, in place of --train-size


@dataclass(frozen=True)
class Stressor:
    name: str
    value: float | int

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


@dataclass(frozen=True)
class TaskSpec:
    """A registered task's name (``base``) and its stressors, in the order they apply; ``str()`` is the canonical
    spec, which names the task in rows, reports and the run's identity."""

    base: str
    stressors: tuple[Stressor, ...] = ()

    @classmethod
    def parse(cls, spec: str) -> TaskSpec:
        """``'trec@imbalance=0.1@noise=0.2'``, checked and typed (the name is not looked up: it may be a pattern)."""
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
                raise ValueError(
                    f"Stressor {key}={raw!r} in {spec!r} is not a valid {name}, e.g. {kind.example}"
                ) from None
            if not kind.contains(value):
                raise ValueError(
                    f"Stressor {key}={value!r} in {spec!r} is out of range; valid range is {kind.interval()}"
                )
            if any(s.name == key for s in stressors):
                raise ValueError(f"Stressor {key!r} appears twice in {spec!r}")
            stressors.append(Stressor(key, value))
        subsets = [s.name for s in stressors if s.name in SUBSET_STRESSORS]
        if len(subsets) > 1:
            raise ValueError(f"Task spec {spec!r} has both {' and '.join(subsets)}: each chooses the training examples")
        return cls(base.strip(), tuple(stressors))

    def __str__(self) -> str:
        """The canonical spec: ``noise=0.30`` and ``noise=.3`` both become ``noise=0.3``."""
        return SEPARATOR.join([self.base, *(str(s) for s in self.stressors)])

    def check_applicable(self, problem_type: str) -> None:
        """Raise before any training when a stressor needs class labels and the task is a regression."""
        for stressor in self.stressors:
            if KINDS[stressor.name].classification_only and problem_type != "classification":
                raise ValueError(
                    f"Stressor {stressor} needs class labels; task {self.base!r} is {problem_type}. "
                    f"For regression tasks use {' or '.join(SUBSET_STRESSORS)}."
                )
