"""Run each cell of the (task, loss, seed) matrix (built by ``bench.matrix``) with the shared LossTrainer, and store
one row per run."""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from functools import cache, partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import psutil
import torch
import transformers
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    TrainingArguments,
)

from bench.config import RunSpec, TrainConfig
from bench.data import tokenize
from bench.environment import PeakMemory, git_commit, hardware
from bench.executors import CellResult, Executor, LocalExecutor
from bench.fingerprint import loaded_task
from bench.matrix import (  # noqa: F401 - the matrix is built there; its names stay importable from here
    base_row,
    build_matrix,
    expand_loss_specs,
    expand_task_specs,
    loss_spec_label,
    task_version,
)
from bench.metrics import compute_metrics
from bench.models import resolve_model
from bench.plugins import get_task
from bench.registry import LOSSES
from bench.rerun import RerunFilter, plan_matrix
from bench.results import (
    LOG_HISTORY_FILE,
    PREDICTIONS_FILE,
    RUN_LOG_FILE,
    RUNS_DIR,
    ResultsStore,
    damaged_warning,
    run_protocols,
)
from bench.status import DIVERGED, ERROR, OK
from bench.stressors import parse_task_spec, stress_training_split
from bench.trainer import DivergedError, LossTrainer

PROGRESS_WIDTH = 20  # characters of the matrix's progress bar
MAX_LOGGING_STEPS = 10  # the training loss is logged every 10 steps, or more often in short runs (logging_steps)


@cache
def _tokenizer(model_path: str):
    return AutoTokenizer.from_pretrained(model_path)


@cache
def _tokenized_splits(task_name: str, model_path: str, max_length: int) -> datasets.DatasetDict:
    """A task's tokenized splits, computed once per process and shared by every loss, seed and stressor."""
    task = get_task(task_name)
    splits = tokenize(loaded_task(task_name), _tokenizer(model_path), task.metadata.text_fields, max_length)
    # Evaluation order does not change the metrics; sorting by length makes each padded batch nearly full.
    for name in ("validation", "test"):
        lengths = [len(ids) for ids in splits[name]["input_ids"]]
        splits[name] = splits[name].select(sorted(range(len(lengths)), key=lengths.__getitem__))
    return splits


def training_split(
    spec: RunSpec, model_path: str, splits: datasets.DatasetDict | None = None
) -> tuple[datasets.Dataset, datasets.DatasetDict]:
    """The run's (possibly stressed) training split, with a ``clean_label`` column, and the task's clean splits.

    ``splits`` replaces the task's tokenized splits by the same rows with more columns (the probe's row index).
    """
    base, stressors = parse_task_spec(spec.task)
    meta = get_task(base).metadata
    if splits is None:
        splits = _tokenized_splits(base, model_path, spec.train.max_length)
    train = stress_training_split(
        splits["train"],
        stressors,
        seed=spec.seed,
        problem_type=meta.problem_type,
        num_labels=meta.num_labels,
        noise_targets=tuple(meta.label_names.index(target) for target in meta.noise_targets),
        train_size=spec.train.train_size,
        split_seed=meta.split_seed,
    )
    return train, splits


def label_stats(train: datasets.Dataset, meta) -> tuple[float, list[int] | None]:
    """The realised noise rate of a training split with ``clean_label`` (the share of labels that differ from the
    clean ones), and for classification its class counts."""
    noise_rate = float(np.mean(np.asarray(train["label"]) != np.asarray(train["clean_label"])))
    classification = meta.problem_type == "classification"
    return noise_rate, np.bincount(train["label"], minlength=meta.num_labels).tolist() if classification else None


def validation_scorer(meta, class_counts: list[int] | None, eval_steps: int) -> Callable | None:
    """The Trainer's ``compute_metrics`` for periodic validation (``eval_steps > 0``), else None."""
    if eval_steps <= 0:
        return None
    return lambda p: compute_metrics(meta.problem_type, p.predictions, p.label_ids, class_counts)


