"""Search spaces: the range of each hyper-parameter a loss declares (``Loss.search_space``), as plain data.

A space maps a keyword of the loss's constructor to a ``FloatRange``, ``IntRange`` or ``Choice``. It is declarative
on purpose: ``bench.tuning`` turns it into Optuna distributions in one place, the loss contract tests check it (every
name is a keyword of ``__init__``, the default lies inside, both ends construct and give finite values), and nothing
here imports Optuna or torch. A loss without hyper-parameters, or one whose parameters are numerical safeguards
rather than modelling choices (``pearson``'s eps), has an empty space and is tuned over the learning rate alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FloatRange:
    """A real parameter in [low, high]; ``log``: sampled uniformly in log space (low > 0)."""

    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"FloatRange needs finite low < high, got [{self.low}, {self.high}]")
        if self.log and self.low <= 0:
            raise ValueError(f"FloatRange with log=True needs low > 0, got {self.low}")

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def ends(self) -> tuple[float, float]:
        return (self.low, self.high)

    def describe(self) -> str:
        return f"[{self.low:g}, {self.high:g}]" + (" log" if self.log else "")


@dataclass(frozen=True)
class IntRange:
    """An integer parameter in [low, high]; ``log``: sampled uniformly in log space (low >= 1)."""

    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if self.low >= self.high:
            raise ValueError(f"IntRange needs low < high, got [{self.low}, {self.high}]")
        if self.log and self.low < 1:
            raise ValueError(f"IntRange with log=True needs low >= 1, got {self.low}")

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def ends(self) -> tuple[int, int]:
        return (self.low, self.high)

    def describe(self) -> str:
        return f"{{{self.low}..{self.high}}}" + (" log" if self.log else "")


@dataclass(frozen=True)
class Choice:
    """A parameter taking one of ``options`` (strings, numbers or booleans)."""

    options: tuple

    def __post_init__(self) -> None:
        if len(self.options) < 2 or len(set(self.options)) != len(self.options):
            raise ValueError(f"Choice needs at least two distinct options, got {self.options!r}")

    def contains(self, value: Any) -> bool:
        return value in self.options

    def ends(self) -> tuple:
        return self.options

    def describe(self) -> str:
        return "{" + ", ".join(str(option) for option in self.options) + "}"


Spec = FloatRange | IntRange | Choice

LEARNING_RATE_PARAM = "learning_rate"
# The learning rate's range, shared by every loss: a decade either side of the default protocol's 1e-3 (top layer and
# head on cached states, 125 steps; results/PROTOCOL.md measured 3e-4, 1e-3 and 3e-3 there). Losses whose gradient
# scale differs from cross-entropy's (GCE's is p_y ** q times it) can find their own rate inside it.
LEARNING_RATE = FloatRange(1e-4, 1e-2, log=True)


def check_space(loss_name: str, space: Mapping[str, Spec], defaults: Mapping[str, Any]) -> None:
    """Refuse a space that names no keyword of the loss, the learning rate, or a spec of another kind; and one whose
    range leaves out the loss's default (the default is one of the configurations tuning can find)."""
    for name, spec in space.items():
        if name == LEARNING_RATE_PARAM or name not in defaults:
            valid = ", ".join(defaults) or "none"
            raise ValueError(
                f"Loss {loss_name!r}: search_space names {name!r}, not a keyword of its __init__ (keywords: {valid})"
            )
        if not isinstance(spec, (FloatRange, IntRange, Choice)):
            raise ValueError(
                f"Loss {loss_name!r}: search_space[{name!r}] is {spec!r}, not a FloatRange/IntRange/Choice"
            )
        if not spec.contains(defaults[name]):
            raise ValueError(
                f"Loss {loss_name!r}: the default {name}={defaults[name]!r} is outside its range {spec.describe()}"
            )
