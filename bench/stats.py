"""Statistics over seeds and tasks: intervals, paired tests against a baseline loss, Holm, ranks, Friedman, Nemenyi.

Pure functions on numbers and DataFrames; the report formats what they return.

- Per task: mean, standard deviation and 95% t-interval over seeds; the difference to the baseline loss paired by
  seed, tested with the paired t-test (``scipy.stats.ttest_rel``). Wilcoxon's signed-rank test is not used: with
  fewer than 6 pairs its smallest two-sided p-value is above 0.05, so it can never find anything at 3-5 seeds.
- Holm's step-down correction across the losses of one task, for each metric.
- A difference is "within noise" unless it is significant after Holm *and* larger than the baseline's own seed
  standard deviation.
- Across tasks: ranks on each task's main metric (1 = best), the Friedman test (``scipy.stats.friedmanchisquare``)
  over the losses with a result on every task, the Nemenyi post-hoc test (``scikit_posthocs``) and the Nemenyi
  critical difference. Reference: Demšar, Statistical Comparisons of Classifiers over Multiple Data Sets, JMLR 2006.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats as scipy_stats

from bench.metrics import ECE_BINS, HIGHER_IS_BETTER, confidence_bins, softmax

CONFIDENCE = 0.95
ALPHA = 0.05
BASELINE_LOSS = {"classification": "cross_entropy", "regression": "mse"}
PAIRED_TEST = "paired t-test"
MIN_FRIEDMAN = 3  # tasks and losses: with fewer, Friedman's test is not defined or says nothing

# Verdicts of a loss against its task's baseline.
BETTER, WORSE, NOISE, BASELINE, TOO_FEW, NO_BASELINE = "better", "worse", "within noise", "baseline", "n < 2", "–"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and two-sided t-interval of ``n`` values (NaN where undefined)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def summarize(values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE) -> Summary:
    """Summary of the finite values: the interval is mean ± t_{(1+c)/2, n-1} · std / sqrt(n); NaN for n < 2."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    n = len(array)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if n < 2:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Paired:
    """The difference ``loss - baseline`` over the seeds both have, and the paired t-test on it (NaN if n < 2)."""

    n_pairs: int
    mean_diff: float
    std_diff: float
    statistic: float
    p: float


