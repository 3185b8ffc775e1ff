"""``lossbench tune``: the same hyper-parameter budget for every loss, chosen on the validation split.

For each (task, loss) of the matrix, one Optuna study (named ``<task>|<loss>``) in an RDB storage, a SQLite file in
the results folder (``tuning.sqlite3``), runs ``trials`` trials over the shared learning-rate range and the loss's own
``search_space`` (``bench.api.space``). Every loss gets the same number of trials, the same training seed for every
trial, the same training settings, and a TPE sampler seeded the same way. A trial is an ordinary run of those settings
with the trial's learning rate and loss parameters, on the validation split only (``bench.fit``: the test split is
never read), scored by its best validation main metric (checkpoint selection, ``bench.checkpoint``). No pruning: every
trial trains its whole budget.

Resuming: a trial's sampler is seeded by the study's seed and the number of trials finished before it, so the trials
of an interrupted study, run again, are the ones an uninterrupted study would have run. A trial left running by a
killed process is marked failed (``interrupted``) and not counted; the missing trials run.

Then the final runs: each loss at its best trial's learning rate and parameters over the matrix's seeds, through the
normal runner into ``runs.csv``, with ``tuning_trials`` (so ``tuned``) in their settings (``TrainConfig``).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from bench.api.params import loss_defaults
from bench.api.space import LEARNING_RATE, LEARNING_RATE_PARAM, Choice, FloatRange, IntRange, Spec, check_space
from bench.config import RunSpec, TrainConfig
from bench.executors import CellResult, Executor, LocalExecutor
from bench.registry import LOSSES, TASKS
from bench.status import Status

TUNING_DB = "tuning.sqlite3"  # in the results folder
SEED_STRIDE = 10_000  # trial n of a study seeded s samples with TPESampler(seed=s * SEED_STRIDE + n)
MAX_STARTUP_TRIALS = 10  # TPE's random start-up trials (Optuna's default), fewer when the budget is small
STATUS_ATTR = "status"  # a trial's run status (ok, error, diverged); a failed trial without it was interrupted


def storage_url(out_dir: str | Path) -> str:
    """The SQLite URL of a results folder's study database (what ``optuna-dashboard`` opens)."""
    return f"sqlite:///{(Path(out_dir) / TUNING_DB).resolve()}"


def distribution(spec: Spec) -> BaseDistribution:
    """The Optuna distribution of a declared range: the one place where search spaces meet Optuna."""
    if isinstance(spec, FloatRange):
        return FloatDistribution(spec.low, spec.high, log=spec.log)
    if isinstance(spec, IntRange):
        return IntDistribution(spec.low, spec.high, log=spec.log)
    if isinstance(spec, Choice):
        return CategoricalDistribution(spec.options)
    raise TypeError(f"not a search-space spec: {spec!r}")


