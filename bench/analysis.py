"""The numbers behind a report: per-task statistics of every loss against the baseline, chance levels, and
cross-task ranks.

Reads the rows of ``runs.csv`` (one per run) and, for chance levels, the test labels a run saved under ``runs/``;
``bench.report`` turns the result into sentences, tables and figures.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bench import stats
from bench.metrics import HIGHER_IS_BETTER
from bench.results import ResultsStore
from bench.status import OK, SKIPPED

METRICS_BY_PROBLEM_TYPE = {
    "classification": ("accuracy", "f1_macro", "mcc", "recall_macro", "recall_rarest", "ece", "brier", "nll"),
    "regression": ("pearson", "spearman", "r2", "mse", "mae", "mae_rare", "mae_common"),
}
FINISHED = OK  # a run that finished; SKIPPED: an incompatible (task, loss) pair


@dataclass
class TaskAnalysis:
    """One task section's numbers: its finished runs, the losses in display order and the statistics."""

    task: str
    problem_type: str
    main_metric: str
    baseline: str
    rows: pd.DataFrame  # every non-skipped row of the task
    finished: pd.DataFrame  # status ok, metric columns numeric
    metrics: list[str]  # main metric first, then the other metrics present
    losses: list[str]  # best main-metric mean first; losses with no finished run last
    table: pd.DataFrame  # stats.task_statistics: index (metric, loss)
    chance: stats.ChanceLevel | None = None  # the main metric's chance level; None when unknown
    near_chance: list[str] = field(default_factory=list)  # losses whose mean main metric is within noise of it

    @property
    def main(self) -> pd.DataFrame:
        return self.table.loc[self.main_metric]

    @property
    def max_n(self) -> int:
        return int(self.main["n"].max()) if len(self.main) else 0


@dataclass
class CrossTask:
    """Ranks of one problem type's losses over its tasks, and Friedman's test."""

    problem_type: str
    scores: pd.DataFrame  # tasks x losses: mean main metric
    ranks: pd.DataFrame  # tasks x losses: 1 = best
    friedman: stats.Friedman
    shared_bases: list[str]  # task bases that appear in more than one task section


def analyse_task(task: str, rows: pd.DataFrame, test_labels: tuple[np.ndarray, int] | None = None) -> TaskAnalysis:
    """``test_labels``: the task's test labels and number of classes, for the chance level (``task_test_labels``)."""
    problem_type, main_metric = str(rows["problem_type"].iloc[0]), str(rows["main_metric"].iloc[0])
    baseline = stats.BASELINE_LOSS.get(problem_type, "")
    rows = rows[rows["status"] != SKIPPED]
    finished = rows[rows["status"] == FINISHED].copy()
    candidates = [main_metric, *(m for m in METRICS_BY_PROBLEM_TYPE.get(problem_type, ()) if m != main_metric)]
    metrics = []
    for metric in candidates:
        column = f"test_{metric}"
        finished[column] = pd.to_numeric(finished[column], errors="coerce") if column in finished else np.nan
        if metric == main_metric or finished[column].notna().any():
            metrics.append(metric)
    losses = sorted(rows["loss_spec"].dropna().astype(str).unique())
    table = stats.task_statistics(finished, metrics, baseline, losses)
    main = table.loc[main_metric]
    ascending = not HIGHER_IS_BETTER.get(main_metric, True)
    order = main.assign(name=main.index).sort_values(["mean", "name"], ascending=[ascending, True], na_position="last")
    losses = list(order.index)
    labels, classes = test_labels or (None, None)
    chance = stats.chance_level(problem_type, main_metric, labels, classes, _test_examples(finished))
    near = _near_chance(main.loc[losses], chance, not ascending)
    return TaskAnalysis(task, problem_type, main_metric, baseline, rows, finished, metrics, losses, table, chance, near)


def _near_chance(main: pd.DataFrame, chance: stats.ChanceLevel | None, higher_is_better: bool) -> list[str]:
    """The losses (rows of ``main``) whose mean is within noise of the chance level."""
    if chance is None:
        return []
    return [loss for loss, row in main.iterrows() if stats.near_chance(row, chance, higher_is_better)]


def _test_examples(finished: pd.DataFrame) -> int:
    """The test split's size as the runs recorded it (0 when they did not)."""
    if "test_examples" not in finished.columns:
        return 0
    sizes = pd.to_numeric(finished["test_examples"], errors="coerce").dropna()
    return int(sizes.iloc[0]) if len(sizes) else 0


def task_test_labels(store: ResultsStore, finished: pd.DataFrame) -> tuple[np.ndarray, int] | None:
    """The test split's labels and number of classes, from the first of the task's finished runs that saved its
    test predictions (the test split is the same for every run of a task); None when none did."""
    for run in finished.itertuples():
        saved = store.test_predictions(run.run_id)
        if saved is not None:
            return saved[1], _class_count(run, saved[0].shape[1])
    return None


def _class_count(run, outputs: int) -> int:
    """The task's number of classes: the length of the run's training class counts, else its model outputs."""
    try:
        return len(json.loads(run.train_class_counts))
    except (AttributeError, TypeError, ValueError):
        return outputs


def with_loss_spec(runs: pd.DataFrame) -> pd.DataFrame:
    """``loss_spec`` is a row's loss identity; rows written before it existed use the loss name."""
    runs = runs.copy()
    loss = runs["loss"] if "loss" in runs.columns else pd.Series(np.nan, index=runs.index)
    runs["loss_spec"] = runs["loss_spec"].fillna(loss) if "loss_spec" in runs.columns else loss
    return runs


def analyse_tasks(runs: pd.DataFrame, store: ResultsStore | None = None) -> list[TaskAnalysis]:
    """Every task's analysis; with ``store``, chance levels from the test labels its runs saved."""
    analyses = []
    for task in sorted(runs["task"].dropna().astype(str).unique()):
        rows = runs[runs["task"].astype(str) == task]
        if (rows["status"] != SKIPPED).any():
            finished = rows[rows["status"] == FINISHED]
            labels = task_test_labels(store, finished) if store is not None else None
            analyses.append(analyse_task(task, rows, labels))
    return analyses


def cross_task(analyses: list[TaskAnalysis]) -> list[CrossTask]:
    """Ranks per problem type over the tasks that have finished runs."""
    result = []
    for problem_type in sorted({a.problem_type for a in analyses}):
        members = [a for a in analyses if a.problem_type == problem_type and a.max_n > 0]
        if not members:
            continue
        scores = pd.DataFrame({a.task: a.main["mean"] for a in members}).T
        scores = scores.dropna(axis=1, how="all")
        directions = {a.task: HIGHER_IS_BETTER.get(a.main_metric, True) for a in members}
        ranks = stats.ranks(scores, directions)
        bases = pd.Series([_task_base(a) for a in members])
        shared = sorted(bases[bases.duplicated()].unique())
        result.append(CrossTask(problem_type, scores, ranks, stats.friedman(scores, directions), shared))
    return result


def _task_base(analysis: TaskAnalysis) -> str:
    if "task_base" in analysis.rows.columns and analysis.rows["task_base"].notna().any():
        return str(analysis.rows["task_base"].dropna().iloc[0])
    return analysis.task.split("@")[0]


def statistics_frame(analyses: list[TaskAnalysis]) -> pd.DataFrame:
    """Every task's statistics in one tidy frame (``stats.csv``)."""
    frames = [a.table.reset_index().assign(task=a.task) for a in analyses]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    return frame[["task", *[c for c in frame.columns if c != "task"]]]
