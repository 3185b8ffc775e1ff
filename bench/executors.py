"""Executors run the matrix's cells and hand each result back to the driver, the single writer of the results store.

An executor's ``map(fn, specs)`` yields ``(spec, outcome)`` as cells finish, in any order: ``outcome`` is the
``CellResult`` that ``fn(spec)`` returned, or the exception that stopped the worker itself (a killed process),
which the driver records as an error row. Errors inside a run are already rows (``runner.run_one_safely``).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import importlib
import logging
import multiprocessing
import os
import platform
import secrets
import shutil
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from bench.config import RunSpec


@dataclass(frozen=True)
class CellResult:
    """One finished run: its result row and the files of its run folder (name -> bytes), written by the driver."""

    row: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


CellFunction = Callable[[RunSpec], CellResult]
Outcome = CellResult | BaseException


class Executor(Protocol):
    def map(self, fn: CellFunction, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, Outcome]]: ...


class LocalExecutor:
    """Runs one cell after another in this process, with all of torch's threads."""

    def map(self, fn: CellFunction, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, Outcome]]:
        for spec in specs:
            yield spec, fn(spec)


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _exit_with_parent() -> None:
    """Make this worker process exit when the process that started it ends, however it ends (``kill``, a crash).

    A pool's workers outlive a driver that was killed rather than interrupted (Ctrl-C reaches every process of the
    group; ``kill PID`` only the driver): they would go on training runs whose results nobody collects, on the CPUs
    the next command needs. A daemon thread waits on the parent's sentinel (``multiprocessing.parent_process``).
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _start_worker(threads: int) -> None:
    """A pool worker's initializer: its torch threads, and an exit when the driver ends."""
    _exit_with_parent()
    _limit_threads(threads)


class ProcessExecutor:
    """Runs cells in ``workers`` spawned processes on this machine, each with ``cores // workers`` torch threads.

    Small models use several threads poorly, so two single-thread workers finish more runs per minute on two cores
    than one process with two threads (measured in PERF.md). At most ``workers`` cells are in flight. A worker that
    dies breaks the whole pool: the cells in flight then run again one at a time in a new pool, so only the cell that
    kills its worker becomes an error (outcome ``BrokenProcessPool``) and no run is lost or run twice to completion.
    Workers exit when the driver ends, even when it is killed (``_exit_with_parent``).
    """

    def __init__(self, workers: int, threads_per_worker: int | None = None) -> None:
        if workers < 1:
            raise ValueError(f"Invalid workers={workers!r}: must be a positive integer")
        self.workers = workers
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),  # no forked copies of torch's thread pools
            initializer=_start_worker,
            initargs=(self.threads,),
        )

    def map(self, fn: CellFunction, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, Outcome]]:
        queue, suspects = deque(specs), deque()
        pool = self._pool()
        try:
            while queue or suspects:
                # Cells that were running when a worker died run again one at a time: the one that dies alone
                # is the culprit and becomes an error; the others finish normally.
                alone = bool(suspects)
                batch = (
                    [suspects.popleft()] if alone else [queue.popleft() for _ in range(min(self.workers, len(queue)))]
                )
                in_flight = {pool.submit(fn, spec): spec for spec in batch}
                broken = False
                while in_flight:
                    done, _ = concurrent.futures.wait(in_flight, return_when=concurrent.futures.FIRST_COMPLETED)
                    for future in done:
                        spec = in_flight.pop(future)
                        error = future.exception()
                        broken |= isinstance(error, BrokenProcessPool)
                        if isinstance(error, BrokenProcessPool) and not alone:
                            suspects.append(spec)
                        else:
                            yield spec, error if error is not None else future.result()
                        if queue and not alone and not broken:
                            next_spec = queue.popleft()
                            in_flight[pool.submit(fn, next_spec)] = next_spec
                if broken:
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = self._pool()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


# A private Ray instance's object store. Ray's default is 30% of RAM (about 7.5 GB here), memory the training runs
# could not use; a run ships back less than 1 MB (its row, log history and test predictions) and the driver fetches
# each result as soon as it finishes, so a few hundred MB leave ample room.
RAY_OBJECT_STORE_BYTES = 256 * 2**20
RAY_MAX_RETRIES = 2  # tries again after the run's worker process or node died; a run is deterministic
RAY_INSTALL_HINT = "pip install -e '.[ray]'"
# The driver's settings that change what a run does: on a cluster a worker's environment is its node's, not the
# driver's, so they travel with each task.
FORWARDED_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
_RAY_AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def import_ray():
    """The ``ray`` module, an optional dependency: an ImportError that says how to install it when it is missing."""
    try:
        import ray
    except ImportError as error:
        raise ImportError(f"the Ray executor needs Ray, an optional extra: {RAY_INSTALL_HINT}") from error
    return ray


