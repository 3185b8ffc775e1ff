"""Statistical power of the paired comparisons: the smallest difference the seeds run could detect, and the seeds a
target difference needs.

The report compares each loss with its task's baseline by a two-sided paired t-test over seeds, Holm-corrected across
the task's ``m`` comparisons. Holm's first step tests the smallest p-value at ``alpha / m``, so a single real effect
must clear that level: the minimum detectable difference (MDD) uses ``alpha / m`` (Bonferroni's level, Holm's
strictest step; the later steps are easier).

For ``n`` paired seeds whose differences have standard deviation ``sd``, the paired t statistic is noncentral t with
``n - 1`` degrees of freedom and noncentrality ``delta * sqrt(n) / sd``. The MDD is the ``delta`` at which the test
rejects with probability ``power``:

    P(|T| > t_{1 - a/2, n-1}) = power,   T ~ nct(n - 1, delta * sqrt(n) / sd),   a = alpha / m

It is solved exactly (no normal approximation, which is optimistic at few seeds). Reference: Cohen, Statistical Power
Analysis for the Behavioral Sciences, 1988; the same computation as ``statsmodels.stats.power.TTestPower``.
"""

from __future__ import annotations

import math

from scipy import optimize
from scipy import stats as scipy_stats

POWER = 0.8
ALPHA = 0.05
MAX_EFFECT = 1e3  # effect sizes (delta / sd) searched up to this; beyond it nothing is detectable
MAX_SEEDS = 10_000


def paired_power(effect_size: float, n: int, alpha: float = ALPHA) -> float:
    """The probability that a two-sided paired t-test at level ``alpha`` rejects when the true standardised
    difference (mean difference / sd of the differences) is ``effect_size``, with ``n`` pairs."""
    if n < 2:
        return math.nan
    df = n - 1
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    noncentrality = effect_size * math.sqrt(n)
    upper = scipy_stats.nct.sf(critical, df, noncentrality)
    lower = scipy_stats.nct.cdf(-critical, df, noncentrality)  # the wrong-sign tail: tiny, and scipy's NaN far out
    return float(upper + (lower if math.isfinite(lower) else 0.0))


def detectable_effect_size(n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest standardised difference ``delta / sd`` detected with probability ``power`` by ``n`` pairs (inf
    for n < 2: no test)."""
    if n < 2:
        return math.inf
    return float(optimize.brentq(lambda d: paired_power(d, n, alpha) - power, 0.0, MAX_EFFECT, xtol=1e-10))


def minimum_detectable_difference(
    sd_diff: float, n: int, comparisons: int = 1, alpha: float = ALPHA, power: float = POWER
) -> float:
    """The smallest true mean difference (in the metric's units) that ``n`` paired seeds would detect with
    probability ``power`` at level ``alpha / comparisons`` (Holm's strictest step), given the paired differences'
    standard deviation ``sd_diff``. NaN when ``sd_diff`` is unknown, inf with fewer than 2 seeds."""
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    if n < 2:
        return math.inf
    if not math.isfinite(sd_diff) or sd_diff < 0:
        return math.nan
    return sd_diff * detectable_effect_size(n, alpha / comparisons, power)


def seeds_needed(
    sd_diff: float, difference: float, comparisons: int = 1, alpha: float = ALPHA, power: float = POWER
) -> int:
    """The fewest paired seeds whose minimum detectable difference is at most ``difference`` (``MAX_SEEDS`` + 1 when
    even that many would not do)."""
    if difference <= 0:
        raise ValueError(f"difference must be > 0, got {difference}")
    if sd_diff == 0:
        return 2

    def enough(n: int) -> bool:
        return minimum_detectable_difference(sd_diff, n, comparisons, alpha, power) <= difference

    high = 2
    while not enough(high):  # the MDD falls as seeds are added: double, then bisect
        if high > MAX_SEEDS:
            return MAX_SEEDS + 1
        high *= 2
    low = high // 2 if high > 2 else 1  # enough(low) is False (or low < 2)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return high
