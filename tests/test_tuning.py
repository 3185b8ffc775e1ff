"""``lossbench tune``: trials score the validation split and never read the test split, a killed study resumes with
the trials an uninterrupted one runs, the same seeds give the same trials, studies in worker processes record the
trials of a serial tuning (on Ray tasks: test_ray_tuning.py), a failed study leaves the others' final runs, the storage
is chosen and checked, and the final runs are tuned rows that the report keeps apart from untuned ones."""

from __future__ import annotations

import json
import math
from functools import partial
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from bench import cache, cli, depth, finetune, tuning, tuning_report
from bench.config import RunSpec, TrainConfig
from bench.executors import LocalExecutor, ProcessExecutor
from bench.matrix import build_matrix
from bench.registry import TASKS
from bench.status import Status
from tests.helpers import torch_threads

TASK = "tuning_reviews"  # 80 short reviews: a validation split of 12, so that trials take a second or two
NLL_TASK = "tuning_reviews_nll"  # the same, scored by NLL: a trial's value shows a difference in its last bits


@pytest.fixture(scope="module")
def reviews_file(tmp_path_factory) -> Path:
    words = ["good", "fine", "great", "nice", "bad", "dull", "awful", "poor"]
    texts = [f"a {words[i % 8]} film number {i}" for i in range(80)]
    path = tmp_path_factory.mktemp("tuning-task") / "reviews.csv"
    pd.DataFrame({"text": texts, "label": ["pos" if i % 8 < 4 else "neg" for i in range(80)]}).to_csv(path, index=False)
    return path


def reviews_task(reviews_file: Path, name: str = TASK) -> type:
    from tasks.base import FileTask, TaskMetadata

    metric, higher = ("nll", False) if name == NLL_TASK else ("accuracy", True)

    class ReviewsTask(FileTask):
        path = reviews_file
        metadata = TaskMetadata(
            problem_type="classification", label_names=("neg", "pos"), main_metric=metric,
            higher_is_better=higher, source="reviews.csv", version="1.0", description="tiny reviews",
        )  # fmt: skip

    ReviewsTask.name = name
    return ReviewsTask


@pytest.fixture
def tiny_train(tiny_model_dir, reviews_file, tmp_path, monkeypatch) -> TrainConfig:
    monkeypatch.setitem(TASKS._items, TASK, reviews_task(reviews_file))  # a registered plug-in, as a file would be
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(depth, "_STATES", {})
    return TrainConfig(model=str(tiny_model_dir), train_size=16, batch_size=8, max_length=32, precision="fp32")


def plan(train: TrainConfig, loss: str = "focal", trials: int = 2, seed: int = 0) -> tuning.StudyPlan:
    runs, _ = build_matrix([TASK], [loss], [seed], train)
    return tuning.StudyPlan.of(runs[0], trials)


class Poison(torch.utils.data.Dataset):
    """A test split that fails when anything reads it."""

    def __len__(self) -> int:
        raise AssertionError("the test split was read")

    def __getitem__(self, index):
        raise AssertionError("the test split was read")


def test_trials_score_validation_and_never_read_the_test_split(tiny_train, tmp_path, monkeypatch):
    real_fit = finetune.fit
    monkeypatch.setattr(
        finetune, "fit", lambda spec, model, data, *a, **k: real_fit(spec, model, {**data, "test": Poison()}, *a, **k)
    )
    study = plan(tiny_train)
    result = tuning.tune_study(study, tmp_path, say=lambda line: None)
    assert result.trials == 2 and result.failed == 0 and math.isfinite(result.best_value)
    trials = optuna.load_study(study_name=study.name, storage=tuning.storage_url(tmp_path)).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(t.intermediate_values and t.user_attrs["status"] == Status.OK for t in trials)
    assert {"learning_rate", "gamma"} == set(trials[0].params)
    # the poison works: an ordinary run, which scores the test split, fails on it
    with pytest.raises(AssertionError, match="test split was read"):
        finetune.run_finetune(study.spec(trials[0].params), tmp_path / "ordinary")


