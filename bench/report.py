"""Render ``REPORT.md``, ``stats.csv`` and ``plots/`` from the results folder alone (``runs.csv`` and the per-run
files under ``runs/``), so the report can be rebuilt at any time. Every number comes from ``bench.analysis``, the
figures are drawn by ``bench.plots`` and the "How to read" text is ``bench.report_guide``'s: this module only formats
the numbers and writes the sentences."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench import plots as figures
from bench import power, stats
from bench.analysis import (
    ONE_POINT,
    Analysis,
    CrossTask,
    TaskAnalysis,
    analyse,
    learning_curves,
    reliability,
    report_protocol,  # noqa: F401 - the runs' one protocol, importable from here as before
)
from bench.config import FINE_TUNE, FROZEN_ENCODER
from bench.fingerprint import stale_rows
from bench.metric_table import HEADLINE_METRICS, arrow, higher_is_better
from bench.metrics import ECE_BINS
from bench.report_guide import HOW_TO_READ, SELECTION_GUIDE, STATS_FILE
from bench.results import DamagedRow, ResultsStore
from bench.schema import SETTING_COLUMNS, VERSION_COLUMNS
from bench.status import Status

REPORT_FILE = "REPORT.md"
# The header's settings: every TrainConfig setting but the model and the protocol (rows of their own), and the torch
# threads (an environment column that sets the speed). Its versions: every library version a row records.
SETTINGS = (*(name for name in SETTING_COLUMNS if name not in ("model", "freeze_encoder", "protocol")), "torch_threads")
VERSIONS = VERSION_COLUMNS
# Header and format of each cost column (bench.analysis.COST_COLUMNS) in a task table.
COST_FORMATS = {
    "train_seconds": ("train s", "{:.1f}"),
    "train_samples_per_second": ("samples/s", "{:.1f}"),
    "peak_rss_mb": ("peak MB", "{:.0f}"),
    "peak_gpu_mb": ("peak GPU MB", "{:.0f}"),
}
PROTOCOL_TEXT = {
    FINE_TUNE: "the pretrained model is fine-tuned under each loss (`train_layers`: how many of its top layers train, "
    "every layer when absent)",
    FROZEN_ENCODER: "the pretrained encoder is frozen: its last layer's states were computed once per task and only "
    "the model's classification head on them is trained under each loss",
}
PROBE_NOTE = (
    "**These are results of a head trained on a frozen encoder (`--train-layers 0`), not fine-tuning results.** The "
    "pretrained encoder's last-layer states were computed once per task and only the model's classification head "
    "(pooler and classifier) was trained under each loss. This is a different protocol: do not compare these numbers "
    "with fine-tuned ones. A loss term on the sentence embeddings (a contrastive one) cannot move them here, so only "
    "the loss's term on the logits trains."
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


# --- headline ---------------------------------------------------------------------------------------------------


def _metric_words(analysis: TaskAnalysis, metric: str) -> str:
    return f"{metric} {arrow(metric)}" if metric == analysis.main_metric else HEADLINE_METRICS[metric]


def _finding(analysis: TaskAnalysis, metric: str, loss: str, row: pd.Series) -> str:
    verb = "raises" if row["diff_mean"] > 0 else "lowers"
    return (
        f"On {analysis.task}, {loss} {verb} {_metric_words(analysis, metric)} by {abs(row['diff_mean']):.4f} ± "
        f"{row['diff_std']:.4f} over {analysis.baseline} (paired over {int(row['n_pairs'])} seeds, "
        f"{_p_is(row['p_holm'])} after Holm): {row['verdict']}."
    )


def _best_sentence(analysis: TaskAnalysis) -> str:
    main, metric = analysis.main, f"{analysis.main_metric} {arrow(analysis.main_metric)}"
    best = analysis.losses[0]
    row = main.loc[best]
    if analysis.max_n < 2:
        return (
            f"On {analysis.task}, every loss has at most one finished seed, so there are no confidence intervals and "
            f"no tests; the best single run is {best}'s {metric} of {row['mean']:.4f}."
        )
    head = f"On {analysis.task}, the best mean {metric} is {best}'s {_mean_std(row['mean'], row['std'])}"
    if best == analysis.baseline:
        beaten = analysis.other_loss_better
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
    if analysis.all_near_chance:
        return (
            f"On {analysis.task}, every loss is within noise of chance level ({level}): these runs learned little, "
            "so their differences say little (train on more examples or for more epochs)."
        )
    count = len(analysis.near_chance)
    losses = "1 loss is" if count == 1 else f"{count} losses are"
    return f"On {analysis.task}, {losses} within noise of chance level ({level}): {', '.join(analysis.near_chance)}."


def _collapsed_sentence(analysis: TaskAnalysis) -> str:
    """How many runs of each loss collapsed to a constant prediction."""
    total = analysis.collapsed_total
    counts = ", ".join(
        f"{loss} {count}/{int(analysis.main.at[loss, 'n'])}" for loss, count in analysis.collapsed.items()
    )
    return (
        f"On {analysis.task}, {total} run{'s' if total != 1 else ''} collapsed (test {analysis.main_metric} no better "
        f"than predicting the training split's {_constant_words(analysis)}): {counts}."
    )


def _constant_words(analysis: TaskAnalysis) -> str:
    return "majority class" if analysis.problem_type == "classification" else "mean target"


def _seeds_words(count: int | None) -> str:
    if count is None:
        return "an unknown number of seeds"
    return f"more than {power.MAX_SEEDS} seeds" if count > power.MAX_SEEDS else f"{count} seeds"


def _undecided_sentence(analysis: TaskAnalysis) -> str:
    """A task whose comparisons are all undecided: the smallest difference its seeds could have detected."""
    task_power = analysis.power
    return (
        f"On {analysis.task}, no loss is told apart from {analysis.baseline} on {analysis.main_metric}: differences "
        f"smaller than {_num(task_power.mdd)} cannot be detected with {task_power.seeds} seeds at "
        f"{power.POWER:.0%} power, and a difference of {ONE_POINT:g} would need "
        f"{_seeds_words(task_power.seeds_for_point)} (Power, under the task's table)."
    )


def headline(result: Analysis) -> list[str]:
    """The headline findings, one sentence each."""
    analyses = result.tasks
    sentences = []
    findings = 0
    for analysis in analyses:
        if analysis.max_n == 0:
            sentences.append(f"On {analysis.task}, no run finished.")
            continue
        sentences.append(_best_sentence(analysis))
        if analysis.near_chance:
            sentences.append(_chance_sentence(analysis))
        if analysis.collapsed:
            sentences.append(_collapsed_sentence(analysis))
        if analysis.all_undecided and analysis.power is not None:
            sentences.append(_undecided_sentence(analysis))
        for metric, loss in analysis.findings:
            findings += 1
            if not (metric == analysis.main_metric and loss == analysis.losses[0]):
                sentences.append(_finding(analysis, metric, loss, analysis.table.loc[(metric, loss)]))
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
    for item in result.across:
        sentences.append(_across_sentence(item))
    failed = result.overview.failed
    if failed:
        sentences.append(
            f"{result.overview.failed_total} run(s) did not finish ({_status_counts(failed)}); they are listed under "
            "Failed runs and left out of every statistic."
        )
    return sentences


def _status_counts(counts: Mapping[str, int]) -> str:
    """'1 error, 1 diverged'."""
    return ", ".join(f"{count} {status}" for status, count in counts.items())


def _across_sentence(item: CrossTask) -> str:
    tasks = item.tasks
    if len(tasks) < 2:
        return (
            f"There is a single {item.problem_type} task ({tasks[0]}), so its losses are not ranked across tasks "
            f"and there is no Friedman test (it {item.friedman.reason})."
        )
    best_loss, best_rank = item.best
    where = f"Across the {len(tasks)} {item.problem_type} tasks"
    best = f"{best_loss} has the best mean rank on the main metric ({best_rank:.2f})"
    friedman = item.friedman
    if friedman.reason:
        return f"{where}, {best}; there is no Friedman test (it {friedman.reason})."
    differ = "differ beyond chance" if friedman.p < stats.ALPHA else "do not differ beyond chance"
    text = (
        f"{where}, {best}; Friedman's test over {len(friedman.losses)} losses gives χ² = {friedman.statistic:.2f}, "
        f"{_p_is(friedman.p)}: the losses' ranks {differ} (α = {stats.ALPHA})"
    )
    if friedman.p < stats.ALPHA and not item.nemenyi_pairs:
        text += ", but the Nemenyi post-hoc test tells no pair of losses apart"
    if len(tasks) < FEW_TASKS:
        text += f"; with {len(tasks)} tasks the test is a rough approximation"
    return text + "."


# --- sections ---------------------------------------------------------------------------------------------------


def _header(result: Analysis) -> list[str]:
    runs, overview = result.runs, result.overview
    finished = runs[runs["status"] != Status.SKIPPED]
    lines = ["## Environment and matrix", ""]
    rows = [[name, _distinct(finished, name)] for name in ("model", "hardware", "git_commit", *VERSIONS)]
    if overview.made_by:
        made_by = "; ".join(f"{hardware}, {precision}: {n} ok runs" for hardware, precision, n in overview.made_by)
        rows.insert(2, ["hardware, precision", made_by])
    protocol = result.protocol
    rows.append(["protocol", f"**{protocol}**: {PROTOCOL_TEXT[protocol]}"])
    settings = ", ".join(f"{name}={_distinct(finished, name)}" for name in SETTINGS)
    rows.append(["settings", settings])
    rows.append(["tasks", _distinct(runs, "task")])
    rows.append(["losses", _distinct(runs, "loss_spec")])
    rows.append(["seeds", _distinct(finished, "seed")])
    kinds = f" ({_status_counts(overview.failed)})" if overview.failed else ""
    rows.append(
        [
            "runs",
            f"{overview.finished} ok"
            + (f" ({overview.collapsed} collapsed)" if overview.collapsed else "")
            + f", {overview.failed_total} failed{kinds}; "
            f"{overview.skipped} incompatible (task, loss) pairs skipped",
        ]
    )
    rows.append(["paired test", f"{stats.PAIRED_TEST}, Holm-corrected across each task's losses, α = {stats.ALPHA}"])
    if overview.train_seconds is not None:
        rows.append(["total training time", f"{overview.train_seconds / 60:.1f} min"])
    if overview.encoding_seconds is not None:
        rows.append(
            ["encoding time", f"{overview.encoding_seconds:.0f} s (the frozen layers, once per task; 0 when cached)"]
        )
    lines.append(tabulate(rows, headers=["", "value"], tablefmt="github", disable_numparse=True))
    return lines


def _n_cell(analysis: TaskAnalysis, loss: str, n: int) -> str:
    failed = analysis.failed.get(loss)
    return str(n) + (f" ({_status_counts(failed)})" if failed else "")


def _task_table(analysis: TaskAnalysis) -> str:
    main, best = analysis.main, analysis.best
    others = analysis.metrics[1:]
    costs = list(analysis.costs.columns)
    rows = []
    for loss in analysis.losses:
        row = main.loc[loss]
        cell = _mean_std(row["mean"], row["std"])
        main_cell = f"**{cell}**" if np.isfinite(row["mean"]) and row["mean"] == best[analysis.main_metric] else cell
        main_cell += f" {CHANCE_MARK}" if loss in analysis.near_chance else ""
        p_cell = _p(row["p_holm"])
        cells = [loss, _n_cell(analysis, loss, int(row["n"])), main_cell, _ci(row), _diff(row), p_cell, row["verdict"]]
        if analysis.collapsed:
            cells.append(f"{analysis.collapsed.get(loss, 0)}/{int(row['n'])}")
        for metric in others:
            other = analysis.table.loc[(metric, loss)]
            cell = _mean_std(other["mean"], other["std"])
            if np.isfinite(other["mean"]) and other["mean"] == best[metric]:
                cell = f"**{cell}**"
            cell += {stats.BETTER: " ▲", stats.WORSE: " ▼"}.get(other["verdict"], "")
            cells.append(cell)
        for column in costs:
            value = analysis.costs.at[loss, column]
            cells.append(DASH if not np.isfinite(value) else COST_FORMATS[column][1].format(value))
        rows.append(cells)
    headers = [
        "loss",
        "n",
        f"{analysis.main_metric} {arrow(analysis.main_metric)}",
        "95% CI",
        f"Δ vs {analysis.baseline}",
        "p (Holm)",
        "verdict",
        *(["collapsed"] if analysis.collapsed else []),
        *[f"{m} {arrow(m)}" for m in others],
        *[COST_FORMATS[column][0] for column in costs],
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
                    f"{metric} {arrow(metric)}",
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


def _collapsed_text(analysis: TaskAnalysis) -> str:
    total = analysis.collapsed_total
    return (
        f"`collapsed`: of each loss's finished runs, those whose test {analysis.main_metric} is no better than "
        f"predicting the training split's {_constant_words(analysis)} for every test example "
        f"({total} run{'s' if total != 1 else ''} here). They stay in every statistic."
    )


def _power_text(analysis: TaskAnalysis) -> str:
    """The smallest paired difference the task's seeds can detect, and the seeds 1 point would need."""
    task_power, metric = analysis.power, analysis.main_metric
    if task_power is None:
        return f"Power: no loss was tested against {analysis.baseline} (fewer than 2 paired seeds), so none is known."
    comparisons = task_power.comparisons
    level = f"α / m = {stats.ALPHA} / {comparisons}" if comparisons > 1 else f"α = {stats.ALPHA}"
    pooled = (
        f"the paired differences' std {_num(task_power.pooled_std)}, pooled over the {task_power.pooled_losses} "
        f"comparisons with {analysis.baseline}"
        if task_power.pooled_losses > 1
        else f"the paired differences' std {_num(task_power.pooled_std)}"
    )
    return (
        f"Power: differences in {metric} smaller than **{_num(task_power.mdd)}** cannot be detected with "
        f"{task_power.seeds} seeds at {power.POWER:.0%} power (paired t-test at {level}, Holm's strictest step; "
        f"{pooled}). A difference of {ONE_POINT:g} would need {_seeds_words(task_power.seeds_for_point)}. "
        f"`{STATS_FILE}` gives each loss's own minimum detectable difference (`mdd`)."
    )


