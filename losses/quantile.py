from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, FloatRange, Loss, check_range, regression_predictions, regression_targets


@LOSSES.register("quantile")
class QuantileLoss(Loss):
    r"""Pinball loss: its minimiser is the tau-quantile of the target given the text (tau = 0.5: the median).

        rho_tau(r) = max(tau * r, (tau - 1) * r),   r = y - y_hat

    Under-predictions cost tau per unit, over-predictions 1 - tau. Equals mae / 2 at tau = 0.5.
    Reference: Koenker & Bassett, Regression Quantiles, Econometrica 1978.
    """

    problem_types = frozenset({REGRESSION})
    search_space = {"tau": FloatRange(0.1, 0.9)}  # Koenker & Bassett 1978: tau in (0, 1); 0.5 is the median

    def __init__(self, *, tau: float = 0.5) -> None:
        super().__init__()
        check_range("quantile", "tau", tau, low=0.0, high=1.0, low_inclusive=False)
        self.tau = tau

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        residual = regression_targets(labels, predictions) - predictions
        return (self.tau * residual).maximum((self.tau - 1) * residual)
