"""bench.stats against known values: scipy on fixed arrays, hand-computed examples, Demšar's (2006) Friedman example."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower

from bench import power, stats
from bench.metric_table import METRIC_RANGE
from bench.metrics import expected_calibration_error, softmax

# Demšar 2006, Table 6: AUC of C4.5 with and without curtailment (m) and cut-off (cf) on 14 UCI data sets. The
# published ranks (3.143, 2.000, 2.893, 1.964) rank C4.5+cf above C4.5+m+cf on "voting", where the rounded table
# shows a tie; 0.97501 restores the paper's order.
DEMSAR_LOSSES = ["C4.5", "C4.5+m", "C4.5+cf", "C4.5+m+cf"]
DEMSAR_AUC = [
    [0.763, 0.768, 0.771, 0.798],
    [0.599, 0.591, 0.590, 0.569],
    [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657],
    [0.882, 0.888, 0.886, 0.898],
    [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685],
    [0.583, 0.583, 0.563, 0.625],
    [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000],
    [0.940, 0.962, 0.965, 0.962],
    [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.97501, 0.975],
    [0.957, 0.978, 0.946, 0.970],
]


def demsar_scores() -> pd.DataFrame:
    return pd.DataFrame(DEMSAR_AUC, columns=DEMSAR_LOSSES, index=[f"data{i}" for i in range(len(DEMSAR_AUC))])


def test_t_interval_matches_scipy_and_hand_values():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    summary = stats.summarize(values)
    assert (summary.n, summary.mean) == (5, 3.0)
    assert summary.std == pytest.approx(math.sqrt(2.5))
    low, high = scipy_stats.t.interval(0.95, df=4, loc=3.0, scale=scipy_stats.sem(values))
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert summary.ci_low == pytest.approx(3.0 - 2.776445 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6)

    seeds = np.array([0.6744, 0.7102, 0.6391])
    summary = stats.summarize(seeds)
    low, high = scipy_stats.t.interval(0.95, df=2, loc=seeds.mean(), scale=scipy_stats.sem(seeds))
    assert (summary.ci_low, summary.ci_high) == (pytest.approx(low), pytest.approx(high))


def test_summary_with_too_few_values_has_no_interval():
    one = stats.summarize([0.5, float("nan")])
    assert (one.n, one.mean) == (1, 0.5) and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([]).n == 0 and math.isnan(stats.summarize([]).mean)
    constant = stats.summarize([0.7, 0.7, 0.7])
    assert constant.std == pytest.approx(0, abs=1e-12)
    assert constant.ci_low == pytest.approx(0.7) and constant.ci_high == pytest.approx(0.7)


def test_paired_difference_matches_scipy_ttest_rel_on_common_seeds():
    loss = pd.Series([0.70, 0.72, 0.74, 0.90], index=[0, 1, 2, 3])
    base = pd.Series([0.68, 0.69, 0.70, 0.10], index=[0, 1, 2, 4])  # seeds 3 and 4 are not shared
    paired = stats.paired_difference(loss, base)
    expected = scipy_stats.ttest_rel([0.70, 0.72, 0.74], [0.68, 0.69, 0.70])
    assert paired.n_pairs == 3
    assert paired.mean_diff == pytest.approx(0.03) and paired.std_diff == pytest.approx(0.01)
    assert paired.statistic == pytest.approx(expected.statistic) and paired.p == pytest.approx(expected.pvalue)
    # by hand: t = 0.03 / (0.01 / sqrt 3) = 5.196 with 2 degrees of freedom
    assert paired.statistic == pytest.approx(5.196152, abs=1e-5)
    assert paired.p == pytest.approx(2 * scipy_stats.t.sf(5.196152, 2), abs=1e-6)


def test_paired_difference_degenerate_cases():
    single = stats.paired_difference(pd.Series([0.7], index=[0]), pd.Series([0.6], index=[0]))
    assert single.n_pairs == 1 and single.mean_diff == pytest.approx(0.1) and math.isnan(single.p)
    same = stats.paired_difference(pd.Series([0.7, 0.8], index=[0, 1]), pd.Series([0.7, 0.8], index=[0, 1]))
    assert (same.n_pairs, same.mean_diff, same.p) == (2, 0.0, 1.0)
    none = stats.paired_difference(pd.Series([0.7], index=[0]), pd.Series([0.6], index=[1]))
    assert none.n_pairs == 0 and math.isnan(none.mean_diff)


def test_holm_matches_a_hand_computed_example():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> max(0.06, 0.04) = 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, 0.02])
    with_gaps = stats.holm([0.01, float("nan"), 0.04])  # an untested loss does not count in the family
    np.testing.assert_allclose(with_gaps, [0.02, np.nan, 0.04])
    assert np.isnan(stats.holm([float("nan")])).all()


@pytest.mark.parametrize("size", [1, 2, 5, 12])
def test_holm_matches_statsmodels(size):
    pvalues = np.random.default_rng(size).random(size) ** 3
    pvalues[0] = pvalues[-1]  # a tie
    np.testing.assert_allclose(stats.holm(pvalues), multipletests(pvalues, method="holm")[1])


def test_verdict_needs_significance_and_a_gap_beyond_the_baseline_std():
    big = stats.Paired(3, 0.05, 0.01, 8.0, 0.01)
    assert stats.verdict(big, 0.03, baseline_std=0.02, higher_is_better=True) == stats.BETTER
    assert stats.verdict(big, 0.03, baseline_std=0.02, higher_is_better=False) == stats.WORSE
    assert stats.verdict(big, 0.06, baseline_std=0.02, higher_is_better=True) == stats.NOISE  # not significant
    assert stats.verdict(big, 0.03, baseline_std=0.08, higher_is_better=True) == stats.NOISE  # inside the seed std
    assert stats.verdict(stats.Paired(1, 0.05, math.nan, math.nan, math.nan), math.nan, 0.0, True) == stats.TOO_FEW


def _runs(values: dict[str, list[float]], metric: str = "test_f1_macro") -> pd.DataFrame:
    return pd.DataFrame(
        [{"loss_spec": loss, "seed": seed, metric: v} for loss, vs in values.items() for seed, v in enumerate(vs)]
    )


def test_compare_losses_pairs_by_seed_and_holm_corrects_across_losses():
    runs = _runs(
        {
            "cross_entropy": [0.50, 0.52, 0.54, 0.51, 0.53],
            "focal": [0.60, 0.63, 0.64, 0.60, 0.64],
            "dice": [0.30, 0.33, 0.31, 0.32, 0.30],
            "poly1": [0.51, 0.51, 0.55, 0.52, 0.52],
        }
    )
    table = stats.compare_losses(runs, "test_f1_macro", "cross_entropy", higher_is_better=True)
    base = runs[runs["loss_spec"] == "cross_entropy"]["test_f1_macro"].to_numpy()
    raw = {}
    for loss in ("focal", "dice", "poly1"):
        values = runs[runs["loss_spec"] == loss]["test_f1_macro"].to_numpy()
        raw[loss] = scipy_stats.ttest_rel(values, base).pvalue
        assert table.at[loss, "p"] == pytest.approx(raw[loss])
        assert table.at[loss, "diff_mean"] == pytest.approx((values - base).mean())
    expected = stats.holm([raw["focal"], raw["dice"], raw["poly1"]])
    np.testing.assert_allclose(table.loc[["focal", "dice", "poly1"], "p_holm"], expected)
    assert table.at["focal", "verdict"] == stats.BETTER
    assert table.at["dice", "verdict"] == stats.WORSE
    assert table.at["poly1", "verdict"] == stats.NOISE
    assert table.at["cross_entropy", "verdict"] == stats.BASELINE and math.isnan(table.at["cross_entropy", "p"])


def test_compare_losses_with_one_seed_or_no_baseline():
    runs = _runs({"cross_entropy": [0.5], "focal": [0.6]})
    table = stats.compare_losses(runs, "test_f1_macro", "cross_entropy", True, ["cross_entropy", "focal", "gce"])
    assert table.at["focal", "verdict"] == stats.TOO_FEW and math.isnan(table.at["focal", "p_holm"])
    assert table.at["gce", "n"] == 0 and math.isnan(table.at["gce", "mean"])
    no_base = stats.compare_losses(_runs({"focal": [0.6, 0.7]}), "test_f1_macro", "cross_entropy", True)
    assert no_base.at["focal", "verdict"] == stats.NO_BASELINE


def test_ranks_are_direction_aware():
    scores = pd.DataFrame({"a": [0.9, 1.0], "b": [0.8, 2.0], "c": [0.8, np.nan]}, index=["acc_task", "mse_task"])
    ranks = stats.ranks(scores, {"acc_task": True, "mse_task": False})
    assert ranks.loc["acc_task"].tolist() == [1.0, 2.5, 2.5]  # higher is better, ties share their mean rank
    assert ranks.loc["mse_task", ["a", "b"]].tolist() == [1.0, 2.0]  # lower is better
    assert math.isnan(ranks.at["mse_task", "c"])


def test_friedman_on_demsars_example():
    result = stats.friedman(demsar_scores(), dict.fromkeys(demsar_scores().index, True))
    expected_ranks = {"C4.5": 3.143, "C4.5+m": 2.000, "C4.5+cf": 2.893, "C4.5+m+cf": 1.964}
    for loss, rank in expected_ranks.items():
        assert result.mean_ranks[loss] == pytest.approx(rank, abs=5e-4)
    # Demšar's chi^2_F = 9.28 has no tie correction; scipy divides by 1 - sum(t^3 - t) / (N k (k^2 - 1)), with the
    # ties of this table (one of 4, three of 2): 1 - (60 + 3 * 6) / (14 * 4 * 15).
    assert result.statistic * (1 - 78 / 840) == pytest.approx(9.28, abs=0.01)
    assert result.p == pytest.approx(scipy_stats.chi2.sf(result.statistic, 3))
    # CD = 2.569 * sqrt(4 * 5 / (6 * 14)) = 1.25; C4.5 vs C4.5+m+cf (3.143 - 1.964 = 1.18 < CD) is not significant.
    assert result.critical_difference == pytest.approx(1.25, abs=0.005)
    assert result.nemenyi.at["C4.5", "C4.5+m+cf"] > stats.ALPHA
    assert result.nemenyi.shape == (4, 4) and list(result.nemenyi.index) == DEMSAR_LOSSES
    assert result.reason is None


def test_friedman_matches_the_scipy_docs_example_in_either_direction():
    x = np.random.default_rng(seed=18).random((6, 10))  # 6 losses x 10 tasks
    scores = pd.DataFrame(x.T, columns=[f"loss{i}" for i in range(6)])
    for higher in (True, False):
        result = stats.friedman(scores, dict.fromkeys(scores.index, higher))
        assert result.statistic == pytest.approx(11.428571428571416)
        assert result.p == pytest.approx(0.043514520866727614)


def test_friedman_is_not_run_with_fewer_than_three_tasks_or_losses():
    two_tasks = demsar_scores().iloc[:2]
    result = stats.friedman(two_tasks, dict.fromkeys(two_tasks.index, True))
    assert result.reason == "needs at least 3 tasks, there are 2" and math.isnan(result.statistic)
    two_losses = demsar_scores().iloc[:, :2]
    assert "at least 3 losses" in stats.friedman(two_losses, dict.fromkeys(two_losses.index, True)).reason
    gappy = demsar_scores()
    gappy.iloc[0, 0] = np.nan  # C4.5 misses a task: it is left out, the other three are tested
    assert stats.friedman(gappy, dict.fromkeys(gappy.index, True)).losses == DEMSAR_LOSSES[1:]


def test_reliability_bins_agree_with_the_ece_metric():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(400, 3)) * 2
    labels = rng.integers(0, 3, size=400)
    bins = stats.reliability_bins(logits, labels)
    assert len(bins) == 15 and bins["count"].sum() == 400
    assert stats.calibration_error(bins) == pytest.approx(expected_calibration_error(softmax(logits), labels))
    filled = bins[bins["count"] > 0]
    assert ((filled["confidence"] > filled["low"]) & (filled["confidence"] <= filled["high"])).all()


# --- intervals bounded by the metric's range -------------------------------------------------------------------------


def test_intervals_are_clipped_to_the_metric_range_at_the_issues_numbers():
    """Issue 12's small run: recall over 2 seeds had the interval [-5.65, 6.63] and Pearson over 3 seeds went past 1."""
    recall = [0.0, 0.9667]
    low, high = scipy_stats.t.interval(0.95, df=1, loc=np.mean(recall), scale=scipy_stats.sem(recall))
    assert (round(low, 2), round(high, 2)) == (-5.66, 6.62)  # the raw t-interval, outside [0, 1]
    summary = stats.summarize(recall, bounds=METRIC_RANGE["recall_rarest"])
    assert (summary.ci_low, summary.ci_high, summary.ci_clipped) == (0.0, 1.0, True)
    assert summary.mean == pytest.approx(0.48335) and summary.std == pytest.approx(np.std(recall, ddof=1))

    pearson = [0.75, 0.85, 0.95]
    low, high = scipy_stats.t.interval(0.95, df=2, loc=0.85, scale=scipy_stats.sem(pearson))
    assert high == pytest.approx(1.0984, abs=1e-4)
    summary = stats.summarize(pearson, bounds=METRIC_RANGE["pearson"])
    assert summary.ci_low == pytest.approx(low) and summary.ci_high == 1.0 and summary.ci_clipped

    inside = stats.summarize([0.70, 0.72, 0.74], bounds=METRIC_RANGE["accuracy"])
    assert not inside.ci_clipped and inside.ci_high < 1.0  # an interval inside the range is the plain t-interval
    r2 = stats.summarize([-3.0, 0.5], bounds=METRIC_RANGE["r2"])  # R^2 has no lower bound
    assert r2.ci_low < -3.0 and r2.ci_high == 1.0 and r2.ci_clipped
    assert stats.summarize([1.0, 5.0]).ci_low < 0  # no bounds given: the plain t-interval


