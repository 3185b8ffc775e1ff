"""The one Trainer that runs every (task, loss) pairing: a per-example loss reduced in one place."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils.data import SequentialSampler
from transformers import Trainer

from bench.api.loss import Loss


def reduce_loss(per_example: Tensor, num_items_in_batch: Tensor | int | None) -> Tensor:
    """Sum of per-example losses over the number of examples in the whole accumulated batch.

    Under gradient accumulation the Trainer passes ``num_items_in_batch`` (the examples across all micro-batches of
    one optimiser step) and adds up the micro-batch losses, so ``sum / num_items_in_batch`` gives exactly the gradient
    of the mean over the full batch, even when micro-batches differ in size. Without it (evaluation): the plain mean.
    """
    if num_items_in_batch is None:
        return per_example.mean()
    return per_example.sum() / num_items_in_batch


def weight_batch_loss(batch_value: Tensor, batch_size: int, num_items_in_batch: Tensor | int | None) -> Tensor:
    """A batch-level loss (one scalar per micro-batch, e.g. 1 - Pearson r) times the micro-batch's share of examples.

    Under gradient accumulation the update is then the size-weighted mean of the micro-batch losses' gradients. A
    batch statistic is computed within each micro-batch, never over the full batch, so accumulation changes what such
    a loss means (a correlation over 4 examples is not one over 8); without accumulation it is exact.
    """
    if num_items_in_batch is None:
        return batch_value
    return batch_value * batch_size / num_items_in_batch


class LossShapeError(ValueError):
    """A loss returned a tensor of the wrong shape: the run stops at once and is recorded as ``status=error``."""


def check_loss_shape(loss: Loss, values: Tensor, batch_size: int) -> None:
    """A per-example loss must return shape (batch,), a batch-level one (``per_example = False``) a scalar.

    Anything else would still reduce to a number and train in silence, e.g. (batch, batch) from (batch, 1)
    predictions broadcast against (batch,) labels.
    """
    expected = (batch_size,) if loss.per_example else ()
    actual = tuple(values.shape)
    if actual != expected:
        kind = "a per-example loss" if loss.per_example else "a batch-level loss (per_example = False)"
        raise LossShapeError(
            f"Loss {loss.name!r} returned shape {actual}; {kind} must return shape {expected} for a batch of "
            f"{batch_size}. {_likely_cause(loss, actual, batch_size)}"
        )


def _likely_cause(loss: Loss, actual: tuple[int, ...], batch_size: int) -> str:
    if actual == (batch_size, batch_size):
        return (
            f"{actual}: did it broadcast (batch, 1) predictions against (batch,) labels? Squeeze the predictions "
            "first (losses.base.regression_predictions does, and checks the shapes)."
        )
    if loss.per_example and actual == ():
        return "It reduced the batch to one value: return the unreduced values, or declare per_example = False."
    if not loss.per_example and actual == (batch_size,):
        return "It returned one value per example: declare per_example = True (the default), or reduce them."
    if loss.per_example and actual[:1] == (batch_size,):
        return "Reduce the trailing dimensions (e.g. sum over classes) to one value per example."
    return "See the Loss docstring in losses/base.py for the shapes."


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite: the run stops at once and is recorded as ``status=diverged``."""

    def __init__(self, step: int, value: float) -> None:
        super().__init__(f"training loss is {value} at step {step}")
        self.step = step


class LossTrainer(Trainer):
    """A ``transformers.Trainer`` whose training and evaluation loss is a lossbench ``Loss``.

    The loss plugs into the Trainer's real hook, ``compute_loss_func(outputs, labels, num_items_in_batch)``: the
    Trainer then pops the labels (the model computes no loss of its own), counts ``num_items_in_batch`` over the
    accumulated micro-batches, and treats the returned loss as already normalised for gradient accumulation.
    (There is no ``loss_fn=`` argument; passing one raises TypeError.) Losses that need the sentence embedding get
    the last layer's [CLS] state; only they make the model return hidden states. Every batch's loss output is checked
    for shape (``check_loss_shape``). A ``compute_loss_func`` registered through ``bench.adapters`` gets
    ``num_items_in_batch`` and its value is used as it is, as the Trainer itself would.
    """

    def __init__(self, *args: Any, loss: Loss, **kwargs: Any) -> None:
        self.loss = loss
        super().__init__(*args, compute_loss_func=self.compute_custom_loss, **kwargs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.loss.needs_embeddings:
            inputs = {**inputs, "output_hidden_states": True}
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _get_eval_sampler(self, eval_dataset):
        # In order: the runner sorts evaluation splits by length, so each batch pads little. (The Trainer's own
        # length grouping, on for training, would shuffle them into mega-batches and pad ~1.5x more.)
        return None if eval_dataset is None else SequentialSampler(eval_dataset)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        # Hidden states requested for the loss are not predictions.
        ignore_keys = [*(ignore_keys or []), "hidden_states", "attentions"]
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def compute_custom_loss(
        self, outputs: Any, labels: Tensor, num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        loss = self._reduced_loss(outputs, labels, num_items_in_batch)
        if self.model.training and not torch.isfinite(loss):
            raise DivergedError(self.state.global_step + 1, loss.item())
        return loss

    def _reduced_loss(self, outputs: Any, labels: Tensor, num_items_in_batch: Tensor | int | None) -> Tensor:
        """The loss of one micro-batch, normalised over the accumulated batch as the Trainer expects."""
        if getattr(self.loss, "takes_num_items_in_batch", False):
            # A Trainer compute_loss_func (bench.adapters): already normalised over the accumulated batch.
            loss = self.loss(outputs.logits, labels, num_items_in_batch=num_items_in_batch)
            check_loss_shape(self.loss, loss, labels.shape[0])
            return loss
        extra = {"embeddings": outputs.hidden_states[-1][:, 0]} if self.loss.needs_embeddings else {}
        values = self.loss(outputs.logits, labels, **extra)
        check_loss_shape(self.loss, values, labels.shape[0])
        if self.loss.per_example:
            return reduce_loss(values, num_items_in_batch)
        return weight_batch_loss(values, labels.shape[0], num_items_in_batch)
