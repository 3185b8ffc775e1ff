"""PROTOCOL.md: the protocol study's figures (``bench.protocol``), per arm and task, against the targets a default
protocol must meet, and which arm meets them at the least cost.

Targets (issue 14): the baseline reaches ``SCORE_SHARE`` of the task's reference score on every default task, its seed
std is at most ``MAX_SEED_STD`` (2 points on a 0-1 metric, 0.02 Pearson r), no baseline run collapses, and the
default matrix (every compatible loss x 3 seeds) fits ``MAX_MATRIX_MINUTES`` on the machine that ran the study.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.environment import git_commit, hardware
from bench.registry import TASKS
from bench.results import ResultsStore, atomic_file
from bench.status import Status
from bench.study import AXES, AXIS_SETTINGS, BASELINE_LOSSES, PREVIOUS_DEFAULT, REFERENCE, Arm, distinct_arms

SCORE_SHARE = 0.9
MAX_SEED_STD = 0.02
MAX_MATRIX_MINUTES = 30.0
MATRIX_SEEDS = 3
PLOTS_DIR = "plots"
DPI = 110


@dataclass(frozen=True)
class Cell:
    """One arm on one task: the baseline's test main metric over seeds, its collapsed runs and its cost."""

    runs: int
    mean: float
    std: float
    collapsed: int
    run_seconds: float  # median wall time of a run (robust to a run slowed by other work), states encoding left out
    states_seconds: float  # encoding the frozen layers' states once for the task (0 without --train-layers)
    best_step: float
    steps: float  # the planned training steps: ceil(examples / batch size) x epochs
    stopped_early: int


def arm_cells(arm: Arm, tasks: Sequence[str], out: Path) -> dict[str, Cell]:
    """The finished baseline runs of ``arm`` in ``out/<slug>/``, summarised per task (tasks without runs left out)."""
    rows = ResultsStore(out / arm.folder).load()
    if rows.empty:
        return {}
    rows = rows[(rows["status"] == Status.OK) & rows["loss"].isin(BASELINE_LOSSES)]
    cells = {}
    for task in tasks:
        task_rows = rows[rows["task"] == task]
        if task_rows.empty:
            continue
        metric = TASKS.get(task.split("@")[0]).metadata.main_metric
        values = task_rows[f"test_{metric}"].astype(float)
        states = _column(task_rows, "states_seconds")
        cells[task] = Cell(
            runs=len(values),
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if len(values) > 1 else math.nan,
            collapsed=int(_column(task_rows, "collapsed").fillna(0).astype(bool).sum()),
            run_seconds=float((task_rows["wall_seconds"].astype(float) - states.fillna(0)).median()),
            states_seconds=float(states.max()) if states.notna().any() else 0.0,
            best_step=float(_column(task_rows, "best_step").mean()),
            steps=float(
                (np.ceil(_column(task_rows, "train_examples") / arm.train.batch_size) * arm.train.epochs).mean()
            ),
            stopped_early=int(_column(task_rows, "stopped_early").fillna(0).astype(bool).sum()),
        )
    return cells


def _column(rows: pd.DataFrame, name: str) -> pd.Series:
    return rows[name].astype(float) if name in rows else pd.Series(np.nan, index=rows.index)


def matrix_runs(arm: Arm, task: str) -> int:
    """The runs the default matrix has for ``task`` at ``arm``'s settings: every compatible loss x 3 seeds."""
    from bench.matrix import build_matrix

    runs, _ = build_matrix([task], ["*"], range(MATRIX_SEEDS), arm.train)
    return len(runs)


def matrix_minutes(arm: Arm, cells: dict[str, Cell], tasks: Sequence[str], encoding: dict[str, float]) -> float:
    """The default matrix's estimated wall time at ``arm``'s settings: per task, encoding the frozen layers' states
    once (``encoding``: seconds per task, measured by whichever arm of the same depth encoded them first) plus each
    run at the baseline's median run time (other losses stop early at other steps: an estimate)."""
    seconds = sum(encoding.get(t, 0.0) + matrix_runs(arm, t) * cells[t].run_seconds for t in tasks if t in cells)
    return seconds / 60 if all(t in cells for t in tasks) else math.nan


def encoding_seconds(arms: Sequence[Arm], cells: dict[str, dict[str, Cell]]) -> dict[object, dict[str, float]]:
    """Per fine-tuning depth (``train_layers``), the seconds each task's states took to encode: the cache makes only
    the first arm of a depth pay them, so they are shared by every arm of that depth."""
    encoding: dict[object, dict[str, float]] = {}
    for arm in arms:
        per_task = encoding.setdefault(arm.train.train_layers, {})
        for task, cell in cells[arm.folder].items():
            per_task[task] = max(per_task.get(task, 0.0), cell.states_seconds)
    return encoding


