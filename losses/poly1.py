import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


@LOSSES.register("poly1")
class Poly1Loss(Loss):
    r"""Cross-entropy plus a linear term in 1 - p_t: the first polynomial coefficient of cross-entropy, tuned.
    A one-parameter drop-in for cross-entropy; epsilon > 0 keeps pushing confident examples, epsilon < 0 relaxes.

        Poly1(z, y) = -log(p_t) + epsilon * (1 - p_t),   p_t = softmax(z)_y

    Equals cross-entropy at epsilon = 0. epsilon >= -1 (the paper's range) keeps the loss non-negative and
    decreasing in p_t.
    Reference: Leng et al., PolyLoss: A Polynomial Expansion Perspective of Classification Loss Functions, ICLR 2022.
    """

    problem_types = frozenset({CLASSIFICATION})
    search_space = {
        "epsilon": FloatRange(-1.0, 5.0)
    }  # Leng et al. 2022 (PolyLoss): epsilon >= -1 keeps the loss >= 0; they search small positive values

    def __init__(self, *, epsilon: float = 1.0) -> None:
        super().__init__()
        check_range("poly1", "epsilon", epsilon, low=-1.0)
        self.epsilon = epsilon

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p_t = F.log_softmax(upcast(logits), dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        # 1 - p_t via expm1 keeps precision near p_t = 1.
        return -log_p_t + self.epsilon * -torch.expm1(log_p_t)
