"""Checkpoint selection on the validation split, in memory, with early stopping.

Standard fine-tuning practice (Dodge et al. 2020, "Fine-Tuning Pretrained Language Models: Weight Initializations,
Data Orders, and Early Stopping"; Mosbach et al. 2021, "On the Stability of Fine-tuning BERT"): score the validation
split during training, keep the weights of the best evaluation by the task's main metric, stop once it has not
improved for ``patience`` evaluations, and score the test split with the kept weights. The test split plays no part
in the choice. The weights are copied to CPU memory (MiniLM-L6: about 90 MB), never written to disk.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class BestCheckpoint(TrainerCallback):
    """Keeps the weights of the best validation evaluation so far and stops training after ``patience``
    evaluations without an improvement larger than ``min_delta`` (``patience = 0``: never stops early).

    ``metric`` is the validation metric's name without the ``eval_`` prefix; a NaN value never counts as best.
    After training, ``restore(model)`` loads the kept weights (a no-op when no evaluation had a finite value).
    """

    def __init__(self, metric: str, *, greater_is_better: bool, patience: int = 0, min_delta: float = 0.0) -> None:
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience}")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta}")
        self.metric = metric
        self.greater_is_better = greater_is_better
        self.patience = patience
        self.min_delta = min_delta
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.evaluations: list[tuple[int, float]] = []  # (step, validation value) of every evaluation
        self.stopped_early = False
        self._bad_evaluations = 0
        self._weights: dict[str, torch.Tensor] | None = None

    def improves(self, value: float) -> bool:
        """Whether ``value`` beats the best so far by more than ``min_delta``."""
        if not math.isfinite(value):
            return False
        if self.best_value is None:
            return True
        gain = value - self.best_value if self.greater_is_better else self.best_value - value
        return gain > self.min_delta

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: dict[str, float] | None = None,
        model: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        key = f"eval_{self.metric}"
        if not metrics or key not in metrics:
            raise KeyError(f"validation metrics have no {key!r}; they have {sorted(metrics or {})}")
        value = float(metrics[key])
        self.evaluations.append((state.global_step, value))
        if self.improves(value):
            self.best_value, self.best_step = value, state.global_step
            self._bad_evaluations = 0
            if model is not None:
                self._weights = {
                    name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()
                }
            return
        self._bad_evaluations += 1
        if self.patience and self._bad_evaluations >= self.patience and not control.should_training_stop:
            control.should_training_stop = True
            self.stopped_early = True

    def restore(self, model: nn.Module) -> bool:
        """Load the best evaluation's weights into ``model``; False when there are none (keep the last weights)."""
        if self._weights is None:
            return False
        model.load_state_dict(self._weights)
        return True
