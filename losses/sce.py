import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_robust_weights, reverse_cross_entropy, upcast


@LOSSES.register("sce")
class SceLoss(Loss):
    r"""Symmetric cross-entropy: cross-entropy plus a bounded reverse cross-entropy that is robust to label noise;
    use it when training labels are noisy (CE fits the clean classes, RCE keeps noisy ones from being memorised).

        L   = alpha * CE + beta * RCE,   CE = -log p_y,   p = softmax(z)
        RCE = -sum_k p_k * log q_k = -A * (1 - p_y),   q = one_hot(y) with log 0 clipped to A = log_zero

    RCE lies in [0, -A]. alpha = 1, beta = 0 gives cross-entropy. The defaults are the paper's CIFAR-10 setting
    (alpha = 0.1, beta = 1, A = -4); the authors' code clips the one-hot label at 1e-4 instead (A = log 1e-4 ~ -9.2),
    which only rescales beta.
    Reference: Wang et al., Symmetric Cross Entropy for Robust Learning with Noisy Labels, ICCV 2019.
    """

    problem_types = frozenset({CLASSIFICATION})
    search_space = {
        "alpha": FloatRange(0.01, 10.0, log=True),
        "beta": FloatRange(0.1, 10.0, log=True),
    }  # Wang et al. 2019, Sec. 4: alpha 0.01-6 and beta 0.1-1 across their datasets; log_zero stays the paper's -4

    def __init__(self, *, alpha: float = 0.1, beta: float = 1.0, log_zero: float = -4.0) -> None:
        super().__init__()
        check_robust_weights("sce", alpha, beta, log_zero)
        self.alpha = alpha
        self.beta = beta
        self.log_zero = log_zero

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p_y = F.log_softmax(upcast(logits), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        reverse = reverse_cross_entropy(log_p_y, self.log_zero)
        return self.alpha * -log_p_y + self.beta * reverse
