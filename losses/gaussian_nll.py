import math

import torch
from torch import Tensor

from bench.registry import LOSSES
from losses.base import REGRESSION, Loss, regression_targets, upcast

# log-variance bounds, as torch.nn.GaussianNLLLoss clamps the variance: keeps values and gradients finite.
MIN_LOG_VARIANCE, MAX_LOG_VARIANCE = -14.0, 14.0


@LOSSES.register("gaussian_nll")
class GaussianNllLoss(Loss):
    r"""Heteroscedastic Gaussian negative log-likelihood: the head predicts a mean and a log-variance per example, so
    the model learns how uncertain each prediction is and noisy examples pull less on the mean.

        NLL(mu, s, y) = (s + (y - mu) ** 2 * exp(-s) + log(2 * pi)) / 2,   (mu, s) = the two head outputs

    The log-variance s is clamped to [-14, 14]. With s fixed at 0 (unit variance) it equals mse / 2 + log(2 pi) / 2.
    Metrics use mu, the first output.
    Reference: Nix & Weigend, Estimating the Mean and Variance of the Target Probability Distribution, ICNN 1994.
    """

    problem_types = frozenset({REGRESSION})
    outputs_per_label = 2

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        if logits.dim() != 2 or logits.shape[-1] != 2 or labels.shape != logits.shape[:1]:
            shapes = f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
            raise ValueError(f"Loss 'gaussian_nll' needs logits (batch, 2) and labels (batch,), got logits {shapes}")
        mean, log_variance = upcast(logits).unbind(dim=-1)
        log_variance = log_variance.clamp(MIN_LOG_VARIANCE, MAX_LOG_VARIANCE)
        targets = regression_targets(labels, mean)
        return (log_variance + (targets - mean) ** 2 * torch.exp(-log_variance) + math.log(2 * math.pi)) / 2
