"""A finding card's verdict, generated from the numbers: the measured effect with its 95% interval, and whether it
reproduces, contradicts or cannot decide what the literature reports.

A paired effect is the mean over seeds of ``value(loss, seed) - value(baseline, seed)`` with its t-interval
(``bench.stats.t_interval``). The verdict:

- ``reproduced``: the interval excludes 0 on the side the literature expects;
- ``contradicted``: the interval excludes 0 on the other side;
- ``inconclusive``: the interval contains 0; the minimum detectable difference at the seeds run (``bench.power``,
  80% power, two-sided 5% level: the same test the interval inverts) says how large an effect could have gone unseen,
  and whether that is above the card's minimum effect of interest (then more seeds could still decide).

A spread (the seed standard deviation of one loss) is compared with a range the literature reports: its chi-square
95% interval (``spread_effect``): the estimate inside the range -> reproduced, the interval wholly outside it ->
contradicted, otherwise (the estimate outside, the interval overlapping the range) inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as scipy_stats

from bench.power import minimum_detectable_difference
from bench.stats import t_interval

REPRODUCED, CONTRADICTED, INCONCLUSIVE = "reproduced", "contradicted", "inconclusive"
VERDICTS = (REPRODUCED, CONTRADICTED, INCONCLUSIVE)
CONFIDENCE = 0.95
HIGHER, LOWER = 1, -1  # the sign of (loss - baseline) the literature expects


@dataclass(frozen=True)
class Effect:
    """The measured statistic: an estimate with its 95% interval over ``n`` seeds, and the standard deviation of the
    paired differences (NaN for a spread)."""

    n: int
    estimate: float
    ci_low: float
    ci_high: float
    sd: float = math.nan


@dataclass(frozen=True)
class Verdict:
    """One statistic of a card: what was measured, what was expected, and the verdict.

    ``mdd`` is the minimum detectable difference at the seeds run (NaN for a spread); ``decidable`` says whether it
    is at most the card's ``min_effect``: an inconclusive verdict with ``decidable`` False means the seeds run could
    not have seen an effect of the size of interest."""

    label: str
    expected: str
    effect: Effect
    verdict: str
    mdd: float = math.nan
    min_effect: float = math.nan
    decidable: bool | None = None


def paired_effect(differences: Sequence[float]) -> Effect:
    """The mean of the finite paired differences and its 95% t-interval (NaN bounds with fewer than 2)."""
    diffs = np.asarray(differences, dtype=np.float64)
    diffs = diffs[np.isfinite(diffs)]
    n = len(diffs)
    if n == 0:
        return Effect(0, math.nan, math.nan, math.nan)
    mean = float(diffs.mean())
    sd = float(diffs.std(ddof=1)) if n > 1 else math.nan
    low, high, _ = t_interval(mean, sd, n, CONFIDENCE)
    return Effect(n, mean, low, high, sd)


def direction_verdict(effect: Effect, expected_sign: int) -> str:
    """``reproduced`` / ``contradicted`` when the interval excludes 0 on the expected / other side, else
    ``inconclusive`` (also when there is no interval)."""
    if expected_sign not in (HIGHER, LOWER):
        raise ValueError(f"expected_sign must be {HIGHER} or {LOWER}, got {expected_sign!r}")
    if not (math.isfinite(effect.ci_low) and math.isfinite(effect.ci_high)):
        return INCONCLUSIVE
    if effect.ci_low > 0 or effect.ci_high < 0:
        return REPRODUCED if (effect.ci_low > 0) == (expected_sign == HIGHER) else CONTRADICTED
    return INCONCLUSIVE


def paired_verdict(label: str, differences: Sequence[float], expected_sign: int, min_effect: float) -> Verdict:
    """The verdict on paired differences (loss - baseline) whose expected sign is ``expected_sign``; the minimum
    detectable difference uses their standard deviation at the seeds run."""
    if not min_effect > 0:
        raise ValueError(f"min_effect must be > 0, got {min_effect!r}")
    effect = paired_effect(differences)
    mdd = minimum_detectable_difference(effect.sd, effect.n) if effect.n else math.inf
    decidable = bool(mdd <= min_effect) if not math.isnan(mdd) else None
    expected = f"{'higher' if expected_sign == HIGHER else 'lower'} by at least {min_effect:g}"
    return Verdict(label, expected, effect, direction_verdict(effect, expected_sign), mdd, min_effect, decidable)


def spread_effect(values: Sequence[float]) -> Effect:
    """The sample standard deviation of the finite values and its 95% chi-square interval (normal values)."""
    array = np.asarray(values, dtype=np.float64)
    array = array[np.isfinite(array)]
    n = len(array)
    if n < 2:
        return Effect(n, math.nan, math.nan, math.nan)
    sd = float(array.std(ddof=1))
    alpha = 1 - CONFIDENCE
    low = sd * math.sqrt((n - 1) / scipy_stats.chi2.ppf(1 - alpha / 2, n - 1))
    high = sd * math.sqrt((n - 1) / scipy_stats.chi2.ppf(alpha / 2, n - 1))
    return Effect(n, sd, low, high)


def range_verdict(label: str, values: Sequence[float], low: float, high: float) -> Verdict:
    """The seed standard deviation of ``values`` against the range [low, high] the literature reports."""
    if not 0 <= low <= high:
        raise ValueError(f"the reported range must have 0 <= low <= high, got [{low}, {high}]")
    effect = spread_effect(values)
    if effect.n < 2:
        verdict = INCONCLUSIVE
    elif effect.ci_high < low or effect.ci_low > high:
        verdict = CONTRADICTED
    elif low <= effect.estimate <= high:
        verdict = REPRODUCED
    else:
        verdict = INCONCLUSIVE
    return Verdict(label, f"seed std in [{low:g}, {high:g}]", effect, verdict)
