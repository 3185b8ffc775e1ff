"""bench.metrics.compute_metrics against scikit-learn and SciPy on fixed arrays."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, mean_absolute_error, mean_squared_error

from bench.metric_table import HIGHER_IS_BETTER, METRIC_RANGE, METRICS, METRICS_BY_PROBLEM_TYPE, range_text
from bench.metrics import DENSITY_BINS, ECE_BINS, compute_metrics, fit_temperature, temperature_metrics

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
    assert {name: metrics[name] for name in expected} == pytest.approx(expected)
    assert metrics["accuracy"] == pytest.approx(4 / 6)


def regression_expected(predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import r2_score

    return {
        "r2": r2_score(labels, predictions),
        "pearson": pearsonr(predictions, labels).statistic,
        "spearman": spearmanr(predictions, labels).statistic,
        "mse": mean_squared_error(labels, predictions),
        "mae": mean_absolute_error(labels, predictions),
    }


@pytest.mark.parametrize("shape", ["flat", "column"])
def test_regression_matches_scipy_sklearn(shape: str) -> None:
    logits = REGRESSION_PREDICTIONS if shape == "flat" else REGRESSION_PREDICTIONS[:, None]
    metrics = compute_metrics("regression", logits, REGRESSION_LABELS)
    expected = regression_expected(REGRESSION_PREDICTIONS, REGRESSION_LABELS)
    assert {name: metrics[name] for name in expected} == pytest.approx(expected)


def test_regression_column_logits_use_first_column() -> None:
    logits = np.stack([REGRESSION_PREDICTIONS, np.full_like(REGRESSION_PREDICTIONS, 100.0)], axis=1)  # (N, 2)
    metrics = compute_metrics("regression", logits, REGRESSION_LABELS)
    expected = regression_expected(REGRESSION_PREDICTIONS, REGRESSION_LABELS)
    assert {name: metrics[name] for name in expected} == pytest.approx(expected)


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
    computed = set(compute_metrics(problem_type, logits, labels))
    if problem_type == "classification":  # a classification run adds the metrics after temperature scaling
        computed |= set(temperature_metrics(logits, labels, logits, labels)) - {"temperature"}
    assert computed <= set(HIGHER_IS_BETTER)
    # and the report shows exactly the metrics that are computed, each described in the metric table
    assert set(METRICS_BY_PROBLEM_TYPE[problem_type]) == computed
    assert all(METRICS[name].problem_type == problem_type for name in METRICS_BY_PROBLEM_TYPE[problem_type])


def test_every_metric_is_described_with_the_numbers_the_computation_uses() -> None:
    assert all(metric.description.strip() and metric.name == name for name, metric in METRICS.items())
    assert f"over {ECE_BINS} equal-width confidence bins" in METRICS["ece"].description
    assert f"in a {DENSITY_BINS}-bin histogram" in METRICS["mae_rare"].description
    assert [METRICS[name].arrow for name in ("accuracy", "ece", "r2", "mae")] == ["↑", "↓", "↑", "↓"]
    assert [range_text(name) for name in ("accuracy", "mcc", "r2", "nll", "loss")] == [
        "[0, 1]",
        "[−1, 1]",
        "(−∞, 1]",
        "[0, ∞)",
        "(−∞, ∞)",
    ]


# --- calibration, per-class and regression-region metrics ----------------------------------------------------------


def test_probability_metrics_match_sklearn_and_a_loop() -> None:
    from sklearn.metrics import log_loss

    metrics = compute_metrics("classification", CLASS_LOGITS, CLASS_LABELS)
    probabilities = np.exp(CLASS_LOGITS) / np.exp(CLASS_LOGITS).sum(axis=1, keepdims=True)
    assert metrics["nll"] == pytest.approx(log_loss(CLASS_LABELS, probabilities, labels=[0, 1, 2]))
    brier = np.mean(
        [sum((p[k] - (k == y)) ** 2 for k in range(3)) for p, y in zip(probabilities, CLASS_LABELS, strict=True)]
    )
    assert metrics["brier"] == pytest.approx(brier)


def test_ece_by_hand() -> None:
    """Two bins used: confidences 0.9, 0.9 (one right) and 0.6 (right): |0.5 - 0.9| * 2/3 + |1 - 0.6| * 1/3."""
    from bench.metrics import expected_calibration_error

    probabilities = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4]])
    labels = np.array([0, 0, 0])
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.4 * 2 / 3 + 0.4 / 3)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == pytest.approx(0.0)


def test_recalls_match_sklearn_and_the_rarest_class_comes_from_training_counts() -> None:
    from sklearn.metrics import recall_score

    per_class = recall_score(CLASS_LABELS, CLASS_PREDICTIONS, average=None)
    metrics = compute_metrics("classification", CLASS_LOGITS, CLASS_LABELS)
    assert metrics["recall_macro"] == pytest.approx(per_class.mean())
    assert metrics["recall_rarest"] == pytest.approx(per_class[2])  # class 2 appears once in the labels
    with_counts = compute_metrics("classification", CLASS_LOGITS, CLASS_LABELS, class_counts=[50, 3, 40])
    assert with_counts["recall_rarest"] == pytest.approx(per_class[1])


def test_regression_r2_and_target_regions() -> None:
    from sklearn.metrics import r2_score

    metrics = compute_metrics("regression", REGRESSION_PREDICTIONS[:, None], REGRESSION_LABELS)
    assert metrics["r2"] == pytest.approx(r2_score(REGRESSION_LABELS, REGRESSION_PREDICTIONS))
    # 30 targets near 0 and 9 far out at 10: the far ones are the rarest third; only they are mispredicted.
    targets = np.concatenate([np.linspace(-0.5, 0.5, 30), np.full(9, 10.0)])
    predictions = np.where(targets > 5, 8.0, targets)
    regions = compute_metrics("regression", predictions[:, None], targets)
    assert regions["mae_rare"] == pytest.approx(2.0 * 9 / 13)  # 13 = 39 // 3 rarest: the 9 far + 4 sparse ones
    assert regions["mae_common"] == pytest.approx(0.0)


# --- ranges ---------------------------------------------------------------------------------------------------------


def test_every_metric_declares_its_range_beside_its_direction() -> None:
    assert set(METRIC_RANGE) == set(HIGHER_IS_BETTER)
    expected = {
        **dict.fromkeys(("accuracy", "f1_macro", "recall_macro", "recall_rarest", "ece", "ece_ts"), (0.0, 1.0)),
        **dict.fromkeys(("mcc", "pearson", "spearman"), (-1.0, 1.0)),
        "r2": (-math.inf, 1.0),
        **dict.fromkeys(("mse", "mae", "mae_rare", "mae_common", "nll", "nll_ts"), (0.0, math.inf)),
        "brier": (0.0, 2.0),  # summed over classes
        "loss": (-math.inf, math.inf),
    }
    assert METRIC_RANGE == expected


def test_extreme_predictions_stay_inside_the_declared_ranges() -> None:
    """All probability on a wrong class reaches Brier's upper bound 2; a perfect model reaches the other ends."""
    labels = np.array([0, 1, 2, 0, 1, 2])
    wrong = np.eye(3)[(labels + 1) % 3] * 50.0
    right = np.eye(3)[labels] * 50.0
    for logits in (wrong, right, CLASS_LOGITS):
        for name, value in compute_metrics("classification", logits, labels).items():
            low, high = METRIC_RANGE[name]
            assert low - 1e-12 <= value <= high + 1e-12, (name, value)
    assert compute_metrics("classification", wrong, labels)["brier"] == pytest.approx(2.0)
    assert compute_metrics("classification", wrong, labels)["mcc"] == pytest.approx(-0.5)
    for predictions in (REGRESSION_LABELS, -REGRESSION_LABELS, REGRESSION_PREDICTIONS):
        for name, value in compute_metrics("regression", predictions[:, None], REGRESSION_LABELS).items():
            low, high = METRIC_RANGE[name]
            assert low - 1e-12 <= value <= high + 1e-12, (name, value)


