"""Render ``REPORT.md``, ``stats.csv`` and ``plots/`` from the results folder alone (``runs.csv`` and the per-run
files under ``runs/``), so the report can be rebuilt at any time. The statistics live in ``bench.stats`` and the
figures in ``bench.plots``; this module arranges them and writes the sentences."""

from __future__ import annotations

from collections.abc import Mapping
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
from bench.metrics import ECE_BINS, HIGHER_IS_BETTER
from bench.results import ResultsStore, learning_curve, run_protocols

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
- `95% CI`: the t-interval of the mean over seeds, mean ± t(0.975, n − 1) · std / √n.
  It needs n ≥ 2 and is wide with 3 seeds: a loss whose interval covers the baseline's mean is not shown better.
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
  0 is perfectly calibrated; the reliability diagrams show the bins.
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
difference, raw and Holm-corrected p and verdict; `{STATS_FILE}` holds these numbers unrounded.

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
(accuracy per confidence bin against the diagonal, seeds pooled). A loss's own value is never compared across losses:
different losses are on different scales.

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


def _ci(row: pd.Series) -> str:
    return DASH if not np.isfinite(row["ci_low"]) else f"[{row['ci_low']:.4f}, {row['ci_high']:.4f}]"


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


def headline(analyses: list[TaskAnalysis], across: list[CrossTask], runs: pd.DataFrame) -> list[str]:
    sentences = []
    findings = 0
    for analysis in analyses:
        if analysis.max_n == 0:
            sentences.append(f"On {analysis.task}, no run finished.")
            continue
        sentences.append(_best_sentence(analysis))
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


def _header(runs: pd.DataFrame) -> list[str]:
    finished = runs[runs["status"] != SKIPPED]
    lines = ["## Environment and matrix", ""]
    rows = [[name, _distinct(finished, name)] for name in ("model", "hardware", "git_commit", *VERSIONS)]
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
                    _p(row["p"]),
                    _p(row["p_holm"]),
                    row["verdict"],
                ]
            )
    headers = ["metric", "loss", "n", "mean ± std", "95% CI", f"Δ vs {analysis.baseline}", "p", "p (Holm)", "verdict"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _plot_links(analysis: TaskAnalysis, plots: Mapping[tuple[str, str], str]) -> list[str]:
    lines = []
    main = plots.get((analysis.task, "main"))
    if main:
        lines += [f"![{analysis.task}: {analysis.main_metric} per loss with 95% CIs]({main})", ""]
    links = []
    for kind, label, absent in (
        ("main", "main metric per loss", None),
        ("learning_curves", "learning curves", "no per-run log history was found"),
        ("reliability", "reliability diagrams", "no per-run test predictions were found"),
    ):
        path = plots.get((analysis.task, kind))
        if path:
            links.append(f"[{label}]({path})")
        elif absent and plots and (kind != "reliability" or analysis.problem_type == "classification"):
            links.append(f"{label}: none ({absent})")
    if links:
        lines.append("Plots: " + " · ".join(links))
    return lines


def _task_section(analysis: TaskAnalysis, plots: Mapping[tuple[str, str], str]) -> list[str]:
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
    lines.append(_task_table(analysis))
    links = _plot_links(analysis, plots)
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
    runs: pd.DataFrame, analyses: list[TaskAnalysis], across: list[CrossTask], plots: Mapping[tuple[str, str], str]
) -> str:
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
        "",
        "## How to read this report",
        "",
        HOW_TO_READ,
    ]
    for analysis in analyses:
        lines += _task_section(analysis, plots)
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
    return "\n".join(lines) + "\n"


# --- plots ------------------------------------------------------------------------------------------------------


def draw_plots(store: ResultsStore, analyses: list[TaskAnalysis], across: list[CrossTask]) -> dict:
    """Write every figure under ``DIR/plots/``, remove figures left from earlier reports; returns
    (task or problem type, kind) -> path relative to ``DIR``."""
    plots_dir = store.out_dir / figures.PLOTS_DIR
    written: dict[tuple[str, str], Path] = {}
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
        curves = _learning_curves(store, analysis)
        path = figures.learning_curves_plot(
            curves, analysis.main_metric, f"{analysis.task}: learning curves", plots_dir / f"{stem}_learning_curves.png"
        )
        if path:
            written[(analysis.task, "learning_curves")] = path
        if analysis.problem_type == "classification":
            bins = _reliability(store, analysis)
            path = figures.reliability_plot(
                bins,
                {loss: stats.calibration_error(frame) for loss, frame in bins.items()},
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
    return {key: path.relative_to(store.out_dir).as_posix() for key, path in written.items()}


def _learning_curves(store: ResultsStore, analysis: TaskAnalysis) -> pd.DataFrame:
    frames = []
    for run in analysis.finished.itertuples():
        entries = store.log_history(run.run_id)
        if entries:
            curve = learning_curve(entries, analysis.main_metric)
            frames.append(curve.assign(loss=str(run.loss_spec), seed=run.seed))
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["loss", "seed", "step", "series"])


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
    runs = with_loss_spec(store.load())
    report_protocol(runs)  # one protocol, before any figure is drawn
    analyses = analyse_tasks(runs)
    across = cross_task(analyses)
    links = draw_plots(store, analyses, across) if plots else {}
    statistics_frame(analyses).to_csv(Path(out_dir) / STATS_FILE, index=False)
    path = Path(out_dir) / REPORT_FILE
    path.write_text(_render(runs, analyses, across, links))
    return path
