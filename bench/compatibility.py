"""Whether new runs may join the finished runs of a results folder: never across protocols, and with other settings
only when asked (``--force``), since one report would then compare losses trained differently."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from bench.config import TrainConfig
from bench.results import ResultsStore, run_protocols
from bench.status import Status


def finished_runs(out_dir: str | Path) -> pd.DataFrame:
    """The rows of ``out_dir``'s finished runs (none when the folder has no ``runs.csv``)."""
    frame = ResultsStore(Path(out_dir)).load()
    return frame[frame["status"] == Status.OK] if "status" in frame.columns else frame.iloc[0:0]


def settings_conflicts(out_dir: str | Path, train: TrainConfig) -> list[str]:
    """Settings of the finished runs in ``out_dir`` that differ from ``train``: mixing them in one report would
    compare losses trained differently (``--force`` allows it).

    Tuned runs (``lossbench tune``) may sit beside untuned ones: each tuned loss has the learning rate its tuning
    chose, so the learning rate is compared among untuned runs only, and the tuning budget among tuned runs only
    (``train`` is then the tuning's base settings with its ``tuning_trials``)."""
    finished = finished_runs(out_dir)
    if finished.empty:
        return []
    trials = finished["tuning_trials"] if "tuning_trials" in finished.columns else pd.Series(0, index=finished.index)
    tuned = pd.to_numeric(trials, errors="coerce").fillna(0) > 0
    compared = {"learning_rate": finished[~tuned] if not train.tuned else finished.iloc[0:0]}
    compared["tuning_trials"] = finished[tuned] if train.tuned else finished.iloc[0:0]
    conflicts = []
    for name, value in asdict(train).items():
        rows = compared.get(name, finished)
        if name not in rows.columns or rows.empty:
            continue
        column = rows[name]
        found = {"None"} if column.isna().all() else {str(v) for v in column.dropna().unique()}
        if found and not all(same_setting(text, value) for text in found):
            conflicts.append(f"{name}={', '.join(sorted(found))} there, {value} now")
    return conflicts


def protocol_conflict(out_dir: str | Path, train: TrainConfig) -> str | None:
    """Why ``train``'s runs cannot join the finished runs in ``out_dir``: another protocol (fine-tuning vs a head on
    the frozen encoder) gives numbers that are not comparable, and a report would pool them. None when they can."""
    others = sorted(set(run_protocols(finished_runs(out_dir))) - {train.protocol})
    if not others:
        return None
    return (
        f"{out_dir} holds {' and '.join(others)} runs, and these would be {train.protocol} runs: the two protocols "
        "are not comparable, and one report would pool them (--force does not allow it)."
    )


def same_setting(text: str, value: Any) -> bool:
    """A setting read back from the CSV against the config's value: '450' is 450, '0.0002' is 2e-4."""
    if text == str(value):
        return True
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return False
