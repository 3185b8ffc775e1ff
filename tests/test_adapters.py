"""Bring your own loss: the tutorial's nn.Module loss and a compute_loss_func run in the matrix via adapters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import runner
from bench.adapters import register_compute_loss_func, register_module_loss
from bench.config import TrainConfig
from bench.registry import LOSSES, Registry
from bench.results import ResultsStore


class CustomMSELoss(nn.Module):
    """Verbatim from the seed tutorial: MSELoss applied to outputs.logits."""

    def __init__(self):
        super(CustomMSELoss, self).__init__()  # noqa: UP008 - as the tutorial writes it
        self.mse_loss = nn.MSELoss()

    def forward(self, outputs, labels):
        return self.mse_loss(outputs.logits, labels)


def cross_entropy_func(outputs, labels, num_items_in_batch=None):
    reduction = "mean" if num_items_in_batch is None else "sum"
    loss = F.cross_entropy(outputs.logits, labels, reduction=reduction)
    return loss if num_items_in_batch is None else loss / num_items_in_batch


@pytest.fixture
def registry() -> Registry:
    return Registry("loss", "losses", plural="losses")


def test_tutorial_module_loss_is_guarded_against_broadcasting(registry):
    loss = register_module_loss("tutorial_mse", CustomMSELoss, problem_types={"regression"}, registry=registry)()
    logits, labels = torch.tensor([[0.5], [2.0], [-1.0]]), torch.tensor([1.0, 2.0, 3.0])
    expected = ((logits.squeeze(-1) - labels) ** 2).mean()
    torch.testing.assert_close(loss(logits, labels), expected)
    with pytest.warns(UserWarning):  # what the tutorial computes without the adapter: a (3, 3) broadcast
        assert nn.MSELoss()(logits, labels) != pytest.approx(expected.item())
    assert loss.per_example is False and loss.problem_types == {"regression"}


def test_compute_loss_func_adapter_gets_the_batch_mean(registry):
    loss = register_compute_loss_func(
        "my_ce", cross_entropy_func, problem_types={"classification"}, registry=registry
    )()
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(loss(logits, labels), F.cross_entropy(logits, labels))


def test_adapter_rejects_a_non_scalar_result(registry):
    def per_example(outputs, labels, num_items_in_batch=None):
        return F.cross_entropy(outputs.logits, labels, reduction="none")

    loss = register_compute_loss_func("bad", per_example, problem_types={"classification"}, registry=registry)()
    with pytest.raises(ValueError, match="scalar"):
        loss(torch.randn(2, 3), torch.tensor([0, 1]))


def test_tutorial_loss_runs_in_the_matrix_and_matches_mse(tiny_model_dir, tmp_path, monkeypatch):
    """Registered through the adapter, the tutorial's loss trains exactly like the built-in mse."""
    adapter = register_module_loss(
        "tutorial_mse", CustomMSELoss, problem_types={"regression"}, registry=Registry("loss", "losses")
    )
    monkeypatch.setitem(LOSSES._items, "tutorial_mse", adapter)
    train = TrainConfig(model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32)
    runs, skipped = runner.build_matrix(["vader_movies"], ["tutorial_mse", "mse"], [0], train)
    assert runner.run_matrix(runs, skipped, tmp_path, quiet=True) == []
    frame = ResultsStore(tmp_path).load().set_index("loss")
    assert frame.at["tutorial_mse", "status"] == "ok"
    assert frame.at["tutorial_mse", "test_mse"] == pytest.approx(frame.at["mse", "test_mse"], rel=1e-5)
