"""Render ``REPORT.md``, ``stats.csv`` and ``plots/`` from the results folder alone (``runs.csv`` and the per-run
files under ``runs/``), so the report can be rebuilt at any time. The statistics live in ``bench.stats`` and the
figures in ``bench.plots``; this module arranges them and writes the sentences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench import plots as figures
from bench import stats
from bench.analysis import (
    FINISHED,
    SKIPPED,
    CrossTask,
    TaskAnalysis,
    analyse_tasks,
    cross_task,
    statistics_frame,
    with_loss_spec,
)
from bench.config import FINE_TUNE, LINEAR_PROBE
from bench.fingerprint import stale_rows
from bench.metrics import ECE_BINS, HIGHER_IS_BETTER
from bench.results import DamagedRow, ResultsStore, learning_curve, run_protocols

REPORT_FILE = "REPORT.md"
STATS_FILE = "stats.csv"
# Metrics besides the main one whose significant differences to the baseline are headline findings.
HEADLINE_METRICS = {
    "recall_rarest": "rare-class recall",
    "ece": "calibration error (ECE)",
    "mae_rare": "the error on the rarest third of targets (MAE)",
}
SETTINGS = (
    "train_size",
    "epochs",
    "learning_rate",
    "batch_size",
    "max_length",
    "weight_decay",
    "warmup_ratio",
    "precision",
    "length_grouped",
    "torch_threads",
)
VERSIONS = ("python_version", "torch_version", "transformers_version", "datasets_version", "evaluate_version")
COST_COLUMNS = (
    ("train_seconds", "train s", "{:.1f}"),
    ("train_samples_per_second", "samples/s", "{:.1f}"),
    ("peak_rss_mb", "peak MB", "{:.0f}"),
    ("peak_gpu_mb", "peak GPU MB", "{:.0f}"),
)
PROTOCOL_TEXT = {
    FINE_TUNE: "every weight of the pretrained model is trained under each loss",
    LINEAR_PROBE: "the pretrained encoder is frozen: it embedded each task once (mean pooling over tokens) and only a "
    "linear head on those embeddings is trained under each loss",
}
PROBE_NOTE = (
    "**These are linear-probe results on a frozen encoder, not fine-tuning results.** The pretrained encoder embedded "
    "each task once (mean pooling over tokens) and only a linear head on those embeddings was trained under each "
    "loss. This is a different protocol: do not compare these numbers with fine-tuned ones. A loss term on the "
    "sentence embeddings (a contrastive one) cannot move them here, so only the loss's term on the logits trains."
)
FEW_TASKS = 10  # below this many tasks, Friedman's chi-squared approximation is rough (scipy's note; Demšar 2006)
DASH = "–"
CLIPPED_MARK = "†"  # an interval clipped to the metric's range
CHANCE_MARK = "≈ chance"  # a mean within noise of the chance level
CLIPPED_NOTE = (
    f"{CLIPPED_MARK} The 95% t-interval reached past the metric's range and is clipped to it (here or under All "
    "metrics); with fewer than 5 seeds the t-interval of a bounded metric is rough."
)
NO_HISTORY = "no per-run log history was found"
ONLY_FINAL_HISTORY = (
    "the runs' log histories hold only their final summary, no training loss by step: they trained for fewer steps "
    "than the logging interval of that time (runs made now log at least once)"
)

HOW_TO_READ = f"""\
Method: each (task, loss) is run with the same seeds; a loss is compared with its task's baseline (`cross_entropy`
for classification, `mse` for regression) by a **{stats.PAIRED_TEST}** on the per-seed differences, and the p-values
of one task and metric are **Holm-corrected** across its losses (α = {stats.ALPHA}). The t-test is used because
Wilcoxon's signed-rank test cannot reach p < 0.05 with fewer than 6 seeds. With 1 seed nothing is tested.

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
- Other metric columns: mean ± std over seeds; ▲ / ▼ marks a loss that is better / worse than the baseline on that
  metric by the same rule as `verdict` (paired t-test, Holm across losses, beyond the baseline's seed std).
- `accuracy ↑`, `f1_macro ↑` (macro-averaged F1), `mcc ↑` (Matthews correlation): test-set classification quality.
  Macro-F1 and MCC weigh every class, so they move when rare classes are won or lost; accuracy mostly does not.
- `recall_macro ↑`: recall averaged over classes; `recall_rarest ↑`: recall of the class rarest in training.
  The latter is where class-imbalance losses should help.
- `ece ↓`: expected calibration error, top-label confidence vs accuracy over 15 equal-width confidence bins.
  0 is perfectly calibrated. The column is the mean of the runs' own ECEs; the reliability diagrams pool every
  seed's predictions into one set of bins, a different number (both are in each diagram's title).
- `brier ↓`: multi-class Brier score, Σ_k (p_k − [k = y])², and `nll ↓`: negative log-likelihood −log p_y.
  Both are proper scoring rules: they reward probabilities that are both sharp and calibrated.
