"""``lossbench compare A B``: two results folders side by side (two models, two protocols, before and after a
change), per task and loss, on the task's main metric.

For every (task, loss) that both folders finished at least once: each folder's mean ± std and 95% t-interval over
seeds (``bench.stats.summarize``), and the difference B - A, paired by seed over the seeds both have (the paired
t-test of the report, ``bench.stats.paired_difference``), or, with fewer than 2 seeds in common, Welch's unpaired
t-test over all seeds (``bench.stats.welch_difference``). Holm's correction runs across the losses of each task, as
in the report, and the verdict is the report's: 'better' or 'worse' (for B) only when significant after Holm and
larger than A's own seed standard deviation. Reads ``runs.csv`` only; the numbers come from ``compare_folders`` and
``comparison_markdown`` only formats them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from bench import stats
from bench.analysis import FINISHED, with_loss_spec
from bench.metric_table import METRIC_RANGE, UNBOUNDED, arrow, higher_is_better
from bench.results import RUNS_FILE, ResultsStore

PAIRED, WELCH = "paired t", "Welch t"
DASH = "–"
SETTINGS_SHOWN = ("model", "protocol", "train_size", "epochs", "learning_rate", "train_layers", "precision")


@dataclass(frozen=True)
class Comparison:
    """The comparison of folders ``a`` and ``b``: one row per (task, loss) both have (``table``), the pairs only one
    has, and the settings in which the two folders' finished runs differ."""

    a: str
    b: str
    table: pd.DataFrame
    only_a: list[tuple[str, str]]
    only_b: list[tuple[str, str]]
    settings: dict[str, tuple[str, str]]


def finished_runs(folder: str | Path, label: str) -> pd.DataFrame:
    """The finished runs of a results folder, with ``loss_spec``; a folder without ``runs.csv`` is refused."""
    store = ResultsStore(folder)
    if not store.path.exists():
        where = "no such folder" if not Path(folder).exists() else f"it holds no {RUNS_FILE}"
        raise ValueError(f"{label} {folder}: {where}; give a results folder written by `lossbench run`.")
    rows = with_loss_spec(store.read().rows)
    return rows[rows["status"] == FINISHED]


def pairs_of(rows: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(rows["task"].astype(str), rows["loss_spec"].astype(str), strict=True))


def describe_pairs(pairs: set[tuple[str, str]]) -> str:
    """``trec: cross_entropy, focal; sms_spam: mse`` (or 'no finished run')."""
    if not pairs:
        return "no finished run"
    tasks = sorted({task for task, _ in pairs})
    return "; ".join(f"{task}: {', '.join(sorted(loss for t, loss in pairs if t == task))}" for task in tasks)


def distinct(rows: pd.DataFrame, column: str) -> str:
    return ", ".join(sorted(rows[column].dropna().astype(str).unique())) if column in rows.columns else ""


def compare_folders(a: str | Path, b: str | Path) -> Comparison:
    """Every number of the comparison of folders ``a`` and ``b`` (see the module's docstring)."""
    rows_a, rows_b = finished_runs(a, "A"), finished_runs(b, "B")
    pairs_a, pairs_b = pairs_of(rows_a), pairs_of(rows_b)
    common = pairs_a & pairs_b
    if not common:
        raise ValueError(
            f"A {a} and B {b} have no (task, loss) with finished runs in common. A has {describe_pairs(pairs_a)}. "
            f"B has {describe_pairs(pairs_b)}."
        )
    records = []
    for task in sorted({task for task, _ in common}):
        task_a, task_b = rows_a[rows_a["task"].astype(str) == task], rows_b[rows_b["task"].astype(str) == task]
        metric = str(task_a["main_metric"].iloc[-1])
        higher = higher_is_better(metric)
        bounds = METRIC_RANGE.get(metric, UNBOUNDED)
        column = f"test_{metric}"
        task_records = []
        for loss in sorted(loss for t, loss in common if t == task):
            values = [seed_values(frame, loss, column) for frame in (task_a, task_b)]
            task_records.append(compare_pair(task, loss, metric, values[0], values[1], bounds))
        for record, p_holm in zip(task_records, stats.holm([r["p"] for r in task_records]), strict=True):
            baseline_std = record["a_std"]
            record["p_holm"] = float(p_holm)
            record["verdict"] = (
                stats.difference_verdict(record["diff_mean"], p_holm, baseline_std, higher)
                if np.isfinite(record["p"])
                else stats.TOO_FEW
            )
            record["versions_differ"] = distinct(task_a, "task_version") != distinct(task_b, "task_version")
        records += task_records
    settings = {
        column: (distinct(rows_a, column), distinct(rows_b, column))
        for column in SETTINGS_SHOWN
        if distinct(rows_a, column) != distinct(rows_b, column)
    }
    return Comparison(
        str(a), str(b), pd.DataFrame(records), sorted(pairs_a - pairs_b), sorted(pairs_b - pairs_a), settings
    )