def logging_steps(train_examples: int, batch_size: int, epochs: float) -> int:
    """Steps between the training-loss entries of a run's log history: every ``MAX_LOGGING_STEPS``, or about a
    tenth of the run when it is shorter, so that every run logs its training loss at least once."""
    total_steps = math.ceil(math.ceil(train_examples / batch_size) * epochs)  # the Trainer's max_steps
    return min(MAX_LOGGING_STEPS, max(1, total_steps // 10))


def training_arguments(
    spec: RunSpec, output_dir: str, *, train_examples: int, eval_steps: int = 0
) -> TrainingArguments:
    """The Trainer settings of a run on ``train_examples`` examples: its TrainConfig, no checkpoints, no progress
    bars, bf16 autocast if asked, the training loss logged at least once (``logging_steps``)."""
    return TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=spec.train.epochs,
        learning_rate=spec.train.learning_rate,
        per_device_train_batch_size=spec.train.batch_size,
        per_device_eval_batch_size=64,
        weight_decay=spec.train.weight_decay,
        warmup_steps=spec.train.warmup_ratio,
        lr_scheduler_type="linear",
        # Random mega-batches (50 batches, or a quarter of the data), each sorted by length: little padding.
        train_sampling_strategy="group_by_length" if spec.train.length_grouped else "random",
        seed=spec.seed,
        data_seed=spec.seed,
        save_strategy="no",
        eval_strategy="steps" if eval_steps > 0 else "no",
        eval_steps=eval_steps if eval_steps > 0 else None,
        logging_steps=logging_steps(train_examples, spec.train.batch_size, spec.train.epochs),
        report_to="none",
        disable_tqdm=True,
        use_cpu=not transformers.utils.is_torch_cuda_available(),
        bf16=spec.train.precision == "bf16",  # autocast; the losses compute in float32 (losses.base.upcast)
    )


def run_one(spec: RunSpec, out_dir: Path, *, eval_steps: int = 0) -> dict[str, Any]:
    """Fine-tune one (task, loss, seed) and evaluate on the test split; returns the result row.

    ``eval_steps > 0`` also evaluates the validation split every that many steps, for learning curves (it logs
    ``eval_<metric>`` entries in the run's log history and does not change the training itself). With
    ``freeze_encoder`` the run is a linear probe instead (``bench.probe``).
    """
    if spec.train.freeze_encoder:
        from bench.probe import run_probe  # imports this module

        return run_probe(spec, out_dir, eval_steps=eval_steps)
    started = time.perf_counter()
    meta = get_task(parse_task_spec(spec.task)[0]).metadata
    loss = LOSSES.get(spec.loss)(**spec.loss_params)
    model_path = resolve_model(spec.train.model)
    train, splits = training_split(spec, model_path)
    noise_rate, class_counts = label_stats(train, meta)
    splits = datasets.DatasetDict({**splits, "train": train.remove_columns("clean_label")})
    tokenizer = _tokenizer(model_path)

    if loss.needs_class_counts:
        loss.set_class_counts(class_counts)

    transformers.set_seed(spec.seed)  # the new head is initialised the same way for every loss of this seed
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=loss.head_size(meta.num_labels),
        problem_type="regression" if meta.problem_type == "regression" else "single_label_classification",
        ignore_mismatched_sizes=True,  # a checkpoint with another head gets a new one of the task's size
    )
    with tempfile.TemporaryDirectory(prefix="lossbench-") as scratch:
        args = training_arguments(spec, scratch, train_examples=len(splits["train"]), eval_steps=eval_steps)
        trainer = LossTrainer(
            model=model,
            args=args,
            train_dataset=splits["train"],
            eval_dataset=splits["validation"] if eval_steps > 0 else None,
            data_collator=DataCollatorWithPadding(tokenizer),
            processing_class=tokenizer,
            compute_metrics=validation_scorer(meta, class_counts, eval_steps),
            loss=loss,
        )
        return train_and_record(
            spec, trainer, splits, out_dir, meta=meta, noise_rate=noise_rate, class_counts=class_counts, started=started
        )


