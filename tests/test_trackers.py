"""--report-to: the Trainer's own TensorBoard and MLflow integrations, for real on the tiny model: event files in
the run's folder that TensorBoard reads back, an MLflow run found by loss and task; and the refusals."""

from __future__ import annotations

from dataclasses import replace

import pytest
import transformers.integrations

from bench import cache, cli, depth
from bench.config import RunSpec, TrainConfig
from bench.trackers import check_report_to, run_name


def test_a_run_reports_to_tensorboard_and_mlflow(tiny_model_dir, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(depth, "_STATES", {})
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lossbench-test")
    out = tmp_path / "out"
    command = ["run", "--tasks", "trec", "--losses", "focal", "--seeds", "0", "--train-size", "16", "--batch-size"]
    command += ["8", "--max-length", "32", "--precision", "fp32", "--model", str(tiny_model_dir), "--out", str(out)]
    assert cli.main([*command, "--report-to", "tensorboard,mlflow", "--quiet"]) == 0

    (run_dir,) = (out / "runs").iterdir()
    assert list(run_dir.glob("events.out.tfevents.*"))
    events = event_accumulator.EventAccumulator(str(run_dir))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert losses and all(event.value > 0 for event in losses)
    assert "test/f1_macro" in events.Tags()["scalars"]
    assert "lossbench/text_summary" in events.Tags()["tensors"]

    runs = mlflow.search_runs(
        experiment_names=["lossbench-test"], filter_string="tags.loss = 'focal' and params.task = 'trec'"
    )
    assert len(runs) == 1
    found = runs.iloc[0]
    assert found["tags.mlflow.runName"] == f"{run_dir.name} trec focal seed=0"
    assert found["params.loss_params"] == '{"gamma": 2.0}' and found["tags.seed"] == "0"
    assert found["metrics.train_loss"] > 0 and 0 <= found["metrics.test_f1_macro"] <= 1
    assert found["status"] == "FINISHED"
    assert mlflow.search_runs(experiment_names=["lossbench-test"], filter_string="tags.loss = 'mse'").empty


def test_trackers_are_not_part_of_a_runs_identity():
    spec = RunSpec("trec", "1.1", "cross_entropy", 0, TrainConfig(precision="fp32"))
    tracked = replace(spec, report_to=("tensorboard",))
    assert tracked.run_id == spec.run_id and tracked == spec
    assert run_name(spec) == f"{spec.run_id} trec cross_entropy seed=0"


def test_unknown_or_missing_trackers_are_refused_with_the_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="tensorbord: transformers has no such integration. Did you mean tensorboard"):
        check_report_to(["tensorbord"])
    monkeypatch.setattr(transformers.integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(ValueError, match=r"mlflow: its package is not installed \(installed here: tensorboard\)"):
        check_report_to(["tensorboard", "mlflow"])
    assert check_report_to(["none"]) == () and check_report_to(["tensorboard"]) == ("tensorboard",)
    with pytest.raises(ValueError, match="named twice"):
        check_report_to(["tensorboard", "tensorboard"])


def test_the_command_refuses_a_bad_tracker_before_any_training(tiny_model_dir, tmp_path, capsys):
    command = ["run", "--tasks", "trec", "--losses", "focal", "--model", str(tiny_model_dir), "--out", str(tmp_path)]
    assert cli.main([*command, "--report-to", "tensorbord"]) == 2
    assert "Did you mean tensorboard?" in capsys.readouterr().err
    assert not (tmp_path / "runs.csv").exists()