@dataclass
class RaySession:
    """What ``ray_session`` started: the private instance's temporary folder (None when Ray was connected to a
    cluster or already running); ``keep_logs`` keeps that folder, with Ray's logs, after a worker died."""

    temp_dir: str | None = None
    keep_logs: bool = False


@cache
def _private_ray_token() -> str:
    return secrets.token_hex(32)  # one per driver process: Ray caches the token it read first


@contextmanager
def _token_in_environment() -> Iterator[None]:
    """Token authentication for a private Ray instance, with the token in memory only.

    Ray 2.60 turns token authentication on for every new local instance and, when no token is given, writes one to
    ``~/.ray/auth_token``. A token in the driver's environment (inherited by the instance's processes) keeps
    authentication on and writes nothing. A user's own ``RAY_AUTH_*`` settings are left as they are.
    """
    if any(name in os.environ for name in _RAY_AUTH_ENV):
        yield
        return
    os.environ["RAY_AUTH_TOKEN"] = _private_ray_token()
    notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
    level = notice.level
    notice.setLevel(logging.ERROR)  # "Token authentication is enabled for this Ray cluster": it is, as intended
    try:
        yield
    finally:
        notice.setLevel(level)
        for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE"):  # Ray sets RAY_AUTH_MODE=token when it starts an instance
            os.environ.pop(name, None)


def code_folders() -> list[str]:
    """The folders of lossbench's packages on the driver: ``bench`` and the plug-in packages."""
    from bench.registry import LOSSES, TASKS

    packages = ("bench", LOSSES.package, TASKS.package)
    return [os.path.dirname(importlib.import_module(name).__file__) for name in packages]


@contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[RaySession]:
    """Ray for the duration of a ``with`` block; what it started is shut down afterwards.

    Ray already initialised (by a test, a notebook) is used as it is. Otherwise this connects to ``address``
    (``auto``: the cluster started with ``ray start`` on this machine; ``HOST:PORT``; ``ray://HOST:10001``: Ray
    Client) or, without one, to ``RAY_ADDRESS``. With neither it starts a private Ray instance on this machine:
    ``num_cpus`` CPUs (default: all Ray detects), a bounded object store, no dashboard, Ray's files in a new
    temporary folder that is removed afterwards (unless a worker died: its logs are then kept and named on stderr),
    and no token file in the home folder. Either way the driver's ``bench``, ``losses`` and ``tasks`` packages
    travel to every worker (Ray's ``py_modules``, which Ray takes from local folders only here, for the whole job),
    so that every node runs the driver's code, plug-ins included. Ray's log lines stay in its log files.
    """
    ray = import_ray()
    session = RaySession()
    if ray.is_initialized():
        yield session
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    options = {"logging_level": logging.WARNING, "log_to_driver": False, "runtime_env": {"py_modules": code_folders()}}
    if address:
        ray.init(address=address, **options)
        try:
            yield session
        finally:
            ray.shutdown()
        return
    session.temp_dir = tempfile.mkdtemp(prefix="lossbench-ray-")
    try:
        with _token_in_environment():
            ray.init(
                num_cpus=num_cpus,
                object_store_memory=RAY_OBJECT_STORE_BYTES,
                include_dashboard=False,
                _temp_dir=session.temp_dir,
                **options,
            )
            try:
                yield session
            finally:
                ray.shutdown()
    finally:
        if session.keep_logs:
            print(f"Ray's logs, with those of the worker(s) that died: {session.temp_dir}", file=sys.stderr)
        else:
            shutil.rmtree(session.temp_dir, ignore_errors=True)