def train_and_record(
    spec: RunSpec,
    trainer: LossTrainer,
    splits: Mapping[str, Sized],
    out_dir: Path,
    *,
    meta,
    noise_rate: float,
    class_counts: list[int] | None,
    started: float,
) -> dict[str, Any]:
    """Train, predict the test split, write the log history and test predictions under ``out_dir/runs/<run_id>/``
    and return the result row: the part fine-tuning and the linear probe (``bench.probe``) share."""
    trainer.remove_callback(PrinterCallback)  # one concise line per run is printed by the matrix instead
    with PeakMemory() as memory:
        train_metrics = trainer.train().metrics
    eval_started = time.perf_counter()
    prediction = trainer.predict(splits["test"])
    eval_seconds = time.perf_counter() - eval_started

    run_dir = out_dir / RUNS_DIR / spec.run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOG_HISTORY_FILE).write_text(json.dumps(trainer.state.log_history, indent=1))
    np.savez_compressed(
        run_dir / PREDICTIONS_FILE,
        logits=np.asarray(prediction.predictions, dtype=np.float32),
        labels=np.asarray(prediction.label_ids),
    )

    test_metrics = compute_metrics(meta.problem_type, prediction.predictions, prediction.label_ids, class_counts)
    return {
        **base_row(spec, meta),
        "status": OK,
        "train_examples": len(splits["train"]),
        "train_noise_rate": noise_rate,
        "train_class_counts": json.dumps(class_counts) if class_counts is not None else None,
        "test_examples": len(splits["test"]),
        **{f"test_{name}": value for name, value in test_metrics.items()},
        "test_loss": prediction.metrics["test_loss"],
        "train_loss": train_metrics["train_loss"],
        "train_seconds": train_metrics["train_runtime"],
        "train_samples_per_second": train_metrics["train_samples_per_second"],
        "eval_seconds": eval_seconds,
        "peak_rss_mb": round(memory.peak_rss_mb, 1),
        "peak_gpu_mb": memory.peak_gpu_mb,
        "wall_seconds": time.perf_counter() - started,
    }


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
    """``run_one``, with any exception turned into a row so the matrix goes on: ``status=diverged`` (with the step)
    when the training loss became NaN or infinite, ``status=error`` otherwise. Logs to ``runs/<run_id>/run.log``."""
    run_dir = out_dir / RUNS_DIR / spec.run_id
    with run_log(run_dir / RUN_LOG_FILE) as log:
        log.info("run %s: %s", spec.run_id, json.dumps(spec.identity(), default=str))
        try:
            row = run_one(spec, out_dir, eval_steps=eval_steps)
        except Exception as error:  # noqa: BLE001 - a failed run is a result, not a crash
            log.error("failed:\n%s", traceback.format_exc())
            (run_dir / "error.txt").write_text(traceback.format_exc())
            row = failure_row(spec, error)
        metrics = {key: value for key, value in row.items() if key.startswith("test_") or key.endswith("_seconds")}
        log.info("status=%s %s", row["status"], json.dumps(metrics, default=str))
    return row


def failure_row(spec: RunSpec, error: BaseException) -> dict[str, Any]:
    """The row of a run that did not finish: ``status=diverged`` (with the step) for a NaN/Inf training loss,
    ``status=error`` for anything else, a dead worker process included."""
    diverged = isinstance(error, DivergedError)
    return {
        **base_row(spec, get_task(parse_task_spec(spec.task)[0]).metadata),
        "status": DIVERGED if diverged else ERROR,
        "diverged_step": error.step if diverged else None,
        "error_type": type(error).__name__,
        "message": str(error)[:500] or type(error).__name__,
    }


def run_cell(spec: RunSpec, *, eval_steps: int = 0) -> CellResult:
    """``run_one_safely`` in a scratch folder, returning the row and the run folder's files: what an executor ships
    back to the driver, which alone writes the results folder (the worker may be another process or machine)."""
    with tempfile.TemporaryDirectory(prefix="lossbench-cell-") as scratch:
        row = run_one_safely(spec, Path(scratch), eval_steps=eval_steps)
        run_dir = Path(scratch) / RUNS_DIR / spec.run_id
        files = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    return CellResult(row, files)


