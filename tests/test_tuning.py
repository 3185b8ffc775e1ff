"""``lossbench tune``: trials score the validation split and never read the test split, a killed study resumes with
the trials an uninterrupted one runs, the same seeds give the same trials, and the final runs are tuned rows that the
report keeps apart from untuned ones."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch

from bench import cache, cli, depth, finetune, tuning
from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.registry import TASKS
from bench.status import Status

TASK = "tuning_reviews"  # 80 short reviews: a validation split of 12, so that trials take a second or two


@pytest.fixture(scope="module")
def reviews_file(tmp_path_factory) -> Path:
    words = ["good", "fine", "great", "nice", "bad", "dull", "awful", "poor"]
    texts = [f"a {words[i % 8]} film number {i}" for i in range(80)]
    path = tmp_path_factory.mktemp("tuning-task") / "reviews.csv"
    pd.DataFrame({"text": texts, "label": ["pos" if i % 8 < 4 else "neg" for i in range(80)]}).to_csv(path, index=False)
    return path


@pytest.fixture
def tiny_train(tiny_model_dir, reviews_file, tmp_path, monkeypatch) -> TrainConfig:
    from tasks.base import FileTask, TaskMetadata

    class ReviewsTask(FileTask):
        name = TASK
        path = reviews_file
        metadata = TaskMetadata(
            problem_type="classification", label_names=("neg", "pos"), main_metric="accuracy",
            higher_is_better=True, source="reviews.csv", version="1.0", description="tiny reviews",
        )  # fmt: skip

    monkeypatch.setitem(TASKS._items, TASK, ReviewsTask)  # a registered plug-in, as a file would be
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
    assert "| focal | 2 | 0 |" in text and "rank change" in text
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
