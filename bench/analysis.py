"""Every number a report shows: per-task statistics of every loss against its task's baseline, chance levels, costs,
cross-task ranks, checkpoint selection's effect (the best validation checkpoint against the last weights), and the
data behind the figures (pooled reliability bins, learning curves).

Reads the rows of ``runs.csv`` (one per run) and the files a run saved under ``runs/`` (test labels and predictions,
log histories); ``bench.report`` and ``bench.plots`` only turn the result into sentences, tables and figures.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from bench import power, stats
from bench.api.task import default_baseline_loss
from bench.config import FINE_TUNE, TUNED_SUFFIX
from bench.metric_table import HEADLINE_METRICS, METRIC_RANGE, METRICS_BY_PROBLEM_TYPE, UNBOUNDED, higher_is_better
from bench.results import ResultsStore, learning_curve, run_protocols
from bench.status import Status

FINISHED = Status.OK  # a run that finished; Status.SKIPPED: an incompatible (task, loss) pair
ONE_POINT = 0.01  # the difference whose seeds-needed the report gives: 1 point of a metric in [0, 1]
COLLAPSED = "collapsed"  # runs.csv's column: the run is no better than a constant prediction (bench.collapse)
# runs.csv's test_last_<metric>: the last weights' test metric, beside test_<metric> of the selected checkpoint
# (--select-checkpoint, bench.checkpoint); with it best_step, evaluations and stopped_early.
LAST_PREFIX = "test_last_"
GAP_PREFIX = "best_minus_last_"  # stats.csv's columns of the selection gap (``TaskAnalysis.selection``)
# The cost columns a task table shows, averaged over a loss's finished runs, when the runs recorded them.
COST_COLUMNS = ("train_seconds", "train_samples_per_second", "peak_rss_mb", "peak_gpu_mb")


def failed_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that did not finish (error, diverged): never averaged in."""
    return runs[~runs["status"].isin([Status.OK, Status.SKIPPED])]


def report_protocol(runs: pd.DataFrame) -> str:
    """The one protocol of the runs. Fine-tuned and frozen-encoder (head-only) results are never pooled into one
    report."""
    found = sorted(set(run_protocols(runs)))
    if len(found) > 1:
        raise ValueError(
            f"The results mix protocols ({' and '.join(found)}), which are not comparable: put each protocol's runs "
            "in its own results folder and report them separately."
        )
    return found[0] if found else FINE_TUNE


def with_loss_spec(runs: pd.DataFrame) -> pd.DataFrame:
    """``loss_spec`` is a row's loss identity; rows written before it existed use the loss name."""
    runs = runs.copy()
    loss = runs["loss"] if "loss" in runs.columns else pd.Series(np.nan, index=runs.index)
    runs["loss_spec"] = runs["loss_spec"].fillna(loss) if "loss_spec" in runs.columns else loss
    return runs


def task_baseline(rows: pd.DataFrame, problem_type: str) -> str:
    """The loss a task's losses are compared with: the ``baseline_loss`` its rows recorded (the last one, should it
    have changed), else the problem type's default (rows written before the column existed). Where tuned runs sit
    beside untuned ones, the untuned baseline (tuned runs record ``cross_entropy (tuned)``, ``TUNED_SUFFIX``)."""
    if "baseline_loss" in rows.columns:
        recorded = rows["baseline_loss"].dropna().astype(str)
        recorded = recorded[recorded != ""]
        if (~recorded.str.endswith(TUNED_SUFFIX)).any():
            recorded = recorded[~recorded.str.endswith(TUNED_SUFFIX)]
        if len(recorded):
            return str(recorded.iloc[-1])
    return default_baseline_loss(problem_type)


def collapsed_flags(rows: pd.DataFrame) -> pd.Series:
    """Each row's ``collapsed`` flag as True, False or NaN (unknown: a row written before the column existed)."""
    return flags(rows, COLLAPSED)


