import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, Loss, upcast


@LOSSES.register("brier")
class BrierLoss(Loss):
    r"""Squared error between the softmax probabilities and the one-hot label: a proper scoring rule, bounded in
    [0, 2], that rewards calibrated probabilities. This is "MSE for classification" done correctly: on probabilities
    against a one-hot target, not on raw logits against integer class ids.

        BS(z, y) = sum_k (softmax(z)_k - [k == y]) ** 2

    For two classes it is twice the binary Brier score (p - y) ** 2 of either class.
    Reference: Brier, Verification of Forecasts Expressed in Terms of Probability, Monthly Weather Review 1950.
    """

    problem_types = frozenset({CLASSIFICATION})

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        probabilities = F.softmax(upcast(logits), dim=-1)
        one_hot = F.one_hot(labels, probabilities.shape[-1]).to(probabilities.dtype)
        return ((probabilities - one_hot) ** 2).sum(dim=-1)
