import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


@LOSSES.register("ldam")
class LdamLoss(Loss):
    r"""Label-distribution-aware margin loss: cross-entropy with a larger margin required of rarer classes, from the
    training split's class counts; for imbalanced tasks where the rare classes' generalisation matters.

        LDAM(z, y) = CE(s * (z - Delta_y * onehot(y)), y),   Delta_c = C / n_c ** (1/4)

    n_c is the training examples of class c (a class with none is given n_c = 1, keeping margins finite); C is set
    so that the largest margin, the rarest class's, is max_margin; s is scale. Equals cross-entropy at
    max_margin = 0 and scale = 1.
    The official code (kaidic/LDAM-DRW) uses s = 30 on the cosine logits of a normalised linear layer, which lie in
    [-1, 1]. Here the logits come from the model's ordinary, unnormalised head, so s = 30 would just multiply the
    loss and its gradients by about 30 (a hidden learning-rate change that other losses do not get) and make every
    margin 30 times larger in logit units. scale therefore defaults to 1: the margins are then in logit units.
    The deferred re-weighting (DRW) schedule of the paper is not part of this loss.
    Reference: Cao et al., Learning Imbalanced Datasets with Label-Distribution-Aware Margin Loss, NeurIPS 2019.
    """

    problem_types = frozenset({CLASSIFICATION})
    needs_class_counts = True
    search_space = {
        "max_margin": FloatRange(0.05, 1.0)
    }  # Cao et al. 2019 use a largest margin of 0.5; scale stays 1 (see above: s multiplies unnormalised logits)

    def __init__(self, *, max_margin: float = 0.5, scale: float = 1.0) -> None:
        super().__init__()
        check_range("ldam", "max_margin", max_margin, low=0.0)
        check_range("ldam", "scale", scale, low=0.0, low_inclusive=False)
        self.max_margin = max_margin
        self.scale = scale

    def class_margins(self, counts: Tensor) -> Tensor:
        """Margins Delta_c (float64, largest = max_margin) for class counts n_c."""
        inverse_root = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1.0).pow(-0.25)
        return self.max_margin * inverse_root / inverse_root.max()

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        logits = upcast(logits)
        margins = self.class_margins(self.required_class_counts(logits)).to(logits.dtype)
        shifted = logits - F.one_hot(labels, logits.shape[-1]) * margins[labels].unsqueeze(-1)
        return F.cross_entropy(self.scale * shifted, labels, reduction="none")
