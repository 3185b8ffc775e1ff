import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


def tempered_log_softmax(logits: Tensor, t: float, num_iters: int) -> Tensor:
    """log of the tempered softmax p_k = exp_t(z_k - lambda(z)), lambda normalising sum_k p_k to 1, for t >= 1.

    At t = 1 this is log_softmax. For t > 1, lambda comes from the reference's fixed-point iteration (``num_iters``
    steps, differentiated through by autograd), with mu = max_k z_k, a0 = z - mu:

        a_{i+1} = a0 * Z_i ** (1 - t),   Z_i = sum_k exp_t(a_{i,k});   Z = sum_k exp_t(a_{n,k})
        lambda  = mu - log_t(1 / Z),   so  1 + (1 - t) * (z_k - lambda) = Z ** (t - 1) + (t - 1) * (mu - z_k)

    and log p_k = -log(Z ** (t - 1) + (t - 1) * (mu - z_k)) / (t - 1). Every term of that sum is >= 0 and Z >= 1,
    so the log is finite for any logits and no power of a vanishing probability is ever taken.
    """
    if t == 1:
        return F.log_softmax(logits, dim=-1)
    mu = logits.amax(dim=-1, keepdim=True)
    gap = (mu - logits) * (t - 1)  # (t - 1) * (mu - z) >= 0

    def log_partition(scaled_gap: Tensor) -> Tensor:
        # log sum_k exp_t(-scaled_gap_k / (t - 1)), with exp_t(a) = (1 + (t - 1) * (-a)) ** (-1 / (t - 1)).
        return torch.logsumexp(-torch.log1p(scaled_gap) / (t - 1), dim=-1, keepdim=True)

    log_z = log_partition(gap)
    for _ in range(num_iters):
        log_z = log_partition(gap * torch.exp((1 - t) * log_z))
    return -torch.log(torch.exp((t - 1) * log_z) + gap) / (t - 1)


@LOSSES.register("bi_tempered")
class BiTemperedLoss(Loss):
    r"""Bi-tempered logistic loss: a bounded loss (temperature t1 < 1) on a heavy-tailed tempered softmax
    (t2 > 1); robust to label noise, both to mislabelled examples far from the boundary and to ones near it.

        L = -log_t1(p_y) - (1 - sum_k p_k ** (2 - t1)) / (2 - t1),   p_k = exp_t2(z_k - lambda_t2(z))
        log_t(x) = (x ** (1 - t) - 1) / (1 - t),   exp_t(x) = [1 + (1 - t) * x]_+ ** (1 / (1 - t))
        lambda_t2(z) such that sum_k exp_t2(z_k - lambda_t2(z)) = 1

    This is the reference's sum_k [y_k (log_t1 y_k - log_t1 p_k) - (y_k ** (2 - t1) - p_k ** (2 - t1)) / (2 - t1)]
    for a one-hot y. lambda comes from num_iters steps of the reference's fixed-point iteration (see
    ``tempered_log_softmax``), through which autograd differentiates. t1 = t2 = 1 gives cross-entropy; for t1 < 1 the
    loss is bounded by 1 / (1 - t1). Powers of p are taken as exp(s * log p) from the tempered log-probabilities.
    Reference: Amid et al., Robust Bi-Tempered Logistic Loss Based on Bregman Divergences, NeurIPS 2019.
    """

    problem_types = frozenset({CLASSIFICATION})
    search_space = {
        "t1": FloatRange(0.5, 1.0),
        "t2": FloatRange(1.0, 2.0),
    }  # Amid et al. 2019: t1 in [0.5, 1] (bounded loss), t2 in [1, 2] (heavy tail); num_iters is numerical

    def __init__(self, *, t1: float = 0.8, t2: float = 1.2, num_iters: int = 5) -> None:
        super().__init__()
        check_range("bi_tempered", "t1", t1, low=0.0, high=1.0, high_inclusive=True)
        check_range("bi_tempered", "t2", t2, low=1.0)
        check_range("bi_tempered", "num_iters", num_iters, low=1)
        self.t1 = t1
        self.t2 = t2
        self.num_iters = num_iters

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p = tempered_log_softmax(upcast(logits), self.t2, self.num_iters)
        log_p_y = log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        t1 = self.t1
        # log_t1(p_y) = (p_y ** (1 - t1) - 1) / (1 - t1), via expm1 for precision; log p_y at t1 = 1.
        log_t1_p_y = log_p_y if t1 == 1 else torch.expm1((1 - t1) * log_p_y) / (1 - t1)
        mass = torch.exp((2 - t1) * log_p).sum(dim=-1)
        return -log_t1_p_y - (1 - mass) / (2 - t1)