- `pearson ↑`, `spearman ↑`: linear and rank correlation of predictions with targets; `r2 ↑`: 1 − SSE / SST.
  R² can be negative: worse than predicting the test mean.
- `mse ↓`, `mae ↓`: mean squared and mean absolute error, in the target's units (squared for mse).
  They are sensitive to the prediction's scale, which correlation is not.
- `mae_rare ↓`, `mae_common ↓`: MAE on the rarest third of test targets (lowest density) vs the other two thirds.
  Imbalanced-regression losses should lower `mae_rare` without raising `mae_common` much.
- `train s`, `samples/s`: mean training time per run and training throughput (examples per second).
  They are measured on the hardware in the top table; compare them only within one report.
- `peak MB` (and `peak GPU MB` when a GPU ran): peak resident memory of the process during training.
  The shared model dominates it; a loss that needs more memory shows up as a higher peak.

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


def _arrow(metric: str) -> str:
    return "↑" if HIGHER_IS_BETTER.get(metric, True) else "↓"


def _num(value: float, digits: int = 4) -> str:
    return DASH if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _mean_std(mean: float, std: float) -> str:
    if not np.isfinite(mean):
        return DASH
    return f"{mean:.4f}" + ("" if not np.isfinite(std) else f" ± {std:.4f}")


def _p(value: float) -> str:
    if not np.isfinite(value):
        return DASH
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _p_is(value: float) -> str:
    """'p = 0.012' or 'p < 0.001', for sentences."""
    text = _p(value)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _interval(low: float, high: float, clipped: bool) -> str:
    """'[low, high]', with † when it was clipped to the metric's range."""
    return DASH if not np.isfinite(low) else f"[{low:.4f}, {high:.4f}]" + (CLIPPED_MARK if clipped else "")


def _ci(row: pd.Series) -> str:
    return _interval(row["ci_low"], row["ci_high"], bool(row.get("ci_clipped", False)))


def _diff_ci(row: pd.Series) -> str:
    return _interval(row["diff_ci_low"], row["diff_ci_high"], bool(row.get("diff_ci_clipped", False)))


def _diff(row: pd.Series) -> str:
    if row["n_pairs"] == 0 or not np.isfinite(row["diff_mean"]):
        return DASH
    cell = f"{row['diff_mean']:+.4f}" + ("" if not np.isfinite(row["diff_std"]) else f" ± {row['diff_std']:.4f}")
    return cell + (f" ({int(row['n_pairs'])} pairs)" if row["n_pairs"] < row["n"] else "")


def _distinct(frame: pd.DataFrame, column: str) -> str:
    if column not in frame.columns:
        return "n/a"
    values = sorted(frame[column].dropna().astype(str).unique().tolist())
    return ", ".join(values) if values else "n/a"