def flags(rows: pd.DataFrame, column: str) -> pd.Series:
    """Each row's boolean ``column`` (as written to and read back from runs.csv) as True, False or NaN (unknown,
    or no such column)."""
    if column not in rows.columns:
        return pd.Series(np.nan, index=rows.index, dtype=object)
    words = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    return rows[column].map(lambda value: words.get(str(value).strip().lower(), np.nan)).astype(object)


# --- one task ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskPower:
    """How small a paired difference on a task's main metric its seeds can detect.

    ``comparisons`` (m): the losses tested against the baseline, the Holm family; ``pooled_std``: the standard
    deviation of the paired differences pooled over those ``pooled_losses`` comparisons; ``seeds``: the fewest pairs
    of any of them; ``mdd``: the true difference ``seeds`` pairs detect with ``power.POWER`` probability by a paired
    t-test at α / m (``bench.power``), NaN without a test; ``seeds_for_point``: the seeds a difference of
    ``ONE_POINT`` would need at that std and m (``power.MAX_SEEDS`` + 1: more than that)."""

    comparisons: int
    pooled_std: float
    pooled_losses: int
    seeds: int
    mdd: float
    seeds_for_point: int | None


def task_power(main: pd.DataFrame) -> TaskPower | None:
    """The ``TaskPower`` of a task's main-metric table (``stats.compare_losses``); None when nothing was tested."""
    tested = main[np.isfinite(main["p"].to_numpy(dtype=np.float64))]
    if tested.empty:
        return None
    comparisons = len(tested)
    pooled, pooled_losses = stats.pooled_std(tested["diff_std"].tolist(), tested["n_pairs"].astype(int).tolist())
    seeds = int(tested["n_pairs"].min())
    mdd = stats.minimum_detectable_difference(pooled, seeds, comparisons)
    needed = power.seeds_needed(pooled, ONE_POINT, comparisons, stats.ALPHA) if np.isfinite(pooled) else None
    return TaskPower(comparisons, pooled, pooled_losses, seeds, mdd, needed)


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
    best: dict[str, float] = field(default_factory=dict)  # metric -> the best mean of any loss
    costs: pd.DataFrame = field(default_factory=pd.DataFrame)  # index loss, COST_COLUMNS recorded: mean over runs
    failed: dict[str, dict[str, int]] = field(default_factory=dict)  # loss -> status -> runs that did not finish
    power: TaskPower | None = None  # the main metric's minimum detectable difference; None when nothing was tested
    collapsed: dict[str, int] = field(default_factory=dict)  # loss -> its finished runs flagged collapsed (if any)
    # Checkpoint selection, from the runs that recorded test_last_* (empty when none did): ``selection_gaps`` and
    # ``checkpoint_use``.
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)
    checkpoints: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def main(self) -> pd.DataFrame:
        return self.table.loc[self.main_metric]

    @property
    def main_selection(self) -> pd.DataFrame:
        """The selection gap of the main metric (``selection_gaps``), index loss; empty when no run recorded it."""
        if self.selection.empty or self.main_metric not in self.selection.index.get_level_values("metric"):
            return pd.DataFrame()
        return self.selection.loc[self.main_metric]

    @property
    def max_n(self) -> int:
        return int(self.main["n"].max()) if len(self.main) else 0

    @property
    def tested_losses(self) -> list[str]:
        """The losses with at least one finished run, in display order."""
        return [loss for loss in self.losses if self.main.at[loss, "n"] > 0]

    @property
    def all_near_chance(self) -> bool:
        """Whether every loss with a finished run is within noise of the chance level."""
        return set(self.tested_losses) <= set(self.near_chance)

    @property
    def clipped(self) -> bool:
        """Whether any interval of the task (of a mean, a paired difference or the main metric's selection gap) was
        clipped to its metric's range."""
        table, selection = self.table, self.main_selection
        return bool(
            table["ci_clipped"].astype(bool).any()
            or table["diff_ci_clipped"].astype(bool).any()
            or (len(selection) and selection["ci_clipped"].astype(bool).any())
        )

    @property
    def headline_metrics(self) -> list[str]:
        """The metrics whose findings are headlines: the main one, then those of ``HEADLINE_METRICS`` present."""
        return [self.main_metric, *(metric for metric in self.metrics if metric in HEADLINE_METRICS)]

    @property
    def findings(self) -> list[tuple[str, str]]:
        """(metric, loss) of every loss better or worse than the baseline on a headline metric."""
        return [
            (metric, loss)
            for metric in self.headline_metrics
            for loss, row in self.table.loc[metric].iterrows()
            if row["verdict"] in (stats.BETTER, stats.WORSE)
        ]

    @property
    def all_undecided(self) -> bool:
        """Whether the task has comparisons with the baseline on the main metric and none is better or worse."""
        tested = self.main[np.isfinite(self.main["p"].to_numpy(dtype=np.float64))]
        return bool(len(tested)) and not tested["verdict"].isin([stats.BETTER, stats.WORSE]).any()

    @property
    def collapsed_total(self) -> int:
        """The task's finished runs flagged collapsed."""
        return sum(self.collapsed.values())

    @property
    def other_loss_better(self) -> bool:
        """Whether a loss other than the best-scoring one is better than the baseline on the main metric (possible
        when the best is the baseline: pairing by seed removes seed noise)."""
        return bool(self.main.drop(index=self.losses[0])["verdict"].eq(stats.BETTER).any())

    @property
    def seed_values(self) -> pd.DataFrame:
        """Each finished run's main metric: columns ``loss`` and ``value``."""
        column = f"test_{self.main_metric}"
        values = self.finished[["loss_spec", column]].rename(columns={"loss_spec": "loss", column: "value"})
        return values.dropna()

    @property
    def mean_run_ece(self) -> dict[str, float]:
        """Per loss, the mean of its runs' own ECEs: the table's ``ece`` column."""
        return dict(self.table.loc["ece"]["mean"]) if "ece" in self.metrics else {}