def prepare_data(runs: Iterable[RunSpec]) -> None:
    """Load and tokenize every task of the matrix before any training, so that a bad data file stops the matrix at
    once with its message (and the work is cached for the runs). Hub tasks are left to their runs: offline they
    become error rows while the rest of the matrix goes on."""
    for base, model, max_length in sorted(
        {(parse_task_spec(r.task)[0], r.train.model, r.train.max_length) for r in runs}
    ):
        if not get_task(base).requires_network:
            _tokenized_splits(base, resolve_model(model), max_length)


def settings_conflicts(out_dir: str | Path, train: TrainConfig) -> list[str]:
    """Settings of the finished runs in ``out_dir`` that differ from ``train``: mixing them in one report would
    compare losses trained differently (``--force`` allows it)."""
    frame = ResultsStore(Path(out_dir)).load()
    finished = frame[frame["status"] == OK] if "status" in frame.columns else frame.iloc[0:0]
    if finished.empty:
        return []
    conflicts = []
    for name, value in asdict(train).items():
        if name not in finished.columns:
            continue
        column = finished[name]
        found = {"None"} if column.isna().all() else {str(v) for v in column.dropna().unique()}
        if found and not all(_same_setting(text, value) for text in found):
            conflicts.append(f"{name}={', '.join(sorted(found))} there, {value} now")
    return conflicts


def protocol_conflict(out_dir: str | Path, train: TrainConfig) -> str | None:
    """Why ``train``'s runs cannot join the finished runs in ``out_dir``: another protocol (fine-tuning vs a linear
    probe) gives numbers that are not comparable, and a report would pool them. None when they can."""
    frame = ResultsStore(Path(out_dir)).load()
    finished = frame[frame["status"] == OK] if "status" in frame.columns else frame.iloc[0:0]
    others = sorted(set(run_protocols(finished)) - {train.protocol})
    if not others:
        return None
    return (
        f"{out_dir} holds {' and '.join(others)} runs, and these would be {train.protocol} runs: the two protocols "
        "are not comparable, and one report would pool them (--force does not allow it)."
    )


def _same_setting(text: str, value: Any) -> bool:
    """A setting read back from the CSV against the config's value: '450' is 450, '0.0002' is 2e-4."""
    if text == str(value):
        return True
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return False


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
) -> list[dict[str, Any]]:
    """Run every run of the matrix not finished in ``out_dir`` with the current code and data, storing each row (with
    its fingerprint) as soon as it finishes.

    A finished row whose fingerprint is not the current one is stale and runs again, as do the finished runs that all
    the ``rerun`` filters choose (``bench.rerun``); damaged rows of ``runs.csv`` never count as finished. ``eval_steps``
    only adds validation points to the log history; it is not part of a run's identity. The ``executor`` (default:
    this process, one run after another) runs the cells; this function alone writes results. Returns the rows of the
    runs that failed in this invocation.
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
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    prepare_data(todo)
    failed: list[dict[str, Any]] = []
    executor = executor or LocalExecutor()
    matrix_started = time.perf_counter()
    finished = 0
    try:
        run = partial(run_cell, eval_steps=eval_steps)
        for finished, (spec, outcome) in enumerate(executor.map(run, todo), start=1):
            if isinstance(outcome, BaseException):  # the worker itself died: an error row, the matrix goes on
                outcome = CellResult(failure_row(spec, outcome))
            store.put_files(spec.run_id, outcome.files)
            row = {**outcome.row, **plan.fingerprints[(spec.task, spec.loss)].columns()}
            store.put(row)
            if row["status"] == OK:
                main = row[f"test_{row['main_metric']}"]
                summary = f"{row['main_metric']}={main:.4f}  train {row['train_seconds']:.1f}s"
            else:
                failed.append(row)
                summary = f"{row['status'].upper()} {row['error_type']}: {row['message'][:120]}"
            elapsed = time.perf_counter() - matrix_started
            eta = elapsed / finished * (len(todo) - finished)
            filled = round(PROGRESS_WIDTH * finished / len(todo))
            bar = "#" * filled + "." * (PROGRESS_WIDTH - filled)
            progress = f"[{bar}] {finished}/{len(todo)} {elapsed:.0f}s, ETA {eta // 60:.0f}m{eta % 60:02.0f}s"
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
            }
        )
    return failed