def _selection_text(analysis: TaskAnalysis) -> str:
    """What the checkpoint-selection table shows."""
    metric = f"{analysis.main_metric} {arrow(analysis.main_metric)}"
    flipped = "" if higher_is_better(analysis.main_metric) else " (last − best: lower is better here)"
    return (
        f"Checkpoint selection: the runs below scored the test split twice, with the checkpoint of their best "
        f"validation {analysis.main_metric} (the numbers above) and with their last weights. `best − last`: the "
        f"selected checkpoint's test {metric} minus the last weights', mean ± std over seeds, and its 95% t-interval; "
        "positive means the "
        f"selected checkpoint scored better{flipped}. `best step / steps`: the mean step of the selected checkpoint "
        "and the mean planned training steps; `evaluations`: validation evaluations per run (mean); `stopped early`: "
        "runs that early stopping (`--patience`) ended before their planned steps."
    )


def _selection_table(analysis: TaskAnalysis) -> str:
    gaps, use = analysis.main_selection, analysis.checkpoints
    rows = []
    for loss in [loss for loss in analysis.losses if loss in gaps.index]:
        gap = gaps.loc[loss]
        counts = use.loc[loss] if loss in use.index else pd.Series(dtype=object)
        runs = int(counts.get("runs", gap["n"]))
        best, steps = counts.get("best_step", np.nan), counts.get("steps", np.nan)
        step_cell = _count(best) + (f" / {_count(steps)}" if np.isfinite(steps) else "")
        rows.append(
            [
                loss,
                runs,
                _signed(gap["mean"], gap["std"]),
                _interval(gap["ci_low"], gap["ci_high"], bool(gap["ci_clipped"])),
                step_cell,
                _count(counts.get("evaluations", np.nan)),
                f"{int(counts.get('stopped_early', 0))}/{runs}",
            ]
        )
    headers = [
        "loss",
        "runs",
        f"best − last ({analysis.main_metric} {arrow(analysis.main_metric)})",
        "95% CI",
        "best step / steps",
        "evaluations",
        "stopped early",
    ]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _signed(mean: float, std: float) -> str:
    """'+0.0123 ± 0.0045' (no std with one seed)."""
    if not np.isfinite(mean):
        return DASH
    return f"{mean:+.4f}" + ("" if not np.isfinite(std) else f" ± {std:.4f}")