def score_share(mean: float, reference: float, higher_is_better: bool) -> float:
    """The share of the reference score reached: mean / reference (reference / mean when lower is better)."""
    return mean / reference if higher_is_better else reference / mean


@dataclass(frozen=True)
class Verdict:
    """Whether one arm meets each target, with the figures that decide it."""

    share: dict[str, float]
    meets_score: bool
    meets_std: bool
    no_collapse: bool
    minutes: float

    @property
    def meets_all(self) -> bool:
        return self.meets_score and self.meets_std and self.no_collapse and self.minutes <= MAX_MATRIX_MINUTES


def verdict(
    arm: Arm,
    cells: dict[str, Cell],
    references: dict[str, Cell],
    tasks: Sequence[str],
    encoding: dict[str, float] | None = None,
) -> Verdict:
    share = {}
    for task in tasks:
        meta = TASKS.get(task.split("@")[0]).metadata
        if task in cells and task in references:
            share[task] = score_share(cells[task].mean, references[task].mean, meta.higher_is_better)
    complete = len(share) == len(tasks)
    return Verdict(
        share=share,
        meets_score=complete and all(value >= SCORE_SHARE for value in share.values()),
        meets_std=complete and all(cells[t].std <= MAX_SEED_STD for t in tasks),
        no_collapse=complete and not any(cells[t].collapsed for t in tasks),
        minutes=matrix_minutes(arm, cells, tasks, encoding or {}),
    )


def recommended(verdicts: dict[str, Verdict]) -> str | None:
    """The arm that meets every target with the highest mean share of the reference (None if none does)."""
    passing = {folder: np.mean(list(v.share.values())) for folder, v in verdicts.items() if v.meets_all}
    return max(passing, key=passing.get) if passing else None


def write_protocol_report(arms: Sequence[Arm], tasks: Sequence[str], out: Path) -> Path:
    """Write ``out/../PROTOCOL.md`` and ``out/plots/`` from the study's finished runs; returns the report's path."""
    from bench.config import TrainConfig

    cells = {arm.folder: arm_cells(arm, tasks, out) for arm in distinct_arms(arms)}
    reference_arm = next(arm for arm in arms if arm.axis == REFERENCE)
    references = cells[reference_arm.folder]
    contenders = [arm for arm in distinct_arms(arms) if arm.axis != REFERENCE]
    encoding = encoding_seconds(contenders, cells)
    verdicts = {
        arm.folder: verdict(arm, cells[arm.folder], references, tasks, encoding[arm.train.train_layers])
        for arm in contenders
    }
    default_folder = TrainConfig(precision=contenders[0].train.precision, model=contenders[0].train.model).slug
    best = recommended(verdicts)

    lines = [
        "# Protocol study",
        "",
        "Generated by `make protocol` (`python -m bench.protocol`) from the runs under "
        f"`{out.as_posix()}/<settings>/` (one folder per arm; rerunning skips finished runs). Each arm runs the "
        f"baseline loss ({' / '.join(BASELINE_LOSSES)}) on every task with the seeds shown; each figure is the mean "
        "± seed std of the test main metric. Machine: "
        f"{_machines(arms, out)}; code: `{git_commit()[:12]}`.",
        "",
        "## Targets",
        "",
        f"A default protocol must reach {SCORE_SHARE:.0%} of each task's reference score, with a baseline seed std of "
        f"at most {MAX_SEED_STD:g} (2 points on a 0-1 metric, 0.02 Pearson r), no collapsed baseline run (no better "
        "than predicting the training split's majority class or mean), and a default matrix (every compatible loss x "
        f"{MATRIX_SEEDS} seeds) within {MAX_MATRIX_MINUTES:.0f} min on the machine above. The matrix time is estimated "
        "from the baseline's median run time and the states encoding (once per task); the published default run "
        "measures it.",
        "",
        "## Reference scores",
        "",
        f"Settings: `{_settings(reference_arm)}`: every layer fine-tuned on the whole training split, the best "
        "validation checkpoint kept, stopped after `patience` evaluations (4 per epoch) without improvement.",
        "",
        _reference_table(references, tasks),
        "",
        "## Every arm against the targets",
        "",
        _verdict_table(contenders, cells, verdicts, tasks, default_folder),
        "",
        _choice(contenders, verdicts, best, default_folder),
        "",
    ]
    plots = out / PLOTS_DIR
    for axis in AXES:
        axis_arms = [arm for arm in arms if arm.axis == axis]
        if not axis_arms:
            continue
        path = _axis_plot(axis, axis_arms, cells, references, tasks, plots / f"{axis.replace(' ', '_')}.png")
        lines += [f"## {axis.capitalize()}", "", _axis_table(axis, axis_arms, cells, references, tasks), ""]
        if path is not None:
            lines += [f"![{axis}]({path.relative_to(out.parent).as_posix()})", ""]
    report = out.parent / "PROTOCOL.md"
    with atomic_file(report) as handle:
        handle.write("\n".join(lines))
    return report


