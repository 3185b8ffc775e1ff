import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


@LOSSES.register("label_smoothing")
class LabelSmoothingLoss(Loss):
    r"""Cross-entropy against a target that mixes the one-hot label with the uniform distribution over K classes.

        LS(z, y) = -(1 - eps) * log p_y - (eps / K) * sum_k log p_k,   p = softmax(z)

    Equals cross-entropy at eps = 0. Discourages over-confident logits; often improves calibration.
    Reference: Szegedy et al., Rethinking the Inception Architecture for Computer Vision, CVPR 2016.
    """

    problem_types = frozenset({CLASSIFICATION})
    search_space = {
        "eps": FloatRange(0.0, 0.3)
    }  # Szegedy et al. 2016 use 0.1; above 0.3 the targets approach uniform on 2-class tasks

    def __init__(self, *, eps: float = 0.1) -> None:
        super().__init__()
        check_range("label_smoothing", "eps", eps, low=0.0, high=1.0)
        self.eps = eps

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        log_p = F.log_softmax(upcast(logits), dim=-1)
        nll = -log_p.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
        uniform = -log_p.mean(dim=-1)
        return (1 - self.eps) * nll + self.eps * uniform
