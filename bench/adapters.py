"""Run a loss written the tutorial way, or a Trainer ``compute_loss_func``, in the matrix.

    from bench.adapters import register_compute_loss_func, register_module_loss
    register_module_loss("tutorial_mse", CustomMSELoss, problem_types={"regression"})
    register_compute_loss_func("my_ce", my_compute_loss_func, problem_types={"classification"})

Two contracts:

- An ``nn.Module`` whose ``forward(outputs, labels)`` returns the **mean** over the batch it is given (the tutorial's
  ``MSELoss``): a batch-level loss, which the trainer weights by the micro-batch's share of the examples, exact under
  gradient accumulation for a batch mean.
- A function with the Trainer's own ``compute_loss_func(outputs, labels, num_items_in_batch)`` signature: it gets the
  ``num_items_in_batch`` the Trainer counts (the examples of all micro-batches of one optimiser step in training; of
  the batch in evaluation) and its value is used as the Trainer uses it, as already normalised over the accumulated
  batch, with no reweighting. Called outside the Trainer, it gets the count of the batch it is given.

Both take their docstring (the formula and the ``Reference:`` line) from the wrapped class or function. For a
regression head of one output, labels are handed over shaped like the logits, ``(batch, 1)``, and torch's warning that
a loss broadcasts its input against a target of another size becomes an error.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

from bench.api.loss import REGRESSION, Loss
from bench.registry import LOSSES, Registry

# torch's UserWarning from mse_loss, l1_loss, smooth_l1_loss and huber_loss when input and target sizes differ.
BROADCAST_WARNING = r".*will likely lead to incorrect results due to broadcasting"


def _matching_labels(logits: Tensor, labels: Tensor) -> Tensor:
    """Regression labels shaped like a (batch, 1) head, so that a user's ``MSELoss()(logits, labels)`` compares each
    prediction with its own target instead of broadcasting (batch, 1) against (batch,) to (batch, batch)."""
    if logits.dim() == 2 and logits.shape[-1] == 1 and labels.dim() == 1 and labels.is_floating_point():
        return labels.unsqueeze(-1).to(logits.dtype)
    return labels


def _call_without_broadcasting(name: str, call: Callable[[], Tensor]) -> Tensor:
    """``call()``, with torch's size-mismatch broadcasting warning raised as an error naming the loss."""
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=BROADCAST_WARNING, category=UserWarning)
        try:
            value = call()
        except UserWarning as warning:
            raise ValueError(
                f"Loss {name!r} broadcasts its predictions against labels of another shape ({warning}). The adapter "
                "hands regression labels over shaped like the logits, (batch, 1): compare the two as they come, or "
                "squeeze both."
            ) from None
    if value.dim() != 0:
        raise ValueError(f"Loss {name!r} must return a scalar per batch, got shape {tuple(value.shape)}")
    return value


def _adapter_doc(wrapped: Any, adapter: str) -> str:
    """The wrapped class's or function's own docstring (formula and reference), and where it comes from."""
    origin = f"{wrapped.__module__}.{wrapped.__qualname__}"
    if not wrapped.__doc__:
        missing = "give it one with the formula (an indented line with '=') and a 'Reference:' line"
        return f"{origin} has no docstring: {missing}.\n\nRun by lossbench through the {adapter} adapter."
    own = inspect.cleandoc(wrapped.__doc__)
    return f"{own}\n\nRun by lossbench through the {adapter} adapter ({origin})."


def _class_name(name: str) -> str:
    return "".join(part.title() for part in name.split("_")) + "Loss"


class ModuleLossAdapter(Loss):
    """A tutorial-style ``nn.Module`` loss: ``forward(outputs, labels)`` returns the mean over its batch."""

    per_example = False
    module_class: ClassVar[type[nn.Module]]

    def __init__(self) -> None:
        super().__init__()
        self.module = self.module_class()

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        outputs = SequenceClassifierOutput(logits=logits)
        return _call_without_broadcasting(self.name, lambda: self.module(outputs, _matching_labels(logits, labels)))


class ComputeLossFuncAdapter(Loss):
    """A Trainer ``compute_loss_func(outputs, labels, num_items_in_batch)``: its value is already normalised over the
    accumulated batch, so the trainer passes ``num_items_in_batch`` through and uses the value as it is."""

    per_example = False
    takes_num_items_in_batch: ClassVar[bool] = True  # read by bench.trainer.LossTrainer
    function: ClassVar[Callable[..., Tensor]]  # stored as a staticmethod

    def forward(self, logits: Tensor, labels: Tensor, num_items_in_batch: Tensor | int | None = None) -> Tensor:
        if num_items_in_batch is None:  # called outside the Trainer: count this batch as the Trainer would
            num_items_in_batch = labels.ne(-100).sum()
        outputs = SequenceClassifierOutput(logits=logits)
        matching = _matching_labels(logits, labels)
        return _call_without_broadcasting(
            self.name, lambda: self.function(outputs, matching, num_items_in_batch=num_items_in_batch)
        )


def register_module_loss(
    name: str, module_class: type[nn.Module], *, problem_types: Iterable[str], registry: Registry = LOSSES
) -> type[Loss]:
    """Register an ``nn.Module`` whose ``forward(outputs, labels)`` returns the mean over the batch it is given.

    The module is built with no arguments once per run; its docstring becomes the loss's.
    """
    namespace = {
        "__module__": module_class.__module__,  # the plug-in module, not bench.adapters
        "__doc__": _adapter_doc(module_class, "module"),
        "problem_types": frozenset(problem_types),
        "module_class": module_class,
    }
    return registry.register(name)(type(_class_name(name), (ModuleLossAdapter,), namespace))


def register_compute_loss_func(
    name: str,
    fn: Callable[..., Tensor],
    *,
    problem_types: Iterable[str] = (REGRESSION,),
    registry: Registry = LOSSES,
) -> type[Loss]:
    """Register a function with the Trainer's ``compute_loss_func(outputs, labels, num_items_in_batch)`` signature.

    It gets the Trainer's ``num_items_in_batch`` and returns the loss normalised over it, e.g.
    ``F.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch``; its docstring becomes the loss's.
    """
    namespace = {
        "__module__": fn.__module__,  # the plug-in module, not bench.adapters
        "__doc__": _adapter_doc(fn, "compute_loss_func"),
        "problem_types": frozenset(problem_types),
        "function": staticmethod(fn),
    }
    return registry.register(name)(type(_class_name(name), (ComputeLossFuncAdapter,), namespace))