def paired_difference(values: pd.Series, baseline: pd.Series) -> Paired:
    """``values`` and ``baseline`` are indexed by seed; only seeds both have a finite value for are paired."""
    values, baseline = values[np.isfinite(values)], baseline[np.isfinite(baseline)]
    seeds = values.index.intersection(baseline.index)
    a = values.loc[seeds].to_numpy(dtype=np.float64)
    b = baseline.loc[seeds].to_numpy(dtype=np.float64)
    diffs = a - b
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan)
    if n < 2:
        return Paired(1, float(diffs[0]), math.nan, math.nan, math.nan)
    if np.all(diffs == 0):  # identical runs: no difference at all (the t statistic would be 0 / 0)
        return Paired(n, 0.0, 0.0, 0.0, 1.0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_rel(a, b)
    return Paired(n, float(diffs.mean()), float(diffs.std(ddof=1)), float(result.statistic), float(result.pvalue))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values; NaN entries (no test) stay NaN and do not count in the family.

    Holm's step-down: the i-th smallest of m p-values times (m - i + 1), made monotone, capped at 1. The same numbers
    as ``statsmodels.stats.multitest.multipletests(method="holm")`` (the tests check it), written out because that
    function runs a full ``gc.collect()`` on every call: a fifth of a second each with torch loaded.
    """
    pvalues = np.asarray(pvalues, dtype=np.float64)
    adjusted = np.full(pvalues.shape, np.nan)
    tested = np.flatnonzero(np.isfinite(pvalues))
    order = tested[np.argsort(pvalues[tested], kind="stable")]
    factors = np.arange(len(order), 0, -1)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(pvalues[order] * factors))
    return adjusted


def verdict(paired: Paired, p_holm: float, baseline_std: float, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """'better' or 'worse' only when significant after Holm and larger than the baseline's seed std."""
    if paired.n_pairs < 2:
        return TOO_FEW
    if not p_holm < alpha or not abs(paired.mean_diff) >= (baseline_std if np.isfinite(baseline_std) else 0.0):
        return NOISE
    return BETTER if (paired.mean_diff > 0) == higher_is_better else WORSE


def compare_losses(
    runs: pd.DataFrame, metric_column: str, baseline: str, higher_is_better: bool, losses: Sequence[str] | None = None
) -> pd.DataFrame:
    """One row per loss (index ``loss``) for one task and one metric column of ``runs``.

    ``runs`` holds the task's finished runs with ``loss_spec``, ``seed`` and ``metric_column``; ``losses`` lists
    the losses to report (a loss with no finished run gets n = 0). Columns: n, mean, std, ci_low, ci_high, and,
    against ``baseline`` paired by seed, n_pairs, diff_mean, diff_std, t, p, p_holm (Holm across the other
    losses) and verdict.
    """
    losses = list(losses) if losses is not None else sorted(runs["loss_spec"].unique())
    by_loss = {
        loss: frame.groupby("seed")[metric_column].mean() for loss, frame in runs.groupby("loss_spec") if loss in losses
    }
    base = by_loss.get(baseline)
    no_test = Paired(0, math.nan, math.nan, math.nan, math.nan)
    rows = []
    for loss in losses:
        values = by_loss.get(loss, pd.Series(dtype=np.float64))
        paired = paired_difference(values, base) if base is not None and loss != baseline else no_test
        rows.append({"loss": loss, **asdict(summarize(values)), **asdict(paired)})
    table = pd.DataFrame(rows, columns=["loss", *Summary.__dataclass_fields__, *Paired.__dataclass_fields__])
    table = table.rename(columns={"mean_diff": "diff_mean", "std_diff": "diff_std", "statistic": "t"})
    table = table.set_index("loss")
    table["p_holm"] = holm(table["p"].to_numpy())
    baseline_std = table.at[baseline, "std"] if baseline in table.index else math.nan
    verdicts = []
    for loss, row in table.iterrows():
        if loss == baseline:
            verdicts.append(BASELINE)
        elif base is None:
            verdicts.append(NO_BASELINE)
        else:
            paired = Paired(int(row["n_pairs"]), row["diff_mean"], row["diff_std"], row["t"], row["p"])
            verdicts.append(verdict(paired, row["p_holm"], baseline_std, higher_is_better))
    table["verdict"] = verdicts
    return table


def task_statistics(
    runs: pd.DataFrame, metrics: Sequence[str], baseline: str, losses: Sequence[str] | None = None
) -> pd.DataFrame:
    """``compare_losses`` for every metric (``test_<metric>`` columns), stacked: index (metric, loss)."""
    tables = {
        metric: compare_losses(runs, f"test_{metric}", baseline, HIGHER_IS_BETTER[metric], losses) for metric in metrics
    }
    return pd.concat(tables, names=["metric", "loss"])


def ranks(scores: pd.DataFrame, higher_is_better: Mapping[str, bool]) -> pd.DataFrame:
    """Rank of each loss (columns) within each task (rows), 1 = best, ties averaged, NaN where no result.

    ``higher_is_better`` maps each task (row) to its main metric's direction.
    """
    return pd.DataFrame(
        {
            task: row.rank(ascending=not higher_is_better[task], method="average", na_option="keep")
            for task, row in scores.iterrows()
        }
    ).T.reindex(index=scores.index, columns=scores.columns)


@dataclass(frozen=True)
class Friedman:
    """Friedman's test over ``tasks`` x ``losses`` with complete results, Nemenyi post-hoc and its critical
    difference; ``reason`` says why the test was not run (then the numbers are NaN / empty)."""

    tasks: list[str]
    losses: list[str]
    statistic: float = math.nan
    p: float = math.nan
    mean_ranks: pd.Series = field(default_factory=lambda: pd.Series(dtype=np.float64))
    nemenyi: pd.DataFrame = field(default_factory=pd.DataFrame)
    critical_difference: float = math.nan
    reason: str | None = None


def nemenyi_critical_difference(n_losses: int, n_tasks: int, alpha: float = ALPHA) -> float:
    """CD = q_alpha · sqrt(k (k + 1) / (6 N)), q_alpha the studentized range quantile / sqrt(2) (Demšar 2006)."""
    q_alpha = scipy_stats.studentized_range.ppf(1 - alpha, n_losses, np.inf) / math.sqrt(2)
    return float(q_alpha * math.sqrt(n_losses * (n_losses + 1) / (6 * n_tasks)))


def friedman(scores: pd.DataFrame, higher_is_better: Mapping[str, bool]) -> Friedman:
    """Friedman's test over the losses (columns of ``scores``) that have a result on every task (rows)."""
    complete = scores.dropna(axis=1, how="any")
    tasks, losses = [str(t) for t in complete.index], [str(c) for c in complete.columns]
    if len(tasks) < MIN_FRIEDMAN:
        reason = f"needs at least {MIN_FRIEDMAN} tasks, there {'is' if len(tasks) == 1 else 'are'} {len(tasks)}"
        return Friedman(tasks, losses, reason=reason)
    if len(losses) < MIN_FRIEDMAN:
        return Friedman(
            tasks, losses, reason=f"needs at least {MIN_FRIEDMAN} losses with results on every task, have {len(losses)}"
        )
    task_ranks = ranks(complete, higher_is_better)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.friedmanchisquare(*(task_ranks[loss].to_numpy() for loss in losses))
        nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(task_ranks.to_numpy())
    nemenyi.index, nemenyi.columns = losses, losses
    return Friedman(
        tasks,
        losses,
        statistic=float(result.statistic),
        p=float(result.pvalue),
        mean_ranks=task_ranks.mean(axis=0).sort_values(),
        nemenyi=nemenyi,
        critical_difference=nemenyi_critical_difference(len(losses), len(tasks)),
    )


def reliability_bins(logits: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> pd.DataFrame:
    """Top-label reliability: per equal-width confidence bin (b/bins, (b+1)/bins], the number of examples, their
    mean confidence and their accuracy; the same bins as ``bench.metrics.expected_calibration_error``."""
    probabilities = softmax(np.asarray(logits, dtype=np.float64))
    which, confidence, correct = confidence_bins(probabilities, np.asarray(labels), bins)
    rows = []
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        rows.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": count,
                "confidence": float(confidence[members].mean()) if count else math.nan,
                "accuracy": float(correct[members].mean()) if count else math.nan,
            }
        )
    return pd.DataFrame(rows)


def calibration_error(bins: pd.DataFrame) -> float:
    """ECE from ``reliability_bins``: sum_b |B_b| / n · |accuracy_b - confidence_b|."""
    filled = bins[bins["count"] > 0]
    return float((filled["count"] * (filled["accuracy"] - filled["confidence"]).abs()).sum() / filled["count"].sum())