def analyse_task(task: str, rows: pd.DataFrame, test_labels: tuple[np.ndarray, int] | None = None) -> TaskAnalysis:
    """``test_labels``: the task's test labels and number of classes, for the chance level (``task_test_labels``)."""
    problem_type, main_metric = str(rows["problem_type"].iloc[0]), str(rows["main_metric"].iloc[0])
    baseline = task_baseline(rows, problem_type)
    rows = rows[rows["status"] != Status.SKIPPED]
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
    ascending = not higher_is_better(main_metric)
    order = main.assign(name=main.index).sort_values(["mean", "name"], ascending=[ascending, True], na_position="last")
    losses = list(order.index)
    labels, classes = test_labels or (None, None)
    chance = stats.chance_level(problem_type, main_metric, labels, classes, _test_examples(finished))
    near = _near_chance(main.loc[losses], chance, not ascending)
    return TaskAnalysis(
        task,
        problem_type,
        main_metric,
        baseline,
        rows,
        finished,
        metrics,
        losses,
        table,
        chance,
        near,
        best=_best_means(table, metrics),
        costs=_costs(finished, losses),
        failed=_failed_by_loss(rows, losses),
        power=task_power(main),
        collapsed=_collapsed_by_loss(finished, losses),
        selection=selection_gaps(finished, metrics, losses),
        checkpoints=checkpoint_use(finished, main_metric, losses),
    )


