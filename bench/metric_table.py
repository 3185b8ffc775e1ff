"""Every test metric in one table: its problem type, direction, range and what it measures.

``bench.metrics`` computes the metrics; this table says how to read them. The statistics clip intervals to a metric's
range (``bench.stats``), the analysis takes each problem type's metrics from here in this order (``bench.analysis``),
and the report and ``docs/report.md`` describe them from here (``bench.report_guide``). Kept free of heavy imports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CLASSIFICATION, REGRESSION = "classification", "regression"
RATE, CORRELATION = "rate", "correlation"  # a share of examples; a correlation coefficient


@dataclass(frozen=True)
class Metric:
    """A test metric: ``low`` / ``high`` bound its values (infinite when unbounded); ``problem_type`` is None for a
    value that is no task metric (a loss's own value); ``headline`` names it in the report's headline findings (empty:
    only findings on the main metric are headlines); ``kind`` says how its sampling noise near chance is estimated
    (``bench.stats.sampling_noise``); ``chance`` is its value for any prediction that ignores the input, where that
    holds by definition."""

    name: str
    problem_type: str | None
    higher_is_better: bool
    low: float = -math.inf
    high: float = math.inf
    description: str = ""
    headline: str = ""
    kind: str = ""  # RATE, CORRELATION or "" (no estimate)
    chance: float | None = None

    @property
    def arrow(self) -> str:
        """↑ when higher is better, else ↓."""
        return "↑" if self.higher_is_better else "↓"

    @property
    def bounds(self) -> tuple[float, float]:
        return self.low, self.high


_TABLE = (
    # classification, in the order the report shows them
    Metric(
        "accuracy",
        CLASSIFICATION,
        higher_is_better=True,
        low=0.0,
        high=1.0,
        description="share of test examples whose predicted class is right; it mostly follows the common classes.",
        kind=RATE,
    ),
    Metric(
        "f1_macro",
        CLASSIFICATION,
        higher_is_better=True,
        low=0.0,
        high=1.0,
        description="F1 averaged over classes, each weighing the same: it moves when rare classes are won or lost.",
        kind=RATE,
    ),
    Metric(
        "mcc",
        CLASSIFICATION,
        higher_is_better=True,
        low=-1.0,
        high=1.0,
        description="Matthews correlation of predicted and true classes: it weighs every class, and is 0 for a "
        "constant prediction.",
        kind=CORRELATION,
    ),
    Metric(
        "recall_macro",
        CLASSIFICATION,
        higher_is_better=True,
        low=0.0,
        high=1.0,
        description="recall averaged over classes.",
        kind=RATE,
    ),
    Metric(
        "recall_rarest",
        CLASSIFICATION,
        higher_is_better=True,
        low=0.0,
        high=1.0,
        description="recall of the class rarest in training: where class-imbalance losses should help.",
        headline="rare-class recall",
        kind=RATE,
    ),
    Metric(
        "ece",
        CLASSIFICATION,
        higher_is_better=False,
        low=0.0,
        high=1.0,
        description="expected calibration error, top-label confidence vs accuracy over 15 equal-width confidence "
        "bins; 0 is perfectly calibrated. The column is the mean of the runs' own ECEs; the reliability diagrams pool "
        "every seed's predictions into one set of bins, a different number (both are in each diagram's title).",
        headline="calibration error (ECE)",
    ),
    Metric(
        "brier",
        CLASSIFICATION,
        higher_is_better=False,
        low=0.0,
        high=2.0,
        description="multi-class Brier score, Σ_k (p_k − [k = y])², 2 when all probability is on one wrong class: a "
        "proper scoring rule, which rewards probabilities that are both sharp and calibrated.",
    ),
    Metric(
        "nll",
        CLASSIFICATION,
        higher_is_better=False,
        low=0.0,
        description="negative log-likelihood of the true class, −log p_y: a proper scoring rule too.",
    ),
    Metric(
        "ece_ts",
        CLASSIFICATION,
        higher_is_better=False,
        low=0.0,
        high=1.0,
        description="ECE (15 bins) after temperature scaling: the test logits divided by the one temperature that "
        "minimises the NLL of the same weights' validation predictions (Guo et al. 2017). The post-hoc reference a "
        "loss's own `ece` is compared with; the run's row records the temperature (`temperature`).",
    ),
    Metric(
        "nll_ts",
        CLASSIFICATION,
        higher_is_better=False,
        low=0.0,
        description="NLL of the true class after the same temperature scaling.",
    ),
    # regression
    Metric(
        "pearson",
        REGRESSION,
        higher_is_better=True,
        low=-1.0,
        high=1.0,
        description="linear correlation of predictions with targets; blind to the predictions' scale and offset.",
        kind=CORRELATION,
        chance=0.0,
    ),
    Metric(
        "spearman",
        REGRESSION,
        higher_is_better=True,
        low=-1.0,
        high=1.0,
        description="rank correlation of predictions with targets.",
        kind=CORRELATION,
        chance=0.0,
    ),
    Metric(
        "r2",
        REGRESSION,
        higher_is_better=True,
        high=1.0,
        description="1 − SSE / SST; negative is worse than predicting the test mean.",
        chance=0.0,
    ),
    Metric(
        "mse",
        REGRESSION,
        higher_is_better=False,
        low=0.0,
        description="mean squared error, in the target's units squared: sensitive to the predictions' scale, which "
        "correlation is not.",
    ),
    Metric(
        "mae",
        REGRESSION,
        higher_is_better=False,
        low=0.0,
        description="mean absolute error, in the target's units.",
    ),
    Metric(
        "mae_rare",
        REGRESSION,
        higher_is_better=False,
        low=0.0,
        description="MAE on the rarest third of test targets (lowest density in a 20-bin histogram of the targets): "
        "imbalanced-regression losses should lower it without raising `mae_common` much.",
        headline="the error on the rarest third of targets (MAE)",
    ),
    Metric(
        "mae_common",
        REGRESSION,
        higher_is_better=False,
        low=0.0,
        description="MAE on the other two thirds of test targets.",
    ),
    # no task metric: some losses (Gaussian NLL) go below 0
    Metric(
        "loss",
        None,
        higher_is_better=False,
        description="a loss's own value on the test split, on that loss's own scale: never compared across losses.",
    ),
)

# Metric name -> its row of the table, in the table's order.
METRICS: dict[str, Metric] = {metric.name: metric for metric in _TABLE}
# Metric name -> True when higher is better.
HIGHER_IS_BETTER = {name: metric.higher_is_better for name, metric in METRICS.items()}
# Metric name -> (lowest, highest) value it can take.
METRIC_RANGE = {name: metric.bounds for name, metric in METRICS.items()}
UNBOUNDED = (-math.inf, math.inf)
# Problem type -> the metrics its tasks report, in the table's order.
METRICS_BY_PROBLEM_TYPE = {
    problem_type: tuple(name for name, metric in METRICS.items() if metric.problem_type == problem_type)
    for problem_type in (CLASSIFICATION, REGRESSION)
}
# Metric name -> how headline findings name it, for the metrics besides the main one whose findings are headlines.
HEADLINE_METRICS = {name: metric.headline for name, metric in METRICS.items() if metric.headline}


def higher_is_better(name: str) -> bool:
    """A metric's direction; a metric the table does not know counts as higher is better."""
    return HIGHER_IS_BETTER.get(name, True)


def arrow(name: str) -> str:
    """↑ or ↓ for a metric name (↑ for a metric the table does not know)."""
    return "↑" if higher_is_better(name) else "↓"


def range_text(name: str) -> str:
    """A metric's range in interval notation: ``[0, 1]``, ``[0, ∞)``, ``(−∞, 1]``."""
    low, high = METRIC_RANGE.get(name, UNBOUNDED)
    left = "(−∞" if math.isinf(low) else f"[{low:g}".replace("-", "−")
    right = "∞)" if math.isinf(high) else f"{high:g}]"
    return f"{left}, {right}"
