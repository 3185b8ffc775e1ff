import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, Loss, upcast


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(Loss):
    r"""Softmax cross-entropy, the default for fine-tuning a classifier.

        CE(z, y) = -log softmax(z)_y

    Reference: e.g. Goodfellow, Bengio & Courville, Deep Learning, 2016, section 6.2.2.
    """

    problem_types = frozenset({CLASSIFICATION})

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(upcast(logits), labels, reduction="none")
