"""Collapsed runs: no better than predicting the training split's majority class or mean."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.collapse import constant_outputs, constant_score, is_collapsed
from bench.metrics import compute_metrics


def test_majority_class_scores():
    test = np.array([0, 0, 0, 1, 2, 2])
    # training majority is class 2 (not the test's majority): accuracy 2/6
    assert constant_score("classification", "accuracy", test, class_counts=[5, 1, 9]) == pytest.approx(2 / 6)
    # macro-F1 of always predicting class 0 (the test majority here): F1 of class 0 = 2*0.5*1/(1.5) = 2/3, others 0
    assert constant_score("classification", "f1_macro", test, class_counts=[9, 1, 5]) == pytest.approx((2 / 3) / 3)
    assert constant_score("classification", "mcc", test, class_counts=[9, 1, 5]) == 0.0


def test_mean_predictor_scores():
    test = np.array([1.0, 2.0, 4.0])
    assert constant_score("regression", "mse", test, train_mean=2.0) == pytest.approx((1 + 0 + 4) / 3)
    assert constant_score("regression", "mae", test, train_mean=2.0) == pytest.approx(1.0)
    assert constant_score("regression", "pearson", test, train_mean=2.0) == 0.0


def test_a_model_that_predicts_the_majority_is_collapsed_and_a_learner_is_not():
    test = np.array([0, 1, 1, 1, 0, 1])
    constant = constant_score("classification", "accuracy", test, class_counts=[3, 7])
    majority = compute_metrics("classification", constant_outputs("classification", 6, class_counts=[3, 7]), test)
    assert is_collapsed(majority["accuracy"], constant, higher_is_better=True)
    perfect = np.eye(2)[test] * 5
    assert not is_collapsed(
        compute_metrics("classification", perfect, test)["accuracy"], constant, higher_is_better=True
    )


def test_direction_nan_and_bad_inputs():
    assert is_collapsed(1.5, 1.0, higher_is_better=False)  # mse above the mean predictor's
    assert not is_collapsed(0.5, 1.0, higher_is_better=False)
    assert is_collapsed(math.nan, 0.0, higher_is_better=True)  # e.g. Pearson of constant predictions
    with pytest.raises(ValueError, match="class counts"):
        constant_outputs("classification", 3)
    with pytest.raises(ValueError, match="finite training mean"):
        constant_outputs("regression", 3, train_mean=math.nan)
