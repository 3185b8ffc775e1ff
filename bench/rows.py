"""The rows of ``runs.csv``: a run's identity, description, settings and environment (``bench.schema``), plus what
became of it: its results, why it failed, or why its (task, loss) pair was skipped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from bench.config import TUNED_SUFFIX, RunSpec
from bench.environment import run_environment
from bench.plugins import get_loss
from bench.schema import STRESSOR_PREFIX
from bench.status import Status
from bench.taskspec import TaskSpec

if TYPE_CHECKING:
    from bench.api.task import TaskMetadata

MESSAGE_CHARS = 500  # a failure's message is cut to this length


def loss_spec_label(name: str, params: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """Canonical spec: the name, plus the parameters that differ from their defaults (``focal:gamma=1.0``)."""
    changed = {k: v for k, v in sorted(params.items()) if defaults.get(k) != v}
    return name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")


def stressor_columns(task: TaskSpec) -> dict[str, Any]:
    """The task without its stressors, the stressors as written in the spec, and each stressor's value."""
    return {
        "task_base": task.base,
        "stressors": "@".join(str(s) for s in task.stressors),
        **{f"{STRESSOR_PREFIX}{s.name}": s.value for s in task.stressors},
    }


def base_row(spec: RunSpec, meta: TaskMetadata, status: Status) -> dict[str, Any]:
    """The columns every row of a run has, finished, failed or skipped: its identity, description, settings and
    environment, in ``bench.schema``'s order."""
    return {
        "run_id": spec.run_id,
        "status": status,
        "task": str(spec.task),
        "task_version": spec.task_version,
        "problem_type": meta.problem_type,
        "main_metric": meta.main_metric,
        "loss": spec.loss,
        "loss_params": json.dumps(spec.loss_params, sort_keys=True),
        "seed": spec.seed,
        **stressor_columns(spec.task),
        # A tuned run is its loss at the parameters its tuning chose (in loss_params): named apart from the untuned
        # loss, so that the report never pools the two; its baseline is the tuned baseline.
        "loss_spec": spec.loss + TUNED_SUFFIX
        if spec.train.tuned
        else loss_spec_label(spec.loss, spec.loss_params, get_loss(spec.loss).params),
        "baseline_loss": meta.baseline_loss + (TUNED_SUFFIX if spec.train.tuned else ""),
        **asdict(spec.train),
        "tuned": spec.train.tuned,
        "protocol": spec.train.protocol,
        **run_environment(),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def finished_row(spec: RunSpec, meta: TaskMetadata, results: Mapping[str, Any]) -> dict[str, Any]:
    """The row of a finished run: ``results`` are its ``train_*``, ``test_*`` and cost columns."""
    return {**base_row(spec, meta, Status.OK), **results}


def failure_row(
    spec: RunSpec, meta: TaskMetadata, error: BaseException, *, diverged_step: int | None = None
) -> dict[str, Any]:
    """The row of a run that did not finish: ``diverged`` at ``diverged_step`` when given (the training loss became
    NaN or infinite), else ``error``, with the exception's type and message."""
    diverged = diverged_step is not None
    return {
        **base_row(spec, meta, Status.DIVERGED if diverged else Status.ERROR),
        "diverged_step": diverged_step,
        "error_type": type(error).__name__,
        "message": str(error)[:MESSAGE_CHARS] or type(error).__name__,
    }


def skipped_row(spec: RunSpec, meta: TaskMetadata, message: str) -> dict[str, Any]:
    """The row of an incompatible (task, loss) pair: never run, so it has no seed; its run_id has a ``skip-`` prefix."""
    return {**base_row(spec, meta, Status.SKIPPED), "run_id": "skip-" + spec.run_id, "seed": None, "message": message}
