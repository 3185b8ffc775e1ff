"""Statistics over seeds and tasks: intervals, paired tests against a baseline loss, Holm, ranks, Friedman, Nemenyi.

Pure functions on numbers and DataFrames; the report formats what they return.

- Per task: mean, standard deviation and 95% t-interval over seeds, clipped to the metric's range (at 2-4 seeds
  the t-interval of a bounded metric often reaches past it: t(0.975, 1) = 12.7); the difference to the baseline loss
  paired by seed, its t-interval clipped to ± the range's width, tested with the paired t-test
  (``scipy.stats.ttest_rel``). Wilcoxon's signed-rank test is not used: with fewer than 6 pairs its smallest
  two-sided p-value is above 0.05, so it can never find anything at 3-5 seeds.
- Holm's step-down correction across the losses of one task, for each metric.
- A difference is "within noise" unless it is significant after Holm *and* larger than the baseline's own seed
  standard deviation.
- Power: the minimum detectable difference (MDD) of each comparison, the true paired difference its seeds would
  detect with 80% power at Holm's strictest level α / m (``bench.power``), from its observed paired std; and the
  pooled paired std of a task's comparisons, for one MDD per task.
- Chance level: the main metric of a predictor that learned nothing (class priors; the test mean), and whether a
  loss's mean is within noise of it.
- Across tasks: ranks on each task's main metric (1 = best), the Friedman test (``scipy.stats.friedmanchisquare``)
  over the losses with a result on every task, the Nemenyi post-hoc test (``scikit_posthocs``) and the Nemenyi
  critical difference. Reference: Demšar, Statistical Comparisons of Classifiers over Multiple Data Sets, JMLR 2006.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache

import numpy as np
import pandas as pd
import scikit_posthocs
from scipy import stats as scipy_stats

from bench import power
from bench.metric_table import CORRELATION, HIGHER_IS_BETTER, METRIC_RANGE, METRICS, RATE, UNBOUNDED
from bench.metrics import ECE_BINS, compute_metrics, confidence_bins, softmax

CONFIDENCE = 0.95
ALPHA = 0.05
PAIRED_TEST = "paired t-test"
MIN_FRIEDMAN = 3  # tasks and losses: with fewer, Friedman's test is not defined or says nothing

# Verdicts of a loss against its task's baseline.
BETTER, WORSE, NOISE, BASELINE, TOO_FEW, NO_BASELINE = "better", "worse", "within noise", "baseline", "n < 2", "–"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation and two-sided t-interval of ``n`` values (NaN where undefined);
    ``ci_clipped`` when the interval reached past the metric's range and was cut to it."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float
    ci_clipped: bool = False


def t_interval(
    mean: float, std: float, n: int, confidence: float = CONFIDENCE, bounds: tuple[float, float] = UNBOUNDED
) -> tuple[float, float, bool]:
    """mean ± t_{(1+c)/2, n-1} · std / sqrt(n), clipped to ``bounds``, and whether clipping cut it; NaN for n < 2."""
    if n < 2 or not np.isfinite(std):
        return math.nan, math.nan, False
    half = float(scipy_stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return clip_interval(mean - half, mean + half, bounds)


def clip_interval(low: float, high: float, bounds: tuple[float, float]) -> tuple[float, float, bool]:
    """An interval clipped to ``bounds``, and whether clipping cut it."""
    clipped = max(low, float(bounds[0])), min(high, float(bounds[1]))
    return *clipped, clipped != (low, high)


def summarize(
    values: Sequence[float] | np.ndarray | pd.Series,
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Summary:
    """Summary of the finite values: the t-interval (``t_interval``) clipped to ``bounds``, the metric's range."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    n = len(array)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    std = float(array.std(ddof=1)) if n > 1 else math.nan
    return Summary(n, mean, std, *t_interval(mean, std, n, confidence, bounds))


def difference_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """The range of a difference of two values in ``bounds``: ± the range's width."""
    width = bounds[1] - bounds[0]
    return -width, width


