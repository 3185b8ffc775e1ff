"""Reliability of a matrix: kill -9 loses no finished run, diverging runs are recorded as such, Ctrl-C says how to
resume, and an output folder with other settings is not silently mixed."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench import cli, runner
from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.registry import TASKS
from bench.results import ResultsStore

REPO_ROOT = Path(__file__).resolve().parent.parent
TINY_ARGS = ["--train-size", "16", "--batch-size", "8", "--max-length", "32", "--precision", "fp32", "--quiet"]


def _matrix_command(model_dir: Path, out: Path, *extra: str) -> list[str]:
    losses = "cross_entropy,focal,brier"
    return [sys.executable, "-m", "bench", "run", "--tasks", "trec", "--losses", losses, "--seeds", "0,1,2",
            "--model", str(model_dir), "--out", str(out), *TINY_ARGS, *extra]  # fmt: skip


def _finished(out: Path) -> pd.DataFrame:
    path = out / "runs.csv"
    if not path.exists():
        return pd.DataFrame(columns=["run_id", "status"])
    frame = ResultsStore(out).load()  # must always parse: writes are atomic
    assert frame["run_id"].is_unique and frame["status"].isin(["ok", "skipped"]).all()
    return frame[frame["status"] == "ok"]


@pytest.mark.parametrize("kill_points", [(1, 4)])
def test_kill_9_loses_no_finished_run_and_duplicates_none(tiny_model_dir, tmp_path, kill_points):
    out = tmp_path / "out"
    command = _matrix_command(tiny_model_dir, out)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    finished_before: set[str] = set()
    for kill_after in kill_points:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 180
        while len(_finished(out)) < kill_after and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        process.kill()  # SIGKILL: no clean-up of any kind
        process.wait()
        finished = set(_finished(out)["run_id"])
        assert finished_before <= finished, "a run finished before the kill was lost"
        assert kill_after <= len(finished) < 9, "the kill must land inside the matrix"
        finished_before = finished
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    final = _finished(out)
    assert len(final) == 9 and finished_before <= set(final["run_id"])


def test_diverging_run_is_recorded_with_its_step(tiny_model_dir, tmp_path, monkeypatch):
    from losses.mse import MseLoss

    original = MseLoss.forward
    monkeypatch.setattr(MseLoss, "forward", lambda self, logits, labels: original(self, logits, labels) * math.nan)
    train = TrainConfig(model=str(tiny_model_dir), train_size=16, batch_size=8, max_length=32)
    runs, _ = build_matrix(["vader_movies"], ["mse"], [0], train)
    row = runner.run_one_safely(runs[0], tmp_path)
    assert row["status"] == "diverged" and row["diverged_step"] == 1
    assert "nan at step 1" in row["message"]
    log = (tmp_path / "runs" / runs[0].run_id / "run.log").read_text()
    assert runs[0].run_id in log and "DivergedError" in log and "status=diverged" in log
    failed = runner.run_matrix(runs, [], tmp_path, quiet=True)
    assert [r["status"] for r in failed] == ["diverged"]
    assert runner.run_matrix(runs, [], tmp_path, quiet=True) == []  # kept, not retried, unless --retry-failed


def test_ctrl_c_says_how_to_resume(tiny_model_dir, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_matrix", interrupted)
    code = cli.main(["run", "--tasks", "trec", "--losses", "focal", "--seeds", "0", "--model", str(tiny_model_dir),
                     "--out", str(tmp_path), *TINY_ARGS])  # fmt: skip
    assert code == 130
    assert "Run the same command again to resume" in capsys.readouterr().err


def test_other_settings_in_the_output_folder_need_force(tiny_model_dir, tmp_path, capsys):
    base = ["run", "--tasks", "trec", "--losses", "focal", "--seeds", "0", "--model", str(tiny_model_dir),
            "--out", str(tmp_path), "--batch-size", "8", "--max-length", "32", "--precision", "fp32"]  # fmt: skip
    assert cli.main([*base, "--train-size", "16"]) == 0
    assert cli.main([*base, "--train-size", "24"]) == 2
    error = capsys.readouterr().err
    assert "train_size=16 there, 24 now" in error and "--force" in error
    assert cli.main([*base, "--train-size", "16"]) == 0  # the same settings resume
    assert cli.main([*base, "--train-size", "24", "--force"]) == 0
    assert sorted(ResultsStore(tmp_path).load()["train_size"].tolist()) == [16, 24]
    logs = sorted((tmp_path / "runs").glob("*/run.log"))
    assert len(logs) == 2 and all("status=ok" in log.read_text() for log in logs)


def test_a_bad_data_file_stops_the_matrix_before_any_training(tiny_model_dir, tmp_path, monkeypatch):
    from tasks.base import FileTask, TaskMetadata

    pd.DataFrame({"text": ["fine", "odd"], "label": ["pos", "neutral"]}).to_csv(tmp_path / "bad.csv", index=False)

    class BadTask(FileTask):
        name = "bad_reviews"
        path = tmp_path / "bad.csv"
        metadata = TaskMetadata(
            problem_type="classification", label_names=("neg", "pos"), main_metric="accuracy",
            higher_is_better=True, source="bad.csv", version="1.0", description="bad rows",
        )  # fmt: skip

    monkeypatch.setitem(TASKS._items, "bad_reviews", BadTask)  # a registered plug-in, as a file would be
    train = TrainConfig(model=str(tiny_model_dir), train_size=16, batch_size=8, max_length=32)
    runs, _ = build_matrix(["trec"], ["cross_entropy"], [0], train)
    bad = RunSpec("bad_reviews", "1.0", "cross_entropy", 0, train)
    with pytest.raises(ValueError, match=r"Task 'bad_reviews': .*bad.csv line 3: label 'neutral' is not one of"):
        runner.run_matrix([*runs, bad], [], tmp_path / "out", quiet=True)
    assert not (tmp_path / "out" / "runs.csv").exists()  # nothing trained, nothing written