def fake_run(calls: list, interrupt_at: int | None = None):
    """A trial without training: a score that depends on the parameters; KeyboardInterrupt at call ``interrupt_at``."""

    def run(spec: RunSpec) -> dict:
        calls.append(spec)
        if len(calls) == interrupt_at:
            raise KeyboardInterrupt
        score = 1.0 - abs(math.log10(spec.train.learning_rate) + 3) - 0.01 * spec.loss_params["gamma"]
        return {"status": Status.OK, "validation_accuracy": score, "validation_evaluations": json.dumps([[2, score]])}

    return run


def params_of(tmp_path, name: str) -> list[dict]:
    study = optuna.load_study(study_name=name, storage=tuning.storage_url(tmp_path))
    return [t.params for t in tuning.counted_trials(study)]


def test_a_killed_study_resumes_with_the_trials_of_an_uninterrupted_one(tiny_train, tmp_path):
    study = plan(tiny_train, trials=4)
    whole = []
    tuning.tune_study(study, tmp_path / "whole", run=fake_run(whole), say=lambda line: None)
    killed = []
    with pytest.raises(KeyboardInterrupt):
        tuning.tune_study(study, tmp_path / "killed", run=fake_run(killed, interrupt_at=3), say=lambda line: None)
    assert len(params_of(tmp_path / "killed", study.name)) == 2  # the third was running when it was killed
    resumed, said = [], []
    result = tuning.tune_study(study, tmp_path / "killed", run=fake_run(resumed), say=said.append)
    assert len(resumed) == 2 and result.trials == 4 and "interrupted" in said[0]
    assert params_of(tmp_path / "killed", study.name) == params_of(tmp_path / "whole", study.name)
    assert [s.run_id for s in killed[:2] + resumed] == [s.run_id for s in whole]
    again = []
    tuning.tune_study(study, tmp_path / "killed", run=fake_run(again), say=lambda line: None)
    assert again == []  # the budget is spent: nothing runs


def test_every_loss_gets_the_same_trial_seeds_and_other_settings_are_refused(tiny_train, tmp_path):
    calls = []
    focal, other = plan(tiny_train, trials=4), plan(tiny_train, loss="cross_entropy", trials=4)
    tuning.tune_study(focal, tmp_path, run=fake_run(calls), say=lambda line: None)
    tuning.tune_study(
        other,
        tmp_path,
        run=lambda spec: (
            calls.append(spec)
            or fake_run([])(RunSpec(spec.task, spec.task_version, spec.loss, spec.seed, spec.train, {"gamma": 0.0}))
        ),
        say=lambda line: None,
    )
    assert tuning.startup_trials(4) == 2
    rates = [[s.train.learning_rate for s in calls[:2]], [s.train.learning_rate for s in calls[4:6]]]
    assert rates[0] == rates[1] and len(set(rates[0])) == 2  # the random start-up trials draw the same rates
    assert {s.seed for s in calls} == {0} and all(s.train.tuning_trials == 0 for s in calls)
    with pytest.raises(ValueError, match="other settings \\(train differ\\)"):
        tuning.tune_study(plan(TrainConfig(**{**tiny_train.__dict__, "batch_size": 4}), trials=4), tmp_path)


def run_cli(*args) -> int:
    return cli.main(list(args))