def test_paired_difference_interval_is_clipped_to_the_range_width():
    loss, base = pd.Series([0.2, 0.9], index=[0, 1]), pd.Series([0.1, 0.1], index=[0, 1])
    unbounded = stats.paired_difference(loss, base)
    low, high = scipy_stats.t.interval(0.95, df=1, loc=0.45, scale=scipy_stats.sem([0.1, 0.8]))
    assert (unbounded.diff_ci_low, unbounded.diff_ci_high) == (pytest.approx(low), pytest.approx(high))
    assert low < -1 and high > 1 and not unbounded.diff_ci_clipped
    bounded = stats.paired_difference(loss, base, METRIC_RANGE["accuracy"])
    assert (bounded.diff_ci_low, bounded.diff_ci_high, bounded.diff_ci_clipped) == (-1.0, 1.0, True)
    assert bounded.p == unbounded.p and bounded.mean_diff == pytest.approx(0.45)
    correlation = stats.paired_difference(loss * 4 - 1, base, METRIC_RANGE["mcc"])
    assert correlation.diff_ci_high == 2.0  # a difference of two values in [-1, 1] is within [-2, 2]


def test_task_statistics_clip_every_metric_to_its_own_range():
    runs = _runs({"cross_entropy": [0.0, 0.9], "focal": [0.1, 0.8]}, "test_recall_rarest")
    runs["test_nll"] = [0.05, 3.0, 0.1, 2.5]
    table = stats.task_statistics(runs, ["recall_rarest", "nll"], "cross_entropy")
    recall, nll = table.loc["recall_rarest"], table.loc["nll"]
    assert (recall["ci_low"] >= 0).all() and (recall["ci_high"] <= 1).all() and recall["ci_clipped"].all()
    assert (nll["ci_low"] == 0).all() and (nll["ci_high"] > 3).all()  # only a lower bound
    assert recall.at["focal", "diff_ci_low"] >= -1 and recall.at["focal", "diff_ci_high"] <= 1


