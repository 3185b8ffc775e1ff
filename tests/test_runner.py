"""The matrix end to end on the tiny model: rows, resume, failure isolation, report."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from bench import fit, runner, schema
from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix, expand_loss_specs
from bench.registry import TASKS
from bench.report import write_report
from bench.results import PREDICTIONS_FILE, RUNS_DIR, ResultsStore
from bench.rows import failure_row, loss_spec_label
from bench.runner import run_matrix
from bench.status import Status
from bench.taskspec import Stressor, TaskSpec


@pytest.fixture
def tiny_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(  # a full fine-tune with the last weights: what these tests were written for
        model=str(tiny_model_dir),
        train_size=24,
        batch_size=8,
        max_length=32,
        train_layers=None,
        select_checkpoint=False,
    )


def test_matrix_builds_only_compatible_pairs(tiny_train):
    runs, skipped = build_matrix(["trec", "vader_movies"], ["cross_entropy", "mse"], [0, 1], tiny_train)
    assert {(str(r.task), r.loss, r.seed) for r in runs} == {
        ("trec", "cross_entropy", 0),
        ("trec", "cross_entropy", 1),
        ("vader_movies", "mse", 0),
        ("vader_movies", "mse", 1),
    }
    assert {(row["task"], row["loss"]) for row in skipped} == {("trec", "mse"), ("vader_movies", "cross_entropy")}


def test_loss_patterns_and_parameters_expand():
    assert expand_loss_specs(["cross_*", "focal:gamma=1.0", "focal"]) == ["cross_entropy", "focal:gamma=1.0", "focal"]
    assert loss_spec_label("focal", {"gamma": 1.0}, {"gamma": 2.0}) == "focal:gamma=1.0"
    assert loss_spec_label("focal", {"gamma": 2.0}, {"gamma": 2.0}) == "focal"


def test_run_id_depends_on_everything_that_defines_the_run(tiny_train):
    runs, _ = build_matrix(["trec"], ["focal", "focal:gamma=1.0"], [0, 1], tiny_train)
    assert len({r.run_id for r in runs}) == 4
    again, _ = build_matrix(["trec"], ["focal", "focal:gamma=1.0"], [0, 1], tiny_train)
    assert [r.run_id for r in again] == [r.run_id for r in runs]


def test_run_ids_are_those_of_the_runs_already_stored():
    """The identity (and so the run_id) of a run is a stable hash: these two were computed before the task spec
    became a ``TaskSpec`` and the protocol defaults moved into ``TrainConfig``."""
    # The settings that were the defaults then, written out (the defaults have changed since; the identity has not).
    then = {"precision": "fp32", "train_size": 450}
    fine_tune = TrainConfig(**then, epochs=1.0, learning_rate=2e-4, train_layers=None, select_checkpoint=False)
    noisy = RunSpec("trec@noise=0.20", "1.1+stressors.1", "focal", 0, fine_tune, {"gamma": 2.0})
    assert noisy.run_id == "f1ab1a2828ba0ff3" and noisy.identity()["task"] == "trec@noise=0.2"


def test_the_task_spec_is_parsed_once_when_the_matrix_is_built(tiny_train, tmp_path, monkeypatch):
    runs, _ = build_matrix(["trec@noise=0.2"], ["cross_entropy"], [0], tiny_train)
    assert runs[0].task == TaskSpec("trec", (Stressor("noise", 0.2),))

    def must_not_parse(spec):
        raise AssertionError(f"{spec!r} parsed again inside a run")

    monkeypatch.setattr(TaskSpec, "parse", must_not_parse)
    row = runner.run_one_safely(runs[0], tmp_path)
    assert row["status"] == "ok" and row["task"] == "trec@noise=0.2" and row["stress_noise"] == 0.2


def test_rows_hold_every_schema_column_and_the_store_puts_the_leading_ones_first(tiny_train, tmp_path):
    runs, skipped = build_matrix(["trec"], ["cross_entropy", "mse"], [0], tiny_train)
    meta = TASKS.get("trec").metadata
    row = failure_row(runs[0], meta, RuntimeError("boom"))
    groups = (*schema.IDENTITY_COLUMNS, *schema.DESCRIPTION_COLUMNS, *schema.SETTING_COLUMNS)
    assert set(groups) | set(schema.ENVIRONMENT_COLUMNS) <= set(row) and row["status"] == Status.ERROR
    assert {"diverged_step", "error_type", "message"} <= set(row) and row["baseline_loss"] == "cross_entropy"
    assert skipped[0]["status"] == Status.SKIPPED and skipped[0]["run_id"].startswith("skip-")
    store = ResultsStore(tmp_path)
    store.put(row)
    header = (tmp_path / "runs.csv").read_text().splitlines()[0].split(",")
    assert tuple(header[: len(schema.LEADING_COLUMNS)]) == schema.LEADING_COLUMNS
    assert store.load()["status"].tolist() == ["error"]


def test_progress_bar_counts_runs_and_the_time_left():
    assert runner.progress_bar(5, 10, 60.0) == "[##########..........] 5/10 60s, ETA 1m00s"
    assert runner.progress_bar(10, 10, 61.0) == "[####################] 10/10 61s, ETA 0m00s"


def test_matrix_writes_rows_and_report_and_resumes(tiny_train, tmp_path, monkeypatch):
    runs, skipped = build_matrix(["trec", "vader_movies"], ["cross_entropy", "focal", "mse"], [0, 1], tiny_train)
    assert run_matrix(runs, skipped, tmp_path, quiet=True) == []

    frame = ResultsStore(tmp_path).load()
    ok = frame[frame["status"] == "ok"]
    assert len(ok) == 6 and (frame["status"] == "skipped").sum() == 3
    assert ok["run_id"].is_unique
    trec = ok[ok["task"] == "trec"]
    assert trec[["test_accuracy", "test_f1_macro", "test_mcc"]].notna().all().all()
    vader = ok[ok["task"] == "vader_movies"]
    assert vader[["test_pearson", "test_spearman", "test_mse", "test_mae"]].notna().all().all()
    for column in ("task_version", "loss_params", "model", "torch_version", "transformers_version", "git_commit"):
        assert ok[column].notna().all(), column
    assert (ok["train_examples"] == 24).all()
    assert json.loads(trec[trec["loss"] == "focal"]["loss_params"].iloc[0]) == {"gamma": 2.0}
    for run_id in ok["run_id"]:
        assert json.loads((tmp_path / "runs" / run_id / "log_history.json").read_text())

    report = write_report(tmp_path).read_text()
    assert "## trec" in report and "## vader_movies" in report and "f1_macro ↑" in report and "mse ↓" in report
    assert "Skipped pairs" in report

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "run_one", must_not_run)
    assert run_matrix(runs, skipped, tmp_path, quiet=True) == []
    assert len(ResultsStore(tmp_path).load()) == len(frame)


def test_a_failing_run_becomes_an_error_row_and_the_others_finish(tiny_train, tmp_path, monkeypatch):
    real_run_one = runner.run_one

    def fail_for_focal(spec, out_dir, **options):
        if spec.loss == "focal":
            raise RuntimeError("boom in focal")
        return real_run_one(spec, out_dir, **options)

    monkeypatch.setattr(runner, "run_one", fail_for_focal)
    runs, skipped = build_matrix(["trec"], ["cross_entropy", "focal"], [0], tiny_train)
    failed = run_matrix(runs, skipped, tmp_path, quiet=True)
    assert [row["loss"] for row in failed] == ["focal"]
    frame = ResultsStore(tmp_path).load().set_index("loss")
    assert frame.at["cross_entropy", "status"] == "ok"
    assert frame.at["focal", "status"] == "error"
    assert frame.at["focal", "error_type"] == "RuntimeError" and "boom" in frame.at["focal", "message"]
    assert "boom in focal" in write_report(tmp_path).read_text()

    monkeypatch.setattr(runner, "run_one", real_run_one)
    assert run_matrix(runs, skipped, tmp_path, quiet=True) == []  # error rows are kept unless retried
    assert ResultsStore(tmp_path).load().set_index("loss").at["focal", "status"] == "error"
    assert run_matrix(runs, skipped, tmp_path, retry_failed=True, quiet=True) == []
    assert (ResultsStore(tmp_path).load()["status"] == "ok").all()


def test_same_config_twice_gives_identical_metrics(tiny_train, tmp_path):
    runs, _ = build_matrix(["rt_polarity"], ["label_smoothing"], [3], tiny_train)
    first = runner.run_one(runs[0], tmp_path)
    second = runner.run_one(runs[0], tmp_path)
    for key in ("test_accuracy", "test_f1_macro", "train_loss"):
        assert first[key] == second[key]


def test_report_with_missing_metrics_renders(tmp_path):
    """A report from a CSV with only failed and skipped rows still renders."""
    rows = [
        {"run_id": "a" * 16, "status": "error", "task": "trec", "task_version": "1.1", "problem_type": "classification",
         "main_metric": "f1_macro", "loss": "focal", "loss_spec": "focal", "seed": 0, "error_type": "RuntimeError",
         "message": "boom"},
        {"run_id": "skip-" + "b" * 16, "status": "skipped", "task": "trec", "task_version": "1.1",
         "problem_type": "classification", "main_metric": "f1_macro", "loss": "mse", "loss_spec": "mse",
         "message": "mse supports regression"},
    ]  # fmt: skip
    tmp_path.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
    report = write_report(tmp_path).read_text()
    assert "No finished runs." in report and "boom" in report and "mse supports regression" in report


def _capability_cases() -> list:
    """One (task, loss) run per loss that needs more than logits and labels, chosen by its declared capabilities."""
    from bench.registry import LOSSES

    cases = []
    for name in LOSSES.names():
        loss = LOSSES.get(name)
        special = loss.needs_class_counts or loss.needs_embeddings or loss.outputs_per_label > 1 or not loss.per_example
        if special:
            task = "trec" if loss.supports("classification") else "vader_movies"
            cases.append(pytest.param(task, name, id=f"{task}-{name}"))
    return cases


@pytest.mark.parametrize(("task", "loss"), _capability_cases())
def test_losses_with_capabilities_run_in_the_matrix(task, loss, tiny_train, tmp_path):
    """Class counts, embeddings, a wider head and batch-level values all reach the loss through the real runner."""
    runs, _ = build_matrix([task], [loss], [0], tiny_train)
    row = runner.run_one(runs[0], tmp_path)
    assert row["status"] == "ok"
    assert all(math.isfinite(row[key]) for key in (f"test_{row['main_metric']}", "train_loss", "test_loss"))


def test_bf16_run_records_its_precision_and_finite_metrics(tiny_model_dir, tmp_path):
    train = TrainConfig(model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32, precision="bf16")
    runs, _ = build_matrix(["vader_movies"], ["mse"], [0], train)
    row = runner.run_one(runs[0], tmp_path)
    assert row["precision"] == "bf16"
    assert all(math.isfinite(row[f"test_{name}"]) for name in ("pearson", "mse", "mae"))


class _FirstBatchRecorder:
    """Wraps the fit step's LossTrainer to record, per loss, the initial head weights and the first training batch."""

    def __init__(self) -> None:
        self.seen: dict[str, dict] = {}

    def trainer_class(self):
        recorder = self

        class RecordingTrainer(fit.LossTrainer):
            def __init__(self, *args, loss, **kwargs):
                super().__init__(*args, loss=loss, **kwargs)
                head = {k: v.detach().clone() for k, v in self.model.classifier.state_dict().items()}
                recorder.seen[loss.name] = {"head": head}

            def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
                record = recorder.seen[self.loss.name]
                if model.training and "batch" not in record:
                    record["batch"] = {k: v.detach().clone() for k, v in inputs.items()}
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        return RecordingTrainer


