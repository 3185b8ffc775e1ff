"""TUNING.md: what ``lossbench tune`` found, per task, read from the results folder (``runs.csv``) and its study
storage (the folder's SQLite file, or the storage its ``tuning-storage.txt`` names), so it can be rebuilt at any time.

Per task: each tuned loss's chosen learning rate and parameters, its best validation score, its sensitivity (the
spread of the validation metric over its finished trials), a budget curve (the best validation score found so far
against the number of trials, ``plots/tuning-<task>.png``), and the ranking of the losses by their test main metric
without and with tuning, where both kinds of rows are in the folder. ``tuning_numbers`` computes every number;
``write_tuning_report`` only formats them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from optuna.trial import TrialState
from scipy import stats as scipy_stats

from bench.config import TUNED_SUFFIX
from bench.plots import DPI, PLOTS_DIR, file_stem
from bench.results import ResultsStore
from bench.stats import ALPHA, holm, paired_difference
from bench.status import Status
from bench.tuning import STATUS_ATTR, STORAGE_FILE, TUNING_DB, open_storage, recorded_storage, shown_url, storage_url

TUNING_FILE = "TUNING.md"


@dataclass(frozen=True)
class StudyNumbers:
    """One (task, loss) study: its counted trials' validation scores in trial order (NaN: failed), the best trial's
    parameters, and whether higher is better."""

    task: str
    loss: str
    metric: str
    higher_is_better: bool
    scores: list[float]
    best_params: dict | None
    best_value: float | None
    train_seconds: float = 0.0  # summed over the counted trials
    span: tuple[datetime, datetime] | None = None  # the first trial's start and the last one's end

    @property
    def finished(self) -> np.ndarray:
        values = np.asarray(self.scores, dtype=float)
        return values[np.isfinite(values)]

    @property
    def spread(self) -> tuple[float, float, float]:
        """Sensitivity: (std, min, max) of the validation metric over the finished trials."""
        values = self.finished
        if not len(values):
            return (np.nan, np.nan, np.nan)
        return (float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, float(values.min()), float(values.max()))

    @property
    def budget_curve(self) -> list[float]:
        """The best validation score found after 1, 2, ... trials (NaN until a trial finishes)."""
        best, curve = np.nan, []
        for value in self.scores:
            if np.isfinite(value) and (np.isnan(best) or (value > best if self.higher_is_better else value < best)):
                best = value
            curve.append(best)
        return curve


def study_numbers(url: str | None) -> list[StudyNumbers]:
    """Every study of the storage at the URL ``url`` (none without one)."""
    if url is None:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(url)
    found = []
    for name in sorted(optuna.study.get_all_study_names(storage)):
        study = optuna.load_study(study_name=name, storage=storage)
        trials = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if STATUS_ATTR in t.user_attrs
        ]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        best = study.best_trial if complete else None
        higher = study.direction == optuna.study.StudyDirection.MAXIMIZE
        starts = [t.datetime_start for t in trials if t.datetime_start]
        ends = [t.datetime_complete for t in trials if t.datetime_complete]
        found.append(
            StudyNumbers(
                task=study.user_attrs.get("task", name.split("|")[0]),
                loss=study.user_attrs.get("loss", name.split("|")[-1]),
                metric=study.user_attrs.get("metric", "score"),
                higher_is_better=higher,
                scores=[t.value if t.state == TrialState.COMPLETE else np.nan for t in trials],
                best_params=dict(best.params) if best else None,
                best_value=best.value if best else None,
                train_seconds=float(sum(t.user_attrs.get("train_seconds") or 0.0 for t in trials)),
                span=(min(starts), max(ends)) if starts and ends else None,
            )
        )
    return found


def budget_spent(studies: list[StudyNumbers]) -> str:
    """One line: the trials counted, their summed training time, and the wall-clock span from the first trial's
    start to the last one's end (which includes any interruption and whatever else the machine ran)."""
    trials = sum(len(s.scores) for s in studies)
    spans = [s.span for s in studies if s.span]
    training = sum(s.train_seconds for s in studies) / 60
    line = f"Budget spent: {trials} trials in {len(studies)} studies, {training:.1f} min of training summed over them"
    if spans:
        first, last = min(a for a, _ in spans), max(b for _, b in spans)
        wall = (last - first).total_seconds() / 60
        line += f"; they ran from {first:%Y-%m-%d %H:%M} to {last:%H:%M} ({wall:.0f} min wall clock, pauses included)"
    return line + ". The final runs' times are in runs.csv and invocations.jsonl."


