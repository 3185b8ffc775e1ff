"""The results store: ``runs.csv`` with one row per run, rewritten atomically after every finished run.

Every row is checked when the file is read: a row that is not whole (a truncated last line, a line with the wrong
number of fields, a garbage line) or not sound (a run_id that is not a run's hash, an unknown status, a missing
identity field, a finished run without its main metric) is *damaged*. Damaged rows are never counted: the runner runs
their runs again and the report lists them by line. They stay in the file, as they were, until their run replaces
them (or you delete them), so nothing is lost.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import secrets
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from bench.config import FINE_TUNE
from bench.schema import LEADING_COLUMNS  # first in the file, in this order; results and anything else follow
from bench.status import STATUSES, Status

RUNS_FILE = "runs.csv"
# Per-run files, written by the runner under DIR/runs/<run_id>/ and read by the report.
RUNS_DIR = "runs"
LOG_HISTORY_FILE = "log_history.json"  # the Trainer's log history: training loss (and validation metrics) by step
RUN_LOG_FILE = "run.log"  # the run's identity, warnings, outcome (and traceback of a failure)
INVOCATIONS_FILE = "invocations.jsonl"  # one JSON line per `lossbench run`: what it ran, how, and its wall time
PREDICTIONS_FILE = "test_predictions.npz"  # classification: the test split's ``logits`` (n, C) and ``labels`` (n,)
INTEGER_COLUMNS = ("seed", "train_size", "batch_size", "max_length", "train_examples", "test_examples")
RUN_ID = re.compile(r"(skip-)?[0-9a-f]{16}")  # RunSpec.run_id; an incompatible pair's row has the skip- prefix
REQUIRED_FIELDS = ("task", "task_version", "problem_type", "main_metric", "loss")  # and seed, except when skipped


class ResultsFileError(ValueError):
    """``runs.csv`` cannot be read at all (not a CSV, no header): the message names the file and the fix."""


@dataclass(frozen=True)
class DamagedRow:
    """A row of ``runs.csv`` that is not counted: where it is, its run when readable, what is wrong."""

    line: int  # the file's line where the row starts (line 1 is the header)
    run_id: str | None  # the run it belongs to, when its run_id is readable
    reason: str
    text: str = field(repr=False)  # the row exactly as the file holds it, written back when the file is rewritten

    def describe(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class RunsFile:
    """What ``runs.csv`` holds: the sound rows, and the damaged ones (in file order)."""

    rows: pd.DataFrame
    damaged: list[DamagedRow]


class ResultsStore:
    """Reads and appends rows of ``DIR/runs.csv``; a kill at any moment leaves the previous complete file."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / RUNS_FILE

    def load(self) -> pd.DataFrame:
        """The sound rows (damaged rows left out: see ``read``)."""
        return self.read().rows

    def read(self) -> RunsFile:
        """Every row, checked: the sound rows and the damaged ones. A file that cannot be read as a ``runs.csv`` at
        all raises ``ResultsFileError``."""
        if not self.path.exists():
            return RunsFile(pd.DataFrame(columns=list(LEADING_COLUMNS)), [])
        return parse_runs(self.path)

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

    def put(self, row: dict) -> None:
        """Add a row, replacing any earlier row with the same run_id (a damaged one included), then write the file
        atomically. Other damaged rows are written back as they were."""
        current = self.read()
        frame = current.rows[current.rows["run_id"] != row["run_id"]]
        new = pd.DataFrame([row])
        frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
        columns = [c for c in LEADING_COLUMNS if c in frame.columns]
        frame = frame[columns + [c for c in frame.columns if c not in columns]]
        self._write(frame, [damaged for damaged in current.damaged if damaged.run_id != row["run_id"]])

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
        for name, content in files.items():
            if Path(name).name != name:
                raise ValueError(f"Invalid run file name {name!r}: must be a plain file name")
            with atomic_file(run_dir / name, "wb") as handle:
                handle.write(content)

    def _write(self, frame: pd.DataFrame, damaged: list[DamagedRow]) -> None:
        frame = _with_integer_columns(frame)
        # surrogateescape: a damaged row's bytes that are not UTF-8 are written back as they were read.
        with atomic_file(self.path, "w", newline="", encoding="utf-8", errors="surrogateescape") as handle:
            frame.to_csv(handle, index=False)
            for row in damaged:  # a truncated last row stays last, without its missing line end
                handle.write(row.text)


