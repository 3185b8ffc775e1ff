import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, FloatRange, Loss, check_range, regression_predictions, regression_targets


@LOSSES.register("smooth_l1")
class SmoothL1Loss(Loss):
    r"""Absolute error with its kink at 0 rounded off by a quadratic of width beta: robust like mae, smooth like mse.

        SL1_beta(r) = r**2 / (2 * beta)   if |r| < beta
                    = |r| - beta / 2      otherwise,          r = y_hat - y

    Equals mae at beta = 0 and huber(delta=beta) / beta otherwise.
    Reference: Girshick, Fast R-CNN, ICCV 2015.
    """

    problem_types = frozenset({REGRESSION})
    search_space = {
        "beta": FloatRange(0.1, 10.0, log=True)
    }  # Girshick 2015 uses 1: a log range around it, on the labels' scale

    def __init__(self, *, beta: float = 1.0) -> None:
        super().__init__()
        check_range("smooth_l1", "beta", beta, low=0.0)
        self.beta = beta

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        targets = regression_targets(labels, predictions)
        return F.smooth_l1_loss(predictions, targets, reduction="none", beta=self.beta)
