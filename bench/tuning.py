"""``lossbench tune``: the same hyper-parameter budget for every loss, chosen on the validation split.

For each (task, loss) of the matrix, one Optuna study (named ``<task>|<loss>``) in an RDB storage (by default a SQLite
file in the results folder, ``tuning.sqlite3``; any SQLAlchemy URL, e.g. a PostgreSQL database that every node of a
cluster reaches), runs ``trials`` trials over the shared learning-rate range and the loss's own
``search_space`` (``bench.api.space``). Every loss gets the same number of trials, the same training seed for every
trial, the same training settings, and a TPE sampler seeded the same way. A trial is an ordinary run of those settings
with the trial's learning rate and loss parameters, on the validation split only (``bench.fit``: the test split is
never read), scored by its best validation main metric (checkpoint selection, ``bench.checkpoint``). No pruning: every
trial trains its whole budget.

Resuming: a trial's sampler is seeded by the study's seed and the number of trials finished before it, so the trials
of an interrupted study, run again, are the ones an uninterrupted study would have run. A trial left running by a
killed process is marked failed (``interrupted``) and not counted; the missing trials run.

Studies of different (task, loss) run in parallel on an executor (worker processes, Ray), each study one cell whose
trials run one after another: the trials are those of a serial tuning. A study that fails (its cell raised, or its
worker died) is reported and the others go on.

Then the final runs: each loss at its best trial's learning rate and parameters over the matrix's seeds, through the
normal runner into ``runs.csv``, with ``tuning_trials`` (so ``tuned``) in their settings (``TrainConfig``).
"""

from __future__ import annotations

import json
import math
import re
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
STORAGE_FILE = "tuning-storage.txt"  # in the results folder: the URL of another storage, without its password
SQLITE_TIMEOUT_S = 60  # how long a process waits for another's write to the shared SQLite file (sqlite3's: 5 s)
SEED_STRIDE = 10_000  # trial n of a study seeded s samples with TPESampler(seed=s * SEED_STRIDE + n)
MAX_STARTUP_TRIALS = 10  # TPE's random start-up trials (Optuna's default), fewer when the budget is small
STATUS_ATTR = "status"  # a trial's run status (ok, error, diverged); a failed trial without it was interrupted


def storage_url(out_dir: str | Path) -> str:
    """The SQLite URL of a results folder's study database (what ``optuna-dashboard`` opens)."""
    return f"sqlite:///{(Path(out_dir) / TUNING_DB).resolve()}"


def shown_url(url: str) -> str:
    """``url`` without its password: the only form lossbench prints or writes (SQLAlchemy parses the URL)."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)  # URL.set(password=None) keeps the password: build the URL again without it
        fields = {name: getattr(parsed, name) for name in ("drivername", "username", "host", "port", "database")}
        query = {key: value for key, value in parsed.query.items() if key.lower() != "password"}
        return URL.create(**fields, query=query).render_as_string(hide_password=False)
    except ArgumentError:  # not a URL: hide whatever stands between ':' and '@' as a password would
        return re.sub(r":[^:@/]*@", ":***@", url)


def is_sqlite(url: str) -> bool:
    """Whether ``url`` names a SQLite file (a file on one machine, which the nodes of a cluster cannot share)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).get_backend_name() == "sqlite"
    except ArgumentError:
        return False


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The Optuna storage at ``url``, its tables made on first use; a URL it cannot open is refused with a
    ``ValueError`` that names it (without its password) and says what Optuna or the database said."""
    sqlite = {"engine_kwargs": {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}} if is_sqlite(url) else {}
    try:
        return optuna.storages.RDBStorage(url, **sqlite)
    except Exception as error:  # noqa: BLE001 - SQLAlchemy, a database driver or Optuna: all are a bad storage
        said = str(error).splitlines()[0] if str(error) else type(error).__name__
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        raise ValueError(
            f"storage {shown_url(url)}: Optuna cannot open it: {said}{cause}. Give an SQLAlchemy URL that this "
            "machine (and every node that runs studies) reaches, with its driver installed, e.g. "
            "postgresql://USER@HOST/DB, mysql+pymysql://USER@HOST/DB or sqlite:////ABSOLUTE/PATH.db."
        ) from None


def record_storage(out_dir: str | Path, url: str) -> None:
    """Note in the folder where its studies are: ``STORAGE_FILE`` (the URL without its password) for a storage other
    than the folder's SQLite file; none (an older note removed) for that file."""
    note = Path(out_dir) / STORAGE_FILE
    if url == storage_url(out_dir):
        note.unlink(missing_ok=True)
    else:
        note.write_text(shown_url(url) + "\n", encoding="utf-8")


