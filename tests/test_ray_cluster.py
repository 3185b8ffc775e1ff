"""The Ray executor on a simulated multi-node cluster: Ray's own ``ray.cluster_utils.Cluster`` starts a head and two
worker nodes on this machine, each with its own raylet and object store, and the matrix reaches it by address, as
``--address`` does. A node removed in the middle of the matrix loses no run and records none twice."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import pytest

from bench import executors
from bench.config import TrainConfig
from bench.executors import RayExecutor
from bench.matrix import build_matrix
from bench.results import ResultsStore
from bench.runner import run_matrix

ray = pytest.importorskip("ray")
cluster_utils = pytest.importorskip("ray.cluster_utils")
# pytest imports this file as a top-level module that Ray's workers cannot import: send its functions by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

NODE_OBJECT_STORE_BYTES = 100 * 2**20  # per node; a run ships back less than 1 MB
HOLD_SECONDS = 300  # how long a run waits on the node to be removed before it gives up (never, when all goes well)
RAY_FOLDERS = (Path.home() / ".ray", Path(tempfile.gettempdir()) / "ray")


@contextmanager
def simulated_cluster(monkeypatch: pytest.MonkeyPatch, workers: int) -> Iterator[tuple[str, list]]:
    """A head node without CPUs (the driver's node, which runs no task) and ``workers`` nodes with 1 CPU each;
    yields the cluster's address and the worker nodes. Ray's files go to a new temporary folder (a short path: Ray's
    sockets live there), removed afterwards, and token authentication keeps its token in memory."""
    folder = tempfile.mkdtemp(prefix="lbcluster-")
    monkeypatch.setenv("RAY_TMPDIR", folder)  # where Ray writes the cluster's address file, instead of /tmp/ray
    node_args = {"object_store_memory": NODE_OBJECT_STORE_BYTES, "include_dashboard": False}
    try:
        with executors._token_in_environment():
            cluster = cluster_utils.Cluster(
                initialize_head=True, head_node_args={**node_args, "num_cpus": 0, "temp_dir": f"{folder}/ray"}
            )
            try:
                nodes = [cluster.add_node(num_cpus=1, **node_args) for _ in range(workers)]
                cluster.wait_for_nodes()
                yield cluster, nodes
            finally:
                cluster.shutdown()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _held_on(fn, spec, *, doomed_node: str, marker_dir: str):
    """``fn(spec)``, after writing which node this try runs on; on ``doomed_node`` the run waits until the test
    removes that node (which ends this process)."""
    node = ray.get_runtime_context().get_node_id()
    with (Path(marker_dir) / f"seed{spec.seed}.tries").open("a") as handle:
        handle.write(node + "\n")
    if node == doomed_node:
        deadline = time.monotonic() + HOLD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.1)
        raise RuntimeError(f"node {node} was not removed within {HOLD_SECONDS} s")
    return fn(spec)


def _tries(marker_dir: Path) -> dict[int, list[str]]:
    """Each seed's tries so far: the node of each, in order."""
    return {
        int(path.stem.removeprefix("seed")): path.read_text().split() for path in sorted(marker_dir.glob("seed*.tries"))
    }


class _RemovesANodeMidMatrix:
    """Wraps an executor: when the first result comes back, it removes ``doomed`` (a node holding a run) from the
    cluster, then passes the results on. Driven by the results stream and the runs' own markers, never by timing."""

    def __init__(self, inner, cluster, doomed, marker_dir: Path) -> None:
        self.inner, self.cluster, self.doomed, self.marker_dir = inner, cluster, doomed, marker_dir

    def map(self, fn, specs):
        held = partial(_held_on, fn, doomed_node=self.doomed.node_id, marker_dir=str(self.marker_dir))
        for index, outcome in enumerate(self.inner.map(held, specs)):
            if index == 0:
                self._wait_for_a_run_on_the_doomed_node()
                self.cluster.remove_node(self.doomed, allow_graceful=False)  # as a machine that fails
            yield outcome

    def _wait_for_a_run_on_the_doomed_node(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(self.doomed.node_id in nodes for nodes in _tries(self.marker_dir).values()):
            assert time.monotonic() < deadline, "Ray started no run on the second worker node"
            time.sleep(0.05)


def test_a_node_removed_mid_matrix_loses_no_run_and_records_none_twice(tiny_model_dir, tmp_path, monkeypatch):
    before = {folder: folder.exists() for folder in RAY_FOLDERS}
    auth = {name: os.environ.get(name) for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
    train = TrainConfig(model=str(tiny_model_dir), train_size=16, batch_size=8, max_length=32, precision="fp32")
    runs, skipped = build_matrix(["trec"], ["cross_entropy"], [0, 1, 2], train)
    markers = tmp_path / "markers"
    markers.mkdir()

    with simulated_cluster(monkeypatch, workers=2) as (cluster, (survivor, doomed)):
        executor = _RemovesANodeMidMatrix(RayExecutor(cluster.address), cluster, doomed, markers)
        failed = run_matrix(runs, skipped, tmp_path / "out", quiet=True, executor=executor)

    assert failed == []
    frame = ResultsStore(tmp_path / "out").load()
    assert sorted(frame["seed"]) == [0, 1, 2] and frame["run_id"].is_unique and (frame["status"] == "ok").all()
    tries = _tries(markers)
    assert sorted(tries) == [0, 1, 2]
    assert all(nodes[-1] == survivor.node_id for nodes in tries.values())  # every run finished on the survivor
    moved = [seed for seed, nodes in tries.items() if nodes == [doomed.node_id, survivor.node_id]]
    assert len(moved) == 1, tries  # the run held on the removed node ran again, once, elsewhere
    assert sum(len(nodes) for nodes in tries.values()) == 4  # and no other run was tried twice
    for run_id in frame["run_id"]:
        assert {"log_history.json", "run.log"} <= {path.name for path in (tmp_path / "out" / "runs" / run_id).iterdir()}
    assert not ray.is_initialized()  # the executor connected by address, and disconnected
    assert {folder: folder.exists() for folder in RAY_FOLDERS} == before  # nothing in ~/.ray or /tmp/ray
    assert {name: os.environ.get(name) for name in auth} == auth
