import math

import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, Loss, regression_predictions, regression_targets


@LOSSES.register("log_cosh")
class LogCoshLoss(Loss):
    r"""Logarithm of the hyperbolic cosine of the error: about r**2 / 2 for small errors and |r| - log 2 for large
    ones, like huber with delta = 1, but smooth everywhere (twice differentiable).

        LC(r) = log(cosh(r)) = |r| + log(1 + exp(-2 |r|)) - log 2,   r = y_hat - y

    The right-hand form is the one computed: cosh overflows for |r| > 89 in float32.
    Reference: Saleh & Saleh, Statistical Properties of the Log-cosh Loss Function Used in Machine Learning, 2022.
    """

    problem_types = frozenset({REGRESSION})

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        residual = predictions - regression_targets(labels, predictions)
        return residual.abs() + F.softplus(-2 * residual.abs()) - math.log(2)
