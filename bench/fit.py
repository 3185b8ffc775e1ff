"""The fit step both protocols share: the Trainer's settings, the shared ``LossTrainer``, training, predicting the
test split, writing the run's files, and the finished run's row."""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Mapping, Sized
from pathlib import Path
from typing import Any

import numpy as np
import transformers
from torch import nn
from transformers import PrinterCallback, TrainingArguments

from bench.api.loss import Loss
from bench.api.task import TaskMetadata
from bench.checkpoint import BestCheckpoint
from bench.collapse import collapse_columns
from bench.config import RunSpec
from bench.environment import PeakMemory
from bench.metrics import compute_metrics, temperature_metrics
from bench.results import LOG_HISTORY_FILE, PREDICTIONS_FILE, RUNS_DIR
from bench.rows import finished_row
from bench.splits import LabelStats
from bench.trackers import run_name, tracking
from bench.trainer import LossTrainer

MAX_LOGGING_STEPS = 10  # the training loss is logged every 10 steps, or more often in short runs (logging_steps)
EVAL_BATCH_SIZE = 64
EVALUATIONS_PER_EPOCH = 4  # checkpoint selection without --eval-steps scores the validation split this often


def logging_steps(train_examples: int, batch_size: int, epochs: float) -> int:
    """Steps between the training-loss entries of a run's log history: every ``MAX_LOGGING_STEPS``, or about a
    tenth of the run when it is shorter, so that every run logs its training loss at least once."""
    total_steps = math.ceil(math.ceil(train_examples / batch_size) * epochs)  # the Trainer's max_steps
    return min(MAX_LOGGING_STEPS, max(1, total_steps // 10))


def trainer_args(spec: RunSpec) -> dict[str, Any]:
    """The run's ``--trainer-arg`` TrainingArguments fields (``TrainConfig.trainer_args``)."""
    return json.loads(spec.train.trainer_args)


def step_batch_size(spec: RunSpec) -> int:
    """Examples per optimizer step: the batch size times the gradient accumulation steps of ``--trainer-arg``."""
    return spec.train.batch_size * trainer_args(spec).get("gradient_accumulation_steps", 1)


def training_arguments(
    spec: RunSpec,
    output_dir: str,
    *,
    train_examples: int,
    eval_steps: int = 0,
    length_grouped: bool | None = None,
    torch_compile: bool = False,
) -> TrainingArguments:
    """The Trainer settings of a run on ``train_examples`` examples: its TrainConfig, no checkpoints, no progress
    bars, bf16 autocast if asked, the training loss logged at least once (``logging_steps``), the trackers of
    ``--report-to`` with the run's name, then the config's ``--trainer-arg`` fields over lossbench's values.

    ``length_grouped`` None follows the config; ``torch_compile`` compiles the model (``make perf`` times it).
    """
    grouped = spec.train.length_grouped if length_grouped is None else length_grouped
    settings = dict(
        output_dir=output_dir,
        num_train_epochs=spec.train.epochs,
        learning_rate=spec.train.learning_rate,
        per_device_train_batch_size=spec.train.batch_size,
        per_device_eval_batch_size=EVAL_BATCH_SIZE,
        weight_decay=spec.train.weight_decay,
        warmup_steps=spec.train.warmup_ratio,
        lr_scheduler_type="linear",
        # Random mega-batches (50 batches, or a quarter of the data), each sorted by length: little padding.
        train_sampling_strategy="group_by_length" if grouped else "random",
        seed=spec.seed,
        data_seed=spec.seed,
        save_strategy="no",
        eval_strategy="steps" if eval_steps > 0 else "no",
        eval_steps=eval_steps if eval_steps > 0 else None,
        logging_steps=logging_steps(train_examples, step_batch_size(spec), spec.train.epochs),
        report_to=list(spec.report_to) or "none",
        run_name=run_name(spec),
        disable_tqdm=True,
        use_cpu=not transformers.utils.is_torch_cuda_available(),
        bf16=spec.train.precision == "bf16",  # autocast; the losses compute in float32 (bench.api.loss.upcast)
        torch_compile=torch_compile,
    )
    return TrainingArguments(**{**settings, **trainer_args(spec)})


def selection_eval_steps(spec: RunSpec, train_examples: int) -> int:
    """Steps between the validation evaluations of checkpoint selection: ``eval_steps``, or about
    ``EVALUATIONS_PER_EPOCH`` times per epoch when it is 0."""
    if spec.train.eval_steps:
        return spec.train.eval_steps
    return max(1, math.ceil(math.ceil(train_examples / step_batch_size(spec)) / EVALUATIONS_PER_EPOCH))


def validation_scorer(meta: TaskMetadata, class_counts: list[int] | None, eval_steps: int) -> Callable | None:
    """The Trainer's ``compute_metrics`` for periodic validation (``eval_steps > 0``), else None."""
    if eval_steps <= 0:
        return None
    return lambda p: compute_metrics(meta.problem_type, p.predictions, p.label_ids, class_counts)


def fit(
    spec: RunSpec,
    model: nn.Module,
    data: Mapping[str, Sized],
    out_dir: Path,
    *,
    loss: Loss,
    meta: TaskMetadata,
    data_collator: Callable,
    labels: LabelStats,
    started: float,
    processing_class: Any = None,
    length_grouped: bool | None = None,
    eval_steps: int = 0,
    torch_compile: bool = False,
    validation_only: bool = False,
) -> dict[str, Any]:
    """The fit step: the shared ``LossTrainer`` trains ``model`` on ``data['train']`` under ``loss`` (scoring
    ``data['validation']`` every ``eval_steps`` steps when > 0), then ``train_and_record``. ``labels`` describe the
    training split; ``started`` is when the run began (``time.perf_counter``), for its wall time.

    With ``select_checkpoint`` the validation split is scored every ``selection_eval_steps`` steps (overriding
    ``eval_steps``) and ``BestCheckpoint`` keeps the best weights by the task's main metric (``train_and_record``
    scores the test split with them). ``validation_only`` (a tuning trial, ``bench.tuning``) never reads the test
    split: see ``train_and_record``."""
    selector = None
    if spec.train.select_checkpoint:
        eval_steps = selection_eval_steps(spec, len(data["train"]))
        selector = BestCheckpoint(
            meta.main_metric, greater_is_better=meta.higher_is_better, patience=spec.train.patience
        )
    with tempfile.TemporaryDirectory(prefix="lossbench-") as scratch:
        args = training_arguments(
            spec,
            scratch,
            train_examples=len(data["train"]),
            eval_steps=eval_steps,
            length_grouped=length_grouped,
            torch_compile=torch_compile,
        )
        trainer = LossTrainer(
            model=model,
            args=args,
            train_dataset=data["train"],
            eval_dataset=data["validation"] if eval_steps > 0 else None,
            data_collator=data_collator,
            processing_class=processing_class,
            compute_metrics=validation_scorer(meta, labels.class_counts, eval_steps),
            loss=loss,
            callbacks=[selector] if selector else None,
        )
        with tracking(spec, trainer, out_dir / RUNS_DIR / spec.run_id) as tracker:
            row = train_and_record(
                spec,
                trainer,
                data,
                out_dir,
                meta=meta,
                labels=labels,
                started=started,
                selector=selector,
                validation_only=validation_only,
            )
            if tracker is not None:
                tracker.log_results(row)
        return row


def train_and_record(
    spec: RunSpec,
    trainer: LossTrainer,
    data: Mapping[str, Sized],
    out_dir: Path,
    *,
    meta: TaskMetadata,
    labels: LabelStats,
    started: float,
    selector: BestCheckpoint | None = None,
    validation_only: bool = False,
) -> dict[str, Any]:
    """Train, predict the test split, write the log history and test predictions under ``out_dir/runs/<run_id>/``
    and return the finished row.

    With a ``selector`` (checkpoint selection): the validation split is scored once more at the last step if that
    step was not scored; the test split is then scored with the last weights (``test_last_<metric>``), the selected
    weights are restored, and the test split is scored again (``test_<metric>``, the saved predictions). The test
    split plays no part in the choice. A classification run then scores the validation split once with the weights
    that scored the test split, fits a temperature on it and records ``test_ece_ts``, ``test_nll_ts`` and
    ``temperature`` (``bench.metrics.temperature_metrics``).

    ``validation_only`` (a tuning trial; needs a ``selector``): the test split is never read; the row has the best
    validation score (``validation_<metric>``) and every evaluation (``validation_evaluations``, JSON of [step,
    value] pairs) instead of test results, and nothing is written under ``out_dir``."""
    if validation_only and selector is None:
        raise ValueError("validation_only needs checkpoint selection (select_checkpoint): it scores validation")
    trainer.remove_callback(PrinterCallback)  # one concise line per run is printed by the matrix instead
    with PeakMemory() as memory:
        train_metrics = trainer.train().metrics
        if selector is not None and (
            not selector.evaluations or selector.evaluations[-1][0] != trainer.state.global_step
        ):
            trainer.evaluate()  # BestCheckpoint sees it (on_evaluate)
    if validation_only:
        return finished_row(
            spec,
            meta,
            {
                "train_examples": len(data["train"]),
                f"validation_{meta.main_metric}": selector.best_value,
                "validation_evaluations": json.dumps(selector.evaluations),
                "best_step": selector.best_step,
                "evaluations": len(selector.evaluations),
                "stopped_early": selector.stopped_early,
                "train_loss": train_metrics["train_loss"],
                "train_seconds": train_metrics["train_runtime"],
                "wall_seconds": time.perf_counter() - started,
            },
        )
    trainer.compute_metrics = None  # the test split is scored below, never by the validation scorer
    class_counts = labels.class_counts
    eval_started = time.perf_counter()
    selection: dict[str, Any] = {}
    prediction = None
    if selector is not None:
        last = trainer.predict(data["test"])
        last_metrics = compute_metrics(meta.problem_type, last.predictions, last.label_ids, class_counts)
        # The last weights are the selected ones when the best step is the last or nothing was restored: no second
        # pass over the test split then.
        best_is_last = selector.best_step == trainer.state.global_step
        if best_is_last or not selector.restore(trainer.model):
            prediction = last
        selection = {
            "best_step": selector.best_step,
            "evaluations": len(selector.evaluations),
            "stopped_early": selector.stopped_early,
            **{f"test_last_{name}": value for name, value in last_metrics.items()},
        }
    if prediction is None:
        prediction = trainer.predict(data["test"])
    scaled: dict[str, Any] = {}
    if meta.problem_type == "classification":  # temperature scaling on one validation pass of the same weights
        validation = trainer.predict(data["validation"])
        scaled = temperature_metrics(
            prediction.predictions, prediction.label_ids, validation.predictions, validation.label_ids
        )
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
    return finished_row(
        spec,
        meta,
        {
            "train_examples": len(data["train"]),
            "train_noise_rate": labels.noise_rate,
            "train_class_counts": json.dumps(class_counts) if class_counts is not None else None,
            "test_examples": len(data["test"]),
            **{f"test_{name}": value for name, value in test_metrics.items()},
            **{f"test_{name}": value for name, value in scaled.items() if name != "temperature"},
            "temperature": scaled.get("temperature"),
            **collapse_columns(
                meta,
                test_metrics,
                prediction.label_ids,
                class_counts=class_counts,
                train_mean=labels.train_mean,
            ),
            "test_loss": prediction.metrics["test_loss"],
            **selection,
            "train_loss": train_metrics["train_loss"],
            "train_seconds": train_metrics["train_runtime"],
            "train_samples_per_second": train_metrics["train_samples_per_second"],
            "eval_seconds": eval_seconds,
            "peak_rss_mb": round(memory.peak_rss_mb, 1),
            "peak_gpu_mb": memory.peak_gpu_mb,
            "wall_seconds": time.perf_counter() - started,
        },
    )
