"""``lossbench run --seeds auto``: seeds added, in rounds, to the tasks whose comparisons are still undecided.

Every task starts with the first round's seeds (``--seeds auto``: 0, 1, 2). After each round a task's finished rows
(of the seeds it ran, nothing else in the folder) are analysed as the report analyses them
(``bench.analysis.analyse_task``: paired t-tests with the baseline, Holm-corrected; ``TaskPower``: pooled paired std
and minimum detectable difference, MDD). A task is *undecided* while some tested comparison is not significant (Holm
p >= alpha) and its MDD is above the target; it then gets the next seeds in order (after its largest), as many as
``power.seeds_needed`` says, at least one more, at most twice its seeds and never more than the cap. The loop stops
when no task is undecided. The decisions depend only on finished rows, so the same command in the same folder skips
the finished runs and makes the same choices; they are written to ``<out>/seeds.json`` after every round.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench import power, stats
from bench.analysis import analyse_task, with_loss_spec
from bench.config import RunSpec
from bench.results import atomic_file
from bench.status import Status

SEEDS_FILE = "seeds.json"

UNDECIDED = "undecided"  # more seeds next round
DECIDED = "decided"  # every tested comparison with the baseline is significant after Holm
BELOW_TARGET = "mdd below target"  # the seeds detect a difference of the target: more would not help the question
CAP = "cap"  # undecided, but at --max-seeds
NO_TEST = "no comparison"  # nothing to compare with the baseline (a single loss, or no finished pair)


@dataclass(frozen=True)
class TaskSeeds:
    """One task's state after a round: the seeds it ran, the report's power numbers for them, and what comes next.

    ``seeds``: the seeds run, in order; ``comparisons`` and ``significant``: tested comparisons with the
    baseline on the main metric, and those with Holm p < alpha; ``pooled_std``, ``mdd``: ``analysis.TaskPower``'s
    (NaN without a test); ``state``: ``UNDECIDED`` or why it stopped; ``next_seeds``: the seed count of the next
    round (``len(seeds)`` once stopped)."""

    task: str
    seeds: tuple[int, ...]
    comparisons: int
    significant: int
    pooled_std: float
    mdd: float
    state: str
    next_seeds: int

    def record(self) -> dict[str, Any]:
        """The task's entry of ``seeds.json`` (non-finite numbers as null)."""
        entry = asdict(self)
        del entry["task"]
        entry["seeds"] = list(self.seeds)
        for key in ("pooled_std", "mdd"):
            entry[key] = entry[key] if math.isfinite(entry[key]) else None
        return entry

    def describe(self, target: float) -> str:
        """``trec: 3 -> 6 seeds (mdd 0.034 > 0.01; 2 of 12 comparisons significant)``."""
        mdd = f"mdd {self.mdd:.3g}" if math.isfinite(self.mdd) else "no mdd"
        why = f"{mdd} {'>' if self.mdd > target else '<='} {target:g}; {self.significant} of {self.comparisons} "
        why += "comparisons significant"
        if self.state == UNDECIDED:
            return f"{self.task}: {len(self.seeds)} -> {self.next_seeds} seeds ({why})"
        return f"{self.task}: {len(self.seeds)} seeds, stopped: {self.state} ({why})"


def next_seed_count(seeds: int, pooled_std: float, mdd: float, comparisons: int, target: float, cap: int) -> int:
    """The seed count of an undecided task's next round: what ``power.seeds_needed`` says the target needs at this
    std and Holm family, but at least one more, at most twice ``seeds``, and never above ``cap``."""
    needed = power.seeds_needed(pooled_std, target, comparisons, stats.ALPHA) if math.isfinite(pooled_std) else cap
    return min(max(needed, seeds + 1), 2 * seeds, cap)


def decide(task: str, rows: pd.DataFrame, seeds: Sequence[int], target: float, cap: int) -> TaskSeeds:
    """The state of ``task`` from its rows of the seeds it ran (``rows``: those runs' rows of ``runs.csv``)."""
    seeds = tuple(seeds)
    rows = with_loss_spec(rows)
    if rows.empty or not (rows["status"] == Status.OK).any():
        return TaskSeeds(task, seeds, 0, 0, math.nan, math.nan, NO_TEST, len(seeds))
    analysis = analyse_task(task, rows)
    main = analysis.main
    tested = main[np.isfinite(main["p"].to_numpy(dtype=np.float64))]
    significant = int((tested["p_holm"] < stats.ALPHA).sum())
    task_power = analysis.power
    if task_power is None:
        return TaskSeeds(task, seeds, 0, 0, math.nan, math.nan, NO_TEST, len(seeds))
    std, mdd, comparisons = task_power.pooled_std, task_power.mdd, task_power.comparisons

    def state(name: str, following: int = len(seeds)) -> TaskSeeds:
        return TaskSeeds(task, seeds, comparisons, significant, std, mdd, name, following)

    if significant == comparisons:
        return state(DECIDED)
    if mdd <= target:
        return state(BELOW_TARGET)
    if len(seeds) >= cap:
        return state(CAP)
    return state(UNDECIDED, next_seed_count(len(seeds), std, mdd, comparisons, target, cap))


