"""The shared LossTrainer: the loss goes through the Trainer's real hook and is exact under gradient accumulation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from torch import nn
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, TrainingArguments

from bench import get_loss, runner
from bench.adapters import register_compute_loss_func, register_module_loss
from bench.config import TrainConfig
from bench.matrix import build_matrix
from bench.models import DEFAULT_MODEL, resolve_model
from bench.registry import LOSSES, Registry
from bench.results import ResultsStore
from bench.trainer import LossShapeError, LossTrainer, check_loss_shape, reduce_loss, weight_batch_loss
from losses.base import REGRESSION, Loss
from tests.helpers import tiny_bert_config

TEXTS = [
    "a gripping, funny film",
    "dull",
    "the worst two hours I have spent in a cinema this year",
    "what is the capital of France ?",
    "free entry to win a prize, text now",
    "ok see you later",
    "an overlong but often moving portrait of a family",
]
NUM_CLASSES = 3


def _cases(*, batch_dependent: bool) -> list:
    cases = []
    for name in LOSSES.names():
        if LOSSES.get(name).batch_dependent != batch_dependent:
            continue
        for problem_type in sorted(LOSSES.get(name).problem_types):
            cases.append(pytest.param(name, problem_type, id=f"{name}-{problem_type}"))
    return cases


def _dataset(problem_type: str) -> Dataset:
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    if problem_type == "classification":
        labels = [i % NUM_CLASSES for i in range(len(TEXTS))]
    else:
        labels = [float(i) - 3.0 for i in range(len(TEXTS))]
    data = tokenizer(TEXTS, truncation=True, max_length=32)
    return Dataset.from_dict({**data, "label": labels})


def _loss(loss_name: str, problem_type: str):
    loss = get_loss(loss_name)
    if loss.needs_class_counts:
        loss.set_class_counts([3, 2, 2])
    return loss


def _model(loss, problem_type: str) -> BertForSequenceClassification:
    torch.manual_seed(0)
    num_labels = loss.head_size(NUM_CLASSES if problem_type == "classification" else 1)
    return BertForSequenceClassification(tiny_bert_config(dropout=0.0, num_labels=num_labels)).double()


def _one_sgd_step(
    loss_name: str, problem_type: str, batch_size: int, accumulation: int, tmp_path, trainer_class=LossTrainer
) -> dict:
    """Parameter updates of one plain-SGD step with lr 1 (so the update equals minus the gradient), in float64."""
    loss = _loss(loss_name, problem_type)
    model = _model(loss, problem_type)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=1.0,
        optim="sgd",
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=0.0,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
    )
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=_dataset(problem_type),
        data_collator=DataCollatorWithPadding(tokenizer),
        loss=loss,
    )
    trainer.train()
    return {name: before[name] - p.detach() for name, p in model.named_parameters()}


@pytest.mark.parametrize(("loss_name", "problem_type"), _cases(batch_dependent=False))
def test_gradient_accumulation_gives_the_full_batch_gradient(loss_name, problem_type, tmp_path):
    """7 examples as one batch, or as micro-batches of 4 + 3 accumulated: the same update (float64)."""
    full = _one_sgd_step(loss_name, problem_type, batch_size=7, accumulation=1, tmp_path=tmp_path / "full")
    accumulated = _one_sgd_step(loss_name, problem_type, batch_size=4, accumulation=2, tmp_path=tmp_path / "acc")
    assert any(update.abs().max() > 0 for update in full.values())
    for name, update in full.items():
        torch.testing.assert_close(accumulated[name], update, atol=1e-6, rtol=1e-6, msg=f"parameter {name}")


@pytest.mark.parametrize(("loss_name", "problem_type"), _cases(batch_dependent=True))
def test_batch_dependent_loss_without_accumulation_is_the_full_batch_gradient(loss_name, problem_type, tmp_path):
    """A batch statistic cannot be accumulated exactly (see bench.trainer.weight_batch_loss); without accumulation
    the Trainer's update is the gradient of the loss over the whole batch, computed here directly."""
    update = _one_sgd_step(loss_name, problem_type, batch_size=7, accumulation=1, tmp_path=tmp_path)
    loss = _loss(loss_name, problem_type)
    model = _model(loss, problem_type)
    dataset = _dataset(problem_type)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    batch = DataCollatorWithPadding(tokenizer)([dataset[i] for i in range(len(dataset))])
    labels = batch.pop("labels")
    outputs = model(**batch, output_hidden_states=loss.needs_embeddings)
    extra = {"embeddings": outputs.hidden_states[-1][:, 0]} if loss.needs_embeddings else {}
    values = loss(outputs.logits, labels, **extra)
    (values.mean() if loss.per_example else values).backward()
    for name, parameter in model.named_parameters():
        expected = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        torch.testing.assert_close(update[name], expected, atol=1e-6, rtol=1e-6, msg=f"parameter {name}")