def _count(value: float) -> str:
    """A mean count: whole numbers without decimals, others with one."""
    if value is None or not np.isfinite(value):
        return DASH
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _task_section(
    analysis: TaskAnalysis, probe: bool, plots: Mapping[tuple[str, str], str], absent: Mapping[tuple[str, str], str]
) -> list[str]:
    """``probe``: the runs trained only a head on a frozen encoder (``train_layers=0``)."""
    rows = analysis.rows
    lines = [
        "",
        f"## {analysis.task}",
        "",
        ("**A head on a frozen encoder** (not comparable with fine-tuning): " if probe else "")
        + f"{analysis.problem_type}, task version {_distinct(rows, 'task_version')}, "
        f"main metric **{analysis.main_metric} {arrow(analysis.main_metric)}**, baseline **{analysis.baseline}**, "
        f"{_distinct(rows, 'train_examples')} training / {_distinct(rows, 'test_examples')} test examples, "
        f"seeds {_distinct(analysis.finished, 'seed')}.",
        "",
    ]
    if analysis.max_n == 0:
        return [*lines, "No finished runs."]
    lines += [_chance_text(analysis), "", _task_table(analysis)]
    if analysis.collapsed:
        lines += ["", _collapsed_text(analysis)]
    lines += ["", _power_text(analysis)]
    if len(analysis.main_selection):
        lines += ["", _selection_text(analysis), "", _selection_table(analysis)]
    if analysis.clipped:
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
        tasks, mean_ranks, counts = item.tasks, item.mean_ranks, item.task_counts
        rows = [
            [loss, f"{mean_ranks[loss]:.2f}", int(counts[loss]), *[_num(item.ranks.at[t, loss], 1) for t in tasks]]
            for loss in item.order
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
    pairs = [f"{a} vs {b} ({_p_is(p)})" for a, b, p in item.nemenyi_pairs]
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
    return render(analyse(runs), plots or {})


def render(
    result: Analysis,
    plots: Mapping[tuple[str, str], str],
    absent: Mapping[tuple[str, str], str] | None = None,
    *,
    damaged: Sequence[DamagedRow] = (),
    stale: pd.DataFrame | None = None,
) -> str:
    """The Markdown report of ``result``. ``plots`` maps (task or problem type, kind) to a relative PNG path, ``absent``
    (task, kind) to why that figure was not drawn; ``damaged`` are the rows of runs.csv that were not counted,
    ``stale`` the rows computed by other code or data (``bench.fingerprint.stale_rows``)."""
    runs = result.runs
    sentences = headline(result)
    probe = result.protocol == FROZEN_ENCODER
    lines = [
        "# lossbench report" + (": a head on a frozen encoder" if probe else ""),
        "",
        "Generated from `runs.csv` and `runs/` by `lossbench report`; do not edit by hand.",
        "",
        *([PROBE_NOTE, ""] if probe else []),
        "## Headline findings",
        "",
        *([f"- {sentence}" for sentence in sentences] or ["- No finished runs."]),
        "",
        *_header(result),
        *_checks_note(damaged, stale),
        "",
        "## How to read this report",
        "",
        HOW_TO_READ,
        *(["", SELECTION_GUIDE] if any(len(a.main_selection) for a in result.tasks) else []),
    ]
    for analysis in result.tasks:
        lines += _task_section(analysis, probe, plots, absent or {})
    lines += _across_section(result.across, plots)
    skipped = runs[runs["status"] == Status.SKIPPED]
    if len(skipped):
        lines += ["", "## Skipped pairs", ""]
        rows = skipped.reindex(columns=["task", "loss_spec", "message"]).sort_values(["task", "loss_spec"])
        lines.append(tabulate(rows.fillna("").values.tolist(), headers=["task", "loss", "reason"], tablefmt="github"))
    failed = result.failed
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


def draw_plots(store: ResultsStore, result: Analysis) -> tuple[dict[tuple[str, str], str], dict[tuple[str, str], str]]:
    """Write every figure under ``DIR/plots/``, remove figures left from earlier reports; returns
    (task or problem type, kind) -> path relative to ``DIR``, and (task, kind) -> why a figure was not drawn."""
    plots_dir = store.out_dir / figures.PLOTS_DIR
    written: dict[tuple[str, str], Path] = {}
    absent: dict[tuple[str, str], str] = {}
    for analysis in result.tasks:
        if analysis.max_n == 0:
            continue
        stem = figures.file_stem(analysis.task)
        title = f"{analysis.task}: {analysis.main_metric} {arrow(analysis.main_metric)}"
        title += " (head only, frozen encoder)" if result.protocol == FROZEN_ENCODER else ""
        written[(analysis.task, "main")] = figures.main_metric_plot(
            analysis.main.loc[analysis.tested_losses],
            analysis.seed_values,
            analysis.main_metric,
            analysis.baseline,
            title,
            plots_dir / f"{stem}_main_metric.png",
        )
        curves = learning_curves(store, analysis)
        path = figures.learning_curves_plot(
            curves, analysis.main_metric, f"{analysis.task}: learning curves", plots_dir / f"{stem}_learning_curves.png"
        )
        if path:
            written[(analysis.task, "learning_curves")] = path
        else:
            absent[(analysis.task, "learning_curves")] = ONLY_FINAL_HISTORY if curves.histories else NO_HISTORY
        if analysis.problem_type == "classification":
            pooled = reliability(store, analysis)
            path = figures.reliability_plot(
                pooled.bins,
                pooled.pooled_ece,
                pooled.mean_run_ece,
                f"{analysis.task}: reliability (test set, seeds pooled, {ECE_BINS} bins)",
                plots_dir / f"{stem}_reliability.png",
            )
            if path:
                written[(analysis.task, "reliability")] = path
    for item in result.across:
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


def write_report(out_dir: str | Path, *, plots: bool = True) -> Path:
    """Rebuild ``DIR/REPORT.md``, ``DIR/stats.csv`` and ``DIR/plots/`` from ``DIR/runs.csv`` and ``DIR/runs/``."""
    store = ResultsStore(out_dir)
    if not store.path.exists():
        raise FileNotFoundError(f"No results to report: {store.path} does not exist. Run `lossbench run` first.")
    results = store.read()
    result = analyse(results.rows, store)  # raises for mixed protocols, before any figure is drawn
    links, absent = draw_plots(store, result) if plots else ({}, {})
    result.statistics.to_csv(Path(out_dir) / STATS_FILE, index=False)
    path = Path(out_dir) / REPORT_FILE
    stale = stale_rows(result.runs)
    path.write_text(render(result, links, absent, damaged=results.damaged, stale=stale))
    return path
