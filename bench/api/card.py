"""The ``Card`` base class of a finding: a claim from the literature, the matrix that tests it, and its verdicts.

A card module in ``findings/`` registers one subclass with ``CARDS.register(name)``; ``python -m bench.findings``
runs its matrix through the normal runner and ``verdicts`` turns the rows into verdicts (``bench.verdict``). A card
names tasks (with stressors) and losses as the command line does, and row columns (``test_<metric>``,
``test_last_<metric>`` for the last checkpoint's score) for its statistics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from bench.verdict import HIGHER, LOWER, Verdict, paired_verdict, range_verdict

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["HIGHER", "LOWER", "Card", "Comparison", "Spread"]

SECONDS_PER_RUN = 18.0  # a default run in fp32 on the project's 2-core machine: 12-24 s (docs/performance.md)
SECONDS_PER_TASK = 40.0  # encoding a task's frozen lower layers once (17-62 s there); 0 once cached


@dataclass(frozen=True)
class Comparison:
    """A paired statistic: ``column`` of ``loss`` minus ``baseline_column`` (default: the same column) of
    ``baseline``, per seed, on ``task``; the literature expects the difference's sign ``expected`` (``HIGHER`` or
    ``LOWER``) and an effect of at least ``min_effect`` (in the column's units) is of interest."""

    task: str
    loss: str
    baseline: str
    column: str
    expected: int
    min_effect: float
    baseline_column: str = ""
    regime: str = ""  # a short note shown with the statistic, e.g. "last checkpoint"

    @property
    def label(self) -> str:
        against = self.baseline_column or self.column
        what = f"{self.loss} {self.column}" + (f" vs {self.baseline} {against}")
        return f"{self.task}: {what}" + (f" ({self.regime})" if self.regime else "")

    def differences(self, rows: pd.DataFrame) -> list[float]:
        """The per-seed differences over the seeds both runs finished."""
        loss = _by_seed(rows, self.task, self.loss, self.column)
        base = _by_seed(rows, self.task, self.baseline, self.baseline_column or self.column)
        seeds = sorted(set(loss.index) & set(base.index))
        return [float(loss[seed] - base[seed]) for seed in seeds]


@dataclass(frozen=True)
class Spread:
    """A spread statistic: the seed standard deviation of ``column`` for ``loss`` on ``task``, against the range
    [``low``, ``high``] the literature reports (in the column's units)."""

    task: str
    loss: str
    column: str
    low: float
    high: float

    @property
    def label(self) -> str:
        return f"{self.task}: seed std of {self.loss} {self.column}"


def _by_seed(rows: pd.DataFrame, task: str, loss: str, column: str) -> pd.Series:
    import pandas as pd

    if column not in rows:
        return pd.Series(dtype=float)
    chosen = rows[(rows["task"] == task) & (rows["loss_spec"] == loss)]
    values = pd.to_numeric(chosen[column], errors="coerce")
    return pd.Series(values.to_numpy(), index=chosen["seed"].astype(int).to_numpy()).dropna()


class Card:
    """A finding: subclasses set the class attributes below; ``name`` is set by the registry.

    ``settings`` are ``TrainConfig`` fields that differ from the defaults (none: the default protocol). A card is
    checked against its paper: write ``expected`` from the paper, never from a run, and never tune the settings until
    the card agrees.
    """

    name: ClassVar[str]
    claim: ClassVar[str]  # one sentence
    reference: ClassVar[str]
    tasks: ClassVar[tuple[str, ...]]
    losses: ClassVar[tuple[str, ...]]
    seeds: ClassVar[tuple[int, ...]]
    settings: ClassVar[Mapping[str, Any]] = {}
    comparisons: ClassVar[tuple[Comparison, ...]] = ()
    spreads: ClassVar[tuple[Spread, ...]] = ()
    note: ClassVar[str] = ""  # how to read the card's numbers, shown under its table

    def columns(self) -> set[str]:
        """Every row column the card's statistics read."""
        found = {c.column for c in self.comparisons} | {c.baseline_column for c in self.comparisons}
        return (found | {s.column for s in self.spreads}) - {""}

    def estimated_seconds(self, runs: int, tasks: int) -> float:
        """The time ``runs`` new runs on ``tasks`` tasks whose states are not cached take on the project's machine."""
        return runs * SECONDS_PER_RUN + tasks * SECONDS_PER_TASK

    def verdicts(self, rows: pd.DataFrame) -> list[Verdict]:
        """One verdict per statistic, from the finished rows of the card's runs (columns ``task``, ``loss_spec``,
        ``seed`` and the statistics' columns)."""
        seeds = set(self.seeds)
        rows = rows[rows["seed"].astype(int).isin(seeds)]
        found = [paired_verdict(c.label, c.differences(rows), c.expected, c.min_effect) for c in self.comparisons]
        for spread in self.spreads:
            values = _by_seed(rows, spread.task, spread.loss, spread.column)
            found.append(range_verdict(spread.label, values.tolist(), spread.low, spread.high))
        return found