def test_tune_runs_the_chosen_configuration_as_tuned_rows_beside_untuned_ones(tiny_train, tmp_path, capsys):
    settings = "--train-size 16 --batch-size 8 --max-length 32 --precision fp32 --seeds 0 --losses focal"
    common = ["--model", tiny_train.model, "--tasks", TASK, *settings.split(), "--out", str(tmp_path / "out")]
    assert run_cli("run", *common) == 0
    assert run_cli("tune", *common, "--trials", "2") == 0
    runs = pd.read_csv(tmp_path / "out" / "runs.csv")
    tuned = runs[runs["loss_spec"] == "focal (tuned)"].iloc[0]
    untuned = runs[runs["loss_spec"] == "focal"].iloc[0]
    assert bool(tuned["tuned"]) and tuned["tuning_trials"] == 2 and tuned["status"] == Status.OK
    assert not bool(untuned["tuned"]) and untuned["tuning_trials"] == 0 and tuned["run_id"] != untuned["run_id"]
    study = optuna.load_study(study_name=f"{TASK}|focal", storage=tuning.storage_url(tmp_path / "out"))
    assert tuned["learning_rate"] == pytest.approx(study.best_params["learning_rate"])
    assert json.loads(tuned["loss_params"])["gamma"] == pytest.approx(study.best_params["gamma"])
    report = (tmp_path / "out" / "REPORT.md").read_text()
    assert "| focal (tuned) " in report and "| focal " in report  # two losses in the tables, never pooled
    text = (tmp_path / "out" / "TUNING.md").read_text()
    assert "| focal | 2 | 0 |" in text and "rank change" in text and "Budget spent: 2 trials in 1 studies" in text
    assert (tmp_path / "out" / "plots" / f"tuning-{TASK}.png").stat().st_size > 0
    capsys.readouterr()
    assert run_cli("tune", *common, "--trials", "2") == 0  # resumed: nothing left to run
    assert "[trial" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--lr", "1e-3"], "--lr 0.001: tune searches the learning rate"),
        (["--seeds", "auto"], "--seeds auto applies to lossbench run only"),
        (["--no-select-checkpoint"], "drop --no-select-checkpoint"),
        (["--losses", "focall"], "focal"),
    ],
)
def test_bad_tune_options_are_refused_before_any_trial(tiny_model_dir, tmp_path, capsys, extra, message):
    args = ["tune", "--model", str(tiny_model_dir), "--tasks", TASK, "--losses", "focal", "--out", str(tmp_path)]
    assert run_cli(*args, *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / tuning.TUNING_DB).exists()


def with_reviews_task(fn, reviews_file: str, spec: RunSpec):
    """``fn(spec)`` in a worker process (spawned, or Ray's), with the tiny task registered there as it is here."""
    from bench.registry import TASKS as worker_tasks  # the worker's registry (Ray sends this function by value)

    worker_tasks._items.setdefault(NLL_TASK, reviews_task(Path(reviews_file), NLL_TASK))
    return fn(spec)


class ReviewsTaskExecutor:
    """An executor whose workers know the tiny task (a plug-in file on every node would do the same)."""

    def __init__(self, inner, reviews_file: Path) -> None:
        self.inner, self.reviews_file = inner, str(reviews_file)

    def map(self, fn, specs):
        return self.inner.map(partial(with_reviews_task, fn, self.reviews_file), specs)


def stored_trials(url: str) -> dict[str, list[tuple]]:
    """What Optuna stores of every study's trials, in trial order, less the clock times (start and end, training
    seconds): number, state, parameters, value, intermediate values, run status, best step."""
    storage = optuna.storages.RDBStorage(url)
    return {
        name: [
            (
                t.number,
                t.state,
                t.params,
                t.value,
                t.intermediate_values,
                t.user_attrs["status"],
                t.user_attrs.get("best_step"),
            )
            for t in optuna.load_study(study_name=name, storage=storage).trials
        ]
        for name in sorted(optuna.study.get_all_study_names(storage))
    }