def recorded_storage(out_dir: str | Path) -> str | None:
    """The storage of the folder's latest tuning: the URL in ``STORAGE_FILE`` (without a password: give the full URL
    again where the database needs one), else the folder's SQLite file; None when neither exists."""
    note = Path(out_dir) / STORAGE_FILE
    if note.exists():
        return note.read_text(encoding="utf-8").strip()
    return storage_url(out_dir) if (Path(out_dir) / TUNING_DB).exists() else None


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


def open_study(plan: StudyPlan, storage: optuna.storages.BaseStorage, url: str) -> optuna.Study:
    """The plan's study in the storage (at ``url``), created on first use; refused when it was made with other
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
            f"Study {plan.name!r} in {shown_url(url)} was made with other settings ({', '.join(differ)} differ): its "
            "trials would not compare. Tune into another --out folder (or another --storage)."
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
    """One line per trial: no progress bars or load reports from the libraries (as in a run), nor from Optuna."""
    from bench import runner  # heavy: only when trials run

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    runner.quiet_libraries()


def tune_study(
    plan: StudyPlan,
    out_dir: str | Path,
    *,
    storage: str | None = None,
    run: Callable[[RunSpec], dict[str, Any]] = run_trial,
    say: Callable[[str], None] = print,
) -> StudyOutcome:
    """Run the study's missing trials (``plan.trials`` minus those already counted) one after another, in the
    storage at the URL ``storage`` (default: the folder's SQLite file)."""
    started = time.perf_counter()
    quiet_libraries()
    if storage is None:  # only then: on a cluster's node the results folder is not this node's to make
        Path(out_dir).mkdir(parents=True, exist_ok=True)
    url = storage or storage_url(out_dir)
    storage = open_storage(url)
    study = open_study(plan, storage, url)
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


def tune_cell(spec: RunSpec, *, trials: int, out_dir: str, storage: str) -> CellResult | Exception:
    """A study as an executor's cell (``spec``: the study's (task, loss), base settings and trial seed): studies of
    different (task, loss) run in parallel, the trials within a study one after another. A study that raises
    returns its exception as its outcome (as an executor reports a dead worker), so that the other studies go on."""
    try:
        return CellResult(asdict(tune_study(StudyPlan.of(spec, trials), out_dir, storage=storage)))
    except Exception as error:  # noqa: BLE001 - reported by tune_all; KeyboardInterrupt still stops the tuning
        return error


def study_cells(runs: Iterable[RunSpec], trial_seed: int) -> list[RunSpec]:
    """One cell per (task, loss) of the matrix, at the trial seed."""
    cells: dict[tuple[str, str], RunSpec] = {}
    for spec in runs:
        cells.setdefault((str(spec.task), spec.loss), replace(spec, seed=trial_seed))
    return list(cells.values())


def tune_all(
    runs: Sequence[RunSpec],
    out_dir: str | Path,
    *,
    trials: int,
    trial_seed: int,
    executor: Executor | None = None,
    storage: str | None = None,
    say: Callable[[str], None] = print,
) -> tuple[list[tuple[StudyPlan, StudyOutcome]], list[str]]:
    """Every (task, loss) study of the matrix, on the executor (default: this process), in the storage at the URL
    ``storage`` (default: the folder's SQLite file, ``storage_url``). Refuses before any trial a storage it cannot
    open, a loss's bad space and a study made with other settings. Returns the finished studies, in the matrix's
    order, and a line (name and error) for each study that failed; the other studies are not stopped by one."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study created here
    url = storage or storage_url(out_dir)
    opened = open_storage(url)  # the tables, made once before worker processes share the database
    cells = study_cells(runs, trial_seed)
    for cell in cells:
        open_study(StudyPlan.of(cell, trials), opened, url)  # checks the space and the recorded settings
    record_storage(out_dir, url)
    finished, failed = {}, {}
    study_cell = partial(tune_cell, trials=trials, out_dir=str(out_dir), storage=url)
    for spec, result in (executor or LocalExecutor()).map(study_cell, cells):
        plan, done = StudyPlan.of(spec, trials), f"[study {len(finished) + len(failed) + 1}/{len(cells)}]"
        if isinstance(result, BaseException):
            failed[plan.name] = f"{plan.name}: {type(result).__name__}: {result}"
            say(f"{done} {failed[plan.name]}")
            continue
        finished[plan.name] = (plan, StudyOutcome(**result.row))
        best = "none finished" if result.row["best_value"] is None else f"{result.row['best_value']:.4f}"
        say(f"{done} {plan.name}: {result.row['trials']} trials, best {plan.metric} {best}")
    names = [StudyPlan.of(cell, trials).name for cell in cells]
    return [finished[n] for n in names if n in finished], [failed[n] for n in names if n in failed]


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
