"""Collapsed runs in the results: the row's ``collapsed`` flag and constant score, and the report's counts."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pandas as pd
import pytest

from bench.analysis import analyse, collapsed_flags
from bench.api.task import TaskMetadata
from bench.collapse import collapse_columns, constant_score
from bench.config import TrainConfig
from bench.matrix import build_matrix
from bench.metrics import compute_metrics
from bench.report import render_report
from bench.results import PREDICTIONS_FILE, RUNS_DIR
from bench.runner import run_matrix
from bench.splits import label_stats
from tests.test_report import synthetic_results

CLASSIFICATION = TaskMetadata(
    problem_type="classification",
    label_names=("neg", "pos"),
    main_metric="accuracy",
    higher_is_better=True,
    source="test",
    version="0",
    description="A binary task for tests.",
)
REGRESSION = TaskMetadata(
    problem_type="regression", main_metric="mse", higher_is_better=False, source="test", version="0", description="-"
)


def test_a_run_that_predicts_the_training_majority_is_collapsed_and_a_learner_is_not():
    labels = np.array([0, 1, 1, 0, 1, 1, 1, 0])
    majority = np.tile([0.0, 3.0], (len(labels), 1))  # always class 1, the training majority
    learner = np.eye(2)[labels] * 4.0
    learner[0] = [0.0, 4.0]  # one mistake: 7/8, above the constant's 5/8
    for outputs, collapsed in ((majority, True), (learner, False)):
        metrics = compute_metrics("classification", outputs, labels)
        columns = collapse_columns(CLASSIFICATION, metrics, labels, class_counts=[10, 30])
        assert columns == {"test_constant_accuracy": pytest.approx(5 / 8), "collapsed": collapsed}


def test_a_regression_run_no_better_than_the_training_mean_is_collapsed():
    targets = np.array([1.0, 2.0, 3.0, 4.0])
    mean_of_training = np.full((4, 1), 2.0)
    close = targets[:, None] + 0.1
    for outputs, collapsed in ((mean_of_training, True), (close, False)):
        metrics = compute_metrics("regression", outputs, targets)
        columns = collapse_columns(REGRESSION, metrics, targets, train_mean=2.0)
        assert columns == {"test_constant_mse": pytest.approx((1 + 0 + 1 + 4) / 4), "collapsed": collapsed}


def test_a_regression_runs_label_statistics_carry_its_training_mean():
    train = datasets.Dataset.from_dict({"label": [1.0, 2.0, 6.0], "clean_label": [1.0, 2.0, 6.0]})
    stats = label_stats(train, REGRESSION)
    assert stats.train_mean == pytest.approx(3.0) and stats.class_counts is None


def test_old_rows_without_the_flag_are_unknown_and_not_counted():
    rows = pd.DataFrame({"collapsed": [True, "False", "True", np.nan, ""]})
    assert collapsed_flags(rows).tolist()[:3] == [True, False, True]
    assert collapsed_flags(rows).isna().tolist() == [False, False, False, True, True]
    assert collapsed_flags(pd.DataFrame({"x": [1]})).isna().all()


def test_the_report_counts_collapsed_runs_per_loss(tmp_path):
    runs = synthetic_results(tmp_path, seeds=3, files=False)
    assert "collapsed" not in render_report(runs).split("## How to read")[0]  # rows from before the column
    runs["collapsed"] = "False"
    dice = (runs["task"] == "trec") & (runs["loss_spec"] == "dice")
    runs.loc[dice & (runs["seed"] < 2), "collapsed"] = "True"
    runs.loc[dice & (runs["seed"] == 2), "collapsed"] = np.nan  # an old row: unknown, not counted
    result = analyse(runs)
    trec = next(task for task in result.tasks if task.task == "trec")
    assert trec.collapsed == {"dice": 2} and result.overview.collapsed == 2
    assert all(not task.collapsed for task in result.tasks if task.task != "trec")

    report = render_report(runs)
    headline = report[: report.index("## Environment and matrix")]
    assert (
        "On trec, 2 runs collapsed (test f1_macro no better than predicting the training split's majority class): "
        "dice 2/3." in headline
    )
    assert "ok (2 collapsed)" in report
    section = report[report.index("## trec\n") : report.index("## trec@noise=0.2\n")]
    header = next(line for line in section.splitlines() if line.startswith("| loss "))
    assert "| collapsed " in header
    assert "| 2/3 " in next(line for line in section.splitlines() if line.startswith("| dice "))
    assert "| 0/3 " in next(line for line in section.splitlines() if line.startswith("| focal "))
    other = report[report.index("## rt_polarity\n") : report.index("## sms_spam\n")]
    assert "| collapsed " not in other  # only the tasks with a collapsed run have the column


def test_a_finished_run_records_its_constant_score_and_collapsed_flag(tiny_model_dir, tmp_path):
    train = TrainConfig(model=str(tiny_model_dir), train_size=32, batch_size=16, max_length=32)
    runs, skipped = build_matrix(["trec"], ["cross_entropy"], [0], train)
    run_matrix(runs, skipped, tmp_path, quiet=True)
    row = pd.read_csv(tmp_path / "runs.csv").iloc[0]
    saved = np.load(tmp_path / RUNS_DIR / row["run_id"] / PREDICTIONS_FILE)
    counts = json.loads(row["train_class_counts"])
    expected = constant_score("classification", "f1_macro", saved["labels"], class_counts=counts)
    assert row["test_constant_f1_macro"] == pytest.approx(expected)
    assert bool(row["collapsed"]) == (row["test_f1_macro"] <= expected)
