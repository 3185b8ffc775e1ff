"""The one Trainer that runs every (task, loss) pairing: a per-example loss reduced in one place."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import Trainer


def reduce_loss(per_example: Tensor, num_items_in_batch: Tensor | int | None) -> Tensor:
    """Sum of per-example losses over the number of examples in the whole accumulated batch.

    Under gradient accumulation the Trainer passes ``num_items_in_batch`` (the examples across all micro-batches of
    one optimiser step) and adds up the micro-batch losses, so ``sum / num_items_in_batch`` gives exactly the gradient
    of the mean over the full batch, even when micro-batches differ in size. Without it (evaluation): the plain mean.
    """
    if num_items_in_batch is None:
        return per_example.mean()
    return per_example.sum() / num_items_in_batch


class LossTrainer(Trainer):
    """A ``transformers.Trainer`` whose training and evaluation loss is a lossbench ``Loss``.

    The loss plugs into the Trainer's real hook, ``compute_loss_func(outputs, labels, num_items_in_batch)``: the
    Trainer then pops the labels (the model computes no loss of its own), counts ``num_items_in_batch`` over the
    accumulated micro-batches, and treats the returned loss as already normalised for gradient accumulation.
    (There is no ``loss_fn=`` argument; passing one raises TypeError.)
    """

    def __init__(self, *args: Any, loss: torch.nn.Module, **kwargs: Any) -> None:
        self.loss = loss
        super().__init__(*args, compute_loss_func=self.compute_custom_loss, **kwargs)

    def compute_custom_loss(
        self, outputs: Any, labels: Tensor, num_items_in_batch: Tensor | int | None = None
    ) -> Tensor:
        return reduce_loss(self.loss(outputs.logits, labels), num_items_in_batch)
