"""Collapsed runs: a run whose test main metric is no better than a constant prediction learned nothing usable.

The constant is what a model that ignores its input would learn from the training split: its majority class
(classification; ties go to the lowest class id) or its mean target (regression). A run is ``collapsed`` when its
test main metric is no better than that constant's score on the same test labels (or is not a number). Correlations
of a constant are undefined; they count as 0.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bench.api.task import TaskMetadata
from bench.metrics import compute_metrics

UNDEFINED_FOR_A_CONSTANT = {"pearson": 0.0, "spearman": 0.0}


def constant_outputs(
    problem_type: str, test_size: int, *, class_counts: Sequence[int] | None = None, train_mean: float | None = None
) -> np.ndarray:
    """The outputs of the constant predictor for ``test_size`` examples: one-hot logits of the training majority
    class, or the training mean target."""
    if problem_type == "classification":
        if not class_counts:
            raise ValueError("a classification run's constant predictor needs the training class counts")
        logits = np.zeros((test_size, len(class_counts)))
        logits[:, int(np.argmax(class_counts))] = 1.0
        return logits
    if train_mean is None or not math.isfinite(train_mean):
        raise ValueError(f"a regression run's constant predictor needs a finite training mean, got {train_mean}")
    return np.full((test_size, 1), float(train_mean))


def constant_score(problem_type: str, metric: str, test_labels: np.ndarray, **training: object) -> float:
    """``metric`` of the constant predictor (``constant_outputs``) on ``test_labels``."""
    if metric in UNDEFINED_FOR_A_CONSTANT and problem_type == "regression":
        return UNDEFINED_FOR_A_CONSTANT[metric]
    outputs = constant_outputs(problem_type, len(test_labels), **training)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # precision of never-predicted classes is undefined: scikit-learn warns
        return float(compute_metrics(problem_type, outputs, np.asarray(test_labels))[metric])


def is_collapsed(value: float, constant: float, *, higher_is_better: bool) -> bool:
    """Whether a run's test main metric ``value`` is no better than the constant predictor's ``constant``."""
    if not math.isfinite(value):
        return True
    return value <= constant if higher_is_better else value >= constant


def collapse_columns(
    meta: TaskMetadata,
    test_metrics: Mapping[str, float],
    test_labels: np.ndarray,
    *,
    class_counts: Sequence[int] | None = None,
    train_mean: float | None = None,
) -> dict[str, Any]:
    """``test_constant_<main metric>``, the main metric of the constant predictor learned from the run's training
    split (its majority class, from ``class_counts``, or its mean target ``train_mean``) on the same ``test_labels``,
    and ``collapsed``: whether the run's test main metric is no better than that ."""
    metric = meta.main_metric
    constant = constant_score(meta.problem_type, metric, test_labels, class_counts=class_counts, train_mean=train_mean)
    value = float(test_metrics[metric])
    return {
        f"test_constant_{metric}": constant,
        "collapsed": is_collapsed(value, constant, higher_is_better=meta.higher_is_better),
    }