def assert_parallel_tuning_is_serial(train: TrainConfig, executor, tmp_path: Path, monkeypatch) -> None:
    """A serial tuning in this process at 1 torch thread (what each worker has) and one on ``executor`` store the
    same trials, bit for bit, and choose the same configurations."""
    monkeypatch.setitem(TASKS._items, NLL_TASK, reviews_task(Path(executor.reviews_file), NLL_TASK))
    runs, _ = build_matrix([NLL_TASK], ["focal", "cross_entropy"], [0], train)
    with torch_threads(1):
        serial, failed = tuning.tune_all(runs, tmp_path / "serial", trials=2, trial_seed=0, executor=LocalExecutor())
    assert failed == []
    parallel, failed = tuning.tune_all(runs, tmp_path / "parallel", trials=2, trial_seed=0, executor=executor)
    assert failed == []
    expected = stored_trials(tuning.storage_url(tmp_path / "serial"))
    assert len(expected) == 2 and all(len(trials) == 2 for trials in expected.values())
    assert all(state == optuna.trial.TrialState.COMPLETE for trials in expected.values() for _, state, *_ in trials)
    # Each trial's last validation NLL its own, so that the comparison below would show a difference in any trial.
    # (Not the trials' values: two trials may both keep their first evaluation, taken before the learning rate
    # leaves 0 in warm-up, when the random tiny model of a test session gets worse after it.)
    last = [scores[max(scores)] for trials in expected.values() for _, _, _, _, scores, *_ in trials]
    assert len(set(last)) == len(last)
    assert stored_trials(tuning.storage_url(tmp_path / "parallel")) == expected
    assert [(plan.name, r.best_params, r.best_value) for plan, r in parallel] == [
        (plan.name, r.best_params, r.best_value) for plan, r in serial
    ]


def test_worker_processes_record_the_trials_of_a_serial_tuning(tiny_train, reviews_file, tmp_path, monkeypatch):
    executor = ReviewsTaskExecutor(ProcessExecutor(2, threads_per_worker=1), reviews_file)
    assert_parallel_tuning_is_serial(tiny_train, executor, tmp_path, monkeypatch)


def test_a_failed_study_is_reported_and_the_others_final_runs_go_on(tiny_train, tmp_path, monkeypatch, capsys):
    real = tuning.tune_study

    def tune_study(plan, *args, **kwargs):
        if plan.loss == "focal":
            raise RuntimeError("the focal study broke")
        return real(plan, *args, **kwargs)

    monkeypatch.setattr(tuning, "tune_study", tune_study)
    elsewhere = f"sqlite:///{tmp_path / 'studies.sqlite3'}"  # another storage than the folder's file
    settings = "--train-size 16 --batch-size 8 --max-length 32 --precision fp32 --seeds 0 --trials 1"
    out = tmp_path / "out"
    args = ["tune", "--model", tiny_train.model, "--tasks", TASK, "--losses", "focal,cross_entropy", *settings.split()]
    assert run_cli(*args, "--out", str(out), "--storage", elsewhere) == 1
    err = capsys.readouterr().err
    assert f"{TASK}|focal: RuntimeError: the focal study broke" in err
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs["loss_spec"]) == ["cross_entropy (tuned)"] and (runs["status"] == Status.OK).all()
    assert not (out / tuning.TUNING_DB).exists()  # the trials went to the storage given
    assert (out / tuning.STORAGE_FILE).read_text().strip() == elsewhere
    text = (out / tuning_report.TUNING_FILE).read_text()
    assert "| cross_entropy | 1 | 0 |" in text and elsewhere in text
    (out / tuning_report.TUNING_FILE).unlink()
    assert tuning_report.write_tuning_report(out).read_text() == text  # rebuilt from the recorded storage


