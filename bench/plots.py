"""The report's figures as PNG files: main metric with confidence intervals, learning curves, reliability diagrams
and the critical-difference diagram.

Figures are built on ``matplotlib.figure.Figure`` (the Agg canvas, no pyplot and no display), one file per figure,
with a deterministic name under ``DIR/plots/``. They draw numbers computed by ``bench.analysis`` and compute none.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scikit_posthocs
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bench.stats import BASELINE, BETTER, WORSE

if TYPE_CHECKING:
    from bench.analysis import LearningCurves

PLOTS_DIR = "plots"
DPI = 110
PANEL_COLUMNS = 4
VERDICT_COLORS = {BETTER: "tab:green", WORSE: "tab:red", BASELINE: "black"}
OTHER_COLOR = "tab:blue"


def file_stem(name: str) -> str:
    """A file-name-safe form of a task spec: ``trec@noise=0.2`` -> ``trec_noise_0.2``."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "task"


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _colors(count: int) -> list:
    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]


def main_metric_plot(
    table: pd.DataFrame, seeds: pd.DataFrame, metric: str, baseline: str, title: str, path: Path
) -> Path:
    """One row per loss, best at the top: each seed's value (grey dots), the mean and its 95% CI.

    ``table``: index loss, in display order, with mean, ci_low, ci_high and verdict; ``seeds``: loss and value.
    """
    losses = list(table.index)
    figure = Figure(figsize=(7.5, 1.2 + 0.32 * len(losses)))
    ax = figure.add_subplot()
    positions = {loss: len(losses) - 1 - i for i, loss in enumerate(losses)}
    ax.scatter(
        seeds["value"], seeds["loss"].map(positions), s=14, color="0.6", zorder=2, label="one seed", linewidths=0
    )
    for loss, row in table.iterrows():
        if not np.isfinite(row["mean"]):
            continue
        color = VERDICT_COLORS.get(row["verdict"], OTHER_COLOR)
        y = positions[loss]
        if np.isfinite(row["ci_low"]):
            ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=color, linewidth=2, zorder=3)
        ax.plot(row["mean"], y, "o", color=color, markersize=6, zorder=4)
    if baseline in table.index and np.isfinite(table.at[baseline, "mean"]):
        ax.axvline(table.at[baseline, "mean"], color="black", linestyle=":", linewidth=1, zorder=1)
    ax.set_yticks(range(len(losses)), list(reversed(losses)))
    ax.set_ylim(-0.7, len(losses) - 0.3)
    ax.set_xlabel(metric)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", color="0.9")
    handles = [
        Line2D([], [], marker="o", color="0.6", linestyle="", markersize=4, label="one seed"),
        Line2D([], [], marker="o", color=VERDICT_COLORS[BASELINE], label=f"{baseline} (baseline), dotted: its mean"),
        Line2D([], [], marker="o", color=VERDICT_COLORS[BETTER], label="better than baseline"),
        Line2D([], [], marker="o", color=VERDICT_COLORS[WORSE], label="worse than baseline"),
        Line2D([], [], marker="o", color=OTHER_COLOR, label="within noise / untested"),
    ]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _save(figure, path)