@contextmanager
def atomic_file(path: Path, mode: str = "w", **open_args: Any) -> Iterator[IO]:
    """Open a new file to write ``path`` atomically: it replaces ``path`` (flushed to disk) only when the block ends
    without an exception, so readers see the old file or the new one, never half of one.

    The temporary file is created as any new file is, with mode 0o666 less the umask (``tempfile.mkstemp`` would
    give 0o600), so the renamed file gets the same permissions as every other file the benchmark writes.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), mode, **open_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- reading and checking runs.csv ---------------------------------------------------------------------------------


def parse_runs(path: Path) -> RunsFile:
    """Read ``runs.csv`` record by record (keeping each record's line number and text), then check every row."""
    # surrogateescape: bytes that are not UTF-8 damage their row, not the whole file.
    lines = io.StringIO(path.read_bytes().decode("utf-8", errors="surrogateescape"), newline="").readlines()
    try:
        records = list(_records(lines))
    except csv.Error as error:
        raise ResultsFileError(_unreadable(path, f"the CSV parser stopped: {error}")) from None
    if not records:
        raise ResultsFileError(_unreadable(path, "it is empty"))
    header, header_text = records[0][2], "".join(lines[: records[0][1]])
    if "run_id" not in header or "status" not in header:
        raise ResultsFileError(_unreadable(path, f"its first line is not a runs.csv header: {header_text[:80]!r}"))
    whole: dict[int, str] = {}  # line -> text of each record that reads as a row
    damaged: list[DamagedRow] = []
    for number, (start, end, fields) in enumerate(records[1:], start=2):
        text = "".join(lines[start - 1 : end])
        if not fields:
            continue  # a blank line
        problem = _record_problem(fields, header, text, last=number == len(records))
        if problem:
            damaged.append(DamagedRow(start, _readable_run_id(fields, header), problem, text))
        else:
            whole[start] = text
    frame = _frame(path, header_text, whole)
    for line, row in zip(frame.index, frame.to_dict("records"), strict=True):
        problem = _row_problem(row)
        if problem:
            damaged.append(DamagedRow(line, _readable_run_id_value(row["run_id"]), problem, whole.pop(line)))
    # Parsed again without the damaged rows, so that their values do not change the columns' types.
    rows = _frame(path, header_text, whole).reset_index(drop=True)
    return RunsFile(_with_integer_columns(rows), sorted(damaged, key=lambda row: row.line))


def _frame(path: Path, header: str, records: Mapping[int, str]) -> pd.DataFrame:
    """The records parsed by pandas, indexed by their line numbers."""
    try:
        frame = pd.read_csv(io.StringIO(header + "".join(records.values())), dtype={"run_id": str, "loss_params": str})
    except (ValueError, pd.errors.ParserError) as error:
        raise ResultsFileError(_unreadable(path, f"pandas cannot parse it: {error}")) from None
    if len(frame) != len(records):
        raise ResultsFileError(_unreadable(path, f"pandas reads {len(frame)} rows in {len(records)} records"))
    frame.index = pd.Index(list(records), name="line")
    return frame


def _records(lines: list[str]) -> Iterator[tuple[int, int, list[str]]]:
    """``(first line, last line, fields)`` of each CSV record (a quoted field may span lines)."""
    reader = csv.reader(lines, strict=False)
    start = 1
    for fields in reader:
        yield start, reader.line_num, fields
        start = reader.line_num + 1


def _record_problem(fields: list[str], header: list[str], text: str, *, last: bool) -> str | None:
    """What makes a record unreadable as a row, or None."""
    if last and not text.endswith(("\n", "\r")):
        return "the file ends inside this row (truncated)"
    if len(fields) != len(header):
        return f"{len(fields)} field{'s' if len(fields) != 1 else ''} where the header has {len(header)}"
    if re.search("[\udc80-\udcff]", text):
        return "bytes that are not UTF-8"
    return None


def _row_problem(row: Mapping[str, Any]) -> str | None:
    """What makes a parsed row unsound, or None."""
    run_id, status = row.get("run_id"), row.get("status")
    if _readable_run_id_value(run_id) is None:
        return f"run_id {_shown(run_id)} is not a run's 16 hex digits"
    if status not in STATUSES:
        return f"status {_shown(status)} is not one of {', '.join(STATUSES)}"
    required = REQUIRED_FIELDS if status == Status.SKIPPED else (*REQUIRED_FIELDS, "seed")
    missing = [name for name in required if _blank(row.get(name))]
    if missing:
        return f"no {', '.join(missing)}"
    for name in INTEGER_COLUMNS:
        value = row.get(name)
        if not _blank(value) and not (_number(value) is not None and float(value).is_integer()):
            return f"{name} {_shown(value)} is not an integer"
    if status == Status.OK:
        metric = f"test_{row['main_metric']}"
        if _blank(row.get(metric)):
            return f"a finished run without its main metric {metric}"
        if _number(row[metric]) is None:
            return f"{metric} {_shown(row[metric])} is not a number"
    return None


def _readable_run_id(fields: list[str], header: list[str]) -> str | None:
    position = header.index("run_id")
    return _readable_run_id_value(fields[position]) if position < len(fields) else None


def _readable_run_id_value(value: Any) -> str | None:
    return value if isinstance(value, str) and RUN_ID.fullmatch(value) else None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or (isinstance(value, str) and not value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(number) else number


def _shown(value: Any) -> str:
    return "(empty)" if _blank(value) else repr(value if not isinstance(value, str) else value[:40])


def _unreadable(path: Path, detail: str) -> str:
    return (
        f"Cannot read {path}: {detail}. Repair it, or move it aside (mv {path} {path}.broken) so that "
        "`lossbench run` starts a new one; nothing was run."
    )


def damaged_warning(path: Path, damaged: list[DamagedRow]) -> str:
    """One paragraph for ``lossbench run`` about the damaged rows of ``path``."""
    shown = ", ".join(row.describe() for row in damaged[:5])
    more = f", and {len(damaged) - 5} more" if len(damaged) > 5 else ""
    return (
        f"warning: {path} has {len(damaged)} damaged row(s), not counted as finished ({shown}{more}). Their runs "
        "in this matrix run again and replace them; a row whose run_id is unreadable stays in the file until you "
        "delete it."
    )


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
