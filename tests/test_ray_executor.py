"""The Ray executor on the tiny model, on a private Ray instance on this machine: the same metrics as the local
executor, a dead worker retried and then an error row with nothing lost or doubled, resume, the command line end to
end, and no Ray files left in the home folder or the system temp folder."""

from __future__ import annotations

import os
import sys
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import executors
from bench.cli import main
from bench.config import TrainConfig
from bench.environment import git_commit
from bench.executors import LocalExecutor, RayExecutor, ray_session
from bench.matrix import build_matrix
from bench.results import PREDICTIONS_FILE, ResultsStore
from bench.runner import run_matrix
from tests.helpers import torch_threads

ray = pytest.importorskip("ray")
# pytest imports this file as a top-level module that Ray's workers cannot import: send its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

RAY_FOLDERS = (Path.home() / ".ray", Path(tempfile.gettempdir()) / "ray")


def _listing(folder: Path) -> list[str] | None:
    return sorted(str(path) for path in folder.rglob("*")) if folder.exists() else None


BEFORE = {folder: _listing(folder) for folder in RAY_FOLDERS}


def _private_ray_folders() -> set[str]:
    return {path.name for path in Path(tempfile.gettempdir()).glob("lossbench-ray-*")}


@pytest.fixture
def tiny_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32)


def test_a_private_instance_is_stopped_and_its_files_removed():
    """Runs first, before the module's shared instance: its own private instance, gone afterwards."""
    folders = _private_ray_folders()
    with ray_session(num_cpus=1) as session:
        assert ray.available_resources()["CPU"] == 1
        assert Path(session.temp_dir).is_dir() and "RAY_AUTH_TOKEN" in os.environ
        assert ray.get(ray.remote(lambda: 1 + 1).remote()) == 2
    assert not ray.is_initialized() and "RAY_AUTH_TOKEN" not in os.environ and _private_ray_folders() == folders


@pytest.fixture(scope="module")
def ray_instance():
    """One private Ray instance with 2 CPUs for the tests below (the executors use it instead of starting one)."""
    with ray_session(num_cpus=2):
        yield


def test_same_config_gives_the_same_metrics_as_the_local_executor(ray_instance, tiny_train, tmp_path):
    """Identical when the thread counts match: each Ray task has one torch thread per reserved CPU (1 here), so the
    local executor runs with 1 thread too (see ``torch_threads``)."""
    runs, skipped = build_matrix(["trec", "vader_movies"], ["cross_entropy", "mse"], [0], tiny_train)
    with torch_threads(1):
        assert run_matrix(runs, skipped, tmp_path / "local", quiet=True, executor=LocalExecutor()) == []
    executor = RayExecutor(cpus_per_run=1)
    assert run_matrix(runs, skipped, tmp_path / "ray", quiet=True, executor=executor) == []

    local, remote = (ResultsStore(tmp_path / name).load().set_index("run_id").sort_index() for name in ("local", "ray"))
    assert list(remote.index) == list(local.index) and len(local) == 4  # 2 runs, 2 skipped pairs
    metrics = [c for c in local.columns if c.startswith("test_") or c in ("train_loss", "train_examples", "status")]
    assert len(metrics) > 10
    pd.testing.assert_frame_equal(remote[metrics], local[metrics])
    assert (remote.loc[remote["status"] == "ok", "torch_threads"] == 1).all()
    for spec in runs:
        with np.load(tmp_path / "local" / "runs" / spec.run_id / PREDICTIONS_FILE) as a:
            with np.load(tmp_path / "ray" / "runs" / spec.run_id / PREDICTIONS_FILE) as b:
                assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["labels"], b["labels"])


def _crashing_cell(fn, spec, *, marker_dir: str, deaths: dict[int, int]):
    """``fn(spec)``, but the process dies (as on a segfault or the OOM killer) on the first ``deaths[seed]`` tries."""
    attempts = Path(marker_dir) / f"seed{spec.seed}.attempts"
    with attempts.open("a") as handle:
        handle.write("x")
    if len(attempts.read_text()) <= deaths.get(spec.seed, 0):
        os._exit(1)
    return fn(spec)


