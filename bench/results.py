"""The results store: ``runs.csv`` with one row per run, rewritten atomically after every finished run."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import FINE_TUNE

RUNS_FILE = "runs.csv"
# Per-run files, written by the runner under DIR/runs/<run_id>/ and read by the report.
RUNS_DIR = "runs"
LOG_HISTORY_FILE = "log_history.json"  # the Trainer's log history: training loss (and validation metrics) by step
RUN_LOG_FILE = "run.log"  # the run's identity, warnings, outcome (and traceback of a failure)
INVOCATIONS_FILE = "invocations.jsonl"  # one JSON line per `lossbench run`: what it ran, how, and its wall time
PREDICTIONS_FILE = "test_predictions.npz"  # classification: the test split's ``logits`` (n, C) and ``labels`` (n,)
# Columns first in the file, in this order; test metrics and anything else follow.
LEADING_COLUMNS = (
    "run_id",
    "status",
    "task",
    "task_version",
    "problem_type",
    "main_metric",
    "loss",
    "loss_params",
    "seed",
    "model",
    "train_size",
    "epochs",
    "learning_rate",
    "batch_size",
    "max_length",
)
INTEGER_COLUMNS = ("seed", "train_size", "batch_size", "max_length", "train_examples", "test_examples")


class ResultsStore:
    """Reads and appends rows of ``DIR/runs.csv``; a kill at any moment leaves the previous complete file."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RUNS_FILE

    def load(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame(columns=list(LEADING_COLUMNS))
        frame = pd.read_csv(self.path, dtype={"run_id": str, "loss_params": str})
        return _with_integer_columns(frame)

    def run_dir(self, run_id: str) -> Path:
        return self.out_dir / RUNS_DIR / str(run_id)

    def log_history(self, run_id: str) -> list[dict] | None:
        """A run's log history, or None when the run saved none (or it cannot be read)."""
        try:
            entries = json.loads((self.run_dir(run_id) / LOG_HISTORY_FILE).read_text())
        except (OSError, ValueError):
            return None
        return entries if isinstance(entries, list) else None

    def test_predictions(self, run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
        """A run's test ``(logits, labels)``, or None when the run saved none (or they cannot be read)."""
        try:
            with np.load(self.run_dir(run_id) / PREDICTIONS_FILE) as saved:
                logits, labels = saved["logits"], saved["labels"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        if logits.ndim != 2 or len(logits) != len(labels):
            return None
        return logits, labels

    def ids_with_status(self, *statuses: str) -> set[str]:
        frame = self.load()
        return set(frame.loc[frame["status"].isin(statuses), "run_id"])

    def put(self, row: dict) -> None:
        """Add a row, replacing any earlier row with the same run_id, then write the file atomically."""
        frame = self.load()
        frame = frame[frame["run_id"] != row["run_id"]]
        new = pd.DataFrame([row])
        frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
        columns = [c for c in LEADING_COLUMNS if c in frame.columns]
        frame = frame[columns + [c for c in frame.columns if c not in columns]]
        self._write(frame)

    def log_invocation(self, record: dict) -> None:
        """Append one ``lossbench run`` invocation's record to ``DIR/invocations.jsonl``."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / INVOCATIONS_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")

    def invocations(self) -> list[dict]:
        """The records of every ``lossbench run`` into this folder, oldest first (unreadable lines skipped)."""
        path = self.out_dir / INVOCATIONS_FILE
        records = []
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records

    def put_files(self, run_id: str, files: dict[str, bytes]) -> None:
        """Write a run's files into ``DIR/runs/<run_id>/``, each atomically (temp file, then rename)."""
        if not files:
            return
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            if Path(name).name != name:
                raise ValueError(f"Invalid run file name {name!r}: must be a plain file name")
            tmp = run_dir / f".{name}.tmp"
            tmp.write_bytes(content)
            os.replace(tmp, run_dir / name)

    def _write(self, frame: pd.DataFrame) -> None:
        frame = _with_integer_columns(frame)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.out_dir, prefix=".runs-", suffix=".csv.tmp")
        try:
            with os.fdopen(fd, "w", newline="") as handle:
                frame.to_csv(handle, index=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def run_protocols(frame: pd.DataFrame) -> pd.Series:
    """Each row's protocol (``TrainConfig.protocol``); rows written before the column existed were fine-tuned."""
    if "protocol" not in frame.columns:
        return pd.Series(FINE_TUNE, index=frame.index, dtype=object)
    return frame["protocol"].fillna(FINE_TUNE).astype(str)


def learning_curve(entries: list[dict], main_metric: str) -> pd.DataFrame:
    """Tidy (step, series, value) rows from a log history: ``series`` is ``train_loss`` for the training entries
    (those with ``loss``) and ``eval_<main_metric>`` for the periodic validation entries."""
    metric = f"eval_{main_metric}"
    rows = []
    for entry in entries:
        if "step" not in entry:
            continue
        for key, series in (("loss", "train_loss"), (metric, metric)):
            value = entry.get(key)
            if isinstance(value, (int, float)) and np.isfinite(value):
                rows.append({"step": int(entry["step"]), "series": series, "value": float(value)})
    return pd.DataFrame(rows, columns=["step", "series", "value"])


def _with_integer_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable integers, so that a missing value (a skipped row has no seed) does not turn 0 into 0.0."""
    for column in INTEGER_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return frame