def test_weight_batch_loss_is_exact_for_a_batch_mean():
    """A loss that returns the mean over its micro-batch, weighted by the micro-batch's share, adds up to the mean."""
    values = torch.tensor([1.0, 2.0, 6.0, 3.0, 8.0])
    parts = [weight_batch_loss(values[:3].mean(), 3, 5), weight_batch_loss(values[3:].mean(), 2, 5)]
    assert sum(parts) == pytest.approx(values.mean().item())
    assert weight_batch_loss(torch.tensor(0.5), 3, None) == pytest.approx(0.5)


def test_reduce_loss_divides_by_num_items_or_averages():
    per_example = torch.tensor([1.0, 2.0, 6.0])
    assert reduce_loss(per_example, None) == pytest.approx(3.0)
    assert reduce_loss(per_example, torch.tensor(6)) == pytest.approx(1.5)


def test_evaluation_loss_is_the_runs_loss(tmp_path):
    """trainer.evaluate() reports the mean of the configured loss, not the model's built-in cross-entropy."""
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(dropout=0.0, num_labels=NUM_CLASSES))
    dataset = _dataset("classification")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    focal = get_loss("focal:gamma=2.0")
    args = TrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=16, report_to="none", use_cpu=True)
    trainer = LossTrainer(
        model=model, args=args, eval_dataset=dataset, data_collator=DataCollatorWithPadding(tokenizer), loss=focal
    )
    eval_loss = trainer.evaluate()["eval_loss"]
    batch = DataCollatorWithPadding(tokenizer)([{k: dataset[i][k] for k in dataset.column_names} for i in range(7)])
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model.eval()(**batch).logits
    assert eval_loss == pytest.approx(focal(logits, labels).mean().item(), rel=1e-5)
    assert eval_loss != pytest.approx(torch.nn.functional.cross_entropy(logits, labels).item(), rel=1e-3)


def test_trainer_has_no_loss_fn_argument(tmp_path):
    """The tutorial's ``Trainer(loss_fn=...)`` does not exist; lossbench's hook is compute_loss_func."""
    from transformers import Trainer

    model = BertForSequenceClassification(tiny_bert_config(num_labels=2))
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(TypeError):
        Trainer(model=model, args=args, loss_fn=get_loss("cross_entropy"))


class _RecordingTrainer(LossTrainer):
    """Keeps a copy of every micro-batch the Trainer feeds to the loss."""

    micro_batches: list

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.micro_batches.append({key: value.clone() for key, value in inputs.items()})
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


@pytest.mark.parametrize(("loss_name", "problem_type"), _cases(batch_dependent=True))
def test_batch_dependent_loss_under_accumulation_is_the_size_weighted_mean_of_micro_batches(
    loss_name, problem_type, tmp_path
):
    """What gradient accumulation means for a batch statistic: with micro-batches of 4 + 3, the update is the
    gradient of (4/7) L(micro-batch 1) + (3/7) L(micro-batch 2), each computed within its micro-batch."""
    _RecordingTrainer.micro_batches = []
    update = _one_sgd_step(loss_name, problem_type, 4, 2, tmp_path, trainer_class=_RecordingTrainer)
    micro_batches = _RecordingTrainer.micro_batches
    assert [len(batch["labels"]) for batch in micro_batches] == [4, 3]

    loss = _loss(loss_name, problem_type)
    reference = _model(loss, problem_type)
    total = sum(len(batch["labels"]) for batch in micro_batches)
    for batch in micro_batches:
        batch = dict(batch)
        labels = batch.pop("labels")
        outputs = reference(**batch, output_hidden_states=loss.needs_embeddings)
        extra = {"embeddings": outputs.hidden_states[-1][:, 0]} if loss.needs_embeddings else {}
        values = loss(outputs.logits, labels, **extra)
        value = values.mean() if loss.per_example else values
        (value * len(labels) / total).backward()
    for name, parameter in reference.named_parameters():
        gradient = parameter.grad if parameter.grad is not None else torch.zeros_like(parameter)
        torch.testing.assert_close(update[name], gradient, atol=1e-6, rtol=1e-6, msg=f"parameter {name}")


# --- a loss of the wrong shape fails the run --------------------------------------------------------------------------


class BroadcastingMSELoss(Loss):
    """The tutorial trap as a per-example loss: (batch, 1) predictions minus (batch,) labels is (batch, batch)."""

    problem_types = frozenset({REGRESSION})

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (logits - labels) ** 2


@pytest.fixture
def own_losses(monkeypatch) -> Registry:
    """LOSSES with a private copy of its entries: what a test registers there is gone afterwards."""
    monkeypatch.setattr(LOSSES, "_items", dict(LOSSES._items))
    return LOSSES


