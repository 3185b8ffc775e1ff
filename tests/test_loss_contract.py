"""Loss contract suite, parametrized over every registered loss: a new loss module is tested with no test edit."""

from __future__ import annotations

import pytest
import torch

from bench.api.params import loss_defaults
from bench.api.space import LEARNING_RATE_PARAM, Choice, FloatRange, check_space
from bench.plugins import get_loss
from bench.registry import LOSSES
from losses.base import CLASSIFICATION, REGRESSION, Loss
from tests.helpers import BATCH, loss_inputs

LOSS_NAMES = LOSSES.names()
LOSS_PROBLEM_TYPES = [
    pytest.param(name, problem_type, id=f"{name}-{problem_type}")
    for name in LOSS_NAMES
    for problem_type in sorted(LOSSES.get(name).problem_types)
]


def values_and_grads(loss: Loss, logits: torch.Tensor, labels: torch.Tensor, extra: dict) -> tuple:
    values = loss(logits, labels, **extra)
    leaves = [logits, *extra.values()]
    grads = torch.autograd.grad(values.sum(), leaves)
    return values.detach(), grads


def check_output(loss: Loss, values: torch.Tensor) -> None:
    assert values.shape == ((BATCH,) if loss.per_example else ()), f"{loss.name}: shape {tuple(values.shape)}"
    assert torch.isfinite(values).all()


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_default_constructible_with_documented_formula(name: str) -> None:
    loss = get_loss(name)
    assert isinstance(loss, Loss) and loss.name == name
    doc = type(loss).__doc__ or ""
    assert "Reference" in doc and "=" in doc, "docstring needs the formula and the reference"
    assert loss.problem_types and set(loss.problem_types) <= {CLASSIFICATION, REGRESSION}
    assert all(getattr(loss, key) == value for key, value in loss.params.items())


@pytest.mark.parametrize(("name", "problem_type"), LOSS_PROBLEM_TYPES)
def test_shape_finite_and_gradient_flows(name: str, problem_type: str) -> None:
    loss = get_loss(name)
    logits, labels, extra = loss_inputs(loss, problem_type)
    values, grads = values_and_grads(loss, logits, labels, extra)
    check_output(loss, values)
    assert all(torch.isfinite(g).all() for g in grads)
    assert grads[0].abs().sum() > 0


@pytest.mark.parametrize(("name", "problem_type"), LOSS_PROBLEM_TYPES)
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["pos", "neg"])
def test_extreme_logits_stay_finite(name: str, problem_type: str, sign: float) -> None:
    loss = get_loss(name)
    logits, labels, extra = loss_inputs(loss, problem_type)
    extreme = (torch.sign(logits.detach()) * 1e4 * sign).requires_grad_()
    values, grads = values_and_grads(loss, extreme, labels, extra)
    check_output(loss, values)
    assert all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("name", "problem_type"), LOSS_PROBLEM_TYPES)
def test_bfloat16_inputs_stay_finite(name: str, problem_type: str) -> None:
    loss = get_loss(name)
    logits, labels, extra = loss_inputs(loss, problem_type, dtype=torch.bfloat16)
    values, grads = values_and_grads(loss, logits, labels, extra)
    check_output(loss, values)
    assert grads[0].dtype == torch.bfloat16
    assert all(torch.isfinite(g).all() for g in grads) and grads[0].abs().sum() > 0


@pytest.mark.parametrize(("name", "problem_type"), LOSS_PROBLEM_TYPES)
def test_gradcheck_float64(name: str, problem_type: str) -> None:
    loss = get_loss(name)
    logits, labels, extra = loss_inputs(loss, problem_type, dtype=torch.float64, away_from_kinks=True)
    leaves = (logits, *extra.values())

    def call(logits: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        return loss(logits, labels, **dict(zip(extra, rest, strict=True)))

    assert torch.autograd.gradcheck(call, leaves)


@pytest.mark.parametrize("name", [n for n in LOSS_NAMES if LOSSES.get(n).needs_class_counts])
def test_missing_class_counts_raise_a_clear_error(name: str) -> None:
    loss = get_loss(name)
    logits, labels, extra = loss_inputs(loss, CLASSIFICATION)
    loss.class_counts = None
    with pytest.raises(ValueError, match="class counts"):
        loss(logits, labels, **extra)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_search_space_names_real_keywords_and_holds_the_default(name: str) -> None:
    """``lossbench tune`` searches each declared range: every name is a keyword of ``__init__`` (never the shared
    learning rate), and the default is inside, so the untuned configuration is one tuning can find."""
    loss_class = LOSSES.get(name)
    defaults = loss_defaults(loss_class)
    space = dict(loss_class.search_space)
    check_space(name, space, defaults)  # raises naming the problem
    assert set(space) <= set(defaults) and LEARNING_RATE_PARAM not in space
    assert all(spec.contains(defaults[key]) for key, spec in space.items())


SPACE_ENDS = [
    pytest.param(name, problem_type, key, end, id=f"{name}-{problem_type}-{key}={end}")
    for name, problem_type in ((p.values[0], p.values[1]) for p in LOSS_PROBLEM_TYPES)
    for key, spec in LOSSES.get(name).search_space.items()
    for end in spec.ends()
]


@pytest.mark.parametrize(("name", "problem_type", "key", "end"), SPACE_ENDS)
def test_the_ends_of_each_range_construct_and_give_finite_values(name, problem_type, key, end) -> None:
    loss = LOSSES.get(name)(**{key: end})
    logits, labels, extra = loss_inputs(loss, problem_type)
    values, grads = values_and_grads(loss, logits, labels, extra)
    check_output(loss, values)
    assert all(torch.isfinite(g).all() for g in grads)


def test_a_space_that_names_no_keyword_or_leaves_out_the_default_is_refused() -> None:
    defaults = {"gamma": 2.0}
    with pytest.raises(ValueError, match="'gama', not a keyword of its __init__ \\(keywords: gamma\\)"):
        check_space("mine", {"gama": FloatRange(0.0, 5.0)}, defaults)
    with pytest.raises(ValueError, match="default gamma=2.0 is outside its range \\[3, 5\\]"):
        check_space("mine", {"gamma": FloatRange(3.0, 5.0)}, defaults)
    with pytest.raises(ValueError, match="'learning_rate', not a keyword"):
        check_space("mine", {"learning_rate": FloatRange(1e-4, 1e-2, log=True)}, {"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="log=True needs low > 0"):
        FloatRange(0.0, 1.0, log=True)
    with pytest.raises(ValueError, match="at least two distinct options"):
        Choice(("a",))