def calibrated_sample(n: int = 20000, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, classes))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=p) for p in probabilities])
    return logits, labels


def test_temperature_is_one_for_calibrated_logits() -> None:
    logits, labels = calibrated_sample()
    assert fit_temperature(logits, labels) == pytest.approx(1.0, abs=0.05)


def test_temperature_scaling_lowers_ece_and_nll_of_overconfident_logits() -> None:
    logits, labels = calibrated_sample()
    validation, test = slice(0, 10000), slice(10000, None)
    overconfident = 4.0 * logits
    scaled = temperature_metrics(overconfident[test], labels[test], overconfident[validation], labels[validation])
    before = compute_metrics("classification", overconfident[test], labels[test])
    assert scaled["temperature"] == pytest.approx(4.0, rel=0.1)
    assert scaled["ece_ts"] < before["ece"] / 3 and scaled["nll_ts"] < before["nll"]


def test_temperature_scaling_is_finite_for_extreme_logits() -> None:
    logits = np.array([[1e4, -1e4], [-3e4, 3e4], [5e3, 0.0], [0.0, 1e5]])
    labels = np.array([0, 0, 1, 1])  # two confidently wrong
    scaled = temperature_metrics(logits, labels, logits, labels)
    assert all(math.isfinite(value) for value in scaled.values())
    assert scaled["temperature"] > 1 and 0 <= scaled["ece_ts"] <= 1