def test_paired_design_same_split_order_and_head_for_every_loss(tiny_train, tmp_path, monkeypatch):
    """For one task and seed, only the loss differs: the same initial head and the same first batch."""
    recorder = _FirstBatchRecorder()
    monkeypatch.setattr(fit, "LossTrainer", recorder.trainer_class())
    losses = ["cross_entropy", "focal", "weighted_cross_entropy", "supcon_ce"]
    runs, _ = build_matrix(["trec@noise=0.2"], losses, [5], tiny_train)
    for spec in runs:
        runner.run_one(spec, tmp_path)
    reference = recorder.seen["cross_entropy"]
    for name in losses[1:]:
        for key, value in reference["head"].items():
            assert torch.equal(recorder.seen[name]["head"][key], value), f"{name}: head {key} differs"
        for key, value in reference["batch"].items():
            assert torch.equal(recorder.seen[name]["batch"][key], value), f"{name}: first batch {key} differs"


def test_run_saves_predictions_and_optional_validation_curve(tiny_train, tmp_path):
    runs, _ = build_matrix(["trec"], ["cross_entropy"], [0], tiny_train)
    row = runner.run_one(runs[0], tmp_path, eval_steps=1)
    run_dir = tmp_path / RUNS_DIR / runs[0].run_id
    saved = np.load(run_dir / PREDICTIONS_FILE)
    assert saved["logits"].shape == (row["test_examples"], 6) and saved["labels"].shape == (row["test_examples"],)
    history = json.loads((run_dir / "log_history.json").read_text())
    assert [entry["step"] for entry in history if "eval_f1_macro" in entry] == [1, 2, 3]  # 24 examples / 8