def rankings(runs: pd.DataFrame, task: str, losses: list[str], higher_is_better: bool) -> pd.DataFrame:
    """Per loss of ``losses``: the test main metric's mean over seeds and its rank among the losses that have both
    untuned and tuned finished rows on ``task``, without and with tuning (NaN where a kind of row is missing); and
    tuning's effect, tuned minus untuned paired by seed (``bench.stats.paired_difference``: mean, 95% interval,
    paired t-test p, Holm-adjusted over the task's losses)."""
    columns = ["untuned", "untuned_n", "untuned_rank", "tuned", "tuned_n", "tuned_rank"]
    columns += ["effect", "effect_low", "effect_high", "p", "p_holm"]
    if runs.empty or "task" not in runs.columns:
        return pd.DataFrame(np.nan, index=losses, columns=columns)
    rows = runs[(runs["task"].astype(str) == task) & (runs["status"] == Status.OK)]
    if rows.empty:
        return pd.DataFrame(np.nan, index=losses, columns=columns)
    metric = f"test_{rows['main_metric'].iloc[0]}"
    values = pd.Series(pd.to_numeric(rows[metric], errors="coerce").to_numpy(), index=rows["seed"].to_numpy())
    spec = rows["loss_spec"].astype(str).to_numpy()
    table = pd.DataFrame(np.nan, index=losses, columns=columns, dtype=float)
    for loss in losses:
        by_kind = {
            kind: values[spec == name].dropna() for kind, name in (("untuned", loss), ("tuned", loss + TUNED_SUFFIX))
        }
        for kind, mine in by_kind.items():
            table.loc[loss, kind] = mine.mean() if len(mine) else np.nan
            table.loc[loss, f"{kind}_n"] = len(mine)
        paired = paired_difference(by_kind["tuned"], by_kind["untuned"])
        table.loc[loss, ["effect", "effect_low", "effect_high", "p"]] = (
            paired.mean_diff, paired.diff_ci_low, paired.diff_ci_high, paired.p,
        )  # fmt: skip
    both = table["untuned"].notna() & table["tuned"].notna()
    for kind in ("untuned", "tuned"):
        table.loc[both, f"{kind}_rank"] = table.loc[both, kind].rank(ascending=not higher_is_better, method="min")
    tested = table["p"].notna()
    if tested.any():
        table.loc[tested, "p_holm"] = holm(table.loc[tested, "p"].to_numpy())
    return table


def rank_agreement(table: pd.DataFrame) -> tuple[float, float, int]:
    """Kendall's tau between the ranks without and with tuning (``rankings``), its p-value and the losses ranked:
    tau 1 means tuning left the order as it was, 0 that the two orders are unrelated."""
    both = table.dropna(subset=["untuned_rank", "tuned_rank"])
    if len(both) < 3:
        return (np.nan, np.nan, len(both))
    result = scipy_stats.kendalltau(both["untuned_rank"], both["tuned_rank"])
    return (float(result.statistic), float(result.pvalue), len(both))


def budget_plot(task: str, studies: list[StudyNumbers], out_dir: Path) -> Path:
    figure = Figure(figsize=(6.4, 4.0), dpi=DPI)
    axes = figure.subplots()
    for study in studies:
        curve = study.budget_curve
        axes.plot(range(1, len(curve) + 1), curve, marker="o", markersize=3, label=study.loss)
    axes.set_xlabel("trials")
    axes.set_ylabel(f"best validation {studies[0].metric} so far")
    axes.set_title(f"{task}: budget curves")
    axes.legend(fontsize="small", ncols=2)
    axes.grid(alpha=0.3)
    path = out_dir / PLOTS_DIR / f"tuning-{file_stem(task)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight")
    return path


def _number(value: float, digits: int = 4) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _params(params: dict | None) -> str:
    if params is None:
        return "–"
    return ", ".join(
        f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}" for key, value in params.items()
    )


