import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, Choice, Loss, check_range, upcast

SCHEMES = ("inverse_frequency", "effective_number")


@LOSSES.register("weighted_cross_entropy")
class WeightedCrossEntropyLoss(Loss):
    r"""Cross-entropy weighted per class from the training split's class counts, so rare classes count for more;
    a first thing to try on an imbalanced task.

        L(z, y) = w_y * CE(z, y),   w_c = K * v_c / sum_k v_k
        v_c = 1 / n_c                           (scheme = "inverse_frequency")
        v_c = (1 - beta) / (1 - beta ** n_c)    (scheme = "effective_number")

    K is the number of classes and n_c the training examples of class c; the weights sum to K, as in Cui et al. A
    class with no training example is given n_c = 1, so every weight stays finite. beta is used by effective_number
    only: beta -> 1 tends to inverse frequency, beta = 0 gives w_c = 1. Equal counts give exactly cross-entropy.
    These are per-example values; the trainer takes their plain mean over examples (sum / num_items), not torch's
    weight-normalised mean sum_i w_yi CE_i / sum_i w_yi of F.cross_entropy(weight=...), whose denominator depends
    on the batch: the plain mean keeps gradient accumulation exact.
    Reference: Cui et al., Class-Balanced Loss Based on Effective Number of Samples, CVPR 2019.
    """

    problem_types = frozenset({CLASSIFICATION})
    needs_class_counts = True
    search_space = {
        "scheme": Choice(("inverse_frequency", "effective_number")),
        "beta": Choice((0.9, 0.99, 0.999, 0.9999)),
    }  # Cui et al. 2019 (Class-Balanced Loss) search beta in {0.9, 0.99, 0.999, 0.9999}

    def __init__(self, *, scheme: str = "effective_number", beta: float = 0.999) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            choices = ", ".join(repr(s) for s in SCHEMES)
            raise ValueError(f"Loss 'weighted_cross_entropy': scheme={scheme!r} is not valid; valid choices: {choices}")
        check_range("weighted_cross_entropy", "beta", beta, low=0.0, high=1.0)
        self.scheme = scheme
        self.beta = beta

    def class_weights(self, counts: Tensor) -> Tensor:
        """Weights w_c (float64, summing to the number of classes) for class counts n_c."""
        counts = torch.as_tensor(counts, dtype=torch.float64).clamp(min=1.0)
        if self.scheme == "inverse_frequency":
            raw = 1.0 / counts
        else:
            raw = (1.0 - self.beta) / (1.0 - torch.pow(self.beta, counts))
        return raw * (len(raw) / raw.sum())

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        logits = upcast(logits)
        weights = self.class_weights(self.required_class_counts(logits)).to(logits.dtype)
        return weights[labels] * F.cross_entropy(logits, labels, reduction="none")
