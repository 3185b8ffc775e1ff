import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


@LOSSES.register("gce")
class GceLoss(Loss):
    r"""Generalized cross-entropy: a Box-Cox interpolation between cross-entropy and the bounded, noise-robust mean
    absolute error; use it when training labels are noisy.

        L_q(z, y) = (1 - p_y ** q) / q,   p = softmax(z)

    q = 1 gives the MAE-like 1 - p_y; q -> 0 approaches cross-entropy -log p_y. The loss is bounded by 1 / q.
    p_y ** q is computed as exp(q * log p_y) from log_softmax, and 1 - exp(.) with expm1.
    Reference: Zhang & Sabuncu, Generalized Cross Entropy Loss for Training Deep Neural Networks with Noisy Labels, NeurIPS 2018.
    """  # noqa: E501 (the README table reads the reference from one line)

    problem_types = frozenset({CLASSIFICATION})
    search_space = {
        "q": FloatRange(0.1, 1.0)
    }  # Zhang & Sabuncu 2018: q in (0, 1], q -> 0 is cross-entropy, 1 is MAE; they use 0.7

    def __init__(self, *, q: float = 0.7) -> None:
        super().__init__()
        check_range("gce", "q", q, low=0.0, high=1.0, low_inclusive=False, high_inclusive=True)
        self.q = q

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p_y = F.log_softmax(upcast(logits), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        return -torch.expm1(self.q * log_p_y) / self.q