# --- chance level ---------------------------------------------------------------------------------------------------


def test_chance_level_matches_sklearns_dummy_classifier():
    from sklearn.dummy import DummyClassifier
    from sklearn.metrics import accuracy_score, f1_score

    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    dummy = DummyClassifier(strategy="prior").fit(np.zeros((100, 1)), labels).predict(np.zeros((100, 1)))
    accuracy = stats.chance_level("classification", "accuracy", labels, 6)
    assert accuracy.value == pytest.approx(accuracy_score(labels, dummy)) == pytest.approx(0.6)
    assert accuracy.uniform == pytest.approx(1 / 6) and (accuracy.classes, accuracy.examples) == (6, 100)
    f1 = stats.chance_level("classification", "f1_macro", labels, 6)
    assert f1.value == pytest.approx(f1_score(labels, dummy, average="macro", zero_division=0))
    assert f1.value == pytest.approx(2 * 0.6 / 1.6 / 3) and math.isnan(f1.uniform)
    assert stats.chance_level("classification", "mcc", labels, 6).value == 0.0
    # the prior predictor is calibrated: its ECE is 0 and its NLL is the entropy of the labels
    assert stats.chance_level("classification", "ece", labels, 3).value == pytest.approx(0.0, abs=1e-9)
    entropy = -(0.6 * math.log(0.6) + 0.3 * math.log(0.3) + 0.1 * math.log(0.1))
    assert stats.chance_level("classification", "nll", labels, 3).value == pytest.approx(entropy)
    assert stats.chance_level("classification", "accuracy") is None  # no labels: unknown


