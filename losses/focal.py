import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


@LOSSES.register("focal")
class FocalLoss(Loss):
    r"""Cross-entropy that down-weights well-classified examples, focusing training on hard ones.

        FL(p_t) = -(1 - p_t) ** gamma * log(p_t),   p_t = softmax(z)_y

    Equals cross-entropy at gamma = 0.
    Reference: Lin et al., Focal Loss for Dense Object Detection, ICCV 2017.
    """

    problem_types = frozenset({CLASSIFICATION})
    search_space = {"gamma": FloatRange(0.0, 5.0)}  # Lin et al. 2017, Table 1a: gamma from 0 (cross-entropy) to 5

    def __init__(self, *, gamma: float = 2.0) -> None:
        super().__init__()
        check_range("focal", "gamma", gamma, low=0.0)
        self.gamma = gamma

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p_t = F.log_softmax(upcast(logits), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        if self.gamma == 0:
            return -log_p_t
        # 1 - p_t via expm1 keeps precision near p_t = 1; the clamp keeps the gradient of x**gamma finite at 0.
        one_minus_p_t = (-torch.expm1(log_p_t)).clamp(min=torch.finfo(log_p_t.dtype).tiny)
        return -(one_minus_p_t**self.gamma) * log_p_t
