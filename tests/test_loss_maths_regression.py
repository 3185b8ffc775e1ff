"""Maths of the regression losses beyond mse/mae/huber against explicit loops, and their degenerate cases."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bench.plugins import get_loss

PREDICTIONS = [0.5, -1.0, 2.0, 3.5, 0.1]
TARGETS = [0.0, 1.0, 2.25, -0.5, 0.3]


def inputs(predictions: list[float] = PREDICTIONS) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(predictions, dtype=torch.float64).unsqueeze(-1).requires_grad_()
    return logits, torch.tensor(TARGETS, dtype=torch.float64)


def value_and_grad(spec: str, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values = get_loss(spec)(logits, labels)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    return values.detach(), grad


def residuals() -> list[float]:
    return [p - t for p, t in zip(PREDICTIONS, TARGETS, strict=True)]


# --- smooth_l1 -------------------------------------------------------------------------------------------------------


def test_smooth_l1_hand_value() -> None:
    expected = [r * r / 2 if abs(r) < 1 else abs(r) - 0.5 for r in residuals()]
    assert_close(get_loss("smooth_l1")(*inputs()).detach(), torch.tensor(expected, dtype=torch.float64))


def test_smooth_l1_beta0_equals_mae() -> None:
    assert_close(value_and_grad("smooth_l1:beta=0", *inputs()), value_and_grad("mae", *inputs()))


def test_smooth_l1_is_huber_over_beta() -> None:
    beta = 0.7
    smooth = get_loss(f"smooth_l1:beta={beta}")(*inputs())
    assert_close(smooth, get_loss(f"huber:delta={beta}")(*inputs()) / beta)


# --- log_cosh --------------------------------------------------------------------------------------------------------


def test_log_cosh_hand_value() -> None:
    expected = [math.log(math.cosh(r)) for r in residuals()]
    assert_close(get_loss("log_cosh")(*inputs()).detach(), torch.tensor(expected, dtype=torch.float64))


def test_log_cosh_gradient_is_tanh() -> None:
    _, grad = value_and_grad("log_cosh", *inputs())
    assert_close(grad.squeeze(-1), torch.tensor([math.tanh(r) for r in residuals()], dtype=torch.float64))


def test_log_cosh_limits() -> None:
    small = torch.tensor([[1e-3]], dtype=torch.float64)
    assert_close(
        get_loss("log_cosh")(small, torch.zeros(1, dtype=torch.float64)), torch.tensor([0.5e-6], dtype=torch.float64)
    )
    large = torch.tensor([[200.0]])  # cosh(200) overflows float32; the loss must not
    assert_close(get_loss("log_cosh")(large, torch.zeros(1)), torch.tensor([200.0 - math.log(2)]))


# --- quantile --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tau", [0.1, 0.5, 0.9])
def test_quantile_hand_value(tau: float) -> None:
    expected = []
    for p, t in zip(PREDICTIONS, TARGETS, strict=True):
        r = t - p
        expected.append(tau * r if r >= 0 else (tau - 1) * r)
    assert_close(get_loss(f"quantile:tau={tau}")(*inputs()).detach(), torch.tensor(expected, dtype=torch.float64))


def test_quantile_median_equals_half_mae() -> None:
    quantile, grad = value_and_grad("quantile:tau=0.5", *inputs())
    mae, mae_grad = value_and_grad("mae", *inputs())
    assert_close((quantile, grad), (mae / 2, mae_grad / 2))


def test_quantile_minimiser_is_the_quantile() -> None:
    """Over a constant prediction, the mean pinball loss is smallest at the empirical tau-quantile."""
    targets = torch.arange(1.0, 11.0, dtype=torch.float64)  # 1..10
    loss = get_loss("quantile:tau=0.8")
    grid = torch.linspace(0, 11, 1101, dtype=torch.float64)
    means = torch.stack([loss(torch.full((10, 1), float(c), dtype=torch.float64), targets).mean() for c in grid])
    best = grid[means.argmin()].item()
    assert 8.0 <= best <= 9.0  # every point of [8, 9] is an 0.8-quantile of 1..10


# --- gaussian_nll ----------------------------------------------------------------------------------------------------


def nll_inputs(log_variances: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    logits = torch.tensor(list(zip(PREDICTIONS, log_variances, strict=True)), dtype=torch.float64)
    return logits.requires_grad_(), torch.tensor(TARGETS, dtype=torch.float64)


def test_gaussian_nll_hand_value() -> None:
    log_variances = [0.0, 1.0, -2.0, 0.5, 3.0]
    expected = []
    for p, t, s in zip(PREDICTIONS, TARGETS, log_variances, strict=True):
        variance = math.exp(s)
        expected.append(-math.log(math.exp(-((t - p) ** 2) / (2 * variance)) / math.sqrt(2 * math.pi * variance)))
    value = get_loss("gaussian_nll")(*nll_inputs(log_variances)).detach()
    assert_close(value, torch.tensor(expected, dtype=torch.float64))


def test_gaussian_nll_unit_variance_is_half_mse_plus_constant() -> None:
    logits, labels = nll_inputs([0.0] * len(PREDICTIONS))
    values = get_loss("gaussian_nll")(logits, labels)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    mse, mse_grad = value_and_grad("mse", *inputs())
    assert_close(values.detach(), mse / 2 + math.log(2 * math.pi) / 2)
    assert_close(grad[:, 0], mse_grad.squeeze(-1) / 2)


def test_gaussian_nll_matches_torch() -> None:
    logits, labels = nll_inputs([0.0, 1.0, -2.0, 0.5, 3.0])
    reference = torch.nn.GaussianNLLLoss(full=True, reduction="none", eps=1e-12)
    expected = reference(logits[:, 0], labels, logits[:, 1].exp())
    assert_close(get_loss("gaussian_nll")(logits, labels), expected)


def test_gaussian_nll_optimal_variance_is_squared_error() -> None:
    """For a fixed error r the NLL is smallest at variance r^2: the head learns its own uncertainty."""
    error = 1.5
    log_variance = torch.tensor(0.0, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_variance], max_iter=100)
    loss = get_loss("gaussian_nll")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = loss(
            torch.stack([torch.tensor(error, dtype=torch.float64), log_variance]).unsqueeze(0),
            torch.zeros(1, dtype=torch.float64),
        ).sum()
        value.backward()
        return value

    optimiser.step(closure)
    assert log_variance.exp().item() == pytest.approx(error**2, rel=1e-4)


def test_gaussian_nll_needs_two_outputs() -> None:
    loss = get_loss("gaussian_nll")
    assert loss.head_size(1) == 2
    with pytest.raises(ValueError, match=r"\(batch, 2\)"):
        loss(torch.zeros(4, 1), torch.zeros(4))


# --- pearson ---------------------------------------------------------------------------------------------------------


def pearson_loop(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


def test_pearson_hand_value() -> None:
    value = get_loss("pearson")(*inputs())
    assert value.shape == ()
    assert value.item() == pytest.approx(1 - pearson_loop(PREDICTIONS, TARGETS), abs=1e-8)


def test_pearson_invariant_to_scale_and_offset() -> None:
    shifted = [3 * p - 7 for p in PREDICTIONS]
    assert_close(get_loss("pearson")(*inputs(shifted)), get_loss("pearson")(*inputs()))


def test_pearson_perfect_and_anti_correlation() -> None:
    assert get_loss("pearson")(*inputs([2 * t + 1 for t in TARGETS])).item() == pytest.approx(0.0, abs=1e-7)
    assert get_loss("pearson")(*inputs([-t for t in TARGETS])).item() == pytest.approx(2.0, abs=1e-7)


def test_pearson_single_example_is_finite_without_gradient() -> None:
    logits = torch.tensor([[0.3]], requires_grad=True)
    value = get_loss("pearson")(logits, torch.tensor([1.0]))
    value.backward()
    assert value.item() == pytest.approx(1.0)
    assert logits.grad.abs().sum() == 0


# --- balanced_mse ----------------------------------------------------------------------------------------------------


def balanced_mse_loop(sigma: float) -> list[float]:
    variance2 = 2 * sigma**2
    out = []
    for p, t in zip(PREDICTIONS, TARGETS, strict=True):
        numerator = math.exp(-((p - t) ** 2) / variance2)
        denominator = sum(math.exp(-((p - other) ** 2) / variance2) for other in TARGETS)
        out.append(-variance2 * math.log(numerator / denominator))
    return out


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_balanced_mse_hand_value(sigma: float) -> None:
    value = get_loss(f"balanced_mse:sigma={sigma}")(*inputs()).detach()
    assert_close(value, torch.tensor(balanced_mse_loop(sigma), dtype=torch.float64))


def test_balanced_mse_is_mse_minus_the_batch_normaliser() -> None:
    """BMC_i = (y_hat_i - y_i)^2 + 2 sigma^2 log sum_j exp(-(y_hat_i - y_j)^2 / (2 sigma^2)): mse plus a term that
    pushes each prediction away from the other targets of the batch."""
    sigma = 1.0
    logits, labels = inputs()
    predictions = logits.detach().squeeze(-1)
    normaliser = torch.logsumexp(-((predictions[:, None] - labels[None, :]) ** 2) / (2 * sigma**2), dim=1)
    expected = get_loss("mse")(logits, labels).detach() + 2 * sigma**2 * normaliser
    assert_close(get_loss("balanced_mse")(logits, labels).detach(), expected)


def test_balanced_mse_single_example_is_zero() -> None:
    assert get_loss("balanced_mse")(torch.tensor([[0.3]]), torch.tensor([1.0])).item() == 0.0


# --- parameters ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        ("smooth_l1:beta=-1", "beta"),
        ("quantile:tau=0", "tau"),
        ("quantile:tau=1", "tau"),
        ("quantile:tau=1.5", "tau"),
        ("pearson:eps=0", "eps"),
        ("balanced_mse:sigma=0", "sigma"),
    ],
)
def test_out_of_range_parameter_raises(spec: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"{parameter}=.*valid range"):
        get_loss(spec)