def test_a_storage_is_written_and_shown_without_its_password(tmp_path):
    url = "postgresql+psycopg2://me:s3cret@db.example:5432/studies"
    tuning.record_storage(tmp_path, url)
    assert (tmp_path / tuning.STORAGE_FILE).read_text() == "postgresql+psycopg2://me@db.example:5432/studies\n"
    assert tuning.recorded_storage(tmp_path) == "postgresql+psycopg2://me@db.example:5432/studies"
    tuning.record_storage(tmp_path, tuning.storage_url(tmp_path))  # back to the folder's file: no note
    assert not (tmp_path / tuning.STORAGE_FILE).exists() and tuning.recorded_storage(tmp_path) is None
    assert "s3cret" not in tuning.shown_url("postgres//me:s3cret@db/x")  # not even a URL: still hidden
    assert tuning.shown_url("mysql://me@db/x?password=s3cret&charset=utf8") == "mysql://me@db/x?charset=utf8"


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("not a url", "storage not a url: Optuna cannot open it: Could not parse"),
        ("nodb://host/x", "storage nodb://host/x: Optuna cannot open it"),
        ("postgresql://me:s3cret@localhost:1/db", "storage postgresql://me@localhost:1/db: Optuna cannot open it"),
    ],
)
def test_a_bad_storage_is_refused_before_any_trial(tiny_train, tmp_path, capsys, storage, message):
    args = ["tune", "--model", tiny_train.model, "--tasks", TASK, "--losses", "focal", "--out", str(tmp_path)]
    assert run_cli(*args, "--storage", storage) == 2
    err = capsys.readouterr().err
    assert message in err and "postgresql://USER@HOST/DB" in err and "s3cret" not in err
    assert not (tmp_path / tuning.TUNING_DB).exists() and not (tmp_path / tuning.STORAGE_FILE).exists()


@pytest.mark.parametrize("address", ["flag", "environment"])
@pytest.mark.parametrize("storage", [None, "sqlite:///shared/tuning.sqlite3"])
def test_a_ray_cluster_with_a_sqlite_storage_is_refused(tiny_train, tmp_path, capsys, monkeypatch, address, storage):
    pytest.importorskip("ray")
    args = ["tune", "--model", tiny_train.model, "--tasks", TASK, "--losses", "focal", "--out", str(tmp_path)]
    args += ["--executor", "ray"] + (["--storage", storage] if storage else [])
    if address == "flag":
        args += ["--address", "10.1.2.3:6379"]
    else:
        monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert run_cli(*args) == 2
    err = capsys.readouterr().err
    assert (
        "on a cluster (10.1.2.3:6379)" in err and "nodes cannot share a file" in err and "--storage postgresql" in err
    )
    assert not (tmp_path / tuning.TUNING_DB).exists()


def test_tuning_report_pairs_tuned_and_untuned_runs_by_seed_and_compares_the_rankings():
    """Synthetic rows: tuning lifts gce by 0.10 on every seed (a clear effect), moves focal by +-0.001 (none), and
    swaps the order of gce and cross_entropy."""
    base = {"cross_entropy": 0.80, "focal": 0.79, "gce": 0.70, "dice": 0.60}
    lift = {"cross_entropy": 0.0, "focal": 0.0, "gce": 0.15, "dice": 0.0}
    rows = []
    for loss, score in base.items():
        for seed, wobble in enumerate((-0.001, 0.001, 0.0)):
            for suffix, value in (("", score + wobble), (" (tuned)", score + lift[loss] + wobble * (seed - 1))):
                rows.append({"task": TASK, "status": Status.OK, "main_metric": "accuracy", "seed": seed,
                             "loss_spec": loss + suffix, "test_accuracy": value})  # fmt: skip
    table = tuning_report.rankings(pd.DataFrame(rows), TASK, list(base), higher_is_better=True)
    assert table.loc["gce", "effect"] == pytest.approx(0.15, abs=0.002)
    assert table.loc["gce", "effect_low"] > 0 and table.loc["gce", "p_holm"] < 0.05
    assert table.loc["focal", "effect_low"] < 0 < table.loc["focal", "effect_high"]
    assert (table.loc["gce", "untuned_rank"], table.loc["gce", "tuned_rank"]) == (3, 1)
    tau, _, ranked = tuning_report.rank_agreement(table)
    assert ranked == 4 and tau == pytest.approx(1 / 3)  # 2 of the 6 pairs swapped: (4 - 2) / 6