class _CrashingExecutor:
    """Wraps an executor so that its cells die as ``_crashing_cell`` says."""

    def __init__(self, inner, marker_dir: Path, deaths: dict[int, int]) -> None:
        self.inner, self.marker_dir, self.deaths = inner, str(marker_dir), deaths

    def map(self, fn, specs):
        return self.inner.map(partial(_crashing_cell, fn, marker_dir=self.marker_dir, deaths=self.deaths), specs)


class _RecordingExecutor:
    """Wraps an executor and records the specs it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.given = inner, []

    def map(self, fn, specs):
        self.given.append(sorted(spec.seed for spec in specs))
        return self.inner.map(fn, specs)


def test_a_dead_worker_is_retried_then_an_error_row_and_nothing_is_lost_or_doubled(ray_instance, tiny_train, tmp_path):
    runs, skipped = build_matrix(["trec"], ["cross_entropy"], [0, 1], tiny_train)
    markers = tmp_path / "markers"
    markers.mkdir()
    # seed 0's worker dies once (the retry finishes), seed 1's dies on every try
    crashing = _CrashingExecutor(RayExecutor(max_retries=1), markers, deaths={0: 1, 1: 99})
    failed = run_matrix(runs, skipped, tmp_path, quiet=True, executor=crashing)

    assert [(row["seed"], row["status"], row["error_type"]) for row in failed] == [(1, "error", "WorkerCrashedError")]
    attempts = {path.name: len(path.read_text()) for path in markers.iterdir()}
    assert attempts == {"seed0.attempts": 2, "seed1.attempts": 2}  # the first try and max_retries=1 more
    frame = ResultsStore(tmp_path).load().set_index("seed")
    assert len(frame) == 2 and frame["run_id"].is_unique
    assert frame.at[0, "status"] == "ok" and frame.at[1, "status"] == "error" and "died" in frame.at[1, "message"]

    recording = _RecordingExecutor(RayExecutor())
    assert run_matrix(runs, skipped, tmp_path, quiet=True, executor=recording) == []  # error rows are kept
    assert run_matrix(runs, skipped, tmp_path, retry_failed=True, quiet=True, executor=recording) == []
    assert recording.given == [[], [1]]  # finished runs are skipped; --retry-failed runs the error row again
    frame = ResultsStore(tmp_path).load()
    assert len(frame) == 2 and frame["run_id"].is_unique and (frame["status"] == "ok").all()


def test_a_worker_with_other_code_than_the_driver_refuses_to_run(ray_instance, tiny_train, tmp_path, monkeypatch):
    monkeypatch.setattr(executors, "code_fingerprint", lambda: "the driver's code, edited")
    runs, skipped = build_matrix(["trec"], ["cross_entropy"], [0], tiny_train)
    [row] = run_matrix(runs, skipped, tmp_path, quiet=True, executor=RayExecutor())
    assert row["status"] == "error" and row["error_type"] == "RuntimeError"
    assert "differs from the driver's" in row["message"]


def test_cli_runs_the_matrix_as_ray_tasks(ray_instance, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0,1", "--model", str(tiny_model_dir)]
    args += ["--train-size", "24", "--batch-size", "8", "--max-length", "32", "--out", str(out), "--quiet"]
    assert main([*args, "--executor", "ray", "--cpus-per-run", "1"]) == 0, capsys.readouterr().err
    frame = ResultsStore(out).load()
    assert sorted(frame["seed"]) == [0, 1] and (frame["status"] == "ok").all() and frame["run_id"].is_unique
    assert (frame["torch_threads"] == 1).all()
    assert (frame["git_commit"] == git_commit()).all()  # the driver's commit, though the code ran from a shipped copy
    for run_id in frame["run_id"]:
        assert {"log_history.json", "run.log", PREDICTIONS_FILE} <= {p.name for p in (out / "runs" / run_id).iterdir()}
    assert (out / "REPORT.md").exists()
    assert ray.is_initialized()  # the command used Ray as it found it, and left it running


def test_no_ray_files_in_the_home_folder_or_the_system_temp_folder():
    """Ray 2.60 would write ~/.ray/auth_token and /tmp/ray by default (runs last in this module)."""
    assert {folder: _listing(folder) for folder in RAY_FOLDERS} == BEFORE