def test_a_loss_that_broadcasts_fails_the_run_with_the_shape(own_losses, tiny_model_dir, tmp_path):
    own_losses.register("broadcasting_mse")(BroadcastingMSELoss)
    train = TrainConfig(model=str(tiny_model_dir), train_size=16, batch_size=8, max_length=32)
    runs, skipped = build_matrix(["vader_movies"], ["broadcasting_mse"], [0], train)
    failed = runner.run_matrix(runs, skipped, tmp_path, quiet=True)
    assert [row["status"] for row in failed] == ["error"]
    row = ResultsStore(tmp_path).load().iloc[0]
    assert row["status"] == "error" and row["error_type"] == "LossShapeError"
    assert "Loss 'broadcasting_mse' returned shape (8, 8); a per-example loss must return shape (8,)" in row["message"]
    assert "did it broadcast (batch, 1) predictions against (batch,) labels?" in row["message"]


@pytest.mark.parametrize(
    ("per_example", "shape", "hint"),
    [
        (True, (), "reduced the batch to one value"),
        (True, (4, 3), "Reduce the trailing dimensions"),
        (False, (4,), "declare per_example = True"),
        (False, (4, 4), "did it broadcast"),
    ],
)
def test_check_loss_shape_names_the_expected_shape_and_the_cause(per_example, shape, hint):
    loss = get_loss("pearson" if not per_example else "mse")
    with pytest.raises(LossShapeError, match=hint) as error:
        check_loss_shape(loss, torch.zeros(shape), 4)
    assert f"returned shape {shape}" in str(error.value)
    assert f"must return shape {(4,) if per_example else ()}" in str(error.value)


def test_check_loss_shape_accepts_the_contract():
    check_loss_shape(get_loss("mse"), torch.zeros(4), 4)
    check_loss_shape(get_loss("pearson"), torch.tensor(0.5), 4)


# --- adapters: a Trainer compute_loss_func and a tutorial nn.Module under gradient accumulation -----------------------


def hf_style_cross_entropy(outputs, labels, num_items_in_batch=None):
    """Hugging Face's convention: a sum over the number of items, the mean when there is none."""
    if num_items_in_batch is None:
        return F.cross_entropy(outputs.logits, labels)
    return F.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch


def sum_divided_when_given(outputs, labels, num_items_in_batch=None):
    """A batch sum that trusts the Trainer to pass num_items_in_batch (16x too large when it is None)."""
    loss = F.cross_entropy(outputs.logits, labels, reduction="sum")
    if num_items_in_batch is not None:
        loss = loss / num_items_in_batch
    return loss


def divides_by_num_items(outputs, labels, num_items_in_batch=None):
    """Divides by num_items_in_batch unguarded (a TypeError when it is None)."""
    return F.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch


class BatchMeanMSELoss(nn.Module):
    """The tutorial's module style: MSELoss (a batch mean) on outputs.logits."""

    def __init__(self):
        super().__init__()
        self.mse_loss = nn.MSELoss()

    def forward(self, outputs, labels):
        return self.mse_loss(outputs.logits, labels)


ADAPTED = [
    pytest.param(register_compute_loss_func, hf_style_cross_entropy, "classification", "cross_entropy", id="hf-style"),
    pytest.param(register_compute_loss_func, sum_divided_when_given, "classification", "cross_entropy", id="sum"),
    pytest.param(register_compute_loss_func, divides_by_num_items, "classification", "cross_entropy", id="divides"),
    pytest.param(register_module_loss, BatchMeanMSELoss, "regression", "mse", id="module-batch-mean"),
]


@pytest.mark.parametrize(("register", "wrapped", "problem_type", "built_in"), ADAPTED)
def test_adapted_loss_gives_the_built_in_update_with_and_without_accumulation(
    register, wrapped, problem_type, built_in, own_losses, tmp_path
):
    """7 examples as one batch, or micro-batches of 4 + 3 accumulated: the built-in loss's update (float64)."""
    register("adapted", wrapped, problem_types={problem_type}, registry=own_losses)
    expected = _one_sgd_step(built_in, problem_type, 7, 1, tmp_path / "built_in")
    for batch_size, accumulation in [(7, 1), (4, 2)]:
        update = _one_sgd_step("adapted", problem_type, batch_size, accumulation, tmp_path / f"{batch_size}")
        for name, value in expected.items():
            torch.testing.assert_close(update[name], value, atol=1e-6, rtol=1e-6, msg=f"{batch_size=} {name}")


def test_compute_loss_func_gets_the_trainers_num_items_in_batch(own_losses, tmp_path):
    """Training: the examples of all accumulated micro-batches (7 for 4 + 3); evaluation: the batch's own count."""
    seen = []

    def recording(outputs, labels, num_items_in_batch=None):
        seen.append(int(num_items_in_batch))
        return hf_style_cross_entropy(outputs, labels, num_items_in_batch)

    register_compute_loss_func("recording", recording, problem_types={"classification"}, registry=own_losses)
    _one_sgd_step("recording", "classification", 4, 2, tmp_path)
    assert seen == [7, 7]
    loss = get_loss("recording")
    loss(torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1, 0]))
    assert seen[-1] == 5
