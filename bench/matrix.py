"""Run generation: task and loss specs, expanded and checked, become the (task, loss, seed) matrix of ``RunSpec``s,
with a row for each incompatible (task, loss) pair.

Kept light on imports (torch for the losses, but no transformers, datasets or scikit-learn), so that the command line
checks every task, loss, stressor and loss parameter in seconds, before any training code loads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import torch

from bench.config import RunSpec, TrainConfig
from bench.environment import git_commit, hardware, library_versions
from bench.plugins import get_loss, get_task, parse_loss_spec
from bench.registry import LOSSES, TASKS
from bench.stressors import VERSION as STRESSORS_VERSION
from bench.stressors import check_applicable, parse_task_spec, task_spec


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
                        **base_row(spec, meta),
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


def base_row(spec: RunSpec, meta) -> dict[str, Any]:
    """The columns every row of a run has, finished, failed or skipped: its identity, settings and environment."""
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
