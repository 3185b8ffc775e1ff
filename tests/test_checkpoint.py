"""Checkpoint selection: the best validation evaluation's weights are kept in memory, training stops after
``patience`` evaluations without improvement, and nothing but the validation metrics enters the choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from transformers import Trainer, TrainerControl, TrainerState, TrainingArguments
from transformers.modeling_outputs import SequenceClassifierOutput

from bench.checkpoint import BestCheckpoint


def evaluate_sequence(callback: BestCheckpoint, model: nn.Module, values: list[float]) -> TrainerControl:
    """Feed validation values to the callback at steps 1, 2, ...; the model's weight is set to the step first."""
    state, control = TrainerState(), TrainerControl()
    for step, value in enumerate(values, start=1):
        state.global_step = step
        with torch.no_grad():
            model.weight.fill_(step)
        callback.on_evaluate(None, state, control, metrics={"eval_accuracy": value}, model=model)
        if control.should_training_stop:
            break
    return control


def test_keeps_the_best_weights_and_stops_after_patience():
    model, callback = nn.Linear(2, 1, bias=False), BestCheckpoint("accuracy", greater_is_better=True, patience=3)
    control = evaluate_sequence(callback, model, [0.5, 0.7, 0.6, 0.65, 0.69, 0.9])
    assert control.should_training_stop and callback.stopped_early
    assert (callback.best_step, callback.best_value) == (2, 0.7)
    assert [step for step, _ in callback.evaluations] == [1, 2, 3, 4, 5]  # stopped before the 0.9
    assert model.weight.flatten().tolist() == [5.0, 5.0]
    assert callback.restore(model)
    assert model.weight.flatten().tolist() == [2.0, 2.0]


def test_lower_is_better_min_delta_and_no_early_stop():
    model = nn.Linear(2, 1, bias=False)
    callback = BestCheckpoint("accuracy", greater_is_better=False, patience=0, min_delta=0.05)
    control = evaluate_sequence(callback, model, [1.0, 0.97, 0.9, 0.88, 2.0, 3.0, 4.0])
    assert not control.should_training_stop  # patience 0: runs to the end
    assert (callback.best_step, callback.best_value) == (3, 0.9)  # 0.97 and 0.88 improve by less than min_delta


def test_nan_is_never_best():
    model, callback = nn.Linear(2, 1, bias=False), BestCheckpoint("accuracy", greater_is_better=True)
    evaluate_sequence(callback, model, [math.nan, math.nan])
    assert callback.best_step is None and not callback.restore(model)  # the last weights stay
    evaluate_sequence(callback, model, [math.nan, 0.1])
    assert callback.best_step == 2


def test_missing_metric_and_bad_settings_are_refused():
    callback = BestCheckpoint("f1_macro", greater_is_better=True)
    with pytest.raises(KeyError, match="eval_f1_macro.*eval_accuracy"):
        callback.on_evaluate(None, TrainerState(), TrainerControl(), metrics={"eval_accuracy": 1.0})
    with pytest.raises(ValueError, match="patience"):
        BestCheckpoint("accuracy", greater_is_better=True, patience=-1)


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)

    def forward(self, features, labels=None):
        logits = self.linear(features)
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss=loss, logits=logits)


class Rows(torch.utils.data.Dataset):
    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.features = torch.randn(n, 3, generator=generator)
        self.labels = (self.features[:, 0] > 0).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict:
        return {"features": self.features[index], "labels": self.labels[index]}


def test_a_real_trainer_stops_early_and_restores(tmp_path):
    scores = iter([0.9, 0.5, 0.4, 0.3, 0.2, 0.1] + [0.0] * 100)  # the validation metric only falls after step 1
    seen = []

    def validation_metrics(prediction) -> dict:
        seen.append(len(prediction.label_ids))
        return {"accuracy": next(scores)}

    model = Toy()
    callback = BestCheckpoint("accuracy", greater_is_better=True, patience=2)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=20,
        per_device_train_batch_size=4,
        learning_rate=0.1,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=Rows(16, 0),
        eval_dataset=Rows(7, 1),
        compute_metrics=validation_metrics,
        callbacks=[callback],
    )
    trainer.train()
    assert trainer.state.global_step == 3  # best at step 1, then 2 evaluations without improvement
    assert set(seen) == {7}  # only the 7 validation rows were ever scored
    assert callback.best_step == 1 and callback.stopped_early
    after_training = {k: v.clone() for k, v in model.state_dict().items()}
    assert callback.restore(model)
    assert not all(torch.equal(after_training[k], v) for k, v in model.state_dict().items())
    assert np.isclose(callback.best_value, 0.9)