def write_tuning_report(out_dir: str | Path, storage: str | None = None) -> Path:
    """Write ``out_dir/TUNING.md`` and its budget-curve plots from the studies in ``storage`` (a URL; default: the
    folder's recorded storage, ``recorded_storage``); returns the report's path."""
    out_dir = Path(out_dir)
    storage = storage or recorded_storage(out_dir)
    studies = study_numbers(storage)
    shown = shown_url(storage) if storage else None
    where = (  # the folder's own file by a relative URL: the report stays true where the folder is copied
        f"`{TUNING_DB}` beside this report: `optuna-dashboard sqlite:///{TUNING_DB}` run in this folder opens them"
        if storage == storage_url(out_dir)
        else f"`{shown}`: `optuna-dashboard {shown}` opens them"
    )
    runs = ResultsStore(out_dir).load()
    lines = [
        "# Tuning",
        "",
        "Every loss of a task got the same number of trials on the validation split, the same training settings and "
        "seed, and a TPE sampler seeded the same way (`lossbench tune`, docs/tuning.md in the lossbench "
        f"repository). The studies are in {where}. Generated from that "
        "storage and runs.csv: rebuild with the same `lossbench tune` command (nothing runs again) or by hand.",
        "",
    ]
    if studies:
        lines += [budget_spent(studies), ""]
    if not studies:
        lines.append(
            f"No studies in `{shown}`."
            if shown
            else f"No studies: {out_dir} holds neither {TUNING_DB} nor {STORAGE_FILE}."
        )
    for task in sorted({s.task for s in studies}):
        mine = [s for s in studies if s.task == task]
        arrow = "↑" if mine[0].higher_is_better else "↓"
        lines += [f"## {task}", "", f"Validation {mine[0].metric} {arrow} over each loss's trials.", ""]
        lines += [
            "| loss | trials | failed | best validation | chosen | spread (std) | min | max |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for study in mine:
            std, low, high = study.spread
            failed = len(study.scores) - len(study.finished)
            lines.append(
                f"| {study.loss} | {len(study.scores)} | {failed} | {_number(study.best_value)} | "
                f"{_params(study.best_params)} | {_number(std)} | {_number(low)} | {_number(high)} |"
            )
        plot = budget_plot(task, mine, out_dir)
        lines += ["", f"![budget curves]({plot.relative_to(out_dir).as_posix()})", ""]
        table = rankings(runs, task, [s.loss for s in mine], mine[0].higher_is_better)
        if table["untuned_rank"].notna().any():
            tau, tau_p, ranked = rank_agreement(table)
            lines += [
                f"Test {mine[0].metric} {arrow}, mean over seeds; ranks among the losses with both kinds of runs (rank "
                "change +1: one place higher when every loss is tuned). Tuning's effect: tuned minus untuned, paired "
                "by seed, with its 95% t-interval and the paired t-test's p, Holm-adjusted over this task's losses; "
                f"**bold** where that p < {ALPHA:g}.",
                "",
                "| loss | untuned | n | rank | tuned | n | rank | rank change | tuning's effect [95% CI] | p (Holm) |",
                "|---|---|---|---|---|---|---|---|---|---|",
            ]
            for loss, row in table.sort_values(["tuned_rank", "tuned"], na_position="last").iterrows():
                change = row["untuned_rank"] - row["tuned_rank"]
                shown_change = "–" if not np.isfinite(change) else f"{change:+.0f}"
                effect = (
                    "–"
                    if not np.isfinite(row["effect_low"])
                    else f"{row['effect']:+.4f} [{row['effect_low']:+.4f}, {row['effect_high']:+.4f}]"
                )
                if np.isfinite(row["p_holm"]) and row["p_holm"] < ALPHA:
                    effect = f"**{effect}**"
                lines.append(
                    f"| {loss} | {_number(row['untuned'])} | {row['untuned_n']:.0f} "
                    f"| {_number(row['untuned_rank'], 0)} | {_number(row['tuned'])} | {row['tuned_n']:.0f} "
                    f"| {_number(row['tuned_rank'], 0)} | {shown_change} | {effect} | {_number(row['p_holm'], 3)} |"
                )
            agreement = (
                f"Kendall's tau between the two rankings: {tau:.2f} (p = {tau_p:.3f}, {ranked} losses; 1 = the same "
                "order, 0 = unrelated)."
                if np.isfinite(tau)
                else f"Kendall's tau needs at least 3 losses ranked both ways ({ranked} here)."
            )
            lines += ["", agreement]
        else:
            lines.append(
                "No ranking without tuning: the folder has no untuned runs of these losses on this task (add them with "
                "`lossbench run --out` this folder and the same settings)."
            )
        lines.append("")
    path = out_dir / TUNING_FILE
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
