"""Run a loss written the tutorial way, or a Trainer ``compute_loss_func``, in the matrix.

    from bench.adapters import register_module_loss
    register_module_loss("tutorial_mse", CustomMSELoss, problem_types={"regression"})

Both kinds return one already-reduced value per batch, so they become batch-level losses (``per_example = False``):
the trainer weights each micro-batch's value by its share of the examples, which is exact under gradient accumulation
when the value is a mean of per-example losses (as the tutorial's ``MSELoss`` is).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import Tensor, nn
from transformers.modeling_outputs import SequenceClassifierOutput

from bench.registry import LOSSES, Registry
from losses.base import REGRESSION, Loss


def _matching_labels(logits: Tensor, labels: Tensor) -> Tensor:
    """Regression labels shaped like a (batch, 1) head, so that a user's ``MSELoss()(logits, labels)`` compares each
    prediction with its own target instead of broadcasting (batch, 1) against (batch,) to (batch, batch)."""
    if logits.dim() == 2 and logits.shape[-1] == 1 and labels.dim() == 1 and labels.is_floating_point():
        return labels.unsqueeze(-1).to(logits.dtype)
    return labels


def _adapter_class(name: str, problem_types: Iterable[str], doc: str, call: Callable[..., Tensor]) -> type[Loss]:
    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        value = call(self, SequenceClassifierOutput(logits=logits), _matching_labels(logits, labels))
        if value.dim() != 0:
            raise ValueError(f"Loss {name!r} must return a scalar per batch, got shape {tuple(value.shape)}")
        return value

    namespace = {"__doc__": doc, "problem_types": frozenset(problem_types), "per_example": False, "forward": forward}
    return type("".join(part.title() for part in name.split("_")) + "Loss", (Loss,), namespace)


def register_module_loss(
    name: str, module_class: type[nn.Module], *, problem_types: Iterable[str], registry: Registry = LOSSES
) -> type[Loss]:
    """Register an ``nn.Module`` whose ``forward(outputs, labels)`` returns a scalar (the tutorial's custom loss).

    The module is built with no arguments once per run.
    """

    def call(self, outputs, labels):
        if not hasattr(self, "module"):
            self.module = module_class()
        return self.module(outputs, labels)

    doc = f"{module_class.__name__} ({module_class.__module__}) via the module adapter.\n\nReference: user-defined."
    return registry.register(name)(_adapter_class(name, problem_types, doc, call))


def register_compute_loss_func(
    name: str,
    fn: Callable[..., Tensor],
    *,
    problem_types: Iterable[str] = (REGRESSION,),
    registry: Registry = LOSSES,
) -> type[Loss]:
    """Register a function with the Trainer's ``compute_loss_func(outputs, labels, num_items_in_batch)`` signature.

    It is called with ``num_items_in_batch=None`` and must then return the mean over the batch it is given.
    """

    def call(self, outputs, labels):
        return fn(outputs, labels, num_items_in_batch=None)

    doc = f"{getattr(fn, '__name__', 'function')} via the compute_loss_func adapter.\n\nReference: user-defined."
    return registry.register(name)(_adapter_class(name, problem_types, doc, call))
