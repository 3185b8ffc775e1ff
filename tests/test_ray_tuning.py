"""``lossbench tune`` on Ray tasks: a private Ray instance on this machine records the trials of a serial tuning, bit
for bit (the tuning tests' helpers, in test_tuning.py). A ``test_ray_*`` file: the test suite runs these files on one
worker process (conftest.py)."""

from __future__ import annotations

import pytest

import tests.test_tuning as tuning_tests
from bench.executors import RayExecutor
from tests.test_tuning import ReviewsTaskExecutor, assert_parallel_tuning_is_serial, reviews_file, tiny_train  # noqa: F401

ray = pytest.importorskip("ray")


def test_ray_tasks_record_the_trials_of_a_serial_tuning(tiny_train, reviews_file, tmp_path, monkeypatch):  # noqa: F811
    """No address: the executor starts a private instance and the studies share the folder's SQLite file."""
    ray.cloudpickle.register_pickle_by_value(tuning_tests)  # Ray's workers cannot import the test files
    try:
        executor = ReviewsTaskExecutor(RayExecutor(num_cpus=2, cpus_per_run=1), reviews_file)
        assert_parallel_tuning_is_serial(tiny_train, executor, tmp_path, monkeypatch)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(tuning_tests)
    assert not ray.is_initialized()  # the executor stopped the instance it started
