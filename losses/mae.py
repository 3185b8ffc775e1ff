from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, Loss, regression_predictions, regression_targets


@LOSSES.register("mae")
class MaeLoss(Loss):
    r"""Absolute error: estimates the conditional median, robust to outlying targets.

        MAE(y_hat, y) = |y_hat - y|

    Reference: Laplace (1774); see Koenker & Bassett, Regression Quantiles, Econometrica 1978.
    """

    problem_types = frozenset({REGRESSION})

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        return (predictions - regression_targets(labels, predictions)).abs()
