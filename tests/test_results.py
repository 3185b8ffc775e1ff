"""runs.csv is checked on every read (damaged rows are never counted, their runs run again, nothing is lost) and is
written with the umask's permissions."""

from __future__ import annotations

import csv
import io
import os
import stat

import numpy as np
import pytest

from bench import cache, cli, depth
from bench.config import TrainConfig
from bench.executors import CellResult
from bench.matrix import build_matrix
from bench.plugins import get_task
from bench.report import write_report
from bench.results import RUNS_FILE, ResultsFileError, ResultsStore
from bench.rows import finished_row
from bench.runner import run_matrix


class NoTraining:
    """An executor that trains nothing: each cell's row is its base row with a made-up main metric."""

    def __init__(self) -> None:
        self.ran: list = []

    def map(self, fn, specs):
        for spec in specs:
            self.ran.append(spec)
            meta = get_task(spec.task.base).metadata
            row = finished_row(spec, meta, {f"test_{meta.main_metric}": 0.5 + spec.seed / 100})
            row["train_seconds"] = 0.0
            yield spec, CellResult(row, {"run.log": b"no training\n"})


@pytest.fixture
def matrix(tiny_model_dir):
    train = TrainConfig(model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32)
    return build_matrix(["trec"], ["cross_entropy"], [0, 1, 2], train)


@pytest.fixture
def finished(matrix, tmp_path):
    """A results folder whose 3 runs finished, and its runs.csv's lines."""
    runs, skipped = matrix
    run_matrix(runs, skipped, tmp_path, quiet=True, executor=NoTraining())
    return tmp_path, (tmp_path / RUNS_FILE).read_text().splitlines(keepends=True)


def _rewrite(out, lines) -> None:
    (out / RUNS_FILE).write_text("".join(lines))


def test_a_truncated_last_row_is_damaged_reported_and_run_again(matrix, finished, capsys):
    out, lines = finished
    last_run_id = lines[3].split(",")[0]
    _rewrite(out, [*lines[:3], lines[3][: len(lines[3]) // 2]])  # killed mid-write by something other than us

    read = ResultsStore(out).read()
    assert len(read.rows) == 2 and last_run_id not in set(read.rows["run_id"])
    (damaged,) = read.damaged
    assert (damaged.line, damaged.run_id) == (4, last_run_id) and "truncated" in damaged.reason
    report = write_report(out, plots=False).read_text()
    assert "2 ok, 0 failed" in report and "## Damaged rows" in report and "| 4 " in report

    executor = NoTraining()
    run_matrix(*matrix, out, quiet=True, executor=executor)
    assert [spec.run_id for spec in executor.ran] == [last_run_id]  # only the damaged run ran again
    warning = capsys.readouterr().err
    assert str(out / RUNS_FILE) in warning and "line 4" in warning and "truncated" in warning
    read = ResultsStore(out).read()
    assert len(read.rows) == 3 and read.damaged == [] and (read.rows["status"] == "ok").all()


def test_a_garbage_line_is_listed_never_counted_and_kept(matrix, finished):
    out, lines = finished
    _rewrite(out, [*lines[:2], "this line is not a row\n", *lines[2:]])

    read = ResultsStore(out).read()
    assert len(read.rows) == 3
    assert [(row.line, row.run_id) for row in read.damaged] == [(3, None)]
    assert read.damaged[0].reason == "1 field where the header has " + str(len(lines[0].split(",")))
    report = write_report(out, plots=False).read_text()
    assert "3 ok, 0 failed" in report and "(unreadable)" in report and "Failed runs" not in report

    runs, skipped = matrix
    executor = NoTraining()
    run_matrix(runs, skipped, out, quiet=True, executor=executor)
    assert executor.ran == []  # nothing to run again: the line has no readable run
    assert "this line is not a row\n" in (out / RUNS_FILE).read_text()  # kept for you to look at, not dropped


def test_rows_with_an_unknown_status_or_no_main_metric_are_damaged_and_run_again(matrix, finished):
    out, lines = finished
    (header,), (fields,) = csv.reader(lines[:1]), csv.reader(lines[2:3])
    fields[header.index("test_f1_macro")] = ""
    no_metric = io.StringIO()
    csv.writer(no_metric, lineterminator="\n").writerow(fields)
    _rewrite(out, [lines[0], lines[1].replace(",ok,", ",done,", 1), no_metric.getvalue(), lines[3]])

    read = ResultsStore(out).read()
    reasons = {row.line: row.reason for row in read.damaged}
    assert set(reasons) == {2, 3} and len(read.rows) == 1
    assert "status 'done'" in reasons[2] and "ok, skipped, error, diverged" in reasons[2]
    assert "test_f1_macro" in reasons[3]

    executor = NoTraining()
    run_matrix(*matrix, out, quiet=True, executor=executor)
    assert len(executor.ran) == 2
    assert len(ResultsStore(out).load()) == 3 and ResultsStore(out).read().damaged == []


@pytest.mark.parametrize(
    "content",
    [b"", b"\x1f\x8b\x08\x00\x00binary\xff\xfe", b"text,label\nhello,1\n"],
    ids=["empty", "binary", "another-csv"],
)
def test_a_file_that_is_not_a_runs_csv_stops_run_and_report_naming_it(content, tmp_path, tiny_model_dir, capsys):
    path = tmp_path / RUNS_FILE
    path.write_bytes(content)
    with pytest.raises(ResultsFileError, match="move it aside") as error:
        ResultsStore(tmp_path).load()
    assert str(path) in str(error.value)

    assert cli.main(["report", "--out", str(tmp_path)]) == 2
    command = ["run", "--out", str(tmp_path), "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0"]
    assert cli.main([*command, "--model", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count(f"Cannot read {path}") == 2
    assert path.read_bytes() == content  # left as it was: nothing trained, nothing written


@pytest.fixture
def umask():
    """Set the process umask for a test, restoring it afterwards."""
    previous = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(previous)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_results_files_get_the_umask_permissions(mask, mode, umask, tmp_path, monkeypatch):
    umask(mask)
    store = ResultsStore(tmp_path)
    store.put({"run_id": "0123456789abcdef", "status": "error", "task": "trec"})
    store.put_files("0123456789abcdef", {"run.log": b"log\n"})
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    states = depth.cache_dir() / "trec-top1.npz"
    depth.write_states(states, {"train": depth.PackedStates(np.zeros((2, 3), np.float32), np.array([0, 1, 2]))})
    for path in (store.path, store.run_dir("0123456789abcdef") / "run.log", states):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path
    assert not list(tmp_path.rglob("*.tmp"))  # no temporary file left behind
