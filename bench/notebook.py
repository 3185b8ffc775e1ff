"""The Python API, for notebooks and scripts: ``run`` a matrix, build its ``report``, ``compare`` two folders.

``run`` takes the ``lossbench run`` command's options as keyword arguments under their names in a matrix file
(``train_size=500``, ``train_layers="all"``, ``select_checkpoint=False``; ``bench.matrix_file``), checked by the
command's own parser, and runs them through the command itself (``bench.cli.run_command``): the same checks before
any training, the same runner, the same resumable results folder, and the same record in ``invocations.jsonl``.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from bench import cli
from bench.matrix_file import MatrixSettings
from bench.results import ResultsStore

SOURCE = "bench.notebook.run"  # how invocations.jsonl names a matrix given in Python


def run(
    tasks: str | Iterable[str] | None = None,
    losses: str | Iterable[str] | None = None,
    seeds: str | Iterable[int] | None = None,
    out: str | Path = "results",
    **settings: Any,
) -> pd.DataFrame:
    """Run the matrix (the runs not already finished in ``out``) and return its runs' rows of ``out/runs.csv``.

    ``tasks`` and ``losses`` are specs as on the command line (``"trec@noise=0.2"``, ``"focal:gamma=1.0"``), as one
    comma-separated string or a list; ``seeds`` a list of integers or ``"auto"``; left out (None), the command's
    defaults. ``settings`` are the command's other options by name (``train_size=500``, ``model="path/to/model"``,
    ``quiet=True``). A bad value raises ``ValueError`` (an unknown name ``UnknownNameError``, a ``ValueError`` too)
    before any training. Runs that fail are rows with status ``error`` (or ``diverged``), as on the command line.
    """
    values = {"tasks": tasks, "losses": losses, "seeds": seeds, "out": out, **settings}
    matrix = MatrixSettings(SOURCE, {key: plain(value) for key, value in values.items() if value is not None})
    args = matrix.parse(cli.run_parser(cli.build_parser()))
    args.command = "run"
    if cli.run_command(args) == 130:
        raise KeyboardInterrupt(f"Interrupted; the finished runs are saved in {args.out}/runs.csv.")
    return matrix_rows(args)


def plain(value: Any) -> Any:
    """A Python value as a matrix file would hold it: paths as strings, tuples, ranges and sets as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | range | set | frozenset):
        return [plain(item) for item in value]
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def matrix_rows(args: argparse.Namespace) -> pd.DataFrame:
    """The rows of ``args.out/runs.csv`` that belong to the matrix of ``args`` (with ``--seeds auto``, at every
    seed the folder holds)."""
    rows = ResultsStore(args.out).load()
    if args.seeds == cli.AUTO:
        seeds = pd.to_numeric(rows["seed"], errors="coerce").dropna().astype(int)
        args = argparse.Namespace(**{**vars(args), "seeds": sorted({seed for seed in seeds if seed >= 0})})
    runs, _ = cli.plan_matrix(args, cli.train_config(args))
    ids = {spec.run_id for spec in runs}
    return rows[rows["run_id"].isin(ids)].reset_index(drop=True)


def report(out: str | Path = "results") -> Path:
    """Rebuild ``out/REPORT.md``, ``out/stats.csv`` and ``out/plots/`` from ``out/runs.csv``; returns the report's
    path (``lossbench report --out OUT``)."""
    from bench.report import write_report

    return write_report(out)


def compare(a: str | Path, b: str | Path) -> pd.DataFrame:
    """Two results folders side by side, one row per (task, loss) both finished (``lossbench compare A B``,
    ``bench.compare``): each folder's mean, std and interval on the main metric, the difference B - A with its test
    (paired by seed where possible), Holm's p and the verdict."""
    from bench.compare import compare_folders

    return compare_folders(a, b).table
