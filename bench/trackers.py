"""``--report-to``: experiment trackers through the Trainer's own integrations (``TrainingArguments.report_to``).
Each run is named by its identity, its lossbench parameters are logged beside the Trainer's, TensorBoard writes
into the run's folder, and the test metrics follow the training logs. Nothing here changes a number."""

from __future__ import annotations

import difflib
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from transformers import Trainer, TrainerCallback

from bench.config import RunSpec
from bench.plugins import get_loss
from bench.rows import loss_spec_label

NONE = "none"
TRACKERS_EXTRA = "pip install -e '.[trackers]'"  # tensorboard and mlflow-skinny, pinned in pyproject.toml


def check_report_to(names: list[str]) -> tuple[str, ...]:
    """The trackers of ``--report-to`` checked against transformers' registry of integrations: an unknown one is
    refused with the closest names and the list, one that is not installed with the installed ones and how to
    install. ``none`` (or nothing) is no tracker."""
    from transformers.integrations import get_available_reporting_integrations
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    names = [name for name in names if name != NONE]
    installed = get_available_reporting_integrations()
    for name in names:
        if name not in INTEGRATION_TO_CALLBACK:
            close = difflib.get_close_matches(name, list(INTEGRATION_TO_CALLBACK), n=2)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise ValueError(
                f"--report-to {name}: transformers has no such integration.{hint} Valid: "
                f"{', '.join(sorted(INTEGRATION_TO_CALLBACK))}, or none (installed here: "
                f"{', '.join(installed) or 'none'})."
            )
        if name not in installed:
            raise ValueError(
                f"--report-to {name}: its package is not installed (installed here: {', '.join(installed) or 'none'})."
                f" Install it, e.g. {TRACKERS_EXTRA} for tensorboard and mlflow."
            )
    if len(set(names)) < len(names):
        raise ValueError(f"--report-to {','.join(names)}: a tracker is named twice; name each once.")
    return tuple(names)


def run_name(spec: RunSpec) -> str:
    """The tracker's name for a run: its run_id, then task, loss spec and seed (``3f2a... trec focal:gamma=1.0
    seed=0``)."""
    return f"{spec.run_id} {spec.task} {_loss_spec(spec)} seed={spec.seed}"


def _loss_spec(spec: RunSpec) -> str:
    return loss_spec_label(spec.loss, spec.loss_params, get_loss(spec.loss).params)


def run_tags(spec: RunSpec) -> dict[str, str]:
    """What a tracker can filter runs by: the run_id, task, loss, loss spec, seed and protocol."""
    return {
        "lossbench.run_id": spec.run_id,
        "task": str(spec.task),
        "task_base": spec.task.base,
        "loss": spec.loss,
        "loss_spec": _loss_spec(spec),
        "seed": str(spec.seed),
        "protocol": spec.train.protocol,
    }


def run_params(spec: RunSpec) -> dict[str, Any]:
    """The run's lossbench parameters: task, loss and its parameters, and every setting (``settings.<name>``).
    The Trainer's own integrations log the TrainingArguments (seed included) and the model's config beside them."""
    return {
        "task": str(spec.task),
        "task_version": spec.task_version,
        "loss": spec.loss,
        "loss_spec": _loss_spec(spec),
        "loss_params": json.dumps(spec.loss_params, sort_keys=True),
        "lossbench_run_id": spec.run_id,
        **{f"settings.{name}": value for name, value in asdict(spec.train).items()},
    }


class RunParameters(TrainerCallback):
    """Logs the run's lossbench parameters to the trackers the Trainer's integrations opened (they run first, in
    ``on_train_begin``): MLflow tags and params on the active run, a TensorBoard text summary."""

    def __init__(self, spec: RunSpec, trainer: Trainer) -> None:
        self.spec = spec
        self.trainer = trainer
        self.mlflow_run_id: str | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        from transformers.integrations import MLflowCallback, TensorBoardCallback

        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, MLflowCallback):
                import mlflow

                run = mlflow.active_run()
                if run is not None:
                    self.mlflow_run_id = run.info.run_id
                    mlflow.set_tags(run_tags(self.spec))
                    mlflow.log_params(run_params(self.spec))
            elif isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                table = "\n".join(f"| {key} | {value} |" for key, value in run_params(self.spec).items())
                callback.tb_writer.add_text("lossbench", f"{run_name(self.spec)}\n\n| | |\n|---|---|\n{table}")


def test_metrics(row: Mapping[str, Any]) -> dict[str, float]:
    """The finished row's test scores (``test_*`` numbers but the example count), for the trackers."""
    return {
        key: float(value)
        for key, value in row.items()
        if key.startswith("test_")
        and key != "test_examples"
        and isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    }


class Tracking:
    """The trackers of one run (see ``tracking``)."""

    def __init__(self, spec: RunSpec, trainer: Trainer, run_dir: Path) -> None:
        self.spec = spec
        self.trainer = trainer
        self.run_dir = run_dir
        self.parameters = RunParameters(spec, trainer)

    def attach(self) -> None:
        from transformers.integrations import TensorBoardCallback

        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback):
                # Event files in the run's folder itself: every executor ships a run folder's files back.
                self.run_dir.mkdir(parents=True, exist_ok=True)
                callback.logging_dir = str(self.run_dir)
        self.trainer.add_callback(self.parameters)

    def log_results(self, row: Mapping[str, Any]) -> None:
        """The test scores, at the last training step: in the run's MLflow run and its TensorBoard folder."""
        metrics = test_metrics(row)
        step = self.trainer.state.global_step
        if "mlflow" in self.spec.report_to and self.parameters.mlflow_run_id:
            from mlflow import MlflowClient
            from mlflow.entities import Metric

            stamp = int(time.time() * 1000)
            MlflowClient().log_batch(
                self.parameters.mlflow_run_id,
                metrics=[Metric(name, value, stamp, step) for name, value in metrics.items()],
            )
        if "tensorboard" in self.spec.report_to:
            from torch.utils.tensorboard import SummaryWriter

            with SummaryWriter(log_dir=str(self.run_dir)) as writer:
                for name, value in metrics.items():
                    writer.add_scalar(f"test/{name.removeprefix('test_')}", value, step)

    def end_failed(self) -> None:
        """A run that raised: its MLflow run, if still open, ends as FAILED (else the next run would log into it)."""
        if "mlflow" in self.spec.report_to and self.parameters.mlflow_run_id:
            import mlflow

            active = mlflow.active_run()
            if active is not None and active.info.run_id == self.parameters.mlflow_run_id:
                mlflow.end_run(status="FAILED")


@contextmanager
def tracking(spec: RunSpec, trainer: Trainer, run_dir: Path) -> Iterator[Tracking | None]:
    """The trackers of ``spec.report_to`` on ``trainer`` (None without any): lossbench's parameters logged when
    training begins, TensorBoard's event files in ``run_dir``; a run that raises ends its MLflow run as FAILED."""
    if not spec.report_to:
        yield None
        return
    tracker = Tracking(spec, trainer, run_dir)
    tracker.attach()
    try:
        yield tracker
    except BaseException:
        tracker.end_failed()
        raise
