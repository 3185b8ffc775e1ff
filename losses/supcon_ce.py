import torch
import torch.nn.functional as F
from torch import Tensor

from bench.registry import LOSSES
from losses.base import CLASSIFICATION, FloatRange, Loss, check_range, upcast


@LOSSES.register("supcon_ce")
class SupconCeLoss(Loss):
    r"""Cross-entropy plus a supervised contrastive term on the sentence embedding: examples of the same class are
    pulled together and others pushed apart in the encoder's [CLS] space. Helps most in few-shot and noisy settings.

        L_i   = (1 - lam) * CE(z_i, y_i) + lam * SCL_i
        SCL_i = -1 / (N_{y_i} - 1) * sum_{j != i, y_j = y_i} log softmax_{k != i}(e_i . e_k / tau)_j

    e = the L2-normalised [CLS] embeddings of the batch, N_{y_i} = examples of class y_i in the batch. An example
    with no other example of its class in the batch has SCL_i = 0. Equals cross-entropy at lam = 0. The paper sums SCL
    over the batch; here each example carries its own term and the trainer averages, so lam weighs the two means.
    The term depends on the whole batch (``batch_dependent``): gradient accumulation contrasts within micro-batches.
    Reference: Gunel et al., Supervised Contrastive Learning for Pre-trained Language Model Fine-tuning, ICLR 2021.
    """

    problem_types = frozenset({CLASSIFICATION})
    needs_embeddings = True
    batch_dependent = True
    search_space = {
        "lam": FloatRange(0.1, 1.0),
        "temperature": FloatRange(0.1, 0.7),
    }  # Gunel et al. 2021 search lam in {0.1, ..., 0.9, 1.0} and temperature in {0.1, 0.3, 0.5, 0.7}

    def __init__(self, *, lam: float = 0.9, temperature: float = 0.3) -> None:
        super().__init__()
        check_range("supcon_ce", "lam", lam, low=0.0, high=1.0, high_inclusive=True)
        check_range("supcon_ce", "temperature", temperature, low=0.0, low_inclusive=False)
        self.lam = lam
        self.temperature = temperature

    def forward(self, logits: Tensor, labels: Tensor, *, embeddings: Tensor) -> Tensor:
        cross_entropy = F.cross_entropy(upcast(logits), labels, reduction="none")
        if self.lam == 0:
            return cross_entropy
        return (1 - self.lam) * cross_entropy + self.lam * self.contrastive(upcast(embeddings), labels)

    def contrastive(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """SCL_i for every example of the batch, shape (batch,)."""
        normalised = F.normalize(embeddings, dim=-1)
        similarity = normalised @ normalised.T / self.temperature
        self_pair = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        log_prob = F.log_softmax(similarity.masked_fill(self_pair, float("-inf")), dim=-1)
        positives = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~self_pair
        num_positives = positives.sum(dim=-1)
        # masked_fill, not multiplication: the diagonal's log-probability is -inf and 0 * -inf is nan.
        positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=-1)
        return -positive_log_prob / num_positives.clamp(min=1)
