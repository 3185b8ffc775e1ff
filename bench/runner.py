"""Build the (task, loss, seed) matrix, run each cell with the shared LossTrainer, and store one row per run."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
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
from bench.environment import PeakMemory, git_commit, hardware, library_versions
from bench.executors import CellResult, Executor, LocalExecutor
from bench.metrics import compute_metrics
from bench.models import resolve_model
from bench.plugins import get_loss, get_task, parse_loss_spec
from bench.registry import LOSSES, TASKS
from bench.results import LOG_HISTORY_FILE, PREDICTIONS_FILE, RUN_LOG_FILE, RUNS_DIR, ResultsStore, run_protocols
from bench.stressors import VERSION as STRESSORS_VERSION
from bench.stressors import check_applicable, parse_task_spec, stress_training_split, task_spec
from bench.trainer import DivergedError, LossTrainer

PROGRESS_WIDTH = 20  # characters of the matrix's progress bar


def loss_spec_label(name: str, params: dict[str, Any], defaults: dict[str, Any]) -> str:
    """Canonical spec: the name, plus the parameters that differ from their defaults (``focal:gamma=1.0``)."""
    changed = {k: v for k, v in sorted(params.items()) if defaults.get(k) != v}
    return name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")


def expand_loss_specs(patterns: Iterable[str]) -> list[str]:
    """Loss specs with fnmatch patterns expanded; a spec with parameters must name one loss exactly."""
    specs: list[str] = []
    for pattern in patterns:
        name, params = parse_loss_spec(pattern)
        names = [name] if params else LOSSES.resolve([name])
        if params:
            LOSSES.get(name)
        for resolved in names:
            spec = pattern if params else resolved
            if spec not in specs:
                specs.append(spec)
    return specs


def build_matrix(
    task_patterns: Iterable[str], loss_patterns: Iterable[str], seeds: Iterable[int], train: TrainConfig
) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """All compatible (task, loss, seed) runs, and a row for each incompatible (task, loss) pair."""
    runs: list[RunSpec] = []
    skipped: list[dict[str, Any]] = []
    losses = [get_loss(spec) for spec in expand_loss_specs(loss_patterns)]
    for task_name in expand_task_specs(task_patterns):
        meta = get_task(parse_task_spec(task_name)[0]).metadata
        version = task_version(task_name, meta)
        for loss in losses:
            if not loss.supports(meta.problem_type):
                spec = RunSpec(task_name, version, loss.name, -1, train, loss.params)
                supported = ", ".join(sorted(loss.problem_types))
                skipped.append(
                    {
                        **_base_row(spec, meta),
                        "run_id": "skip-" + spec.run_id,
                        "status": "skipped",
                        "seed": None,
                        "message": f"{loss.name} supports {supported}; {task_name} is {meta.problem_type}",
                    }
                )
                continue
            runs.extend(RunSpec(task_name, version, loss.name, seed, train, loss.params) for seed in seeds)
    return runs, skipped


def expand_task_specs(patterns: Iterable[str]) -> list[str]:
    """Canonical task specs: each pattern's name part expanded (``'vader_*@train=500'``), stressors checked against
    every task they apply to, before any training."""
    specs: list[str] = []
    for pattern in patterns:
        base_pattern, stressors = parse_task_spec(pattern)
        for base in TASKS.resolve([base_pattern]):
            check_applicable(base, stressors, get_task(base).metadata.problem_type)
            spec = task_spec(base, stressors)
            if spec not in specs:
                specs.append(spec)
    return specs


def task_version(spec: str, meta) -> str:
    """The task's own version, plus the stressors' version for a stressed spec."""
    return meta.version + (f"+stressors.{STRESSORS_VERSION}" if parse_task_spec(spec)[1] else "")


def _stressor_columns(spec: str) -> dict[str, Any]:
    base, stressors = parse_task_spec(spec)
    return {
        "task_base": base,
        "stressors": "@".join(str(s) for s in stressors),
        **{f"stress_{s.name}": s.value for s in stressors},
    }


def _base_row(spec: RunSpec, meta) -> dict[str, Any]:
    defaults = get_loss(spec.loss).params
    return {
        "run_id": spec.run_id,
        "task": spec.task,
        **_stressor_columns(spec.task),
        "task_version": spec.task_version,
        "problem_type": meta.problem_type,
        "main_metric": meta.main_metric,
        "loss": spec.loss,
        "loss_spec": loss_spec_label(spec.loss, spec.loss_params, defaults),
        "loss_params": json.dumps(spec.loss_params, sort_keys=True),
        "seed": spec.seed,
        **asdict(spec.train),
        "protocol": spec.train.protocol,
        **library_versions(),
        "git_commit": git_commit(),
        "hardware": hardware(),
        "torch_threads": torch.get_num_threads(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@cache
def _tokenizer(model_path: str):
    return AutoTokenizer.from_pretrained(model_path)


@cache
def _tokenized_splits(task_name: str, model_path: str, max_length: int) -> datasets.DatasetDict:
    """A task's tokenized splits, computed once per process and shared by every loss, seed and stressor."""
    task = get_task(task_name)
    splits = tokenize(task.load(), _tokenizer(model_path), task.metadata.text_fields, max_length)
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


def training_arguments(spec: RunSpec, output_dir: str, *, eval_steps: int = 0) -> TrainingArguments:
    """The Trainer settings of a run: its TrainConfig, no checkpoints, no progress bars, bf16 autocast if asked."""
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
        logging_steps=10,
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
        args = training_arguments(spec, scratch, eval_steps=eval_steps)
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
        **_base_row(spec, meta),
        "status": "ok",
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
        **_base_row(spec, get_task(parse_task_spec(spec.task)[0]).metadata),
        "status": "diverged" if diverged else "error",
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
    finished = frame[frame["status"] == "ok"] if "status" in frame.columns else frame.iloc[0:0]
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
    finished = frame[frame["status"] == "ok"] if "status" in frame.columns else frame.iloc[0:0]
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
    quiet: bool = False,
    eval_steps: int = 0,
    executor: Executor | None = None,
) -> list[dict[str, Any]]:
    """Run every run not already finished in ``out_dir``, storing each row as soon as it finishes.

    ``eval_steps`` only adds validation points to the log history; it is not part of a run's identity. The
    ``executor`` (default: this process, one run after another) runs the cells; this function alone writes results.
    Returns the rows of the runs that failed in this invocation.
    """
    out_dir = Path(out_dir)
    store = ResultsStore(out_dir)
    failed_before = set() if retry_failed else store.ids_with_status("error", "diverged")
    done = store.ids_with_status("ok", "skipped") | failed_before
    for row in skipped:
        if row["run_id"] not in done:
            store.put(row)
    todo = [spec for spec in runs if spec.run_id not in done]
    say = (lambda *_: None) if quiet else print
    say(
        f"{len(runs)} runs: {len(runs) - len(todo)} already in {store.path}, {len(todo)} to run; "
        f"{len(skipped)} incompatible (task, loss) pairs skipped"
    )
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
            row = outcome.row
            store.put(row)
            if row["status"] == "ok":
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