@dataclass(frozen=True)
class Paired:
    """The difference ``loss - baseline`` over the seeds both have, and the paired t-test on it (NaN if n < 2);
    the t-interval of the mean difference is clipped to ± the metric's range width (``diff_ci_clipped`` if cut)."""

    n_pairs: int
    mean_diff: float
    std_diff: float
    statistic: float
    p: float
    diff_ci_low: float = math.nan
    diff_ci_high: float = math.nan
    diff_ci_clipped: bool = False


def paired_difference(values: pd.Series, baseline: pd.Series, bounds: tuple[float, float] = UNBOUNDED) -> Paired:
    """``values`` and ``baseline`` are indexed by seed; only seeds both have a finite value for are paired.
    ``bounds`` is the metric's range."""
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
        return Paired(n, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_rel(a, b)
    mean, std = float(diffs.mean()), float(diffs.std(ddof=1))
    interval = t_interval(mean, std, n, bounds=difference_bounds(bounds))
    return Paired(n, mean, std, float(result.statistic), float(result.pvalue), *interval)


@dataclass(frozen=True)
class Unpaired:
    """The difference of means ``values - baseline`` of two independent samples of ``n`` and ``n_baseline`` values,
    Welch's t-test on it (NaN with fewer than 2 values on a side) and its Welch t-interval, clipped to ± the metric's
    range width (``diff_ci_clipped`` if cut)."""

    n: int
    n_baseline: int
    mean_diff: float
    statistic: float
    p: float
    diff_ci_low: float = math.nan
    diff_ci_high: float = math.nan
    diff_ci_clipped: bool = False


def welch_difference(
    values: Sequence[float] | np.ndarray | pd.Series,
    baseline: Sequence[float] | np.ndarray | pd.Series,
    bounds: tuple[float, float] = UNBOUNDED,
) -> Unpaired:
    """``values`` against ``baseline`` when their seeds are not shared: Welch's unequal-variance t-test
    (``scipy.stats.ttest_ind(equal_var=False)``) on the finite values. ``bounds`` is the metric's range."""
    a = np.asarray(values, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    if len(a) < 2 or len(b) < 2:
        return Unpaired(len(a), len(b), diff, math.nan, math.nan)
    if a.std() == 0 and b.std() == 0 and diff == 0:  # identical constant samples: no difference at all
        return Unpaired(len(a), len(b), 0.0, 0.0, 1.0, 0.0, 0.0)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        result = scipy_stats.ttest_ind(a, b, equal_var=False)
        interval = result.confidence_interval(CONFIDENCE)
    clipped = clip_interval(float(interval.low), float(interval.high), difference_bounds(bounds))
    return Unpaired(len(a), len(b), diff, float(result.statistic), float(result.pvalue), *clipped)


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


@cache
def _detectable_effect_size(n: int, comparisons: int) -> float:
    """``power.detectable_effect_size`` at Holm's strictest level, memoised: it depends only on the seeds and the
    number of comparisons, and every metric and loss of a task shares them."""
    return power.detectable_effect_size(n, ALPHA / comparisons)


def minimum_detectable_difference(std_diff: float, n_pairs: int, comparisons: int) -> float:
    """The true paired difference ``n_pairs`` seeds would detect with 80% power in a two-sided paired t-test at
    α / ``comparisons`` (Holm's strictest step), given the differences' standard deviation ``std_diff``; NaN when
    there is no test (fewer than 2 pairs, no comparison or an unknown std). The same number as
    ``power.minimum_detectable_difference``."""
    if n_pairs < 2 or comparisons < 1 or not np.isfinite(std_diff) or std_diff < 0:
        return math.nan
    return float(std_diff) * _detectable_effect_size(int(n_pairs), int(comparisons))


def pooled_std(stds: Sequence[float], counts: Sequence[int]) -> tuple[float, int]:
    """The pooled standard deviation of groups with sample stds ``stds`` and sizes ``counts``,
    sqrt(sum (n_i - 1) s_i² / sum (n_i - 1)) over the groups with n_i >= 2 and a finite std, and how many groups
    it pooled (NaN, 0 when none)."""
    pairs = [(float(s), int(n)) for s, n in zip(stds, counts, strict=True) if n >= 2 and np.isfinite(s)]
    freedom = sum(n - 1 for _, n in pairs)
    if not freedom:
        return math.nan, 0
    return math.sqrt(sum((n - 1) * s * s for s, n in pairs) / freedom), len(pairs)


def verdict(paired: Paired, p_holm: float, baseline_std: float, higher_is_better: bool, alpha: float = ALPHA) -> str:
    """'better' or 'worse' only when significant after Holm and larger than the baseline's seed std."""
    if paired.n_pairs < 2:
        return TOO_FEW
    return difference_verdict(paired.mean_diff, p_holm, baseline_std, higher_is_better, alpha)


def difference_verdict(
    mean_diff: float, p_holm: float, baseline_std: float, higher_is_better: bool, alpha: float = ALPHA
) -> str:
    """The rule of ``verdict`` for any tested difference (paired or Welch): 'better' or 'worse' only when
    significant after Holm and larger than the baseline's seed std; else 'within noise'."""
    if not p_holm < alpha or not abs(mean_diff) >= (baseline_std if np.isfinite(baseline_std) else 0.0):
        return NOISE
    return BETTER if (mean_diff > 0) == higher_is_better else WORSE


def compare_losses(
    runs: pd.DataFrame,
    metric_column: str,
    baseline: str,
    higher_is_better: bool,
    losses: Sequence[str] | None = None,
    bounds: tuple[float, float] = UNBOUNDED,
) -> pd.DataFrame:
    """One row per loss (index ``loss``) for one task and one metric column of ``runs``.

    ``runs`` holds the task's finished runs with ``loss_spec``, ``seed`` and ``metric_column``; ``losses`` lists
    the losses to report (a loss with no finished run gets n = 0); ``bounds`` is the metric's range. Columns: n,
    mean, std, ci_low, ci_high, ci_clipped, and, against ``baseline`` paired by seed, n_pairs, diff_mean, diff_std,
    t, p, diff_ci_low, diff_ci_high, diff_ci_clipped, p_holm (Holm across the other losses), verdict, and mdd: the
    minimum detectable difference of the comparison (``minimum_detectable_difference``, m = the tests in the table).
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
        paired = paired_difference(values, base, bounds) if base is not None and loss != baseline else no_test
        rows.append({"loss": loss, **asdict(summarize(values, bounds=bounds)), **asdict(paired)})
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
    comparisons = int(np.isfinite(table["p"].to_numpy(dtype=np.float64)).sum())
    table["mdd"] = [
        minimum_detectable_difference(row["diff_std"], int(row["n_pairs"]), comparisons)
        if np.isfinite(row["p"])
        else math.nan
        for _, row in table.iterrows()
    ]
    return table


def task_statistics(
    runs: pd.DataFrame, metrics: Sequence[str], baseline: str, losses: Sequence[str] | None = None
) -> pd.DataFrame:
    """``compare_losses`` for every metric (``test_<metric>`` columns), stacked: index (metric, loss)."""
    tables = {
        metric: compare_losses(
            runs, f"test_{metric}", baseline, HIGHER_IS_BETTER[metric], losses, METRIC_RANGE.get(metric, UNBOUNDED)
        )
        for metric in metrics
    }
    return pd.concat(tables, names=["metric", "loss"])


# Metrics whose chance level holds by definition: a constant prediction has no correlation with the targets, and
# predicting the test mean gives R^2 = 0.
CHANCE_BY_DEFINITION = {name: metric.chance for name, metric in METRICS.items() if metric.chance is not None}
# The test split's sampling noise at chance, from its size n: correlations near 0 have standard error about
# 1 / sqrt(n); a rate p (a share of examples) has the binomial standard error sqrt(p (1 - p) / n).
CORRELATIONS = tuple(name for name, metric in METRICS.items() if metric.kind == CORRELATION)
RATES = tuple(name for name, metric in METRICS.items() if metric.kind == RATE)
Z_TWO_SIDED = float(scipy_stats.norm.ppf((1 + CONFIDENCE) / 2))  # 1.96


@dataclass(frozen=True)
class ChanceLevel:
    """A metric's score for a predictor that learned nothing from the inputs, on the test split.

    ``value``: classification, the class-prior predictor (always the test split's most common class, with the
    test split's class frequencies as its probabilities); regression, the test mean as a constant prediction, whose
    Pearson, Spearman and R^2 are 0 by definition. ``uniform``: the expected accuracy of a uniform random guess,
    1 / classes (accuracy only, else NaN). ``examples``: the test split's size (0 when unknown). ``noise``: the
    standard error of a score near ``value`` from the test split's size alone (``sampling_noise``; 0 when unknown).
    """

    metric: str
    value: float
    uniform: float = math.nan
    classes: int = 0
    examples: int = 0
    noise: float = 0.0


def sampling_noise(metric: str, value: float, examples: int) -> float:
    """Standard error of ``metric`` near ``value`` on ``examples`` test examples: 1 / sqrt(n) for a correlation,
    sqrt(p (1 - p) / n) for a rate (exact for accuracy, a yardstick for macro-F1 and recall); 0 for the others."""
    if examples <= 0:
        return 0.0
    if metric in CORRELATIONS:
        return 1 / math.sqrt(examples)
    if metric in RATES:
        rate = min(max(value, 0.0), 1.0)
        return math.sqrt(rate * (1 - rate) / examples)
    return 0.0


def chance_level(
    problem_type: str,
    metric: str,
    labels: np.ndarray | None = None,
    classes: int | None = None,
    examples: int | None = None,
) -> ChanceLevel | None:
    """``metric``'s chance level from the test ``labels`` (with ``classes`` outputs for classification); None when
    it needs labels and there are none. ``examples``: the test split's size when there are no labels."""
    if labels is None or len(labels) == 0:
        if problem_type != "regression" or metric not in CHANCE_BY_DEFINITION:
            return None
        value = CHANCE_BY_DEFINITION[metric]
        return ChanceLevel(metric, value, examples=examples or 0, noise=sampling_noise(metric, value, examples or 0))
    labels = np.asarray(labels)
    if problem_type == "classification":
        classes = max(int(classes or 0), int(labels.max()) + 1)
        prior = np.bincount(labels.astype(int), minlength=classes) / len(labels)
        outputs = np.tile(np.log(np.maximum(prior, 1e-12)), (len(labels), 1))
        uniform = 1 / classes if metric == "accuracy" else math.nan
    else:
        outputs, uniform = np.full((len(labels), 1), labels.astype(np.float64).mean()), math.nan
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # undefined precision of never-predicted classes
        scores = compute_metrics(problem_type, outputs, labels)
    if problem_type == "regression":
        scores.update(CHANCE_BY_DEFINITION)
    value = float(scores[metric])
    return ChanceLevel(metric, value, uniform, classes or 0, len(labels), sampling_noise(metric, value, len(labels)))


def near_chance(summary: Mapping[str, float], chance: ChanceLevel, higher_is_better: bool) -> bool:
    """Whether a loss's mean (``summary``: n, mean, std, ci_low, ci_high) is within noise of the chance level.

    No better than chance is near it; so is a margin under 1.96 times the test split's noise (``chance.noise``: every
    seed is scored on the same test examples). Beyond that, with 2 or more seeds, the verdict's rule: the mean is
    beyond noise only when its 95% CI excludes the level *and* the margin is at least its own seed std.
    """
    n, mean = int(summary["n"]), float(summary["mean"])
    if n == 0 or not np.isfinite(mean) or not np.isfinite(chance.value):
        return False
    margin = mean - chance.value if higher_is_better else chance.value - mean
    if margin <= 0 or margin < Z_TWO_SIDED * chance.noise:
        return True
    if n < 2:
        return False
    return bool(summary["ci_low"] <= chance.value <= summary["ci_high"] or margin < summary["std"])


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