def startup_trials(trials: int) -> int:
    """TPE's random start-up trials for a budget: half the budget, at most ``MAX_STARTUP_TRIALS``."""
    return max(1, min(MAX_STARTUP_TRIALS, trials // 2))


@dataclass(frozen=True)
class StudyPlan:
    """One (task, loss) study: ``trials`` trials of ``train`` (the base settings) at training seed ``seed``."""

    task: Any  # TaskSpec
    task_version: str
    loss: str
    train: TrainConfig
    trials: int
    seed: int

    @classmethod
    def of(cls, spec: RunSpec, trials: int) -> StudyPlan:
        """The study of a (task, loss) cell; ``spec.seed`` is the trials' seed."""
        return cls(spec.task, spec.task_version, spec.loss, spec.train, trials, spec.seed)

    @property
    def name(self) -> str:
        return f"{self.task}|{self.loss}"

    @property
    def metric(self) -> str:
        return TASKS.get(self.task.base).metadata.main_metric

    @property
    def direction(self) -> str:
        return "maximize" if TASKS.get(self.task.base).metadata.higher_is_better else "minimize"

    def space(self) -> dict[str, Spec]:
        """The shared learning-rate range and the loss's own ranges, checked."""
        loss_class = LOSSES.get(self.loss)
        check_space(self.loss, loss_class.search_space, loss_defaults(loss_class))
        return {LEARNING_RATE_PARAM: LEARNING_RATE, **loss_class.search_space}

    def settings(self) -> str:
        """What a study's trials depend on; a study resumed with other settings is refused."""
        return json.dumps(
            {
                "train": asdict(self.train),
                "task_version": self.task_version,
                "seed": self.seed,
                "space": {name: spec.describe() for name, spec in self.space().items()},
                "sampler": f"TPESampler(n_startup_trials={startup_trials(self.trials)})",
            },
            sort_keys=True,
            default=str,
        )

    def spec(self, params: dict[str, Any], *, seed: int | None = None, trials_spent: int = 0) -> RunSpec:
        """The run at ``params`` (learning rate and loss parameters): a trial, or (``trials_spent``) a final run."""
        loss_params = {**loss_defaults(LOSSES.get(self.loss)), **params}
        rate = loss_params.pop(LEARNING_RATE_PARAM)
        train = replace(self.train, learning_rate=rate, tuning_trials=trials_spent)
        return RunSpec(self.task, self.task_version, self.loss, self.seed if seed is None else seed, train, loss_params)


@dataclass(frozen=True)
class StudyOutcome:
    """A finished study: the trials it counts, the best trial's parameters and validation score (None: no trial
    finished), and the seconds this call spent."""

    name: str
    trials: int
    failed: int
    best_params: dict[str, Any] | None
    best_value: float | None
    seconds: float


def open_study(plan: StudyPlan, out_dir: str | Path, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """The plan's study in the folder's database, created on first use; refused when it was made with other
    settings."""
    study = optuna.create_study(storage=storage, study_name=plan.name, direction=plan.direction, load_if_exists=True)
    recorded = study.user_attrs.get("settings")
    if recorded is None:
        study.set_user_attr("settings", plan.settings())
        study.set_user_attr("task", str(plan.task))
        study.set_user_attr("loss", plan.loss)
        study.set_user_attr("metric", plan.metric)
    elif recorded != plan.settings():
        old, new = json.loads(recorded), json.loads(plan.settings())
        differ = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
        raise ValueError(
            f"Study {plan.name!r} in {Path(out_dir) / TUNING_DB} was made with other settings ({', '.join(differ)} "
            "differ): its trials would not compare. Tune into another --out folder."
        )
    return study


def counted_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count against the budget: finished by a tuning (complete, or failed with its run's status),
    not interrupted (failed without a status)."""
    return [
        trial
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
        if STATUS_ATTR in trial.user_attrs
    ]


def fail_interrupted(study: optuna.Study) -> int:
    """Mark trials left running by a killed tuning as failed, without a status (so not counted); returns how many.
    One tuning at a time per results folder."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    for trial in running:
        study.tell(trial.number, state=TrialState.FAIL)
    return len(running)


def run_trial(spec: RunSpec) -> dict[str, Any]:
    """A trial: ``spec`` trained and scored on the validation split only (``validation_only``), in a scratch
    folder; a failure becomes a failure row."""
    from bench.finetune import run_finetune  # heavy: only when a trial runs
    from bench.runner import failed_run_row

    with tempfile.TemporaryDirectory(prefix="lossbench-trial-") as scratch:
        try:
            return run_finetune(spec, Path(scratch), validation_only=True)
        except Exception as error:  # noqa: BLE001 - a failed trial is a result: it counts against the budget
            return failed_run_row(spec, error)


def quiet_libraries() -> None:
    """One line per trial: no progress bars or load reports from the libraries (``run_matrix`` does the same)."""
    import datasets
    import transformers

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def tune_study(
    plan: StudyPlan,
    out_dir: str | Path,
    *,
    run: Callable[[RunSpec], dict[str, Any]] = run_trial,
    say: Callable[[str], None] = print,
) -> StudyOutcome:
    """Run the study's missing trials (``plan.trials`` minus those already counted) one after another."""
    started = time.perf_counter()
    quiet_libraries()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(storage_url(out_dir))
    study = open_study(plan, out_dir, storage)
    if fail_interrupted(study):
        say(f"{plan.name}: a trial left running by an interrupted tuning is marked failed and runs again")
    space = {name: distribution(spec) for name, spec in plan.space().items()}
    metric = f"validation_{plan.metric}"
    for done in range(len(counted_trials(study)), plan.trials):
        sampler = optuna.samplers.TPESampler(
            seed=plan.seed * SEED_STRIDE + done, n_startup_trials=startup_trials(plan.trials)
        )
        study = optuna.load_study(study_name=plan.name, storage=storage, sampler=sampler)
        trial = study.ask(space)
        row = run(plan.spec(dict(trial.params)))
        value = row.get(metric)
        trial.set_user_attr(STATUS_ATTR, str(row["status"]))
        for key in ("train_seconds", "best_step", "message"):
            if row.get(key) is not None:
                trial.set_user_attr(key, row[key])
        for step, score in json.loads(row.get("validation_evaluations") or "[]"):
            if math.isfinite(score):
                trial.report(score, step)  # intermediate values: the dashboard plots them
        finite = row["status"] == Status.OK and value is not None and math.isfinite(value)
        study.tell(trial, value if finite else None, state=None if finite else TrialState.FAIL)
        shown = ", ".join(f"{key}={_short(val)}" for key, val in trial.params.items())
        result = f"{plan.metric}={value:.4f}" if finite else f"{str(row['status']).upper()} {row.get('message', '')}"
        say(f"[trial {done + 1}/{plan.trials}] {plan.task} {plan.loss} {shown}: {result[:120]}")
    return outcome(plan.name, study, time.perf_counter() - started)


def outcome(name: str, study: optuna.Study, seconds: float) -> StudyOutcome:
    trials = counted_trials(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if complete else None  # the first of equal best values
    return StudyOutcome(
        name,
        len(trials),
        len(trials) - len(complete),
        dict(best.params) if best else None,
        best.value if best else None,
        seconds,
    )


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def tune_cell(spec: RunSpec, *, trials: int, out_dir: str) -> CellResult:
    """A study as an executor's cell (``spec``: the study's (task, loss), base settings and trial seed): studies of
    different (task, loss) run in parallel, the trials within a study one after another."""
    result = tune_study(StudyPlan.of(spec, trials), out_dir)
    return CellResult(asdict(result))


def study_cells(runs: Iterable[RunSpec], trial_seed: int) -> list[RunSpec]:
    """One cell per (task, loss) of the matrix, at the trial seed."""
    cells: dict[tuple[str, str], RunSpec] = {}
    for spec in runs:
        cells.setdefault((str(spec.task), spec.loss), replace(spec, seed=trial_seed))
    return list(cells.values())


def tune_all(
    runs: Sequence[RunSpec], out_dir: str | Path, *, trials: int, trial_seed: int, executor: Executor | None = None
) -> list[tuple[StudyPlan, StudyOutcome]]:
    """Every (task, loss) study of the matrix, on the executor (default: this process); refuses a loss's bad space
    before any trial."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    optuna.storages.RDBStorage(storage_url(out_dir))  # the tables, made once before worker processes share the file
    cells = study_cells(runs, trial_seed)
    for cell in cells:
        StudyPlan.of(cell, trials).space()
    results = []
    cell = partial(tune_cell, trials=trials, out_dir=str(out_dir))
    for spec, result in (executor or LocalExecutor()).map(cell, cells):
        if isinstance(result, BaseException):
            raise RuntimeError(f"tuning {spec.task} {spec.loss} failed: {result}") from result
        results.append((StudyPlan.of(spec, trials), StudyOutcome(**result.row)))
    return results


def final_runs(
    studies: Sequence[tuple[StudyPlan, StudyOutcome]], seeds: Sequence[int]
) -> tuple[list[RunSpec], list[str]]:
    """Each tuned loss at its best trial's learning rate and parameters over ``seeds``, recording the trials spent;
    and a line for each study without a finished trial (no final runs for it)."""
    runs, missing = [], []
    for plan, result in studies:
        if result.best_params is None:
            missing.append(f"{plan.name}: none of its {result.trials} trials finished")
            continue
        runs.extend(plan.spec(result.best_params, seed=seed, trials_spent=result.trials) for seed in seeds)
    return runs, missing
