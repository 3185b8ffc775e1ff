"""Which runs of a matrix run now: those not finished yet, the finished ones whose code or data changed since (stale,
see ``bench.fingerprint``), and the finished ones chosen with ``--rerun KEY=PATTERN``.

Kept light on imports: the command line parses ``--rerun`` with ``RerunFilter.parse`` before any training code loads.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.status import FAILED, Status

if TYPE_CHECKING:
    import pandas as pd

    from bench.config import RunSpec
    from bench.fingerprint import Fingerprint

RERUN_KEYS = ("task", "loss", "loss_spec", "seed", "status")


@dataclass(frozen=True)
class RerunFilter:
    """``KEY=PATTERN`` of ``--rerun``: an fnmatch pattern on one of a run's ``RERUN_KEYS``."""

    key: str
    pattern: str

    @classmethod
    def parse(cls, text: str) -> RerunFilter:
        key, sep, pattern = (part.strip() for part in text.partition("="))
        if not sep or not key or not pattern:
            raise ValueError(f"{text!r}: expected KEY=PATTERN, e.g. 'loss=focal*'; keys: {', '.join(RERUN_KEYS)}")
        if key not in RERUN_KEYS:
            raise ValueError(f"{text!r}: unknown key {key!r}; valid keys: {', '.join(RERUN_KEYS)}")
        return cls(key, pattern)

    def matches(self, cell: Mapping[str, Any]) -> bool:
        value = cell.get(self.key)
        return value is not None and fnmatch.fnmatchcase(str(value), self.pattern)

    def __str__(self) -> str:
        return f"{self.key}={self.pattern}"


@dataclass
class MatrixPlan:
    """What ``run_matrix`` does with a matrix, given what ``runs.csv`` holds."""

    todo: list[RunSpec]
    skipped: list[dict[str, Any]]  # incompatible pairs' rows to write (new or stale), with their fingerprints
    fingerprints: dict[tuple[str, str], Fingerprint]  # (task spec string, loss name) -> the current fingerprint
    kept: int = 0  # finished, current and not chosen: not run again
    stale: list[tuple[str, str, list[str]]] = field(default_factory=list)  # (task, loss, changed parts) run again
    chosen: int = 0  # finished and current, run again because --rerun chose them

    def fingerprint(self, spec: RunSpec) -> Fingerprint:
        """The current fingerprint of ``spec``'s (task, loss) pair."""
        return self.fingerprints[(str(spec.task), spec.loss)]

    def summary(self, path: Path, runs: int, pairs_skipped: int) -> str:
        """The line ``lossbench run`` prints before it starts."""
        from bench.fingerprint import describe_changes

        why = [f"{len(self.stale)} stale: {describe_changes(self.stale)}"] if self.stale else []
        why += [f"{self.chosen} chosen by --rerun"] if self.chosen else []
        return (
            f"{runs} runs: {self.kept} already in {path}, {len(self.todo)} to run"
            + (f" ({'; '.join(why)})" if why else "")
            + f"; {pairs_skipped} incompatible (task, loss) pairs skipped"
        )


def plan_matrix(
    runs: Sequence[RunSpec],
    skipped: Sequence[dict[str, Any]],
    stored: pd.DataFrame,
    *,
    retry_failed: bool = False,
    rerun: Sequence[RerunFilter] = (),
) -> MatrixPlan:
    """Split the matrix into runs to do and runs to keep. A stored row counts as finished when its status is ok,
    skipped, or (unless ``retry_failed``) error/diverged; a finished row is kept only when its fingerprint is the
    current one and the ``rerun`` filters (all of them) do not choose it. Refuses filters that match no run."""
    from bench.fingerprint import changed_parts, fingerprint

    pairs = {(str(spec.task), spec.loss) for spec in runs} | {(row["task"], row["loss"]) for row in skipped}
    plan = MatrixPlan([], [], {pair: fingerprint(*pair) for pair in sorted(pairs)})
    rows = {row["run_id"]: row for row in stored.to_dict("records")}
    cells = [_cell(spec, rows.get(spec.run_id)) for spec in runs]
    check_filters(rerun, cells)
    for spec, cell in zip(runs, cells, strict=True):
        row = rows.get(spec.run_id)
        if row is None or not _finished(row, retry_failed):
            plan.todo.append(spec)
            continue
        changes = changed_parts(row, plan.fingerprint(spec))
        if changes:
            plan.stale.append((str(spec.task), spec.loss, changes))
        elif rerun and all(f.matches(cell) for f in rerun):
            plan.chosen += 1
        else:
            plan.kept += 1
            continue
        plan.todo.append(spec)
    for row in skipped:
        current = plan.fingerprints[(row["task"], row["loss"])]
        old = rows.get(row["run_id"])
        if old is None or old.get("status") != Status.SKIPPED or changed_parts(old, current):
            plan.skipped.append({**row, **current.columns()})
    return plan


def check_filters(filters: Sequence[RerunFilter], cells: Sequence[Mapping[str, Any]]) -> None:
    """Refuse a ``--rerun`` filter that matches no run of the matrix, alone or with the others."""
    for rerun_filter in filters:
        if not any(rerun_filter.matches(cell) for cell in cells):
            values = sorted({str(cell[rerun_filter.key]) for cell in cells if cell.get(rerun_filter.key) is not None})
            shown = ", ".join(values[:12]) + (", ..." if len(values) > 12 else "")
            raise ValueError(
                f"--rerun {rerun_filter} matches no run of this matrix (its {rerun_filter.key} values: "
                f"{shown or 'none yet'}); valid keys: {', '.join(RERUN_KEYS)}"
            )
    if len(filters) > 1 and not any(all(f.matches(cell) for f in filters) for cell in cells):
        raise ValueError(
            f"--rerun {' and '.join(map(str, filters))} match no run of this matrix together (filters are ANDed)"
        )


def _cell(spec: RunSpec, row: Mapping[str, Any] | None) -> dict[str, Any]:
    """What ``--rerun`` filters look at: the run's task spec, loss name and spec, seed, and stored status."""
    from bench.rows import loss_spec_label

    return {
        "task": str(spec.task),
        "loss": spec.loss,
        "loss_spec": loss_spec_label(spec.loss, spec.loss_params, _loss_defaults(spec.loss)),
        "seed": spec.seed,
        "status": None if row is None else row.get("status"),
    }


@cache
def _loss_defaults(name: str) -> dict[str, Any]:
    from bench.plugins import get_loss

    return get_loss(name).params


def _finished(row: Mapping[str, Any], retry_failed: bool) -> bool:
    status = row.get("status")
    return status in (Status.OK, Status.SKIPPED) or (status in FAILED and not retry_failed)
