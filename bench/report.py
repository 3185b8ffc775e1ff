"""Render ``REPORT.md`` from ``runs.csv`` alone, so the report can be rebuilt at any time."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.metrics import HIGHER_IS_BETTER
from bench.results import ResultsStore

REPORT_FILE = "REPORT.md"
METRICS_BY_PROBLEM_TYPE = {
    "classification": ("accuracy", "f1_macro", "mcc"),
    "regression": ("pearson", "spearman", "mse", "mae"),
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
)
VERSIONS = ("python_version", "torch_version", "transformers_version", "datasets_version", "evaluate_version")

HOW_TO_READ = """\
- Each metric cell is the **mean ± standard deviation over seeds** of the metric on the task's held-out test split;
  `n` is the number of seeds that finished. ↑ means higher is better, ↓ lower is better; the best mean is in **bold**.
- Rows are sorted by the task's main metric. A gap smaller than the standard deviations is within seed noise: treat
  it as no difference. Each loss's own loss value is not shown, since values of different losses are not comparable.
- `train s` is the mean training time per run, `samples/s` the training throughput, and `peak MB` the peak resident
  memory of the process during training.
- Skipped pairs are (task, loss) combinations the loss does not support; failed runs are listed, never averaged in."""


def _arrow(metric: str) -> str:
    return "↑" if HIGHER_IS_BETTER[metric] else "↓"


def _distinct(frame: pd.DataFrame, column: str) -> str:
    if column not in frame.columns:
        return "n/a"
    values = sorted(frame[column].dropna().astype(str).unique().tolist())
    return ", ".join(values) if values else "n/a"


def _header(runs: pd.DataFrame) -> list[str]:
    finished = runs[runs["status"] != "skipped"]
    lines = ["## Environment and matrix", ""]
    rows = [[name, _distinct(finished, name)] for name in ("model", "hardware", "git_commit", *VERSIONS)]
    settings = ", ".join(f"{name}={_distinct(finished, name)}" for name in SETTINGS)
    rows.append(["settings", settings])
    rows.append(["tasks", _distinct(runs, "task")])
    rows.append(["losses", _distinct(runs, "loss_spec")])
    rows.append(["seeds", _distinct(finished, "seed")])
    counts = runs["status"].value_counts()
    rows.append(
        [
            "runs",
            f"{counts.get('ok', 0)} ok, {counts.get('error', 0)} failed; "
            f"{counts.get('skipped', 0)} incompatible (task, loss) pairs skipped",
        ]
    )
    if "train_seconds" in runs.columns:
        rows.append(["total training time", f"{runs['train_seconds'].sum() / 60:.1f} min"])
    lines.append(tabulate(rows, headers=["", "value"], tablefmt="github"))
    return lines


def _task_table(task_runs: pd.DataFrame, problem_type: str, main_metric: str) -> str:
    metrics = [m for m in METRICS_BY_PROBLEM_TYPE[problem_type] if f"test_{m}" in task_runs.columns]
    grouped = task_runs.groupby("loss_spec")
    means = grouped[[f"test_{m}" for m in metrics]].mean()
    stds = grouped[[f"test_{m}" for m in metrics]].std()
    best = {m: (means[f"test_{m}"].max() if HIGHER_IS_BETTER[m] else means[f"test_{m}"].min()) for m in metrics}
    order = means[f"test_{main_metric}"].sort_values(ascending=not HIGHER_IS_BETTER[main_metric]).index
    rows = []
    for loss in order:
        row = [loss, len(grouped.get_group(loss))]
        for metric in metrics:
            mean, std = means.at[loss, f"test_{metric}"], stds.at[loss, f"test_{metric}"]
            cell = f"{mean:.4f}" + ("" if pd.isna(std) else f" ± {std:.4f}")
            row.append(f"**{cell}**" if mean == best[metric] else cell)
        loss_runs = grouped.get_group(loss)
        row += [
            f"{loss_runs['train_seconds'].mean():.1f}",
            f"{loss_runs['train_samples_per_second'].mean():.1f}",
            f"{loss_runs['peak_rss_mb'].mean():.0f}",
        ]
        rows.append(row)
    headers = ["loss", "n", *[f"{m} {_arrow(m)}" for m in metrics], "train s", "samples/s", "peak MB"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def render_report(runs: pd.DataFrame) -> str:
    lines = [
        "# lossbench report",
        "",
        "Generated from `runs.csv` by `lossbench report`; do not edit by hand.",
        "",
        *_header(runs),
        "",
        "## How to read this report",
        "",
        HOW_TO_READ,
    ]
    ok = runs[runs["status"] == "ok"]
    for task in sorted(runs["task"].unique()):
        task_rows = runs[runs["task"] == task]
        problem_type, main_metric = task_rows["problem_type"].iloc[0], task_rows["main_metric"].iloc[0]
        lines += [
            "",
            f"## {task}",
            "",
            f"{problem_type}, task version {_distinct(task_rows, 'task_version')}, "
            f"main metric **{main_metric} {_arrow(main_metric)}**, "
            f"{_distinct(task_rows, 'train_examples')} training / "
            f"{_distinct(task_rows, 'test_examples')} test examples.",
            "",
        ]
        task_ok = ok[ok["task"] == task]
        lines.append(_task_table(task_ok, problem_type, main_metric) if len(task_ok) else "No finished runs.")
    skipped = runs[runs["status"] == "skipped"]
    if len(skipped):
        lines += ["", "## Skipped pairs", ""]
        rows = skipped[["task", "loss_spec", "message"]].sort_values(["task", "loss_spec"]).values.tolist()
        lines.append(tabulate(rows, headers=["task", "loss", "reason"], tablefmt="github"))
    failed = runs[~runs["status"].isin(["ok", "skipped"])]
    if len(failed):
        lines += ["", "## Failed runs", ""]
        columns = ["task", "loss_spec", "seed", "status", "error_type", "message"]
        rows = failed.reindex(columns=columns).fillna("").values.tolist()
        lines.append(tabulate(rows, headers=["task", "loss", "seed", "status", "error", "message"], tablefmt="github"))
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path) -> Path:
    """Rebuild ``DIR/REPORT.md`` from ``DIR/runs.csv``."""
    store = ResultsStore(out_dir)
    if not store.path.exists():
        raise FileNotFoundError(f"No results to report: {store.path} does not exist. Run `lossbench run` first.")
    path = Path(out_dir) / REPORT_FILE
    path.write_text(render_report(store.load()))
    return path
