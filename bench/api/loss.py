"""The ``Loss`` base class: a loss maps (logits, labels) to per-example losses; the shared trainer reduces them.

Also the helpers that losses share: dtype promotion, regression shapes, parameter range checks and the reverse
cross-entropy of the noise-robust losses. Loss modules import these through ``losses.base``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.api.params import loss_defaults
from bench.api.space import Spec

CLASSIFICATION = "classification"
REGRESSION = "regression"


class Loss(nn.Module):
    """Subclasses declare ``problem_types``, take keyword-only hyper-parameters stored under the same name, and
    return a tensor of shape (batch,) from ``forward(logits, labels)``: one loss per example; the trainer reduces.

    Classification: logits (batch, num_labels), int64 labels (batch,).
    Regression: logits (batch, outputs_per_label), float labels (batch,).

    Capabilities, declared on the class so the runner and the tests read them from one place:

    - ``needs_class_counts``: the runner calls ``set_class_counts`` with the training split's class counts first.
    - ``needs_embeddings``: ``forward`` also receives ``embeddings`` (batch, hidden), the encoder's [CLS] state;
      the trainer asks the model for hidden states only for such losses.
    - ``outputs_per_label``: head outputs per label (``gaussian_nll`` predicts a mean and a log-variance: 2).
    - ``per_example = False``: ``forward`` returns one scalar for the whole batch instead of (batch,) values.
    - ``batch_dependent = True``: an example's loss depends on the other examples of the batch (a correlation, a
      contrastive term); gradient accumulation is then not the same as a larger batch (see ``bench.trainer``).
    - ``search_space``: the range of each hyper-parameter ``lossbench tune`` searches, by keyword
      (``bench.api.space``: ``FloatRange``, ``IntRange``, ``Choice``); empty: only the learning rate is tuned.
    """

    name: ClassVar[str]
    problem_types: ClassVar[frozenset[str]]
    needs_class_counts: ClassVar[bool] = False
    needs_embeddings: ClassVar[bool] = False
    outputs_per_label: ClassVar[int] = 1
    per_example: ClassVar[bool] = True
    batch_dependent: ClassVar[bool] = False
    search_space: ClassVar[Mapping[str, Spec]] = MappingProxyType({})

    class_counts: Tensor | None

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("class_counts", None, persistent=False)

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def supports(cls, problem_type: str) -> bool:
        return problem_type in cls.problem_types

    def head_size(self, num_labels: int) -> int:
        """Number of model outputs this loss needs for a task with ``num_labels`` labels (1 for regression)."""
        return num_labels * self.outputs_per_label

    def set_class_counts(self, counts: Tensor | list[int]) -> None:
        """Training-split examples per class, for losses that weight or shift classes by frequency."""
        counts = torch.as_tensor(counts, dtype=torch.float64)
        if counts.dim() != 1 or (counts < 0).any() or counts.sum() <= 0:
            raise ValueError(f"Loss {self.name!r}: class counts must be non-negative and not all zero, got {counts}")
        self.class_counts = counts

    def required_class_counts(self, logits: Tensor) -> Tensor:
        """The class counts on the logits' device, checked to be set and to match the logits' width."""
        if self.class_counts is None:
            raise ValueError(f"Loss {self.name!r} needs class counts: call set_class_counts(counts) first")
        if len(self.class_counts) != logits.shape[-1]:
            count = len(self.class_counts)
            raise ValueError(f"Loss {self.name!r}: {count} class counts for {logits.shape[-1]} classes")
        return self.class_counts.to(logits.device)

    @property
    def params(self) -> dict[str, Any]:
        """The hyper-parameters this instance was built with."""
        return {key: getattr(self, key) for key in loss_defaults(type(self))}

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.params.items())


def upcast(tensor: Tensor) -> Tensor:
    """At least float32 (bfloat16/float16 logits are promoted; float64 stays float64 for gradcheck)."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def regression_predictions(logits: Tensor, labels: Tensor) -> Tensor:
    """Predictions of shape (batch,) from a (batch, 1) regression head, checked against the labels' shape.

    Guards the tutorial trap where (batch, 1) and (batch,) broadcast to (batch, batch).
    """
    predictions = logits.squeeze(-1) if logits.dim() == 2 and logits.shape[-1] == 1 else logits
    if predictions.shape != labels.shape:
        raise ValueError(f"Regression logits {tuple(logits.shape)} do not match labels {tuple(labels.shape)}")
    return upcast(predictions)


def regression_targets(labels: Tensor, predictions: Tensor) -> Tensor:
    """Float labels in the predictions' dtype."""
    return labels.to(predictions.dtype)


def check_range(
    loss: str,
    name: str,
    value: float,
    *,
    low: float,
    high: float = float("inf"),
    low_inclusive: bool = True,
    high_inclusive: bool = False,
) -> None:
    """Raise a ValueError naming the loss, the parameter, its value and the valid range."""
    above = value >= low if low_inclusive else value > low
    below = value <= high if high_inclusive else value < high
    if not (above and below):
        interval = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
        raise ValueError(f"Loss {loss!r}: {name}={value!r} is out of range; valid range is {interval}")


def check_robust_weights(loss: str, alpha: float, beta: float, log_zero: float) -> None:
    """Validate the weights of an active + passive (reverse cross-entropy) loss: alpha, beta >= 0, not both 0; A < 0."""
    check_range(loss, "alpha", alpha, low=0.0)
    check_range(loss, "beta", beta, low=0.0)
    if alpha == 0 and beta == 0:
        raise ValueError(f"Loss {loss!r}: alpha={alpha!r} and beta={beta!r} are both 0; at least one must be > 0")
    check_range(loss, "log_zero", log_zero, low=float("-inf"), high=0.0, low_inclusive=False)


def reverse_cross_entropy(log_p_y: Tensor, log_zero: float) -> Tensor:
    """-sum_k p_k log q_k for the one-hot label q with log 0 clipped to A = log_zero, which is -A * (1 - p_y).

    Computed as A * expm1(log p_y): expm1 keeps precision near p_y = 1.
    """
    return log_zero * torch.expm1(log_p_y)
