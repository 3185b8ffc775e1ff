"""Loss base class: a loss maps (logits, labels) to per-example losses; the shared trainer reduces them."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bench.plugins import loss_defaults

CLASSIFICATION = "classification"
REGRESSION = "regression"


class Loss(nn.Module):
    """Subclasses declare ``problem_types``, take keyword-only hyper-parameters stored under the same name, and
    return a tensor of shape (batch,) from ``forward(logits, labels)``.

    Classification: logits (batch, num_labels), int64 labels (batch,).
    Regression: logits (batch, 1), float labels (batch,).
    """

    name: ClassVar[str]
    problem_types: ClassVar[frozenset[str]]

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def supports(cls, problem_type: str) -> bool:
        return problem_type in cls.problem_types

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
