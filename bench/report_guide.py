"""The report's "How to read this report" text, in one place: ``bench.report`` puts it in every REPORT.md, and
``make docs`` (``bench.docs``) writes it into docs/report.md, so the two never differ. Its paragraph on checkpoint
selection (``SELECTION_GUIDE``) is in a report only when the report has a checkpoint-selection table.

Its metric table comes from ``bench.metric_table``; its numbers (α, the paired test, Friedman's minimum) from
``bench.stats``.
"""

from __future__ import annotations

from bench import power, stats
from bench.api.task import BASELINE_LOSS_BY_PROBLEM_TYPE
from bench.metric_table import METRICS, METRICS_BY_PROBLEM_TYPE, range_text

STATS_FILE = "stats.csv"  # every number of the report, unrounded, written beside REPORT.md by bench.report


def _default_baselines() -> str:
    """'`cross_entropy` for classification, `mse` for regression'."""
    return ", ".join(f"`{loss}` for {problem_type}" for problem_type, loss in BASELINE_LOSS_BY_PROBLEM_TYPE.items())


def _metric_table() -> str:
    """A Markdown table of the task metrics: name and direction, problem type, range, what it measures."""
    rows = ["| metric | problem type | range | what it measures |", "|---|---|---|---|"]
    for problem_type, names in METRICS_BY_PROBLEM_TYPE.items():
        for name in names:
            metric = METRICS[name]
            rows.append(f"| `{name} {metric.arrow}` | {problem_type} | {range_text(name)} | {metric.description} |")
    return "\n".join(rows)


