from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, Loss, check_range, regression_predictions, regression_targets


@LOSSES.register("pearson")
class PearsonLoss(Loss):
    r"""One minus the Pearson correlation between predictions and targets over the batch: trains directly for a
    correlation-scored task. Invariant to the predictions' scale and offset, so mse and mae of its predictions are
    not meaningful; compare it on pearson and spearman.

        L = 1 - sum_i a_i * b_i / sqrt(sum_i a_i ** 2 * sum_i b_i ** 2 + eps)
        a = y_hat - mean(y_hat),  b = y - mean(y)   (over the examples of the batch)

    One value per batch (``per_example = False``), in [0, 2]. A batch statistic: under gradient accumulation each
    micro-batch's correlation is weighted by its share of examples (see ``bench.trainer.weight_batch_loss``), which is
    not the correlation of the full batch. A batch of one example (no variance) gives L = 1 and no gradient.
    Reference: Pearson, Notes on Regression and Inheritance in the Case of Two Parents, Proc. Royal Society 1895.
    """

    problem_types = frozenset({REGRESSION})
    per_example = False
    batch_dependent = True

    def __init__(self, *, eps: float = 1e-8) -> None:
        super().__init__()
        check_range("pearson", "eps", eps, low=0.0, low_inclusive=False)
        self.eps = eps

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        predictions = regression_predictions(logits, labels)
        targets = regression_targets(labels, predictions)
        centred_predictions = predictions - predictions.mean()
        centred_targets = targets - targets.mean()
        covariance = (centred_predictions * centred_targets).sum()
        norms = (centred_predictions.pow(2).sum() * centred_targets.pow(2).sum() + self.eps).sqrt()
        return 1 - covariance / norms