@dataclass
class AutoSeeds:
    """The outcome of ``run_auto``: each task's last state, the rounds run, and the failed rows of every round."""

    tasks: dict[str, TaskSeeds]
    rounds: int
    failed: list[dict[str, Any]]
    runs: int  # runs of every round together


def write_seeds_file(out_dir: str | Path, result: AutoSeeds, first: Sequence[int], target: float, cap: int) -> Path:
    """``<out>/seeds.json``, written atomically: the rule's settings and each task's seeds and state."""
    path = Path(out_dir) / SEEDS_FILE
    record = {
        "first_seeds": list(first),
        "max_seeds": cap,
        "target_mdd": target,
        "alpha": stats.ALPHA,
        "power": power.POWER,
        "rounds": result.rounds,
        "tasks": {task: state.record() for task, state in sorted(result.tasks.items())},
    }
    with atomic_file(path, encoding="utf-8") as handle:
        json.dump(record, handle, indent=2)
        handle.write("\n")
    return path


def run_auto(
    first: list[RunSpec],
    skipped: list[dict[str, Any]],
    out_dir: str | Path,
    *,
    run_round: Callable[[list[RunSpec], list[dict[str, Any]], dict[str, Any]], list[dict[str, Any]]],
    load_rows: Callable[[], pd.DataFrame],
    target: float,
    cap: int,
    say: Callable[[str], None] = print,
) -> AutoSeeds:
    """Run ``first`` (the matrix at the first round's seeds, the same for every task), then, round by round, the
    next seeds of the undecided tasks.

    ``run_round(runs, skipped, note)`` runs a round's runs and returns its failed rows (``bench.runner.run_matrix``,
    with ``note`` added to the invocation's log entry); ``load_rows()`` returns the folder's rows after it. A later
    round's runs are the earlier runs of the task with the seed replaced, so they keep every setting and loss."""
    first_seeds = sorted({spec.seed for spec in first})
    if cap < len(first_seeds):
        raise ValueError(f"--max-seeds must be an integer >= {len(first_seeds)} (the first round's seeds), got {cap}")
    if not 0 < target < math.inf:
        raise ValueError(f"--target-mdd must be a finite number > 0, got {target}")
    templates: dict[str, list[RunSpec]] = {}  # task -> its runs at the first seed, one per loss
    for spec in first:
        if spec.seed == first_seeds[0]:
            templates.setdefault(str(spec.task), []).append(spec)
    seeds = {task: list(first_seeds) for task in templates}
    todo, failed, rounds, total = first, [], 0, 0
    states: dict[str, TaskSeeds] = {}
    while todo:
        rounds += 1
        note = {"seeds_auto": {"round": rounds, "seeds": {task: list(chosen) for task, chosen in seeds.items()}}}
        failed += run_round(todo, skipped if rounds == 1 else [], note)
        total += len(todo)
        rows = load_rows()
        for task, specs in templates.items():
            if task in states and states[task].state != UNDECIDED:
                continue
            run_ids = {replace(spec, seed=seed).run_id for spec in specs for seed in seeds[task]}
            states[task] = decide(task, rows[rows["run_id"].isin(run_ids)], seeds[task], target, cap)
        result = AutoSeeds(states, rounds, failed, total)
        write_seeds_file(out_dir, result, first_seeds, target, cap)
        say(f"--seeds auto, round {rounds}: " + "; ".join(states[task].describe(target) for task in sorted(states)))
        todo = []
        for task, state in sorted(states.items()):
            if state.state == UNDECIDED:
                start = seeds[task][-1] + 1
                added = list(range(start, start + state.next_seeds - len(seeds[task])))
                seeds[task] += added
                todo += [replace(spec, seed=seed) for spec in templates[task] for seed in added]
    return AutoSeeds(states, rounds, failed, total)
