import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, FloatRange, Loss, check_range, regression_predictions, regression_targets


@LOSSES.register("balanced_mse")
class BalancedMseLoss(Loss):
    r"""Balanced MSE, batch-based Monte-Carlo form: mse corrected for the skew of the training targets, so rare
    target values are not pulled towards the frequent ones. For imbalanced regression.

        BMC_i = -2 * sigma**2 * log softmax_j( -(y_hat_i - y_j) ** 2 / (2 * sigma**2) )_{j = i}

    The sum runs over the targets y_j of the batch, a Monte-Carlo sample of the training label distribution. sigma is
    the assumed label noise (fixed here; the paper may also learn it). As sigma -> 0 it tends to
    (y_hat_i - y_i) ** 2 - min_j (y_hat_i - y_j) ** 2: zero when y_i is the batch target nearest to y_hat_i. A batch of
    one gives 0. An example's loss depends on the batch's targets (``batch_dependent``).
    Reference: Ren et al., Balanced MSE for Imbalanced Visual Regression, CVPR 2022.
    """

    problem_types = frozenset({REGRESSION})
    batch_dependent = True
    search_space = {
        "sigma": FloatRange(0.1, 5.0, log=True)
    }  # Ren et al. 2022 start sigma at 1 (the label noise): a log range around it

    def __init__(self, *, sigma: float = 1.0) -> None:
        super().__init__()
        check_range("balanced_mse", "sigma", sigma, low=0.0, low_inclusive=False)
        self.sigma = sigma

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        targets = regression_targets(labels, predictions)
        two_variance = 2 * self.sigma**2
        # logits[i, j] = -(y_hat_i - y_j)^2 / (2 sigma^2): the likelihood of target j under prediction i.
        pairwise = -((predictions.unsqueeze(1) - targets.unsqueeze(0)) ** 2) / two_variance
        own_target = torch.arange(len(targets), device=targets.device)
        return F.cross_entropy(pairwise, own_target, reduction="none") * two_variance
