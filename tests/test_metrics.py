"""bench.metrics.compute_metrics against scikit-learn and SciPy on fixed arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_absolute_error, mean_squared_error

from bench.metrics import HIGHER_IS_BETTER, compute_metrics

CLASS_LOGITS = np.array(
    [[2.0, 0.1, -1.0], [0.3, 0.2, 0.9], [-1.0, 3.0, 0.0], [0.5, 0.4, 0.1], [0.0, 0.2, 0.1], [1.0, -2.0, 4.0]]
)
CLASS_LABELS = np.array([0, 2, 1, 1, 1, 0])
CLASS_PREDICTIONS = np.array([0, 2, 1, 0, 1, 2])  # argmax of CLASS_LOGITS

REGRESSION_PREDICTIONS = np.array([0.5, -1.2, 2.0, 3.1, 0.0, -0.4, 1.7])
REGRESSION_LABELS = np.array([0.2, -1.0, 2.5, 2.0, 0.3, -1.5, 1.0])


def test_classification_matches_sklearn() -> None:
    assert (CLASS_LOGITS.argmax(axis=-1) == CLASS_PREDICTIONS).all()
    metrics = compute_metrics("classification", CLASS_LOGITS, CLASS_LABELS)
    expected = {
        "accuracy": accuracy_score(CLASS_LABELS, CLASS_PREDICTIONS),
        "f1_macro": f1_score(CLASS_LABELS, CLASS_PREDICTIONS, average="macro"),
        "mcc": matthews_corrcoef(CLASS_LABELS, CLASS_PREDICTIONS),
    }
    assert metrics == pytest.approx(expected)
    assert metrics["accuracy"] == pytest.approx(4 / 6)


def regression_expected(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "pearson": pearsonr(predictions, labels).statistic,
        "spearman": spearmanr(predictions, labels).statistic,
        "mse": mean_squared_error(labels, predictions),
        "mae": mean_absolute_error(labels, predictions),
    }


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_regression_matches_scipy_sklearn(shape: str) -> None:
    logits = REGRESSION_PREDICTIONS if shape == "flat" else REGRESSION_PREDICTIONS[:, None]
    metrics = compute_metrics("regression", logits, REGRESSION_LABELS)
    assert metrics == pytest.approx(regression_expected(REGRESSION_PREDICTIONS, REGRESSION_LABELS))


def test_regression_column_logits_use_first_column() -> None:
    logits = np.stack([REGRESSION_PREDICTIONS, np.full_like(REGRESSION_PREDICTIONS, 100.0)], axis=1)  # (N, 2)
    metrics = compute_metrics("regression", logits, REGRESSION_LABELS)
    assert metrics == pytest.approx(regression_expected(REGRESSION_PREDICTIONS, REGRESSION_LABELS))


def test_constant_predictions_give_nan_correlations() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ConstantInputWarning either
        metrics = compute_metrics("regression", np.full((5, 1), 0.5), np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert math.isnan(metrics["pearson"]) and math.isnan(metrics["spearman"])
    assert metrics["mse"] == pytest.approx(np.mean((0.5 - np.arange(5.0)) ** 2))
    assert metrics["mae"] == pytest.approx(np.mean(np.abs(0.5 - np.arange(5.0))))


@pytest.mark.parametrize("problem_type", ["classification", "regression"])
def test_metric_names_have_direction(problem_type: str) -> None:
    logits = CLASS_LOGITS if problem_type == "classification" else REGRESSION_PREDICTIONS[:, None]
    labels = CLASS_LABELS if problem_type == "classification" else REGRESSION_LABELS
    assert set(compute_metrics(problem_type, logits, labels)) <= set(HIGHER_IS_BETTER)