def seed_values(rows: pd.DataFrame, loss: str, column: str) -> pd.Series:
    """A loss's values of ``column`` by seed (the mean, should a seed have two rows)."""
    rows = rows[rows["loss_spec"].astype(str) == loss]
    if column not in rows.columns:
        return pd.Series(dtype=np.float64)
    return pd.to_numeric(rows[column], errors="coerce").groupby(rows["seed"].astype(int)).mean()


def compare_pair(
    task: str, loss: str, metric: str, a: pd.Series, b: pd.Series, bounds: tuple[float, float]
) -> dict[str, object]:
    """One (task, loss): each folder's summary over seeds and B - A, paired where at least 2 seeds are shared."""
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    summary_a, summary_b = stats.summarize(a, bounds=bounds), stats.summarize(b, bounds=bounds)
    shared = a.index.intersection(b.index)
    if len(shared) >= 2:
        paired = stats.paired_difference(b, a, bounds)
        test, n_pairs = PAIRED, paired.n_pairs
        diff = {key: getattr(paired, key) for key in ("mean_diff", "std_diff", "statistic", "p")}
        interval = (paired.diff_ci_low, paired.diff_ci_high, paired.diff_ci_clipped)
    else:
        welch = stats.welch_difference(b.to_numpy(), a.to_numpy(), bounds)
        test, n_pairs = WELCH, 0
        diff = {"mean_diff": welch.mean_diff, "std_diff": math.nan, "statistic": welch.statistic, "p": welch.p}
        interval = (welch.diff_ci_low, welch.diff_ci_high, welch.diff_ci_clipped)
    return {
        "task": task,
        "loss": loss,
        "metric": metric,
        **{f"a_{key}": value for key, value in asdict(summary_a).items()},
        **{f"b_{key}": value for key, value in asdict(summary_b).items()},
        "test": test if np.isfinite(diff["p"]) else DASH,
        "n_pairs": n_pairs,
        "diff_mean": diff["mean_diff"],
        "diff_std": diff["std_diff"],
        "t": diff["statistic"],
        "p": diff["p"],
        "diff_ci_low": interval[0],
        "diff_ci_high": interval[1],
        "diff_ci_clipped": interval[2],
    }


def number(value: float, signed: bool = False) -> str:
    return DASH if not np.isfinite(value) else (f"{value:+.4f}" if signed else f"{value:.4f}")


def mean_ci(row: pd.Series, side: str) -> str:
    """``0.7406 ± 0.0075 [0.7219, 0.7594]`` for folder ``side`` (a or b)."""
    mean, std = row[f"{side}_mean"], row[f"{side}_std"]
    cell = number(mean) + ("" if not np.isfinite(std) else f" ± {std:.4f}")
    low, high = row[f"{side}_ci_low"], row[f"{side}_ci_high"]
    return cell + ("" if not np.isfinite(low) else f" [{low:.4f}, {high:.4f}]")


def p_value(value: float) -> str:
    return DASH if not np.isfinite(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def comparison_markdown(comparison: Comparison) -> str:
    """The comparison as Markdown: which folder is which, how their settings differ, and one table."""
    lines = [
        "# Comparison",
        "",
        f"- A: `{comparison.a}`",
        f"- B: `{comparison.b}`",
        "",
        "Each task's main metric; Δ is B - A, paired by seed (paired t-test) where both folders have at least 2 of "
        "the same seeds, else Welch's t-test over all seeds; p-values Holm-corrected across each task's losses; "
        "'better' or 'worse' (for B) only when significant after Holm and larger than A's seed std.",
        "",
    ]
    for column, (value_a, value_b) in comparison.settings.items():
        lines.append(f"- `{column}` differs: A {value_a or '(empty)'}, B {value_b or '(empty)'}")
    if comparison.settings:
        lines.append("")
    rows = []
    for _, row in comparison.table.iterrows():
        diff = number(row["diff_mean"], signed=True)
        if np.isfinite(row["diff_std"]):
            diff += f" ± {row['diff_std']:.4f}"
        interval = (
            DASH if not np.isfinite(row["diff_ci_low"]) else f"[{row['diff_ci_low']:+.4f}, {row['diff_ci_high']:+.4f}]"
        )
        task = row["task"] + (" (task versions differ)" if row["versions_differ"] else "")
        rows.append(
            [
                task,
                row["loss"],
                f"{row['metric']} {arrow(row['metric'])}",
                f"{int(row['a_n'])} / {int(row['b_n'])}",
                mean_ci(row, "a"),
                mean_ci(row, "b"),
                diff,
                interval,
                row["test"] + (f" ({int(row['n_pairs'])} pairs)" if row["n_pairs"] else ""),
                p_value(row["p_holm"]),
                row["verdict"],
            ]
        )
    headers = ["task", "loss", "metric", "n A / B", "A", "B", "Δ (B - A)", "95% CI of Δ", "test", "p (Holm)", "verdict"]
    lines.append(tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True))
    for label, pairs in (("A", comparison.only_a), ("B", comparison.only_b)):
        if pairs:
            lines += ["", f"Only in {label}: {describe_pairs(set(pairs))}."]
    return "\n".join(lines) + "\n"
