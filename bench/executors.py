"""Executors run the matrix's cells; the driver stays the single writer of the results store."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.config import RunSpec

RunFunction = Callable[[RunSpec, Path], dict[str, Any]]


class LocalExecutor:
    """Runs one cell after another in this process, yielding each result as soon as it is ready."""

    def map(self, fn: RunFunction, specs: Sequence[RunSpec], out_dir: Path) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
        for spec in specs:
            yield spec, fn(spec, out_dir)