HOW_TO_READ = f"""\
Method: each (task, loss) is run with the same seeds; a loss is compared with its task's baseline, named under the
task's header (by default {_default_baselines()}),
by a **{stats.PAIRED_TEST}** on the per-seed differences, and the p-values of one task and metric are
**Holm-corrected** across its losses (α = {stats.ALPHA}). The t-test is used because Wilcoxon's signed-rank test
cannot reach p < 0.05 with fewer than 6 seeds. With 1 seed nothing is tested.

Task tables, one row per loss, best main metric first:

- `loss`: the loss and its non-default parameters (`loss_spec`), the identity of a row.
  The baseline's row is the reference for every difference and test in the table.
- `n`: seeds that finished for this loss on this task; runs that failed or diverged are counted in brackets.
  They are never averaged in; the statistics use the finished seeds only.
- main metric (e.g. `f1_macro ↑`): **mean ± standard deviation over seeds** on the held-out test split.
  ↑ higher is better, ↓ lower is better; the best mean of each metric column is in **bold**.
- `95% CI`: the t-interval of the mean over seeds, mean ± t(0.975, n − 1) · std / √n, clipped to the metric's range.
  It needs n ≥ 2 and is wide with 3 seeds: a loss whose interval covers the baseline's mean is not shown better.
  † marks an interval that reached past the range (e.g. below 0 for recall: t(0.975, 1) = 12.7 at 2 seeds) and was
  cut to it; at fewer than 5 seeds the t-interval of a bounded metric is a rough guide only.
- Chance level (below each task's header): the main metric of a predictor that learned nothing, on the test split.
  Classification: always the most common test class, with the class frequencies as probabilities (and, for accuracy,
  1 / classes for a uniform random guess); regression: Pearson, Spearman and R² are 0. `≈ chance` after a mean
  marks a loss within noise of it: no better, closer than 1.96 standard errors of the test split's sampling noise
  (every seed is scored on the same test examples) or than its own seed std, or its 95% CI covers it.
- `Δ vs <baseline>`: mean ± standard deviation of the per-seed difference loss − baseline on the main metric.
  Only seeds both finished are paired; "(k pairs)" appears when that is fewer than `n`.
- `p (Holm)`: the paired t-test's p-value on those differences, Holm-corrected across the task's losses.
  "–" means no test: fewer than 2 pairs, or this is the baseline.
- `verdict`: `better` / `worse` when p (Holm) < {stats.ALPHA} **and** |Δ| is at least the baseline's seed std.
  Otherwise `within noise`; `n < 2` when there are too few pairs to test, `baseline` for the baseline itself.
- `collapsed` (only when a run of the task collapsed): of the loss's finished runs, how many scored no better on
  the test main metric than a constant prediction learned from that run's training split, its majority class
  (classification) or its mean target (regression), on the same test labels (`collapsed` and
  `test_constant_<metric>` in `runs.csv`; rows written before these columns existed count as not collapsed).
  Collapsed runs stay in every statistic; the headline counts them per loss.
- Other metric columns: mean ± std over seeds; ▲ / ▼ marks a loss that is better / worse than the baseline on that
  metric by the same rule as `verdict` (paired t-test, Holm across losses, beyond the baseline's seed std).
- `train s`, `samples/s`: mean training time per run and training throughput (examples per second).
  They are measured on the hardware in the top table; compare them only within one report.
- `peak MB` (and `peak GPU MB` when a GPU ran): peak resident memory of the process during training.
  The shared model dominates it; a loss that needs more memory shows up as a higher peak.

Power (below each task table): the **minimum detectable difference** (MDD), the true paired difference on the main
metric that the task's seeds would detect with {power.POWER:.0%} power in the paired t-test at Holm's strictest
level α / m (m: the losses tested against the baseline; the later Holm steps are easier). It is computed exactly
(noncentral t) from the standard deviation of the paired differences, **pooled over the task's comparisons**
(√(Σ (nᵢ − 1) sᵢ² / Σ (nᵢ − 1))), and the fewest paired seeds of any comparison. A difference smaller than the MDD
that the report calls `within noise` is not shown absent: the seeds could not have found it. The line also gives
the seeds a difference of 0.01 (1 point) would need at that std; the headline repeats the MDD for a task where no
loss is better or worse than the baseline. `{STATS_FILE}` gives each comparison's own MDD (`mdd`, from its own
paired std), for every metric.

The metrics (↑ higher is better, ↓ lower is better; the range is every value a metric can take):

{_metric_table()}

"All metrics" (collapsed under each table) gives, for every metric, the same n, mean ± std, 95% CI, paired
difference with its 95% t-interval (clipped to ± the range's width), raw and Holm-corrected p and verdict;
`{STATS_FILE}` holds these numbers unrounded.

Across tasks, one table per problem type (classification and regression losses never share a task):

- task columns: the loss's rank on that task's main metric, 1 = best, ties sharing their mean rank.
  Ranks are of the mean over seeds; a loss is ranked only on tasks where it has finished runs.
- `mean rank`: the mean of those ranks, lower is better; rows are sorted by it.
  Read it with the Friedman line below the table: a rank order that chance could produce is no ranking.
- Friedman's test asks whether any loss ranks consistently better, over the losses with results on every task.
  It needs at least {stats.MIN_FRIEDMAN} tasks and {stats.MIN_FRIEDMAN} losses; with fewer the report says so instead.
- Nemenyi's post-hoc test compares every pair of losses; two losses whose mean ranks differ by less than the
  critical difference (CD) are not distinguishable. The critical-difference diagram joins them with a bar.

Plots (`plots/`): per task, the main metric per loss (each seed a grey dot, the mean with its 95% CI, coloured by
verdict); learning curves (training loss vs step per loss, each on its own scale, mean over seeds with their range
shaded; below, the validation main metric vs step when the runs logged it); reliability diagrams for classification
(accuracy per confidence bin against the diagonal, every seed's test predictions pooled into one set of bins: their
pooled ECE is not the table's mean of per-run ECEs, and each panel gives both). A loss's own value is never compared
across losses: different losses are on different scales.

Skipped pairs are (task, loss) combinations the loss does not support; failed runs are listed with their error."""

# Appended to HOW_TO_READ in a report whose runs selected a checkpoint (runs.csv has test_last_*), so reports of
# other runs stay as they were; docs/report.md holds both (GUIDE).
SELECTION_GUIDE = f"""\
Checkpoint selection (only for runs made with `--select-checkpoint`): each run scored the validation split during
training, kept the weights of its best validation main metric and scored the test split with them (the task table's
numbers) and with its last weights (`test_last_<metric>` in `runs.csv`). The table under the task's Power line gives
per loss `best − last`, the test main metric of the selected checkpoint minus that of the last weights, mean ± std
over seeds with its 95% t-interval, **signed so that positive means selection helped** (last − best for a ↓ metric);
near 0 the last weights were as good (or were the selected ones). Under label noise a positive gap is what selection
is for: later steps fit more of the wrong labels. `best step / steps`: the mean step of the selected
checkpoint and of the planned training steps; `evaluations`: validation evaluations per run; `stopped early`: runs
that `--patience` stopped before their planned steps. `{STATS_FILE}` gives the gap for every metric
(`best_minus_last_mean`, `_std`, `_ci_low`, `_ci_high`, `_n`)."""

GUIDE = f"{HOW_TO_READ}\n\n{SELECTION_GUIDE}"  # the whole text, as docs/report.md shows it
