from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, Loss, regression_predictions, regression_targets


@LOSSES.register("mse")
class MseLoss(Loss):
    r"""Squared error, the default for regression: estimates the conditional mean.

        MSE(y_hat, y) = (y_hat - y) ** 2

    Reference: Gauss, Theoria motus corporum coelestium, 1809 (least squares).
    """

    problem_types = frozenset({REGRESSION})

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        return (predictions - regression_targets(labels, predictions)) ** 2