def _failed(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[~runs["status"].isin([FINISHED, SKIPPED])]


def report_protocol(runs: pd.DataFrame) -> str:
    """The one protocol of the runs. Fine-tuned and linear-probe results are never pooled into one report."""
    found = sorted(set(run_protocols(runs)))
    if len(found) > 1:
        raise ValueError(
            f"The results mix protocols ({' and '.join(found)}), which are not comparable: put each protocol's runs "
            "in its own results folder and report them separately."
        )
    return found[0] if found else FINE_TUNE


# --- headline ---------------------------------------------------------------------------------------------------


def _metric_words(analysis: TaskAnalysis, metric: str) -> str:
    return f"{metric} {_arrow(metric)}" if metric == analysis.main_metric else HEADLINE_METRICS[metric]


def _finding(analysis: TaskAnalysis, metric: str, loss: str, row: pd.Series) -> str:
    verb = "raises" if row["diff_mean"] > 0 else "lowers"
    return (
        f"On {analysis.task}, {loss} {verb} {_metric_words(analysis, metric)} by {abs(row['diff_mean']):.4f} ± "
        f"{row['diff_std']:.4f} over {analysis.baseline} (paired over {int(row['n_pairs'])} seeds, "
        f"{_p_is(row['p_holm'])} after Holm): {row['verdict']}."
    )


def _best_sentence(analysis: TaskAnalysis) -> str:
    main, metric = analysis.main, f"{analysis.main_metric} {_arrow(analysis.main_metric)}"
    best = analysis.losses[0]
    row = main.loc[best]
    if analysis.max_n < 2:
        return (
            f"On {analysis.task}, every loss has at most one finished seed, so there are no confidence intervals and "
            f"no tests; the best single run is {best}'s {metric} of {row['mean']:.4f}."
        )
    head = f"On {analysis.task}, the best mean {metric} is {best}'s {_mean_std(row['mean'], row['std'])}"
    if best == analysis.baseline:
        beaten = main.drop(index=best)["verdict"].eq(stats.BETTER).any()  # possible: pairing removes seed noise
        return f"{head}: that is the baseline" + ("." if beaten else ", and no loss beats it beyond seed noise.")
    if analysis.baseline not in main.index or main.at[analysis.baseline, "n"] == 0:
        return f"{head}; the baseline {analysis.baseline} has no finished run here, so nothing is tested."
    if row["verdict"] == stats.TOO_FEW:
        return f"{head}; it shares fewer than 2 seeds with {analysis.baseline}, so it is not tested."
    verdict = {
        stats.BETTER: f"better than {analysis.baseline}",
        stats.NOISE: f"within noise, not distinguishable from {analysis.baseline}",
    }.get(row["verdict"], row["verdict"])
    if row["verdict"] == stats.NOISE and row["p_holm"] < stats.ALPHA:
        baseline_std = main.at[analysis.baseline, "std"]
        verdict = f"within noise, smaller than {analysis.baseline}'s own seed std of {baseline_std:.4f}"
    return (
        f"{head}, {row['diff_mean']:+.4f} ± {row['diff_std']:.4f} against {analysis.baseline} paired by seed "
        f"({_p_is(row['p_holm'])} after Holm): {verdict}."
    )


def _chance_sentence(analysis: TaskAnalysis) -> str:
    """Which losses score within noise of chance on the main metric."""
    level = f"{analysis.main_metric} {analysis.chance.value:.4f}"
    finished = [loss for loss in analysis.losses if analysis.main.at[loss, "n"] > 0]
    if set(finished) <= set(analysis.near_chance):
        return (
            f"On {analysis.task}, every loss is within noise of chance level ({level}): these runs learned little, "
            "so their differences say little (train on more examples or for more epochs)."
        )
    count = len(analysis.near_chance)
    losses = "1 loss is" if count == 1 else f"{count} losses are"
    return f"On {analysis.task}, {losses} within noise of chance level ({level}): {', '.join(analysis.near_chance)}."


def headline(analyses: list[TaskAnalysis], across: list[CrossTask], runs: pd.DataFrame) -> list[str]:
    sentences = []
    findings = 0
    for analysis in analyses:
        if analysis.max_n == 0:
            sentences.append(f"On {analysis.task}, no run finished.")
            continue
        sentences.append(_best_sentence(analysis))
        if analysis.near_chance:
            sentences.append(_chance_sentence(analysis))
        for metric in [analysis.main_metric, *(m for m in analysis.metrics if m in HEADLINE_METRICS)]:
            table = analysis.table.loc[metric]
            for loss in table.index:
                row = table.loc[loss]
                if row["verdict"] in (stats.BETTER, stats.WORSE):
                    findings += 1
                    if not (metric == analysis.main_metric and loss == analysis.losses[0]):
                        sentences.append(_finding(analysis, metric, loss, row))
    tested = [a for a in analyses if a.max_n >= 2]
    if tested and not findings:
        extra = sorted({HEADLINE_METRICS[m] for a in tested for m in a.metrics if m in HEADLINE_METRICS})
        sentences.append(
            "No loss differs from its task's baseline beyond seed noise on the main metric"
            + (f" or on {', '.join(extra)}" if extra else "")
            + f" ({stats.PAIRED_TEST} over seeds, Holm-corrected)."
        )
    if any(a.max_n == 1 for a in analyses):
        single = ", ".join(a.task for a in analyses if a.max_n == 1)
        sentences.append(
            f"With 1 seed ({single}) no test is possible: differences there are single runs, not findings."
        )
    for item in across:
        sentences.append(_across_sentence(item))
    failed = _failed(runs)
    if len(failed):
        kinds = ", ".join(f"{count} {status}" for status, count in failed["status"].value_counts().items())
        sentences.append(
            f"{len(failed)} run(s) did not finish ({kinds}); they are listed under Failed runs and left out of "
            "every statistic."
        )
    return sentences


def _across_sentence(item: CrossTask) -> str:
    tasks = list(item.scores.index)
    if len(tasks) < 2:
        return (
            f"There is a single {item.problem_type} task ({tasks[0]}), so its losses are not ranked across tasks "
            f"and there is no Friedman test (it {item.friedman.reason})."
        )
    mean_ranks = item.ranks.mean(axis=0).sort_values()
    where = f"Across the {len(tasks)} {item.problem_type} tasks"
    best = f"{mean_ranks.index[0]} has the best mean rank on the main metric ({mean_ranks.iloc[0]:.2f})"
    friedman = item.friedman
    if friedman.reason:
        return f"{where}, {best}; there is no Friedman test (it {friedman.reason})."
    differ = "differ beyond chance" if friedman.p < stats.ALPHA else "do not differ beyond chance"
    text = (
        f"{where}, {best}; Friedman's test over {len(friedman.losses)} losses gives χ² = {friedman.statistic:.2f}, "
        f"{_p_is(friedman.p)}: the losses' ranks {differ} (α = {stats.ALPHA})"
    )
    if friedman.p < stats.ALPHA and not _nemenyi_pairs(friedman):
        text += ", but the Nemenyi post-hoc test tells no pair of losses apart"
    if len(tasks) < FEW_TASKS:
        text += f"; with {len(tasks)} tasks the test is a rough approximation"
    return text + "."


def _nemenyi_pairs(friedman: stats.Friedman) -> list[str]:
    """The pairs of losses that Nemenyi's test tells apart, with their p-values."""
    nemenyi = friedman.nemenyi
    return [
        f"{a} vs {b} ({_p_is(nemenyi.at[a, b])})"
        for i, a in enumerate(nemenyi.index)
        for b in nemenyi.columns[i + 1 :]
        if nemenyi.at[a, b] < stats.ALPHA
    ]


# --- sections ---------------------------------------------------------------------------------------------------


def _hardware_and_precision(finished: pd.DataFrame) -> str | None:
    """Each (hardware, precision) that made finished runs, with its count, when the runs mix several; else None."""
    if not {"hardware", "precision"} <= set(finished.columns):
        return None
    counts = finished[["hardware", "precision"]].astype(object).fillna("n/a").value_counts(sort=False).sort_index()
    if len(counts) < 2:
        return None
    return "; ".join(f"{hardware}, {precision}: {n} ok runs" for (hardware, precision), n in counts.items())


def _header(runs: pd.DataFrame) -> list[str]:
    finished = runs[runs["status"] != SKIPPED]
    lines = ["## Environment and matrix", ""]
    rows = [[name, _distinct(finished, name)] for name in ("model", "hardware", "git_commit", *VERSIONS)]
    made_by = _hardware_and_precision(runs[runs["status"] == FINISHED])
    if made_by:
        rows.insert(2, ["hardware, precision", made_by])
    protocol = report_protocol(runs)
    rows.append(["protocol", f"**{protocol}**: {PROTOCOL_TEXT[protocol]}"])
    settings = ", ".join(f"{name}={_distinct(finished, name)}" for name in SETTINGS)
    rows.append(["settings", settings])
    rows.append(["tasks", _distinct(runs, "task")])
    rows.append(["losses", _distinct(runs, "loss_spec")])
    rows.append(["seeds", _distinct(finished, "seed")])
    counts = runs["status"].value_counts()
    failed = _failed(runs)["status"].value_counts()
    kinds = f" ({', '.join(f'{n} {status}' for status, n in failed.items())})" if len(failed) else ""
    rows.append(
        [
            "runs",
            f"{counts.get(FINISHED, 0)} ok, {int(failed.sum())} failed{kinds}; "
            f"{counts.get(SKIPPED, 0)} incompatible (task, loss) pairs skipped",
        ]
    )
    rows.append(["paired test", f"{stats.PAIRED_TEST}, Holm-corrected across each task's losses, α = {stats.ALPHA}"])
    if "train_seconds" in runs.columns:
        seconds = pd.to_numeric(runs["train_seconds"], errors="coerce").sum()
        rows.append(["total training time", f"{seconds / 60:.1f} min"])
    if "feature_seconds" in runs.columns:
        seconds = pd.to_numeric(runs["feature_seconds"], errors="coerce").sum()
        rows.append(["encoding time", f"{seconds:.0f} s (the frozen encoder, once per task; 0 when cached)"])
    lines.append(tabulate(rows, headers=["", "value"], tablefmt="github", disable_numparse=True))
    return lines


def _n_cell(analysis: TaskAnalysis, loss: str, n: int) -> str:
    failed = _failed(analysis.rows[analysis.rows["loss_spec"].astype(str) == loss])["status"].value_counts()
    return str(n) + (f" ({', '.join(f'{k} {status}' for status, k in failed.items())})" if len(failed) else "")


def _best_means(analysis: TaskAnalysis) -> dict[str, float]:
    best = {}
    for metric in analysis.metrics:
        means = analysis.table.loc[metric]["mean"]
        best[metric] = means.max() if HIGHER_IS_BETTER.get(metric, True) else means.min()
    return best


def _task_table(analysis: TaskAnalysis) -> str:
    main, best = analysis.main, _best_means(analysis)
    others = analysis.metrics[1:]
    costs = [
        (column, header, fmt)
        for column, header, fmt in COST_COLUMNS
        if column in analysis.finished.columns
        and pd.to_numeric(analysis.finished[column], errors="coerce").notna().any()
    ]
    rows = []
    for loss in analysis.losses:
        row = main.loc[loss]
        cell = _mean_std(row["mean"], row["std"])
        main_cell = f"**{cell}**" if np.isfinite(row["mean"]) and row["mean"] == best[analysis.main_metric] else cell
        main_cell += f" {CHANCE_MARK}" if loss in analysis.near_chance else ""
        p_cell = _p(row["p_holm"])
        cells = [loss, _n_cell(analysis, loss, int(row["n"])), main_cell, _ci(row), _diff(row), p_cell, row["verdict"]]
        for metric in others:
            other = analysis.table.loc[(metric, loss)]
            cell = _mean_std(other["mean"], other["std"])
            if np.isfinite(other["mean"]) and other["mean"] == best[metric]:
                cell = f"**{cell}**"
            cell += {stats.BETTER: " ▲", stats.WORSE: " ▼"}.get(other["verdict"], "")
            cells.append(cell)
        loss_runs = analysis.finished[analysis.finished["loss_spec"].astype(str) == loss]
        for column, _, fmt in costs:
            value = pd.to_numeric(loss_runs[column], errors="coerce").mean()
            cells.append(DASH if not np.isfinite(value) else fmt.format(value))
        rows.append(cells)
    headers = [
        "loss",
        "n",
        f"{analysis.main_metric} {_arrow(analysis.main_metric)}",
        "95% CI",
        f"Δ vs {analysis.baseline}",
        "p (Holm)",
        "verdict",
        *[f"{m} {_arrow(m)}" for m in others],
        *[header for _, header, _ in costs],
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _all_metrics_table(analysis: TaskAnalysis) -> str:
    rows = []
    for metric in analysis.metrics:
        table = analysis.table.loc[metric]
        for loss in analysis.losses:
            row = table.loc[loss]
            rows.append(
                [
                    f"{metric} {_arrow(metric)}",
                    loss,
                    int(row["n"]),
                    _mean_std(row["mean"], row["std"]),
                    _ci(row),
                    _diff(row),
                    _diff_ci(row),
                    _p(row["p"]),
                    _p(row["p_holm"]),
                    row["verdict"],
                ]
            )
    delta = f"Δ vs {analysis.baseline}"
    headers = ["metric", "loss", "n", "mean ± std", "95% CI", delta, "95% CI of Δ", "p", "p (Holm)", "verdict"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _plot_links(
    analysis: TaskAnalysis, plots: Mapping[tuple[str, str], str], absent: Mapping[tuple[str, str], str]
) -> list[str]:
    """Links to the task's figures; for a figure not drawn, why (``absent``, else the default reason)."""
    lines = []
    main = plots.get((analysis.task, "main"))
    if main:
        lines += [f"![{analysis.task}: {analysis.main_metric} per loss with 95% CIs]({main})", ""]
    links = []
    for kind, label, reason in (
        ("main", "main metric per loss", None),
        ("learning_curves", "learning curves", NO_HISTORY),
        ("reliability", "reliability diagrams", "no per-run test predictions were found"),
    ):
        path = plots.get((analysis.task, kind))
        if path:
            links.append(f"[{label}]({path})")
        elif reason and plots and (kind != "reliability" or analysis.problem_type == "classification"):
            links.append(f"{label}: none ({absent.get((analysis.task, kind), reason)})")
    if links:
        lines.append("Plots: " + " · ".join(links))
    if plots.get((analysis.task, "reliability")):
        lines += ["", _pooled_ece_note(analysis)]
    return lines


def _pooled_ece_note(analysis: TaskAnalysis) -> str:
    """What the reliability diagrams pool, and how their ECE differs from the table's."""
    seeds = _distinct(analysis.finished, "seed")
    return (
        f"The reliability diagrams pool every seed's test predictions (seeds {seeds}) into one set of {ECE_BINS} "
        "bins per loss; each panel gives that **pooled ECE** beside the **mean of the runs' own ECEs**, which is the "
        "`ece` column of the table. Pooled is never above the mean (on equal test splits): in a pooled bin one run's "
        "over-confidence cancels another's under-confidence, while each run's own ECE on few examples is biased up."
    )


def _chance_text(analysis: TaskAnalysis) -> str:
    """The main metric's chance level, how it was found, and which losses are within noise of it."""
    chance, metric = analysis.chance, analysis.main_metric
    if chance is None:
        return f"Chance level of {metric}: unknown (no finished run saved its test predictions)."
    if analysis.problem_type == "classification":
        text = (
            f"Chance level of {metric}: {chance.value:.4f}, always predicting the most common of the "
            f"{chance.examples} test labels (the test class frequencies as probabilities)"
        )
        if np.isfinite(chance.uniform):
            text += f"; a uniform random guess scores 1/{chance.classes} = {chance.uniform:.4f}"
    elif metric in stats.CHANCE_BY_DEFINITION:
        text = f"Chance level of {metric}: {chance.value:g}, a prediction that ignores the input"
    else:
        text = (
            f"Chance level of {metric}: {chance.value:.4f}, predicting the mean of the {chance.examples} test targets"
        )
    if chance.noise > 0:
        text += f"; the test split's sampling noise there is ± {chance.noise:.4f} (one standard error)"
    text += "."
    if analysis.near_chance:
        count = len(analysis.near_chance)
        text += (
            f" `{CHANCE_MARK}` marks the {'loss' if count == 1 else f'{count} losses'} within noise of it: no "
            f"better, closer than {stats.Z_TWO_SIDED:.2f} × that noise or than its own seed std, or a 95% CI "
            "covering it."
        )
    return text


def _any_clipped(analysis: TaskAnalysis) -> bool:
    table = analysis.table
    return bool(table["ci_clipped"].astype(bool).any() or table["diff_ci_clipped"].astype(bool).any())


def _task_section(
    analysis: TaskAnalysis, plots: Mapping[tuple[str, str], str], absent: Mapping[tuple[str, str], str]
) -> list[str]:
    rows = analysis.rows
    probe = report_protocol(rows) == LINEAR_PROBE
    lines = [
        "",
        f"## {analysis.task}",
        "",
        ("**Linear probe on a frozen encoder** (not comparable with fine-tuning): " if probe else "")
        + f"{analysis.problem_type}, task version {_distinct(rows, 'task_version')}, "
        f"main metric **{analysis.main_metric} {_arrow(analysis.main_metric)}**, baseline **{analysis.baseline}**, "
        f"{_distinct(rows, 'train_examples')} training / {_distinct(rows, 'test_examples')} test examples, "
        f"seeds {_distinct(analysis.finished, 'seed')}.",
        "",
    ]
    if analysis.max_n == 0:
        return [*lines, "No finished runs."]
    lines += [_chance_text(analysis), "", _task_table(analysis)]
    if _any_clipped(analysis):
        lines += ["", CLIPPED_NOTE]
    links = _plot_links(analysis, plots, absent)
    if links:
        lines += ["", *links]
    lines += [
        "",
        "<details><summary>All metrics: 95% CIs and paired differences to the baseline</summary>",
        "",
        _all_metrics_table(analysis),
        "",
        "</details>",
    ]
    return lines


def _across_section(across: list[CrossTask], plots: Mapping[tuple[str, str], str]) -> list[str]:
    if not across:
        return []
    lines = [
        "",
        "## Across tasks",
        "",
        "Rank of each loss on each task's main metric (1 = best), and the mean over the tasks where it ran.",
    ]
    for item in across:
        tasks = list(item.scores.index)
        mean_ranks = item.ranks.mean(axis=0)
        counts = item.ranks.notna().sum(axis=0)
        order = sorted(item.ranks.columns, key=lambda loss: (mean_ranks[loss], loss))
        rows = [
            [loss, f"{mean_ranks[loss]:.2f}", int(counts[loss]), *[_num(item.ranks.at[t, loss], 1) for t in tasks]]
            for loss in order
        ]
        lines += [
            "",
            f"### {item.problem_type}: {len(tasks)} task{'s' if len(tasks) != 1 else ''}",
            "",
            tabulate(rows, headers=["loss", "mean rank", "tasks", *tasks], tablefmt="github", disable_numparse=True),
            "",
            _friedman_text(item),
        ]
        path = plots.get((item.problem_type, "critical_difference"))
        if path:
            lines += ["", f"![critical-difference diagram, {item.problem_type}]({path})"]
    return lines


def _friedman_text(item: CrossTask) -> str:
    friedman = item.friedman
    if friedman.reason:
        return f"Friedman test: not run; it {friedman.reason}."
    k, n = len(friedman.losses), len(friedman.tasks)
    excluded = sorted(set(item.ranks.columns) - set(friedman.losses))
    text = (
        f"Friedman test over {k} losses × {n} tasks (the losses with results on every task): "
        f"χ² = {friedman.statistic:.2f} (df {k - 1}), {_p_is(friedman.p)}; "
        + (
            "the losses' ranks differ beyond chance."
            if friedman.p < stats.ALPHA
            else "the losses' ranks do not differ beyond chance."
        )
    )
    if excluded:
        text += f" Left out for missing a task: {', '.join(excluded)}."
    pairs = _nemenyi_pairs(friedman)
    text += f" Nemenyi post-hoc, critical difference {friedman.critical_difference:.2f} ranks: " + (
        f"{len(pairs)} pair(s) differ: {'; '.join(pairs)}." if pairs else "no pair of losses differs at α = 0.05."
    )
    if friedman.p >= stats.ALPHA and pairs:
        text += " (Friedman's test did not reject, so these pairs are not findings.)"
    if n < FEW_TASKS:
        text += f" With {n} tasks the χ² approximation is rough; read the p-value as indicative."
    if item.shared_bases:
        text += (
            f" Task sections built from the same data ({', '.join(item.shared_bases)}) are not independent, "
            "so the test is optimistic."
        )
    return text


def render_report(runs: pd.DataFrame, plots: Mapping[tuple[str, str], str] | None = None) -> str:
    """The Markdown report for ``runs``; ``plots`` maps (task or problem type, kind) to a relative PNG path."""
    runs = with_loss_spec(runs)
    analyses = analyse_tasks(runs)
    return _render(runs, analyses, cross_task(analyses), plots or {})


def _render(
    runs: pd.DataFrame,
    analyses: list[TaskAnalysis],
    across: list[CrossTask],
    plots: Mapping[tuple[str, str], str],
    absent: Mapping[tuple[str, str], str] | None = None,
    *,
    damaged: Sequence[DamagedRow] = (),
    stale: pd.DataFrame | None = None,
) -> str:
    """``absent`` maps (task, kind) to why that figure was not drawn; ``damaged`` are the rows of runs.csv that were
    not counted, ``stale`` the rows computed by other code or data (``bench.fingerprint.stale_rows``)."""
    sentences = headline(analyses, across, runs)
    probe = report_protocol(runs) == LINEAR_PROBE
    lines = [
        "# lossbench report" + (": linear probe on a frozen encoder" if probe else ""),
        "",
        "Generated from `runs.csv` and `runs/` by `lossbench report`; do not edit by hand.",
        "",
        *([PROBE_NOTE, ""] if probe else []),
        "## Headline findings",
        "",
        *([f"- {sentence}" for sentence in sentences] or ["- No finished runs."]),
        "",
        *_header(runs),
        *_checks_note(damaged, stale),
        "",
        "## How to read this report",
        "",
        HOW_TO_READ,
    ]
    for analysis in analyses:
        lines += _task_section(analysis, plots, absent or {})
    lines += _across_section(across, plots)
    skipped = runs[runs["status"] == SKIPPED]
    if len(skipped):
        lines += ["", "## Skipped pairs", ""]
        rows = skipped.reindex(columns=["task", "loss_spec", "message"]).sort_values(["task", "loss_spec"])
        lines.append(tabulate(rows.fillna("").values.tolist(), headers=["task", "loss", "reason"], tablefmt="github"))
    failed = _failed(runs)
    if len(failed):
        lines += ["", "## Failed runs", ""]
        columns = ["task", "loss_spec", "seed", "status", "error_type", "message"]
        rows = failed.reindex(columns=columns).astype(object).fillna("").values.tolist()
        headers = ["task", "loss", "seed", "status", "error", "message"]
        lines.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    lines += _stale_section(stale)
    lines += _damaged_section(damaged)
    return "\n".join(lines) + "\n"


def _checks_note(damaged: Sequence[DamagedRow], stale: pd.DataFrame | None) -> list[str]:
    """A line under the header table counting stale and damaged rows, when there are any."""
    counts = []
    stale_count = int(stale.loc[stale["checked"], "rows"].sum()) if stale is not None else 0
    if stale_count:
        counts.append(
            f"**{stale_count} stale row(s)**, not known to be computed by the current code and data (Stale rows)"
        )
    if damaged:
        counts.append(f"**{len(damaged)} damaged row(s)** of `runs.csv`, not counted anywhere (Damaged rows)")
    return ["", "Checks: " + "; ".join(counts) + "."] if counts else []


def _stale_section(stale: pd.DataFrame | None) -> list[str]:
    if stale is None or stale.empty:
        return []
    rows = [
        [task, ", ".join(f"{loss} ({n})" for loss, n in zip(group["loss"], group["rows"], strict=True)), changed]
        for (task, changed), group in stale.groupby(["task", "changed"], sort=True)
    ]
    return [
        "",
        "## Stale rows",
        "",
        "These rows' `fingerprint` (the code of their loss, their task and the training machinery, and the task's "
        "data) is not the current one, or could not be checked: their numbers are still in the tables above. Running "
        "the same `lossbench run` again reruns the stale ones and replaces their rows.",
        "",
        tabulate(rows, headers=["task", "loss (rows)", "what changed"], tablefmt="github", disable_numparse=True),
    ]


def _damaged_section(damaged: Sequence[DamagedRow]) -> list[str]:
    if not damaged:
        return []
    rows = [[row.line, row.run_id or "(unreadable)", row.reason] for row in damaged]
    return [
        "",
        "## Damaged rows",
        "",
        "These lines of `runs.csv` could not be read as sound rows, so no statistic above counts them. `lossbench run` "
        "runs their runs again and replaces them; a line whose run_id is unreadable stays until you delete it.",
        "",
        tabulate(rows, headers=["line", "run_id", "problem"], tablefmt="github", disable_numparse=True),
    ]


# --- plots ------------------------------------------------------------------------------------------------------


def draw_plots(
    store: ResultsStore, analyses: list[TaskAnalysis], across: list[CrossTask]
) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Write every figure under ``DIR/plots/``, remove figures left from earlier reports; returns
    (task or problem type, kind) -> path relative to ``DIR``, and (task, kind) -> why a figure was not drawn."""
    plots_dir = store.out_dir / figures.PLOTS_DIR
    written: dict[tuple[str, str], Path] = {}
    absent: dict[tuple[str, str], str] = {}
    for analysis in analyses:
        if analysis.max_n == 0:
            continue
        stem = figures.file_stem(analysis.task)
        title = f"{analysis.task}: {analysis.main_metric} {_arrow(analysis.main_metric)}"
        title += " (linear probe, frozen encoder)" if report_protocol(analysis.rows) == LINEAR_PROBE else ""
        column = f"test_{analysis.main_metric}"
        seeds = analysis.finished[["loss_spec", column]].rename(columns={"loss_spec": "loss", column: "value"})
        main = analysis.main.loc[[loss for loss in analysis.losses if analysis.main.at[loss, "n"] > 0]]
        written[(analysis.task, "main")] = figures.main_metric_plot(
            main, seeds.dropna(), analysis.main_metric, analysis.baseline, title, plots_dir / f"{stem}_main_metric.png"
        )
        curves, histories = _learning_curves(store, analysis)
        path = figures.learning_curves_plot(
            curves, analysis.main_metric, f"{analysis.task}: learning curves", plots_dir / f"{stem}_learning_curves.png"
        )
        if path:
            written[(analysis.task, "learning_curves")] = path
        else:
            absent[(analysis.task, "learning_curves")] = ONLY_FINAL_HISTORY if histories else NO_HISTORY
        if analysis.problem_type == "classification":
            bins = _reliability(store, analysis)
            path = figures.reliability_plot(
                bins,
                {loss: stats.calibration_error(frame) for loss, frame in bins.items()},
                _mean_run_ece(analysis),
                f"{analysis.task}: reliability (test set, seeds pooled, {ECE_BINS} bins)",
                plots_dir / f"{stem}_reliability.png",
            )
            if path:
                written[(analysis.task, "reliability")] = path
    for item in across:
        friedman = item.friedman
        if friedman.reason is None:
            written[(item.problem_type, "critical_difference")] = figures.critical_difference_plot(
                friedman.mean_ranks,
                friedman.nemenyi,
                friedman.critical_difference,
                f"{item.problem_type}: mean rank on the main metric over {len(friedman.tasks)} tasks (lower is better)",
                plots_dir / f"critical_difference_{figures.file_stem(item.problem_type)}.png",
            )
    if plots_dir.exists():
        for stale in set(plots_dir.glob("*.png")) - set(written.values()):
            stale.unlink()
    return {key: path.relative_to(store.out_dir).as_posix() for key, path in written.items()}, absent


def _mean_run_ece(analysis: TaskAnalysis) -> dict[str, float]:
    """Per loss, the mean of its runs' own ECEs: the table's ``ece`` column."""
    return dict(analysis.table.loc["ece"]["mean"]) if "ece" in analysis.metrics else {}


def _learning_curves(store: ResultsStore, analysis: TaskAnalysis) -> tuple[pd.DataFrame, int]:
    """The task's learning curves from its runs' log histories, and how many runs have a log history at all."""
    frames, histories = [], 0
    for run in analysis.finished.itertuples():
        entries = store.log_history(run.run_id)
        if entries:
            histories += 1
            curve = learning_curve(entries, analysis.main_metric)
            frames.append(curve.assign(loss=str(run.loss_spec), seed=run.seed))
    frames = [frame for frame in frames if not frame.empty]
    empty = pd.DataFrame(columns=["loss", "seed", "step", "series"])
    return (pd.concat(frames, ignore_index=True) if frames else empty), histories


def _reliability(store: ResultsStore, analysis: TaskAnalysis) -> dict[str, pd.DataFrame]:
    """Per loss, the reliability bins of its test predictions pooled over seeds (losses without any are left out)."""
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
    return {
        loss: stats.reliability_bins(np.concatenate(logits), np.concatenate(labels))
        for loss, (logits, labels) in pooled.items()
    }


def write_report(out_dir: str | Path, *, plots: bool = True) -> Path:
    """Rebuild ``DIR/REPORT.md``, ``DIR/stats.csv`` and ``DIR/plots/`` from ``DIR/runs.csv`` and ``DIR/runs/``."""
    store = ResultsStore(out_dir)
    if not store.path.exists():
        raise FileNotFoundError(f"No results to report: {store.path} does not exist. Run `lossbench run` first.")
    results = store.read()
    runs = with_loss_spec(results.rows)
    report_protocol(runs)  # one protocol, before any figure is drawn
    analyses = analyse_tasks(runs, store)
    across = cross_task(analyses)
    links, absent = draw_plots(store, analyses, across) if plots else ({}, {})
    statistics_frame(analyses).to_csv(Path(out_dir) / STATS_FILE, index=False)
    path = Path(out_dir) / REPORT_FILE
    path.write_text(_render(runs, analyses, across, links, absent, damaged=results.damaged, stale=stale_rows(runs)))
    return path