def _settings(arm: Arm) -> str:
    train = arm.train
    layers = "all" if train.train_layers is None else train.train_layers
    size = "all" if train.train_size is None else train.train_size
    words = f"--train-size {size} --epochs {train.epochs:g} --lr {train.learning_rate:g} --train-layers {layers}"
    selection = f" --select-checkpoint --patience {train.patience}" if train.select_checkpoint else ""
    return f"{words}{selection} --precision {train.precision}"


def _machines(arms: Sequence[Arm], out: Path) -> str:
    found = set()
    for arm in distinct_arms(arms):
        rows = ResultsStore(out / arm.folder).load()
        if not rows.empty and "hardware" in rows:
            found.update(rows["hardware"].dropna().astype(str))
    return "; ".join(sorted(found)) or hardware()


def _cell(cell: Cell | None) -> str:
    return "—" if cell is None else f"{cell.mean:.3f} ± {cell.std:.3f}" if cell.runs > 1 else f"{cell.mean:.3f}"


def _reference_table(references: dict[str, Cell], tasks: Sequence[str]) -> str:
    lines = ["| task | main metric | reference | seeds | best step / steps (mean) | stopped early | time per run |"]
    lines.append("|---|---|---|---|---|---|---|")
    for task in tasks:
        metric = TASKS.get(task.split("@")[0]).metadata.main_metric
        cell = references.get(task)
        if cell is None:
            lines.append(f"| {task} | {metric} | not run | 0 | | | |")
            continue
        lines.append(
            f"| {task} | {metric} | {_cell(cell)} | {cell.runs} | {cell.best_step:.0f} / {cell.steps:.0f} | "
            f"{cell.stopped_early}/{cell.runs} | {cell.run_seconds:.0f} s |"
        )
    return "\n".join(lines)


