"""Run generation: task and loss specs, expanded and checked, become the (task, loss, seed) matrix of ``RunSpec``s,
with a row for each incompatible (task, loss) pair. Task specs are parsed here, once, into ``TaskSpec``s.

Kept light on imports (torch for the losses, but no transformers, datasets or scikit-learn), so that the command line
checks every task, loss, stressor and loss parameter in seconds, before any training code loads.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bench.config import RunSpec, TrainConfig
from bench.plugins import get_loss, parse_loss_spec
from bench.registry import LOSSES, TASKS
from bench.rows import skipped_row
from bench.stressors import VERSION as STRESSORS_VERSION
from bench.taskspec import TaskSpec

if TYPE_CHECKING:
    from bench.api.task import TaskMetadata


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
    for task in expand_task_specs(task_patterns):
        meta = TASKS.get(task.base).metadata
        version = task_version(task, meta)
        for loss in losses:
            if not loss.supports(meta.problem_type):
                spec = RunSpec(task, version, loss.name, -1, train, loss.params)
                supported = ", ".join(sorted(loss.problem_types))
                message = f"{loss.name} supports {supported}; {task} is {meta.problem_type}"
                skipped.append(skipped_row(spec, meta, message))
                continue
            runs.extend(RunSpec(task, version, loss.name, seed, train, loss.params) for seed in seeds)
    return runs, skipped


def expand_task_specs(patterns: Iterable[str]) -> list[TaskSpec]:
    """Task specs, each pattern's name part expanded (``'vader_*@train=500'``), stressors checked against every task
    they apply to, before any training."""
    specs: list[TaskSpec] = []
    for pattern in patterns:
        parsed = TaskSpec.parse(pattern)
        for base in TASKS.resolve([parsed.base]):
            spec = TaskSpec(base, parsed.stressors)
            spec.check_applicable(TASKS.get(base).metadata.problem_type)
            if spec not in specs:
                specs.append(spec)
    return specs


def task_version(task: TaskSpec, meta: TaskMetadata) -> str:
    """The task's own version, plus the stressors' version for a stressed spec."""
    return meta.version + (f"+stressors.{STRESSORS_VERSION}" if task.stressors else "")
