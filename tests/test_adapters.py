"""Bring your own loss: the tutorial's nn.Module loss and a compute_loss_func run in the matrix via adapters."""

from __future__ import annotations

import re
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench import docs, matrix, runner
from bench.adapters import register_compute_loss_func, register_module_loss
from bench.config import TrainConfig
from bench.registry import LOSSES, Registry
from bench.results import ResultsStore
from tests import test_loss_contract as contract


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
    runs, skipped = matrix.build_matrix(["vader_movies"], ["tutorial_mse", "mse"], [0], train)
    assert runner.run_matrix(runs, skipped, tmp_path, quiet=True) == []
    frame = ResultsStore(tmp_path).load().set_index("loss")
    assert frame.at["tutorial_mse", "status"] == "ok"
    assert frame.at["tutorial_mse", "test_mse"] == pytest.approx(frame.at["mse", "test_mse"], rel=1e-5)


def test_adapter_refuses_a_loss_that_broadcasts(registry):
    """An HF-style function that squeezes the logits but not the (batch, 1) labels would broadcast to (batch, batch)."""

    def squeezing_mse(outputs, labels, num_items_in_batch=None):
        return F.mse_loss(outputs.logits.squeeze(-1), labels)

    loss = register_compute_loss_func("squeezing_mse", squeezing_mse, registry=registry)()
    with pytest.raises(ValueError, match="'squeezing_mse' broadcasts its predictions against labels of another shape"):
        loss(torch.randn(4, 1), torch.randn(4))


def test_compute_loss_func_that_divides_by_num_items_works_outside_the_trainer(registry):
    def summed(outputs, labels, num_items_in_batch):
        return F.cross_entropy(outputs.logits, labels, reduction="sum") / num_items_in_batch

    loss = register_compute_loss_func("summed", summed, problem_types={"classification"}, registry=registry)()
    logits, labels = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    torch.testing.assert_close(loss(logits, labels), F.cross_entropy(logits, labels))


def test_adapters_take_the_wrapped_docstring(registry):
    def documented(outputs, labels, num_items_in_batch=None):
        """Documented.

            L = 1

        Reference: nobody.
        """
        return outputs.logits.sum() * 0 + 1

    adapted = register_compute_loss_func("documented", documented, registry=registry)
    assert docs.formula_and_reference(adapted) == ("L = 1", "nobody.")

    class Undocumented(CustomMSELoss):
        pass

    undocumented = register_module_loss("undocumented", Undocumented, problem_types={"regression"}, registry=registry)
    assert "Undocumented has no docstring: give it one with the formula" in undocumented.__doc__


# --- The docs' loss examples (README and docs/) are plug-ins that pass the contract tests -----------------------------


def readme_loss_modules() -> dict[str, str]:
    """The Python code blocks of README.md and docs/*.md that start with ``# losses/NAME.py``: NAME -> code."""
    pattern = r"```python\n# losses/(\w+)\.py\n(.*?)```"
    blocks = [block for page in docs.doc_pages() for block in re.findall(pattern, page.read_text(), flags=re.DOTALL)]
    assert len(dict(blocks)) == len(blocks), "the same loss module is shown twice: keep one copy"
    return dict(blocks)


@pytest.fixture
def readme_plugins(tmp_path, monkeypatch) -> dict[str, str]:
    """The docs' loss examples dropped into a temporary plug-in package that LOSSES discovers instead of losses/."""
    package = f"readme_losses_{tmp_path.name}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    modules = readme_loss_modules()
    for name, code in modules.items():
        (tmp_path / package / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(LOSSES, "package", package)
    monkeypatch.setattr(LOSSES, "_items", {})
    monkeypatch.setattr(LOSSES, "_discovered", False)
    monkeypatch.setattr(LOSSES, "_failed_imports", [])
    yield modules
    for name in [name for name in sys.modules if name == package or name.startswith(f"{package}.")]:
        del sys.modules[name]


def test_readme_has_the_loss_examples():
    assert {"squared_hinge", "tutorial_mse", "summed_cross_entropy"} <= set(readme_loss_modules())


def test_readme_loss_examples_pass_the_loss_contract(readme_plugins):
    assert LOSSES.names() == sorted(readme_plugins)
    for name in LOSSES.names():
        contract.test_default_constructible_with_documented_formula(name)
        formula, reference = docs.formula_and_reference(LOSSES.get(name))
        assert formula and reference, f"make docs would write an empty formula or reference for {name}"
        for problem_type in sorted(LOSSES.get(name).problem_types):
            contract.test_shape_finite_and_gradient_flows(name, problem_type)
            contract.test_bfloat16_inputs_stay_finite(name, problem_type)
            contract.test_gradcheck_float64(name, problem_type)
            for sign in (1.0, -1.0):
                contract.test_extreme_logits_stay_finite(name, problem_type, sign)