def test_regression_chance_level_is_zero_correlation_and_the_test_variance():
    assert stats.chance_level("regression", "pearson").value == 0.0  # by definition, no labels needed
    assert stats.chance_level("regression", "spearman", np.arange(5.0)).value == 0.0
    assert stats.chance_level("regression", "r2").value == 0.0
    targets = np.array([1.0, 2.0, 3.0, 6.0])
    assert stats.chance_level("regression", "mse", targets).value == pytest.approx(np.var(targets))
    assert stats.chance_level("regression", "mae", targets).value == pytest.approx(np.mean(np.abs(targets - 3.0)))


def _summary_row(values: list[float]) -> dict:
    return asdict(stats.summarize(values, bounds=(0.0, 1.0)))


def test_sampling_noise_of_the_test_split():
    assert stats.sampling_noise("accuracy", 0.505, 730) == pytest.approx(math.sqrt(0.505 * 0.495 / 730))
    assert stats.sampling_noise("pearson", 0.0, 400) == pytest.approx(0.05)
    assert stats.sampling_noise("mse", 2.5, 400) == 0.0 and stats.sampling_noise("accuracy", 0.5, 0) == 0.0
    labels = np.array([0] * 369 + [1] * 361)
    chance = stats.chance_level("classification", "accuracy", labels, 2)
    assert chance.noise == pytest.approx(stats.sampling_noise("accuracy", 369 / 730, 730))
    by_definition = stats.chance_level("regression", "pearson", examples=1591)
    assert by_definition.noise == pytest.approx(1 / math.sqrt(1591))


