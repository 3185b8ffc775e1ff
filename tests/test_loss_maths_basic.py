"""Maths of the basic losses (cross_entropy, label_smoothing, focal, mse, mae, huber) against hand-computed values,
their degenerate cases, parameter validation and loss specs."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bench.plugins import get_loss
from bench.registry import LOSSES
from losses.base import REGRESSION, Loss

BATCH = 4


def loss_and_grad(loss: Loss, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values = loss(logits, labels)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    return values.detach(), grad


# --- maths: classification ------------------------------------------------------------------------------------------

LOGITS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.5, 2.5, -0.5], [-2.0, 0.1, 0.4]]
LABELS = [1, 0, 2, 1]


def class_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, requires_grad=True), torch.tensor(LABELS)


def log_softmax_loop(row: list[float]) -> list[float]:
    log_norm = math.log(sum(math.exp(z) for z in row))
    return [z - log_norm for z in row]


def test_cross_entropy_equals_loop() -> None:
    expected = torch.tensor([-log_softmax_loop(row)[y] for row, y in zip(LOGITS, LABELS, strict=True)])
    assert_close(get_loss("cross_entropy")(*class_inputs()).detach(), expected)


def test_focal_gamma0_equals_cross_entropy() -> None:
    focal = loss_and_grad(get_loss("focal:gamma=0"), *class_inputs())
    cross_entropy = loss_and_grad(get_loss("cross_entropy"), *class_inputs())
    assert_close(focal, cross_entropy)


def test_focal_hand_value() -> None:
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        log_p = log_softmax_loop(row)[y]
        expected.append(-((1 - math.exp(log_p)) ** 2) * log_p)
    assert_close(get_loss("focal:gamma=2")(*class_inputs()).detach(), torch.tensor(expected))


def test_focal_below_cross_entropy() -> None:
    focal = get_loss("focal")(*class_inputs())
    cross_entropy = get_loss("cross_entropy")(*class_inputs())
    assert (focal <= cross_entropy).all()


def test_label_smoothing_eps0_equals_cross_entropy() -> None:
    smoothed = loss_and_grad(get_loss("label_smoothing:eps=0"), *class_inputs())
    cross_entropy = loss_and_grad(get_loss("cross_entropy"), *class_inputs())
    assert_close(smoothed, cross_entropy)


@pytest.mark.parametrize("eps", [0.1, 0.5])
def test_label_smoothing_hand_value(eps: float) -> None:
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        log_p = log_softmax_loop(row)
        uniform = sum(-lp for lp in log_p) / len(log_p)
        expected.append((1 - eps) * -log_p[y] + eps * uniform)
    assert_close(get_loss(f"label_smoothing:eps={eps}")(*class_inputs()).detach(), torch.tensor(expected))


# --- maths: regression ----------------------------------------------------------------------------------------------

# Regression losses with one output per example and (batch,) values: they share the shape guard.
SIMPLE_REGRESSION_LOSSES = [
    name
    for name in LOSSES.names()
    if LOSSES.get(name).supports(REGRESSION)
    and LOSSES.get(name).per_example
    and LOSSES.get(name).outputs_per_label == 1
]
PREDICTIONS = [0.5, -1.0, 2.0, 3.5]
TARGETS = [0.0, 1.0, 2.25, -0.5]


def regression_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(PREDICTIONS).unsqueeze(-1), torch.tensor(TARGETS)


def test_mse_hand_value() -> None:
    assert_close(get_loss("mse")(*regression_inputs()), torch.tensor([0.25, 4.0, 0.0625, 16.0]))


def test_mae_hand_value() -> None:
    assert_close(get_loss("mae")(*regression_inputs()), torch.tensor([0.5, 2.0, 0.25, 4.0]))


def test_huber_large_delta_equals_half_mse() -> None:
    assert_close(get_loss("huber:delta=100")(*regression_inputs()), get_loss("mse")(*regression_inputs()) / 2)


def test_huber_tiny_delta_approaches_mae() -> None:
    delta = 1e-4
    scaled = get_loss(f"huber:delta={delta}")(*regression_inputs()) / delta
    assert_close(scaled, get_loss("mae")(*regression_inputs()), atol=1e-3, rtol=1e-3)


def test_huber_hand_value_both_sides_of_kink() -> None:
    # delta = 1: |r| = 0.5, 0.25 are quadratic (r^2/2); |r| = 2, 4 are linear (|r| - 1/2).
    expected = torch.tensor([0.125, 1.5, 0.03125, 3.5])
    assert_close(get_loss("huber:delta=1.0")(*regression_inputs()), expected)


@pytest.mark.parametrize("name", SIMPLE_REGRESSION_LOSSES)
def test_regression_accepts_flat_and_column_logits(name: str) -> None:
    loss = get_loss(name)
    column, labels = regression_inputs()
    assert loss(column, labels).shape == (BATCH,)
    assert_close(loss(column.squeeze(-1), labels), loss(column, labels))


@pytest.mark.parametrize("name", SIMPLE_REGRESSION_LOSSES)
@pytest.mark.parametrize(
    ("logits_shape", "labels_shape"), [((4, 1), (3,)), ((4, 1), (4, 1)), ((4,), (3,)), ((4, 2), (4,))]
)
def test_regression_shape_mismatch_raises(
    name: str, logits_shape: tuple[int, ...], labels_shape: tuple[int, ...]
) -> None:
    loss = get_loss(name)
    with pytest.raises(ValueError, match="do not match"):
        loss(torch.zeros(logits_shape), torch.zeros(labels_shape))


# --- parameters and specs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        ("focal:gamma=-1", "gamma"),
        ("label_smoothing:eps=1.0", "eps"),
        ("label_smoothing:eps=-0.1", "eps"),
        ("huber:delta=0", "delta"),
        ("huber:delta=-1", "delta"),
    ],
)
def test_out_of_range_parameter_raises(spec: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"{parameter}="):
        get_loss(spec)


def test_out_of_range_in_constructor_raises() -> None:
    with pytest.raises(ValueError, match="gamma"):
        type(get_loss("focal"))(gamma=-1.0)


def test_spec_sets_parameter() -> None:
    loss = get_loss("focal:gamma=1.0")
    assert loss.gamma == 1.0
    assert isinstance(loss.gamma, float)


def test_spec_int_coerced_to_float() -> None:
    assert get_loss("focal:gamma=1").gamma == 1.0


def test_spec_unknown_parameter_names_it_and_lists_valid() -> None:
    with pytest.raises(ValueError, match="gama") as error:
        get_loss("focal:gama=1")
    assert "gamma=2.0" in str(error.value)


def test_spec_bad_value_raises() -> None:
    with pytest.raises(ValueError, match="gamma"):
        get_loss("focal:gamma=abc")


def test_spec_without_equals_raises() -> None:
    with pytest.raises(ValueError, match="key=value"):
        get_loss("focal:gamma")


def test_default_params() -> None:
    assert get_loss("focal").params == {"gamma": 2.0}
    assert get_loss("cross_entropy").params == {}
    assert "gamma=2.0" in repr(get_loss("focal"))