@cache
def code_fingerprint() -> str:
    """A hash of the source files of lossbench's packages, as this process finds them."""
    digest = hashlib.sha256()
    for folder in map(Path, code_folders()):
        for path in sorted(folder.rglob("*.py")):
            digest.update(path.relative_to(folder.parent).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _ray_cell(fn: CellFunction, spec: RunSpec, threads: int, fingerprint: str) -> CellResult:
    """One cell inside a Ray task, with one torch thread per CPU the task reserved (set here rather than left to
    the OMP_NUM_THREADS that Ray sets when it starts the worker process).

    Refuses to run code other than the driver's: Ray puts the driver's working directory (and script's) ahead of the
    shipped packages on every worker's path, so a lossbench checkout at that same path on a node would win.
    """
    if code_fingerprint() != fingerprint:
        folder = os.path.dirname(importlib.import_module("bench").__file__)
        raise RuntimeError(
            f"the lossbench code on node {platform.node()} ({folder}) differs from the driver's. Ray puts the "
            "driver's working directory first on every worker's path: run lossbench from a folder that holds no "
            "other lossbench checkout on the nodes, or give every node the driver's code."
        )
    _limit_threads(threads)
    return fn(spec)


class RayExecutor:
    """Runs each cell as a Ray task that reserves ``cpus_per_run`` CPUs (its torch threads) and ``gpus_per_run``
    GPUs (a fraction below 1 shares a GPU between runs; 0 hides the GPUs from the run), on a Ray cluster or on a
    private Ray instance on this machine (``ray_session``, which also ships the driver's code to the workers).

    Every cell is submitted at once; Ray starts each where its resources are free, and each result comes back to the
    driver as a return value as soon as it finishes: workers never touch the results folder, which their node may
    not even have.
    A task whose worker process or node dies is run again from scratch, up to ``max_retries`` times; only its final
    outcome comes back, so a run is never lost or recorded twice. After the last try that outcome is Ray's error
    (``WorkerCrashedError``, ...), which the driver records as an error row. An exception inside a run is a row
    already and is not retried.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        cpus_per_run: int = 1,
        gpus_per_run: float = 0,
        max_retries: int = RAY_MAX_RETRIES,
        num_cpus: int | None = None,
    ) -> None:
        if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) or cpus_per_run < 1:
            raise ValueError(f"Invalid cpus_per_run={cpus_per_run!r}: must be a positive integer")
        if not gpus_per_run >= 0 or (gpus_per_run > 1 and gpus_per_run != int(gpus_per_run)):
            raise ValueError(
                f"Invalid gpus_per_run={gpus_per_run!r}: must be 0, a fraction of one GPU (e.g. 0.5), or a whole number"
            )
        if max_retries < 0:
            raise ValueError(f"Invalid max_retries={max_retries!r}: must be 0 or more")
        self.address = address
        self.cpus_per_run = cpus_per_run
        self.gpus_per_run = gpus_per_run
        self.max_retries = max_retries
        self.num_cpus = num_cpus

    def env_vars(self) -> dict[str, str]:
        """The driver's settings that each task's worker process gets."""
        from bench.environment import GIT_COMMIT_ENV, git_commit

        env_vars = {name: os.environ[name] for name in FORWARDED_ENV if name in os.environ}
        env_vars[GIT_COMMIT_ENV] = git_commit()
        if not self.gpus_per_run:
            env_vars["CUDA_VISIBLE_DEVICES"] = ""  # Ray 2.60 leaves every GPU visible to a task that reserved none
        return env_vars

    def map(self, fn: CellFunction, specs: Sequence[RunSpec]) -> Iterator[tuple[RunSpec, Outcome]]:
        if not specs:
            return  # nothing to run: no Ray to start
        with ray_session(self.address, num_cpus=self.num_cpus) as session:
            ray = import_ray()
            task = ray.remote(
                num_cpus=self.cpus_per_run,
                num_gpus=self.gpus_per_run,
                max_retries=self.max_retries,
                retry_exceptions=False,
                runtime_env={"env_vars": self.env_vars()},  # added to the job's (the shipped code)
            )(_ray_cell)
            fingerprint = code_fingerprint()
            pending = {task.remote(fn, spec, self.cpus_per_run, fingerprint): spec for spec in specs}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        spec = pending.pop(ref)
                        try:
                            outcome = ray.get(ref)
                        except ray.exceptions.RayTaskError as error:  # raised in the task outside the run itself
                            outcome = error.cause if isinstance(error.cause, Exception) else error
                            session.keep_logs = True
                        except ray.exceptions.RayError as error:  # the worker or its node died, past every retry
                            outcome = error
                            session.keep_logs = True
                        yield spec, outcome
            finally:
                for ref in pending:  # interrupted: stop the runs whose results nobody will collect
                    ray.cancel(ref, force=True)
