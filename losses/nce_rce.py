import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_robust_weights, reverse_cross_entropy, upcast


@LOSSES.register("nce_rce")
class NceRceLoss(Loss):
    r"""Active-passive loss: normalized cross-entropy (active) plus reverse cross-entropy (passive), both robust to
    label noise, combined to avoid the underfitting of either alone; use it when training labels are noisy.

        L   = alpha * NCE + beta * RCE,   p = softmax(z)
        NCE = log p_y / sum_k log p_k = CE_y / sum_k CE_k   (in [0, 1])
        RCE = -A * (1 - p_y),   A = log_zero (the clipped log 0 of the one-hot label)

    beta = 0 gives NCE alone, alpha = 0 RCE alone (with A = -2, RCE equals the MAE sum_k |p_k - onehot(y)_k|).
    The defaults are the paper's CIFAR-10 setting (alpha = 1, beta = 1; CIFAR-100 uses alpha = 10, beta = 0.1) with
    the A = -4 of symmetric cross-entropy; the authors' code clips the one-hot label at 1e-4 (A ~ -9.2).
    For two or more classes sum_k -log p_k >= K log K > 0, so the ratio needs no clamp, even at extreme logits.
    Reference: Ma et al., Normalized Loss Functions for Deep Learning with Noisy Labels, ICML 2020.
    """

    problem_types = frozenset({CLASSIFICATION})
    search_space = {
        "alpha": FloatRange(0.1, 10.0, log=True),
        "beta": FloatRange(0.1, 10.0, log=True),
    }  # Ma et al. 2020 (Normalized Loss Functions): alpha and beta from 0.1 to 10 across datasets

    def __init__(self, *, alpha: float = 1.0, beta: float = 1.0, log_zero: float = -4.0) -> None:
        super().__init__()
        check_robust_weights("nce_rce", alpha, beta, log_zero)
        self.alpha = alpha
        self.beta = beta
        self.log_zero = log_zero

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p = F.log_softmax(upcast(logits), dim=-1)
        log_p_y = log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        normalized = log_p_y / log_p.sum(dim=-1)
        reverse = reverse_cross_entropy(log_p_y, self.log_zero)
        return self.alpha * normalized + self.beta * reverse