def selection_gaps(finished: pd.DataFrame, metrics: list[str], losses: list[str]) -> pd.DataFrame:
    """What checkpoint selection changed on the test split: per metric and loss (index (metric, loss), ``losses``
    order), over the loss's finished runs that recorded both ``test_<metric>`` (the best validation checkpoint) and
    ``test_last_<metric>`` (the last weights), the per-seed gap best − last, signed so that a positive gap means the
    selected checkpoint scored better (last − best for a lower-is-better metric), summarised by ``stats.summarize``:
    n, mean, std and the 95% t-interval clipped to ± the metric's range width. Metrics and losses without such runs
    are left out; empty when no run recorded a ``test_last_`` column (runs without --select-checkpoint)."""
    rows = []
    loss_of_run = finished["loss_spec"].astype(str)
    for metric in metrics:
        last_column = f"{LAST_PREFIX}{metric}"
        if last_column not in finished.columns:
            continue
        last = pd.to_numeric(finished[last_column], errors="coerce")
        if not last.notna().any():
            continue
        sign = 1.0 if higher_is_better(metric) else -1.0
        gap = sign * (pd.to_numeric(finished[f"test_{metric}"], errors="coerce") - last)
        bounds = stats.difference_bounds(METRIC_RANGE.get(metric, UNBOUNDED))
        for loss in losses:
            mine = gap[(loss_of_run == loss) & gap.notna()]
            by_seed = mine.groupby(finished.loc[mine.index, "seed"]).mean()
            summary = stats.summarize(by_seed, bounds=bounds)
            if summary.n:
                rows.append({"metric": metric, "loss": loss, **asdict(summary)})
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["metric", "loss"])


def planned_steps(runs: pd.DataFrame) -> pd.Series:
    """Each run's planned optimiser steps, ceil(ceil(train_examples / batch_size) · epochs) (the Trainer's
    ``max_steps``, as ``bench.fit`` computes it); NaN where the row lacks one of the columns."""
    missing = pd.Series(np.nan, index=runs.index)
    examples, batch, epochs = (
        pd.to_numeric(runs[name], errors="coerce") if name in runs.columns else missing
        for name in ("train_examples", "batch_size", "epochs")
    )
    batches = np.ceil(examples / batch.where(batch > 0))
    return np.ceil(batches * epochs).astype(np.float64)