def test_near_chance_counts_seed_noise_and_the_test_splits_noise():
    accuracy = stats.ChanceLevel("accuracy", 0.505, 0.5, 2, 730, stats.sampling_noise("accuracy", 0.505, 730))
    assert stats.near_chance(_summary_row([0.50, 0.52]), accuracy, True)  # the issue's small run: 0.50-0.52
    tight = _summary_row([0.51, 0.512, 0.511, 0.509, 0.508])  # beyond its CI and seed std, not the test noise
    assert stats.near_chance(tight, accuracy, True)
    assert not stats.near_chance(tight, replace(accuracy, noise=0.0), True)
    assert not stats.near_chance(_summary_row([0.70, 0.72, 0.74]), accuracy, True)
    assert stats.near_chance(_summary_row([0.60, 0.70]), replace(accuracy, noise=0.0), True)  # 2 seeds: CI covers it
    assert stats.near_chance(_summary_row([0.53]), accuracy, True)  # one seed within 1.96 standard errors
    assert stats.near_chance(_summary_row([0.45]), replace(accuracy, noise=0.0), True)  # no better than chance
    assert not stats.near_chance(_summary_row([0.80]), accuracy, True)  # one seed far above it
    variance = stats.ChanceLevel("mse", 2.5)
    assert stats.near_chance(_summary_row([0.9, 0.95]) | {"mean": 2.6}, variance, False)  # an mse above the variance
    assert not stats.near_chance(_summary_row([]), accuracy, True)