def _mark(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _verdict_table(
    arms: Sequence[Arm], cells: dict, verdicts: dict[str, Verdict], tasks: Sequence[str], default_folder: str
) -> str:
    header = "| arm | " + " | ".join(f"{t} (share of ref.)" for t in tasks)
    lines = [header + " | ≥ 90% | std ≤ 0.02 | no collapse | matrix (est.) |", "|---" * (len(tasks) + 5) + "|"]
    for arm in arms:
        v = verdicts[arm.folder]
        name = f"`{arm.folder}`{_label(arm, default_folder)}"
        figures = [
            f"{_cell(cells[arm.folder].get(t))} ({v.share[t]:.0%})" if t in v.share else _cell(cells[arm.folder].get(t))
            for t in tasks
        ]
        minutes = "—" if math.isnan(v.minutes) else f"{v.minutes:.0f} min"
        lines.append(
            f"| {name} | {' | '.join(figures)} | {_mark(v.meets_score)} | {_mark(v.meets_std)} | "
            f"{_mark(v.no_collapse)} | {minutes} |"
        )
    return "\n".join(lines)


def _label(arm: Arm, default_folder: str) -> str:
    """What an arm is besides its settings: today's default (at another precision), or the previous default."""
    from bench.config import TrainConfig

    if arm.folder == default_folder:
        return " (default)"
    if arm.train == TrainConfig(model=arm.train.model, precision=arm.train.precision):
        return f" (default, {arm.train.precision})"
    if arm.train == TrainConfig(model=arm.train.model, precision=arm.train.precision, train_layers=0):
        return " (default of --train-layers 0)"
    return " (previous default)" if arm.train == replace(PREVIOUS_DEFAULT, precision=arm.train.precision) else ""


def _choice(arms: Sequence[Arm], verdicts: dict[str, Verdict], best: str | None, default_folder: str) -> str:
    """The arm that meets every target, or, when none does, the two that each meet one side of the trade-off: the
    best-scoring arm within the time budget and the fastest arm that meets the score targets."""
    if best is not None:
        choice = f"The arm that meets every target with the highest mean share of the reference: `{best}`."
        verb = "is" if best == default_folder else "is not"
        return f"{choice} `lossbench run`'s default (`{default_folder}`) {verb} it."
    share = {a.folder: float(np.mean(list(verdicts[a.folder].share.values()) or [math.nan])) for a in arms}
    in_time = [
        a.folder for a in arms if verdicts[a.folder].minutes <= MAX_MATRIX_MINUTES and not math.isnan(share[a.folder])
    ]
    scoring = [
        a.folder
        for a in arms
        if verdicts[a.folder].meets_score and verdicts[a.folder].meets_std and verdicts[a.folder].no_collapse
    ]
    parts = ["No arm meets every target."]
    if in_time:
        top = max(in_time, key=share.get)
        parts.append(
            f"Within {MAX_MATRIX_MINUTES:.0f} min, the highest mean share of the reference is `{top}`'s "
            f"({share[top]:.0%})."
        )
    else:
        parts.append(f"None is estimated within {MAX_MATRIX_MINUTES:.0f} min.")
    if scoring:
        fastest = min(scoring, key=lambda folder: verdicts[folder].minutes)
        parts.append(
            f"The fastest that meets the score, spread and collapse targets is `{fastest}` "
            f"(≈ {verdicts[fastest].minutes:.0f} min)."
        )
    else:
        parts.append("None meets the score, spread and collapse targets together.")
    default = verdicts.get(default_folder)
    if default is not None:
        parts.append(
            f"`lossbench run`'s default (`{default_folder}`): {share[default_folder]:.0%} of the reference on "
            f"average, ≈ {default.minutes:.0f} min; the table above shows which targets it misses."
        )
    return " ".join(parts)


def _axis_table(axis: str, arms: Sequence[Arm], cells: dict, references: dict[str, Cell], tasks: Sequence[str]) -> str:
    setting = AXIS_SETTINGS[axis][0]
    lines = [f"| {setting} | " + " | ".join(tasks) + " | time per run (mean over tasks) | states encoding (per task) |"]
    lines.append("|---" * (len(tasks) + 3) + "|")
    for arm in arms:
        arm_cells_ = cells[arm.folder]
        seconds = [c.run_seconds for c in arm_cells_.values()]
        states = [c.states_seconds for c in arm_cells_.values()]
        figures = " | ".join(_cell(arm_cells_.get(t)) for t in tasks)
        run_time = f"{np.mean(seconds):.1f} s" if seconds else "—"
        states_time = f"{np.mean(states):.0f} s" if states else "—"
        lines.append(f"| {arm.value:g} | {figures} | {run_time} | {states_time} |")
    return "\n".join(lines)


def _axis_plot(
    axis: str, arms: Sequence[Arm], cells: dict, references: dict[str, Cell], tasks: Sequence[str], path: Path
) -> Path | None:
    """One panel per task (mean ± seed std against the axis's values, the reference and 90% of it dashed) and a panel
    of the mean run time."""
    values = [arm.value for arm in arms]
    figure = Figure(figsize=(3.2 * (len(tasks) + 1), 3.0), dpi=DPI, layout="constrained")
    panels = figure.subplots(1, len(tasks) + 1, squeeze=False)[0]
    drawn = False
    for panel, task in zip(panels, tasks, strict=False):
        points = [(v, cells[a.folder][task]) for v, a in zip(values, arms, strict=True) if task in cells[a.folder]]
        if points:
            drawn = True
            panel.errorbar(
                [v for v, _ in points], [c.mean for _, c in points], yerr=[c.std for _, c in points], marker="o"
            )
        if task in references:
            reference = references[task].mean
            panel.axhline(reference, color="black", linestyle="--", linewidth=1, label="reference")
            panel.axhline(SCORE_SHARE * reference, color="grey", linestyle=":", linewidth=1, label="90% of reference")
        panel.set_title(task, fontsize=9)
        panel.set_xlabel(AXIS_SETTINGS[axis][0], fontsize=8)
        if axis == "learning rate":
            panel.set_xscale("log")
    if any(task in references for task in tasks):
        panels[0].legend(fontsize=7)
    times = panels[-1]
    for task in tasks:
        points = [
            (v, cells[a.folder][task].run_seconds) for v, a in zip(values, arms, strict=True) if task in cells[a.folder]
        ]
        if points:
            times.plot([v for v, _ in points], [s for _, s in points], marker="o", label=task)
            times.legend(fontsize=7)
    times.set_title("seconds per run", fontsize=9)
    times.set_xlabel(AXIS_SETTINGS[axis][0], fontsize=8)
    if axis == "learning rate":
        times.set_xscale("log")
    if not drawn:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
