"""Test metrics through local `evaluate` modules (hub metric scripts cannot load offline)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import evaluate
import numpy as np

MODULES_DIR = Path(__file__).parent / "evaluate_metrics"
MODULE_BY_PROBLEM_TYPE = {"classification": "classification_metrics", "regression": "regression_metrics"}

# Metric name -> True when higher is better.
HIGHER_IS_BETTER = {
    "accuracy": True,
    "f1_macro": True,
    "mcc": True,
    "pearson": True,
    "spearman": True,
    "mse": False,
    "mae": False,
    "loss": False,
}


@cache
def load_metric(problem_type: str) -> evaluate.EvaluationModule:
    """The local evaluate module for a problem type, loaded by path."""
    return evaluate.load(str(MODULES_DIR / MODULE_BY_PROBLEM_TYPE[problem_type]))


def predictions_from_logits(problem_type: str, logits: np.ndarray) -> np.ndarray:
    """Class ids (argmax) for classification; the first output (the mean) for regression."""
    if problem_type == "classification":
        return logits.argmax(axis=-1)
    return logits[..., 0] if logits.ndim == 2 else logits


def compute_metrics(problem_type: str, logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    predictions = predictions_from_logits(problem_type, np.asarray(logits, dtype=np.float64))
    return load_metric(problem_type).compute(predictions=predictions.tolist(), references=np.asarray(labels).tolist())