def test_pooled_reliability_ece_is_at_most_the_mean_of_the_runs_ece():
    """What the report says of the reliability diagrams: pooling the seeds' predictions never raises the ECE."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 3, size=120)
    runs = [rng.normal(size=(120, 3)) * scale + 2.0 * np.eye(3)[labels] for scale in (0.5, 1.0, 3.0)]
    per_run = [expected_calibration_error(softmax(logits), labels) for logits in runs]
    pooled = stats.calibration_error(stats.reliability_bins(np.concatenate(runs), np.tile(labels, 3)))
    assert pooled <= np.mean(per_run) + 1e-12 and pooled < np.mean(per_run)


# --- power: the minimum detectable difference of each comparison -------------------------------------------------


def test_each_comparison_has_the_minimum_detectable_difference_of_bench_power():
    runs = _runs(
        {
            "cross_entropy": [0.50, 0.52, 0.54, 0.51, 0.53],
            "focal": [0.60, 0.63, 0.64, 0.60, 0.64],
            "dice": [0.30, 0.33, 0.31, 0.32, 0.30],
            "poly1": [0.51, 0.51, 0.55, 0.52],  # 4 pairs
        }
    )
    table = stats.compare_losses(runs, "test_f1_macro", "cross_entropy", higher_is_better=True)
    for loss in ("focal", "dice", "poly1"):
        row = table.loc[loss]
        expected = power.minimum_detectable_difference(row["diff_std"], int(row["n_pairs"]), comparisons=3)
        assert row["mdd"] == pytest.approx(expected, rel=1e-9)
    assert table.at["poly1", "n_pairs"] == 4
    assert math.isnan(table.at["cross_entropy", "mdd"])  # the baseline is not compared with itself
    one_seed = stats.compare_losses(
        _runs({"cross_entropy": [0.5], "focal": [0.6]}), "test_f1_macro", "cross_entropy", True
    )
    assert math.isnan(one_seed.at["focal", "mdd"])


def test_the_minimum_detectable_difference_matches_statsmodels():
    # statsmodels' one-sample/paired t-test power: the effect size 5 pairs detect with 80% power at alpha 0.05 / 3
    effect = TTestPower().solve_power(nobs=5, alpha=0.05 / 3, power=0.8, alternative="two-sided")
    assert stats.minimum_detectable_difference(0.02, 5, 3) == pytest.approx(0.02 * effect, rel=1e-4)
    assert math.isnan(stats.minimum_detectable_difference(0.02, 1, 3))
    assert math.isnan(stats.minimum_detectable_difference(math.nan, 5, 3))


def test_pooled_std_weights_each_comparison_by_its_degrees_of_freedom():
    pooled, groups = stats.pooled_std([0.01, 0.03, math.nan, 0.5], [3, 5, 4, 1])
    assert groups == 2  # the NaN std and the single pair are left out
    assert pooled == pytest.approx(math.sqrt((2 * 0.01**2 + 4 * 0.03**2) / 6))
    assert stats.pooled_std([math.nan], [3]) == (pytest.approx(math.nan, nan_ok=True), 0)