def checkpoint_use(finished: pd.DataFrame, main_metric: str, losses: list[str]) -> pd.DataFrame:
    """Per loss (index, ``losses`` order) with finished runs that recorded ``test_last_<main_metric>``: ``runs``,
    their mean ``best_step`` (the step of the selected checkpoint), mean planned ``steps`` (``planned_steps``),
    mean ``evaluations`` of the validation split and how many ``stopped_early``. Empty when no run recorded it."""
    last_column = f"{LAST_PREFIX}{main_metric}"
    if last_column not in finished.columns:
        return pd.DataFrame()
    selected = finished[pd.to_numeric(finished[last_column], errors="coerce").notna()]
    if selected.empty:
        return pd.DataFrame()
    steps = planned_steps(selected)
    stopped = flags(selected, "stopped_early").eq(True)
    loss_of_run = selected["loss_spec"].astype(str)
    rows = {}
    for loss in losses:
        mine = loss_of_run == loss
        if not mine.any():
            continue
        rows[loss] = {
            "runs": int(mine.sum()),
            "best_step": _mean(selected.loc[mine], "best_step"),
            "steps": float(steps[mine].mean()),
            "evaluations": _mean(selected.loc[mine], "evaluations"),
            "stopped_early": int(stopped[mine].sum()),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("loss")


def _mean(rows: pd.DataFrame, column: str) -> float:
    """The mean of ``column`` over ``rows`` (NaN when there is no such column or no number in it)."""
    return float(pd.to_numeric(rows[column], errors="coerce").mean()) if column in rows.columns else math.nan


def _collapsed_by_loss(finished: pd.DataFrame, losses: list[str]) -> dict[str, int]:
    """Per loss (in ``losses`` order), its finished runs flagged collapsed, for the losses that have any; rows
    without the flag (written before it existed) count as not collapsed."""
    flags = collapsed_flags(finished).eq(True)
    loss_of_run = finished["loss_spec"].astype(str)
    counts = {loss: int((flags & (loss_of_run == loss)).sum()) for loss in losses}
    return {loss: count for loss, count in counts.items() if count}


def _near_chance(main: pd.DataFrame, chance: stats.ChanceLevel | None, higher: bool) -> list[str]:
    """The losses (rows of ``main``) whose mean is within noise of the chance level."""
    if chance is None:
        return []
    return [loss for loss, row in main.iterrows() if stats.near_chance(row, chance, higher)]


def _best_means(table: pd.DataFrame, metrics: list[str]) -> dict[str, float]:
    """Per metric, the best mean over the losses (highest or lowest by the metric's direction)."""
    best = {}
    for metric in metrics:
        means = table.loc[metric]["mean"]
        best[metric] = means.max() if higher_is_better(metric) else means.min()
    return best


def _costs(finished: pd.DataFrame, losses: list[str]) -> pd.DataFrame:
    """Per loss (index, in ``losses`` order), the mean of each cost column that some finished run recorded."""
    recorded = [
        column
        for column in COST_COLUMNS
        if column in finished.columns and pd.to_numeric(finished[column], errors="coerce").notna().any()
    ]
    loss_of_run = finished["loss_spec"].astype(str)
    means = {
        column: [pd.to_numeric(finished.loc[loss_of_run == loss, column], errors="coerce").mean() for loss in losses]
        for column in recorded
    }
    return pd.DataFrame(means, index=pd.Index(losses, name="loss"), columns=recorded)


def _failed_by_loss(rows: pd.DataFrame, losses: list[str]) -> dict[str, dict[str, int]]:
    """Per loss, the runs that did not finish by status (most first), for the losses that have any."""
    failed = {}
    for loss in losses:
        counts = failed_rows(rows[rows["loss_spec"].astype(str) == loss])["status"].value_counts()
        if len(counts):
            failed[loss] = {str(status): int(count) for status, count in counts.items()}
    return failed


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


def analyse_tasks(runs: pd.DataFrame, store: ResultsStore | None = None) -> list[TaskAnalysis]:
    """Every task's analysis; with ``store``, chance levels from the test labels its runs saved."""
    analyses = []
    for task in sorted(runs["task"].dropna().astype(str).unique()):
        rows = runs[runs["task"].astype(str) == task]
        if (rows["status"] != Status.SKIPPED).any():
            finished = rows[rows["status"] == FINISHED]
            labels = task_test_labels(store, finished) if store is not None else None
            analyses.append(analyse_task(task, rows, labels))
    return analyses


# --- across tasks -----------------------------------------------------------------------------------------------


@dataclass
class CrossTask:
    """Ranks of one problem type's losses over its tasks, and Friedman's test."""

    problem_type: str
    scores: pd.DataFrame  # tasks x losses: mean main metric
    ranks: pd.DataFrame  # tasks x losses: 1 = best
    friedman: stats.Friedman
    shared_bases: list[str]  # task bases that appear in more than one task section

    @property
    def tasks(self) -> list[str]:
        return list(self.scores.index)

    @property
    def mean_ranks(self) -> pd.Series:
        """Each loss's mean rank over the tasks where it has finished runs."""
        return self.ranks.mean(axis=0)

    @property
    def task_counts(self) -> pd.Series:
        """Each loss's number of ranked tasks."""
        return self.ranks.notna().sum(axis=0)

    @property
    def order(self) -> list[str]:
        """The losses by mean rank, best first, ties by name."""
        mean_ranks = self.mean_ranks
        return sorted(self.ranks.columns, key=lambda loss: (mean_ranks[loss], loss))

    @property
    def best(self) -> tuple[str, float]:
        """The loss with the best mean rank, and that rank."""
        mean_ranks = self.mean_ranks.sort_values()
        return str(mean_ranks.index[0]), float(mean_ranks.iloc[0])

    @property
    def nemenyi_pairs(self) -> list[tuple[str, str, float]]:
        """The pairs of losses that Nemenyi's test tells apart (p < alpha), with their p-values."""
        nemenyi = self.friedman.nemenyi
        return [
            (a, b, float(nemenyi.at[a, b]))
            for i, a in enumerate(nemenyi.index)
            for b in nemenyi.columns[i + 1 :]
            if nemenyi.at[a, b] < stats.ALPHA
        ]


def cross_task(analyses: list[TaskAnalysis]) -> list[CrossTask]:
    """Ranks per problem type over the tasks that have finished runs."""
    result = []
    for problem_type in sorted({a.problem_type for a in analyses}):
        members = [a for a in analyses if a.problem_type == problem_type and a.max_n > 0]
        if not members:
            continue
        scores = pd.DataFrame({a.task: a.main["mean"] for a in members}).T
        scores = scores.dropna(axis=1, how="all")
        directions = {a.task: higher_is_better(a.main_metric) for a in members}
        ranks = stats.ranks(scores, directions)
        bases = pd.Series([_task_base(a) for a in members])
        shared = sorted(bases[bases.duplicated()].unique())
        result.append(CrossTask(problem_type, scores, ranks, stats.friedman(scores, directions), shared))
    return result


def _task_base(analysis: TaskAnalysis) -> str:
    if "task_base" in analysis.rows.columns and analysis.rows["task_base"].notna().any():
        return str(analysis.rows["task_base"].dropna().iloc[0])
    return analysis.task.split("@")[0]


# --- the whole results folder -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Overview:
    """The counts and totals of the report's header: runs by status, who made them, total time."""

    finished: int
    skipped: int
    failed: dict[str, int]  # status -> runs that did not finish, most first
    made_by: list[tuple[str, str, int]]  # (hardware, precision, finished runs) when the runs mix several, else empty
    train_seconds: float | None  # summed over every row; None when runs.csv has no such column
    encoding_seconds: float | None  # encoding the frozen layers' states (states_seconds), summed likewise
    collapsed: int = 0  # finished runs flagged collapsed (no better than a constant prediction)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.values())


def overview(runs: pd.DataFrame) -> Overview:
    counts = runs["status"].value_counts()
    failed = failed_rows(runs)["status"].value_counts()
    return Overview(
        finished=int(counts.get(Status.OK, 0)),
        skipped=int(counts.get(Status.SKIPPED, 0)),
        failed={str(status): int(count) for status, count in failed.items()},
        made_by=_hardware_and_precision(runs[runs["status"] == FINISHED]),
        train_seconds=_total(runs, "train_seconds"),
        encoding_seconds=_total(runs, "states_seconds"),
        collapsed=int(collapsed_flags(runs[runs["status"] == FINISHED]).eq(True).sum()),
    )


def _hardware_and_precision(finished: pd.DataFrame) -> list[tuple[str, str, int]]:
    """Each (hardware, precision) that made finished runs, with its count, when the runs mix several; else empty."""
    if not {"hardware", "precision"} <= set(finished.columns):
        return []
    counts = finished[["hardware", "precision"]].astype(object).fillna("n/a").value_counts(sort=False).sort_index()
    if len(counts) < 2:
        return []
    return [(str(hardware), str(precision), int(n)) for (hardware, precision), n in counts.items()]


def _total(runs: pd.DataFrame, column: str) -> float | None:
    return float(pd.to_numeric(runs[column], errors="coerce").sum()) if column in runs.columns else None


@dataclass
class Analysis:
    """Everything a report says about a results folder's rows."""

    runs: pd.DataFrame  # every row, with loss_spec
    protocol: str
    overview: Overview
    tasks: list[TaskAnalysis]
    across: list[CrossTask]

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of runs that did not finish."""
        return failed_rows(self.runs)

    @property
    def statistics(self) -> pd.DataFrame:
        """Every task's statistics in one tidy frame (``stats.csv``)."""
        return statistics_frame(self.tasks)


def analyse(runs: pd.DataFrame, store: ResultsStore | None = None) -> Analysis:
    """The analysis of ``runs`` (rows of ``runs.csv``); with ``store``, chance levels from the test labels its runs
    saved. Raises for rows that mix protocols (``report_protocol``)."""
    runs = with_loss_spec(runs)
    protocol = report_protocol(runs)
    tasks = analyse_tasks(runs, store)
    return Analysis(runs, protocol, overview(runs), tasks, cross_task(tasks))


def statistics_frame(analyses: list[TaskAnalysis]) -> pd.DataFrame:
    """Every task's statistics in one tidy frame (``stats.csv``)."""
    frames = [a.table.reset_index().assign(task=a.task) for a in analyses]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    frame = frame[["task", *[c for c in frame.columns if c != "task"]]]
    gaps = [a.selection.add_prefix(GAP_PREFIX).reset_index().assign(task=a.task) for a in analyses if len(a.selection)]
    if gaps:  # a column per number of the selection gap, on its (task, metric, loss) row; none without such runs
        frame = frame.merge(pd.concat(gaps, ignore_index=True), on=["task", "metric", "loss"], how="left")
    return frame


# --- the figures' data ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reliability:
    """Per loss: the reliability bins of its test predictions pooled over seeds, the ECE of those pooled bins, and
    the mean of its runs' own ECEs (the table's ``ece`` column)."""

    bins: dict[str, pd.DataFrame]
    pooled_ece: dict[str, float]
    mean_run_ece: dict[str, float]


def reliability(store: ResultsStore, analysis: TaskAnalysis) -> Reliability:
    """The task's reliability bins, each loss's test predictions pooled over seeds (losses without any left out)."""
    pooled: dict[str, tuple[list, list]] = {}
    for run in analysis.finished.itertuples():
        saved = store.test_predictions(run.run_id)
        if saved is None:
            continue
        logits, labels = pooled.setdefault(str(run.loss_spec), ([], []))
        if logits and logits[0].shape[1] != saved[0].shape[1]:
            continue
        logits.append(saved[0])
        labels.append(saved[1])
    bins = {
        loss: stats.reliability_bins(np.concatenate(logits), np.concatenate(labels))
        for loss, (logits, labels) in pooled.items()
    }
    pooled_ece = {loss: stats.calibration_error(frame) for loss, frame in bins.items()}
    return Reliability(bins, pooled_ece, analysis.mean_run_ece)


@dataclass(frozen=True)
class LearningCurves:
    """A task's learning curves over seeds: ``losses`` with any logged value (sorted); per loss, the training loss by
    step (``mean``, ``min``, ``max`` over seeds) and the mean validation main metric by step, where logged; and how
    many runs have a log history at all."""

    losses: list[str]
    training: dict[str, pd.DataFrame]
    validation: dict[str, pd.Series]
    histories: int


def learning_curves(store: ResultsStore, analysis: TaskAnalysis) -> LearningCurves:
    """The task's learning curves from its runs' log histories."""
    frames, histories = [], 0
    for run in analysis.finished.itertuples():
        entries = store.log_history(run.run_id)
        if entries:
            histories += 1
            curve = learning_curve(entries, analysis.main_metric)
            frames.append(curve.assign(loss=str(run.loss_spec), seed=run.seed))
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return LearningCurves([], {}, {}, histories)
    curves = pd.concat(frames, ignore_index=True)
    evaluation = f"eval_{analysis.main_metric}"
    training, validation = {}, {}
    for loss, runs in curves.groupby("loss", sort=True):
        train = runs[runs["series"] == "train_loss"]
        if not train.empty:
            training[loss] = train.groupby("step")["value"].agg(["mean", "min", "max"])
        evals = runs[runs["series"] == evaluation]
        if not evals.empty:
            validation[loss] = evals.groupby("step")["value"].mean()
    return LearningCurves(sorted(curves["loss"].unique()), training, validation, histories)
