"""Power of the paired comparisons: checked against statsmodels' power calculation and textbook values."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import TTestPower

from bench.power import (
    detectable_effect_size,
    minimum_detectable_difference,
    paired_power,
    seeds_needed,
)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
@pytest.mark.parametrize("alpha", [0.05, 0.05 / 12])
def test_detectable_effect_size_matches_statsmodels(n, alpha):
    effect = detectable_effect_size(n, alpha)
    statsmodels_power = TTestPower().power(effect_size=effect, nobs=n, alpha=alpha, alternative="two-sided")
    if math.isfinite(statsmodels_power):  # statsmodels' power at our root is 80%
        assert statsmodels_power == pytest.approx(0.8)
    else:  # its power is NaN far out (a tail scipy cannot evaluate); its solver then agrees with us
        expected = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
        assert effect == pytest.approx(expected, rel=1e-4)
    if effect < 10:  # within the bracket statsmodels' solver searches
        expected = TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=0.8, alternative="two-sided")
        assert effect == pytest.approx(expected, rel=1e-4)


def test_power_matches_statsmodels():
    for d, n in [(0.5, 10), (1.0, 5), (2.0, 3)]:
        expected = TTestPower().power(effect_size=d, nobs=n, alpha=0.05, alternative="two-sided")
        assert paired_power(d, n) == pytest.approx(expected, rel=1e-6)


def test_textbook_value_and_units():
    # Cohen's d = 1 at 80% power, alpha 0.05 two-sided needs 10 pairs (n = 9.94 by the exact noncentral t).
    assert seeds_needed(sd_diff=1.0, difference=1.0) == 10
    # The MDD scales with the differences' sd; 3 seeds with sd 2 points detect about 4.9 sd ... in points:
    assert minimum_detectable_difference(2.0, 3) == pytest.approx(2.0 * detectable_effect_size(3), rel=1e-12)


def test_holm_factor_makes_the_difference_larger():
    one = minimum_detectable_difference(0.02, 5, comparisons=1)
    twelve = minimum_detectable_difference(0.02, 5, comparisons=12)
    assert twelve > one > 0
    assert twelve == pytest.approx(0.02 * detectable_effect_size(5, 0.05 / 12), rel=1e-12)


def test_degenerate_cases():
    assert minimum_detectable_difference(0.02, 1) == math.inf  # one seed: no test
    assert math.isnan(minimum_detectable_difference(math.nan, 5))
    assert minimum_detectable_difference(0.0, 5) == 0.0
    assert seeds_needed(0.0, 0.01) == 2
    with pytest.raises(ValueError, match="comparisons"):
        minimum_detectable_difference(0.02, 5, comparisons=0)
    with pytest.raises(ValueError, match="difference"):
        seeds_needed(0.02, 0.0)


def test_seeds_needed_is_the_fewest():
    for sd, target, comparisons in [(0.02, 0.01, 12), (0.03, 0.01, 1), (1.0, 0.2, 8)]:
        n = seeds_needed(sd, target, comparisons)
        assert minimum_detectable_difference(sd, n, comparisons) <= target
        assert minimum_detectable_difference(sd, n - 1, comparisons) > target
