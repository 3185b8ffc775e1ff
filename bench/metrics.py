"""Test metrics through local `evaluate` modules (hub metric scripts cannot load offline).

What each metric means, its direction and its range are in ``bench.metric_table``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import evaluate
import numpy as np
from scipy import optimize, special

MODULES_DIR = Path(__file__).parent / "evaluate_metrics"
MODULE_BY_PROBLEM_TYPE = {"classification": "classification_metrics", "regression": "regression_metrics"}
ECE_BINS = 15  # also stated in bench.metric_table's description of ece (a test checks it)
DENSITY_BINS = 20  # also stated in its description of mae_rare
LOG_TEMPERATURE_BOUNDS = (-7.0, 7.0)  # temperature scaling searches T in [e^-7, e^7], about [0.001, 1100]


@cache
def load_metric(problem_type: str) -> evaluate.EvaluationModule:
    """The local evaluate module for a problem type, loaded by path."""
    return evaluate.load(str(MODULES_DIR / MODULE_BY_PROBLEM_TYPE[problem_type]))


def predictions_from_logits(problem_type: str, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification; the first output (the mean) for regression."""
    if problem_type == "classification":
        return logits.argmax(axis=-1)
    return logits[..., 0] if logits.ndim == 2 else logits


def compute_metrics(
    problem_type: str, logits: np.ndarray, labels: np.ndarray, class_counts: list[int] | None = None
) -> dict[str, float]:
    """The task's metrics (local evaluate module) plus calibration / per-class or R^2 / target-region metrics.

    ``class_counts`` (training split) picks the rarest class; without it, the rarest class of ``labels``. The
    metrics after temperature scaling need the validation split too: ``temperature_metrics``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    predictions = predictions_from_logits(problem_type, logits)
    scores = load_metric(problem_type).compute(predictions=predictions.tolist(), references=labels.tolist())
    if problem_type == "classification":
        return {**scores, **probability_metrics(logits, labels), **recall_metrics(predictions, labels, class_counts)}
    return {**scores, **regression_extra_metrics(predictions, labels.astype(np.float64))}


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def confidence_bins(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per example: its equal-width bin of top-label confidence, the confidence, and whether the top label is right.

    Bin b holds confidences in (b / bins, (b + 1) / bins]; confidence is >= 1 / K > 0.
    """
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == labels
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    return which, confidence, correct


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    r"""Top-label ECE: sum_b |B_b| / n * |accuracy(B_b) - confidence(B_b)| over equal-width confidence bins.

    Reference: Guo et al., On Calibration of Modern Neural Networks, ICML 2017 (15 bins there too).
    """
    which, confidence, correct = confidence_bins(probabilities, labels, bins)
    total = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def probability_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ECE (15 bins), multi-class Brier score sum_k (p_k - [k = y])^2 and NLL -log p_y, averaged over examples."""
    probabilities = softmax(logits)
    one_hot = np.eye(logits.shape[-1])[labels]
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_p_y = shifted[np.arange(len(labels)), labels] - np.log(np.exp(shifted).sum(axis=-1))
    return {
        "ece": expected_calibration_error(probabilities, labels),
        "brier": float(((probabilities - one_hot) ** 2).sum(axis=-1).mean()),
        "nll": float(-log_p_y.mean()),
    }


def mean_nll(logits: np.ndarray, labels: np.ndarray) -> float:
    """-mean log softmax(logits)_y, computed stably for any finite logits."""
    log_p = special.log_softmax(np.asarray(logits, dtype=np.float64), axis=-1)
    return float(-log_p[np.arange(len(labels)), np.asarray(labels)].mean())


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    r"""The temperature T > 0 minimising the NLL of softmax(logits / T) on (validation) ``logits`` and ``labels``.

    One scalar, so the search is a bounded Brent search on log T (scipy's ``minimize_scalar``), in
    ``LOG_TEMPERATURE_BOUNDS``; T scales confidence but never changes the predicted class. T = 1 for logits that are
    already calibrated, T > 1 for over-confident ones. Reference: Guo et al., On Calibration of Modern Neural
    Networks, ICML 2017 (temperature scaling, fitted on the validation split).
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels)
    result = optimize.minimize_scalar(
        lambda log_t: mean_nll(logits / np.exp(log_t), labels),
        bounds=LOG_TEMPERATURE_BOUNDS,
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.exp(result.x))


def temperature_metrics(
    logits: np.ndarray, labels: np.ndarray, validation_logits: np.ndarray, validation_labels: np.ndarray
) -> dict[str, float]:
    """``ece_ts`` and ``nll_ts`` (classification): the test ``logits``' ECE and NLL after dividing them by the
    temperature fitted on the same weights' validation logits (``fit_temperature``), and that ``temperature`` (not a
    metric: the run's row records it as ``temperature``)."""
    temperature = fit_temperature(validation_logits, validation_labels)
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    return {
        "ece_ts": expected_calibration_error(softmax(scaled), np.asarray(labels)),
        "nll_ts": mean_nll(scaled, labels),
        "temperature": temperature,
    }


def recall_metrics(predictions: np.ndarray, labels: np.ndarray, class_counts: list[int] | None) -> dict[str, float]:
    """Macro recall over the classes present in ``labels``, and the recall of the rarest class."""
    present = np.unique(labels)
    recalls = {c: float((predictions[labels == c] == c).mean()) for c in present}
    counts = np.asarray(class_counts) if class_counts is not None else np.bincount(labels)
    rarest = min(present, key=lambda c: (counts[c] if c < len(counts) else 0, c))
    return {"recall_macro": float(np.mean(list(recalls.values()))), "recall_rarest": recalls[rarest]}


def regression_extra_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """R^2, and the mean absolute error on the rarest third of targets (lowest density in a 20-bin histogram of
    the targets) against the other two thirds: where imbalanced-regression losses should help."""
    residual_ss = ((targets - predictions) ** 2).sum()
    total_ss = ((targets - targets.mean()) ** 2).sum()
    counts, edges = np.histogram(targets, bins=DENSITY_BINS)
    density = counts[np.clip(np.searchsorted(edges, targets, side="right") - 1, 0, DENSITY_BINS - 1)]
    rare = np.zeros(len(targets), dtype=bool)
    rare[np.argsort(density, kind="stable")[: len(targets) // 3]] = True
    errors = np.abs(predictions - targets)
    return {
        "r2": float(1 - residual_ss / total_ss) if total_ss > 0 else float("nan"),
        "mae_rare": float(errors[rare].mean()) if rare.any() else float("nan"),
        "mae_common": float(errors[~rare].mean()) if (~rare).any() else float("nan"),
    }