def learning_curves_plot(curves: LearningCurves, metric: str, title: str, path: Path) -> Path | None:
    """Training loss vs step, one panel per loss (each loss on its own scale), mean over seeds with the seeds'
    range shaded; below, the validation ``metric`` vs step of every loss overlaid, when the runs logged it.

    ``curves``: ``bench.analysis.learning_curves``. None when no run logged any value.
    """
    losses = curves.losses
    if not losses:
        return None
    has_eval = bool(curves.validation)
    columns = min(PANEL_COLUMNS, len(losses))
    rows = math.ceil(len(losses) / columns)
    eval_rows = 2 if has_eval else 0
    figure = Figure(figsize=(3.2 * columns, 2.3 * (rows + eval_rows) + 0.6))
    grid = figure.add_gridspec(rows + eval_rows, columns)
    for i, loss in enumerate(losses):
        ax = figure.add_subplot(grid[i // columns, i % columns])
        by_step = curves.training.get(loss)
        if by_step is None:
            ax.text(0.5, 0.5, "no training log", ha="center", va="center", transform=ax.transAxes, fontsize=8)
        else:
            ax.fill_between(by_step.index, by_step["min"], by_step["max"], color="tab:blue", alpha=0.2, linewidth=0)
            ax.plot(by_step.index, by_step["mean"], color="tab:blue", marker=".", markersize=4)
        ax.set_title(loss, fontsize=9)
        ax.tick_params(labelsize=7)
        if i // columns == rows - 1 or i + columns >= len(losses):
            ax.set_xlabel("step", fontsize=8)
        if i % columns == 0:
            ax.set_ylabel("training loss", fontsize=8)
    if has_eval:
        ax = figure.add_subplot(grid[rows:, :])
        for loss, color in zip(losses, _colors(len(losses)), strict=True):
            by_step = curves.validation.get(loss)
            if by_step is not None:
                ax.plot(by_step.index, by_step.to_numpy(), color=color, marker=".", label=loss)
        ax.set_xlabel("step")
        ax.set_ylabel(f"validation {metric}")
        ax.grid(color="0.9")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def reliability_plot(
    bins_by_loss: dict[str, pd.DataFrame],
    pooled_ece: dict[str, float],
    mean_run_ece: dict[str, float],
    title: str,
    path: Path,
) -> Path | None:
    """One reliability diagram per loss: accuracy of each confidence bin (bars) against the diagonal of perfect
    calibration, with the bin's mean confidence marked. Each panel's title gives both ECEs: ``pooled_ece`` of the
    bins drawn (every seed's test predictions in one set of bins) and ``mean_run_ece``, the mean of the runs' own
    ECEs that the report's ``ece`` column shows; and the examples pooled (``bench.analysis.reliability``)."""
    if not bins_by_loss:
        return None
    losses = sorted(bins_by_loss)
    columns = min(PANEL_COLUMNS, len(losses))
    rows = math.ceil(len(losses) / columns)
    figure = Figure(figsize=(2.8 * columns, 2.8 * rows + 0.5))
    for i, loss in enumerate(losses):
        bins = bins_by_loss[loss]
        filled = bins[bins["count"] > 0]
        ax = figure.add_subplot(rows, columns, i + 1)
        width = float(bins["high"].iloc[0] - bins["low"].iloc[0])
        ax.bar(filled["low"], filled["accuracy"], width=width, align="edge", color="tab:blue", edgecolor="white")
        ax.plot(filled["confidence"], filled["accuracy"], "o", color="tab:orange", markersize=3)
        ax.plot([0, 1], [0, 1], color="black", linestyle=":", linewidth=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ece = f"ECE pooled {pooled_ece[loss]:.3f}, mean of runs {mean_run_ece.get(loss, math.nan):.3f}"
        ax.set_title(f"{loss}\n{ece}\nn = {int(bins['count'].sum())} pooled", fontsize=8)
        ax.tick_params(labelsize=7)
        if i % columns == 0:
            ax.set_ylabel("accuracy", fontsize=8)
        if i + columns >= len(losses):
            ax.set_xlabel("confidence", fontsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return _save(figure, path)


def critical_difference_plot(
    mean_ranks: pd.Series, nemenyi: pd.DataFrame, critical_difference: float, title: str, path: Path
) -> Path:
    """Demšar's critical-difference diagram (``scikit_posthocs``): mean ranks on an axis, losses that the Nemenyi
    test cannot tell apart (p >= 0.05) joined by a bar."""
    figure = Figure(figsize=(8, 1.6 + 0.28 * len(mean_ranks)))
    ax = figure.add_subplot()
    scikit_posthocs.critical_difference_diagram(
        mean_ranks,
        nemenyi,
        ax=ax,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
        label_props={"fontsize": 8},
    )
    ax.set_title(f"{title}\nNemenyi critical difference {critical_difference:.2f} ranks", fontsize=10, pad=24)
    return _save(figure, path)
