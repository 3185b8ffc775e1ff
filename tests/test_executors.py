"""Executors: worker processes give the local executor's results, and a dead worker costs one error row, no run."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from bench.config import RunSpec, TrainConfig
from bench.executors import CellResult, LocalExecutor, ProcessExecutor
from bench.matrix import build_matrix
from bench.results import PREDICTIONS_FILE, ResultsStore
from bench.runner import run_matrix
from tests.helpers import torch_threads


@pytest.fixture
def tiny_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32)


def dies_on_seed_1(spec: RunSpec) -> CellResult:
    """A cell function whose worker process is killed (no exception, no row) for seed 1."""
    if spec.seed == 1:
        os._exit(1)
    return CellResult({"run_id": spec.run_id, "status": "ok", "pid": os.getpid()})


def test_worker_processes_give_the_same_metrics_as_this_process(tiny_train, tmp_path, capfd):
    """Bit for bit at the same thread count: each worker has 1 torch thread, and so does this process here, whatever
    this machine's default (see ``torch_threads``). The workers print no library reports or progress bars."""
    runs, skipped = build_matrix(["trec", "vader_movies"], ["cross_entropy", "mse"], [0], tiny_train)
    with torch_threads(1):
        assert run_matrix(runs, skipped, tmp_path / "local", quiet=True, executor=LocalExecutor()) == []
    capfd.readouterr()
    assert run_matrix(runs, skipped, tmp_path / "workers", quiet=True, executor=ProcessExecutor(2, 1)) == []
    printed = capfd.readouterr()
    assert "LOAD REPORT" not in printed.err + printed.out and "it/s]" not in printed.err + printed.out

    local, workers = (
        ResultsStore(tmp_path / name).load().set_index("run_id").sort_index() for name in ("local", "workers")
    )
    assert list(local.index) == list(workers.index)
    metrics = [c for c in local.columns if c.startswith("test_") or c in ("train_loss", "train_examples", "status")]
    assert len(metrics) > 10
    pd.testing.assert_frame_equal(local[metrics], workers[metrics], check_exact=True)
    assert set(local.loc[local["status"] == "ok", "torch_threads"]) == {1}
    assert set(workers.loc[workers["status"] == "ok", "torch_threads"]) == {1}
    for run_id in local[local["status"] == "ok"].index:  # the driver wrote each run's files from the workers' bytes
        names = {path.name for path in (tmp_path / "workers" / "runs" / run_id).iterdir()}
        assert {"log_history.json", "test_predictions.npz", "run.log"} <= names
        with np.load(tmp_path / "local" / "runs" / run_id / PREDICTIONS_FILE) as a:
            with np.load(tmp_path / "workers" / "runs" / run_id / PREDICTIONS_FILE) as b:
                assert np.array_equal(a["logits"], b["logits"]) and np.array_equal(a["labels"], b["labels"])


def test_a_dead_worker_fails_only_its_own_run(tiny_train):
    runs, _ = build_matrix(["trec"], ["cross_entropy"], [0, 1, 2, 3], tiny_train)
    outcomes = list(ProcessExecutor(2, 1).map(dies_on_seed_1, runs))

    assert sorted(spec.seed for spec, _ in outcomes) == [0, 1, 2, 3]  # each cell exactly once
    for spec, outcome in outcomes:
        if spec.seed == 1:
            assert isinstance(outcome, BrokenProcessPool)
        else:  # including the cell that was running beside it when its worker died
            assert outcome.row == {"run_id": spec.run_id, "status": "ok", "pid": outcome.row["pid"]}


def test_the_driver_records_a_dead_worker_as_an_error_row_and_goes_on(tiny_train, tmp_path):
    runs, _ = build_matrix(["trec"], ["cross_entropy"], [0, 1], tiny_train)

    class DiesOnSeed1:
        def map(self, fn, specs):
            for spec in specs:
                yield spec, (RuntimeError("worker process died") if spec.seed == 1 else fn(spec))

    failed = run_matrix(runs, [], tmp_path, quiet=True, executor=DiesOnSeed1())
    frame = ResultsStore(tmp_path).load().set_index("seed")
    assert [row["seed"] for row in failed] == [1]
    assert frame.loc[1, "status"] == "error" and "worker process died" in frame.loc[1, "message"]
    assert frame.loc[0, "status"] == "ok" and frame.index.is_unique
    invocation = ResultsStore(tmp_path).invocations()[-1]
    assert (invocation["runs"], invocation["to_run"], invocation["finished"], invocation["failed"]) == (2, 2, 2, 1)


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_workers_exit_when_the_driver_is_killed(tmp_path):
    """``kill`` reaches the driver only: its worker must not go on training a run nobody will collect."""
    (tmp_path / "slow_cell.py").write_text(
        textwrap.dedent(
            """
            import os, time

            def cell(spec):
                with open(os.environ["WORKER_PID_FILE"], "w") as handle:
                    handle.write(str(os.getpid()))
                time.sleep(300)
            """
        )
    )
    driver = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from bench.executors import ProcessExecutor
        from slow_cell import cell
        list(ProcessExecutor(1, 1).map(cell, [None]))
        """
    )
    pid_file = tmp_path / "worker.pid"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "WORKER_PID_FILE": str(pid_file)}
    process = subprocess.Popen([sys.executable, "-c", driver], cwd=root, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
            assert process.poll() is None, "the driver ended before its worker started"
            time.sleep(0.2)
        worker = int(pid_file.read_text())
        assert _running(worker)
    finally:
        process.kill()
        process.wait()
    deadline = time.monotonic() + 30
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running(worker), "the worker outlived its killed driver"


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers=0"):
        ProcessExecutor(0)
