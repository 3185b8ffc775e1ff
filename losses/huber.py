import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, FloatRange, Loss, check_range, regression_predictions, regression_targets


@LOSSES.register("huber")
class HuberLoss(Loss):
    r"""Quadratic for small errors, linear for large ones: squared error that is robust to outliers.

        H_delta(r) = r**2 / 2                    if |r| <= delta
                   = delta * (|r| - delta / 2)   otherwise,         r = y_hat - y

    Equals mse / 2 when delta exceeds every |r|; approaches delta * mae as delta -> 0.
    Reference: Huber, Robust Estimation of a Location Parameter, Annals of Mathematical Statistics 1964.
    """

    problem_types = frozenset({REGRESSION})
    search_space = {
        "delta": FloatRange(0.1, 10.0, log=True)
    }  # Huber 1964 gives no range: a log range around 1, on the labels' scale (vader: -4..4)

    def __init__(self, *, delta: float = 1.0) -> None:
        super().__init__()
        check_range("huber", "delta", delta, low=0.0, low_inclusive=False)
        self.delta = delta

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        return F.huber_loss(predictions, regression_targets(labels, predictions), reduction="none", delta=self.delta)
