"""The driver: runs the cells of the (task, loss, seed) matrix (built by ``bench.matrix``) on an executor, each with
``bench.finetune`` (every depth, the frozen encoder's head-only runs included), turns a failed run into a row, and
alone writes the results store, printing one progress line per run."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import psutil
import torch
import transformers

from bench.config import RunSpec
from bench.environment import git_commit, hardware
from bench.executors import CellResult, Executor, LocalExecutor
from bench.finetune import run_finetune
from bench.models import resolve_model
from bench.registry import TASKS
from bench.rerun import RerunFilter, plan_matrix
from bench.results import RUN_LOG_FILE, RUNS_DIR, ResultsStore, damaged_warning
from bench.rows import failure_row
from bench.splits import tokenized_splits
from bench.status import Status
from bench.trainer import DivergedError

PROGRESS_WIDTH = 20  # characters of the matrix's progress bar


def run_one(spec: RunSpec, out_dir: Path, *, eval_steps: int = 0, torch_compile: bool = False) -> dict[str, Any]:
    """Run one cell (``bench.finetune``: at the run's depth, down to the head alone); returns the finished row.

    ``eval_steps > 0`` also scores the validation split every that many steps, for learning curves;
    ``torch_compile`` compiles the model (``make perf`` times it). Neither is part of the run's identity.
    """
    return run_finetune(spec, out_dir, eval_steps=eval_steps, torch_compile=torch_compile)


@contextmanager
def run_log(path: Path) -> Iterator[logging.Logger]:
    """A log file for one run: the run's own lines, plus the warnings and log records of transformers, datasets and
    Python's ``warnings`` while it runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log = logging.getLogger("bench.run")
    log.setLevel(logging.INFO)
    log.propagate = False
    watched = [log, *(logging.getLogger(name) for name in ("transformers", "datasets", "py.warnings"))]
    logging.captureWarnings(True)
    for logger in watched:
        logger.addHandler(handler)
    try:
        yield log
    finally:
        for logger in watched:
            logger.removeHandler(handler)
        logging.captureWarnings(False)
        handler.close()


def run_one_safely(spec: RunSpec, out_dir: Path, *, eval_steps: int = 0) -> dict[str, Any]:
    """``run_one``, with any exception turned into a row so the matrix goes on (``failed_run_row``). Logs to
    ``runs/<run_id>/run.log``."""
    run_dir = out_dir / RUNS_DIR / spec.run_id
    with run_log(run_dir / RUN_LOG_FILE) as log:
        log.info("run %s: %s", spec.run_id, json.dumps(spec.identity(), default=str))
        try:
            row = run_one(spec, out_dir, eval_steps=eval_steps)
        except Exception as error:  # noqa: BLE001 - a failed run is a result, not a crash
            log.error("failed:\n%s", traceback.format_exc())
            (run_dir / "error.txt").write_text(traceback.format_exc())
            row = failed_run_row(spec, error)
        metrics = {key: value for key, value in row.items() if key.startswith("test_") or key.endswith("_seconds")}
        log.info("status=%s %s", row["status"], json.dumps(metrics, default=str))
    return row


def failed_run_row(spec: RunSpec, error: BaseException) -> dict[str, Any]:
    """The row of a run that did not finish: ``status=diverged`` (with the step) for a NaN/Inf training loss,
    ``status=error`` for anything else, a dead worker process included."""
    diverged_step = error.step if isinstance(error, DivergedError) else None
    return failure_row(spec, TASKS.get(spec.task.base).metadata, error, diverged_step=diverged_step)


def quiet_libraries() -> None:
    """No progress bars or model-load reports from the libraries: the driver prints one line per run. Called in the
    driver and in every cell, since a worker process (spawned, or Ray's) starts with the libraries' defaults."""
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def run_cell(spec: RunSpec, *, eval_steps: int = 0) -> CellResult:
    """``run_one_safely`` in a scratch folder, returning the row and the run folder's files: what an executor ships
    back to the driver, which alone writes the results folder (the worker may be another process or machine)."""
    quiet_libraries()
    with tempfile.TemporaryDirectory(prefix="lossbench-cell-") as scratch:
        row = run_one_safely(spec, Path(scratch), eval_steps=eval_steps)
        run_dir = Path(scratch) / RUNS_DIR / spec.run_id
        files = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    return CellResult(row, files)


def prepare_data(runs: Iterable[RunSpec]) -> None:
    """Load and tokenize every task of the matrix before any training, so that a bad data file stops the matrix at
    once with its message (and the work is cached for the runs). Hub tasks are left to their runs: offline they
    become error rows while the rest of the matrix goes on."""
    for base, model, max_length in sorted({(r.task.base, r.train.model, r.train.max_length) for r in runs}):
        if not TASKS.get(base).requires_network:
            tokenized_splits(base, resolve_model(model), max_length)


def progress_bar(finished: int, total: int, elapsed: float) -> str:
    """``[##########..........] 5/10 60s, ETA 1m00s``: runs finished of ``total`` after ``elapsed`` seconds, and the
    time left at the mean pace so far."""
    eta = elapsed / finished * (total - finished)
    filled = round(PROGRESS_WIDTH * finished / total)
    bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
    return f"[{bar}] {finished}/{total} {elapsed:.0f}s, ETA {eta // 60:.0f}m{eta % 60:02.0f}s"


def run_matrix(
    runs: list[RunSpec],
    skipped: list[dict[str, Any]],
    out_dir: str | Path,
    *,
    retry_failed: bool = False,
    rerun: Sequence[RerunFilter] = (),
    quiet: bool = False,
    eval_steps: int = 0,
    executor: Executor | None = None,
    note: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Run every run of the matrix not finished in ``out_dir`` with the current code and data, storing each row (with
    its fingerprint) as soon as it finishes.

    A finished row whose fingerprint is not the current one is stale and runs again, as do the finished runs that all
    the ``rerun`` filters choose (``bench.rerun``); damaged rows of ``runs.csv`` never count as finished. ``eval_steps``
    only adds validation points to the log history; it is not part of a run's identity. The ``executor`` (default:
    this process, one run after another) runs the cells; this function alone writes results. ``note`` is added to
    the invocation's entry of ``invocations.jsonl``. Returns the rows of the runs that failed in this invocation.
    """
    out_dir = Path(out_dir)
    store = ResultsStore(out_dir)
    stored = store.read()
    if stored.damaged:
        print(damaged_warning(store.path, stored.damaged), file=sys.stderr)
    plan = plan_matrix(runs, skipped, stored.rows, retry_failed=retry_failed, rerun=rerun)
    for row in plan.skipped:
        store.put(row)
    todo = plan.todo
    say = (lambda *_: None) if quiet else print
    say(plan.summary(store.path, len(runs), len(skipped)))
    quiet_libraries()
    prepare_data(todo)
    failed: list[dict[str, Any]] = []
    executor = executor or LocalExecutor()
    matrix_started = time.perf_counter()
    finished = 0
    try:
        run = partial(run_cell, eval_steps=eval_steps)
        for finished, (spec, outcome) in enumerate(executor.map(run, todo), start=1):
            if isinstance(outcome, BaseException):  # the worker itself died: an error row, the matrix goes on
                outcome = CellResult(failed_run_row(spec, outcome))
            store.put_files(spec.run_id, outcome.files)
            row = {**outcome.row, **plan.fingerprint(spec).columns()}
            store.put(row)
            if row["status"] == Status.OK:
                main = row[f"test_{row['main_metric']}"]
                summary = f"{row['main_metric']}={main:.4f}  train {row['train_seconds']:.1f}s"
            else:
                failed.append(row)
                summary = f"{row['status'].upper()} {row['error_type']}: {row['message'][:120]}"
            progress = progress_bar(finished, len(todo), time.perf_counter() - matrix_started)
            say(f"{progress} {spec.task} {row['loss_spec']} seed={spec.seed}: {summary}")
    finally:
        store.log_invocation(
            {
                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "command": sys.argv,
                "runs": len(runs),
                "to_run": len(todo),
                "stale": len(plan.stale),
                "finished": finished,
                "failed": len(failed),
                "matrix_seconds": round(time.perf_counter() - matrix_started, 1),
                "process_seconds": round(time.time() - psutil.Process().create_time(), 1),  # start-up included
                "executor": type(executor).__name__,
                "workers": getattr(executor, "workers", 1),
                "torch_threads": torch.get_num_threads(),
                "git_commit": git_commit(),
                "hardware": hardware(),
                **(note or {}),
            }
        )
    return failed
