"""Maths of the noise-robust losses (gce, sce, nce_rce, bi_tempered) against hand-computed values, their degenerate
cases, their bounds and parameter validation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bench.plugins import get_loss
from losses.base import Loss
from losses.bi_tempered import tempered_log_softmax

LOGITS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.5, 2.5, -0.5], [-2.0, 0.1, 0.4]]
LABELS = [1, 0, 2, 1]
# Extreme logits against LABELS: confidently wrong, confidently right, a tie between the label and a rival, wrong.
EXTREME_LOGITS = [[1e4, -1e4, -1e4], [1e4, -1e4, -1e4], [-1e4, 1e4, 1e4], [-1e4, -1e4, 1e4]]


def class_inputs(logits: list[list[float]] = LOGITS) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(logits, requires_grad=True), torch.tensor(LABELS)


def loss_and_grad(loss: Loss, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values = loss(logits, labels)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    return values.detach(), grad


def log_softmax_loop(row: list[float]) -> list[float]:
    log_norm = math.log(sum(math.exp(z) for z in row))
    return [z - log_norm for z in row]


def p_true_loop(logits: list[list[float]] = LOGITS) -> list[float]:
    return [math.exp(log_softmax_loop(row)[y]) for row, y in zip(logits, LABELS, strict=True)]


# --- gce ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("q", [0.7, 0.3, 1.0])
def test_gce_hand_value(q: float) -> None:
    expected = torch.tensor([(1 - p**q) / q for p in p_true_loop()])
    assert_close(get_loss(f"gce:q={q}")(*class_inputs()).detach(), expected)


def test_gce_q1_equals_one_minus_p_true() -> None:
    gce = loss_and_grad(get_loss("gce:q=1"), *class_inputs())
    logits, labels = class_inputs()
    one_minus_p = 1 - logits.softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    (grad,) = torch.autograd.grad(one_minus_p.sum(), logits)
    assert_close(gce, (one_minus_p.detach(), grad))


def test_gce_small_q_approaches_cross_entropy() -> None:
    gce = loss_and_grad(get_loss("gce:q=1e-4"), *class_inputs())
    cross_entropy = loss_and_grad(get_loss("cross_entropy"), *class_inputs())
    assert_close(gce, cross_entropy, atol=1e-3, rtol=1e-3)


@pytest.mark.parametrize("q", [0.3, 0.7, 1.0])
def test_gce_bounded_by_one_over_q_and_below_cross_entropy(q: float) -> None:
    gce = get_loss(f"gce:q={q}")
    assert (gce(*class_inputs()) <= get_loss("cross_entropy")(*class_inputs())).all()
    extreme = gce(*class_inputs(EXTREME_LOGITS)).detach()
    assert (extreme <= 1 / q).all()
    # Confidently wrong examples reach the bound 1 / q, the confidently right one gives 0, the tie (1 - 0.5**q) / q.
    assert_close(extreme, torch.tensor([1 / q, 0.0, (1 - 0.5**q) / q, 1 / q]))


# --- sce ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "beta", "log_zero"), [(0.1, 1.0, -4.0), (0.5, 2.0, -6.0)])
def test_sce_hand_value(alpha: float, beta: float, log_zero: float) -> None:
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        p = [math.exp(lp) for lp in log_softmax_loop(row)]
        cross_entropy = -math.log(p[y])
        # RCE = -sum_k p_k log q_k, with q the one-hot label and log 0 replaced by log_zero.
        reverse = -sum(p_k * (0.0 if k == y else log_zero) for k, p_k in enumerate(p))
        expected.append(alpha * cross_entropy + beta * reverse)
    spec = f"sce:alpha={alpha},beta={beta},log_zero={log_zero}"
    assert_close(get_loss(spec)(*class_inputs()).detach(), torch.tensor(expected))


def test_sce_alpha1_beta0_equals_cross_entropy() -> None:
    sce = loss_and_grad(get_loss("sce:alpha=1,beta=0"), *class_inputs())
    cross_entropy = loss_and_grad(get_loss("cross_entropy"), *class_inputs())
    assert_close(sce, cross_entropy)


def test_sce_reverse_term_bounded_by_minus_log_zero() -> None:
    reverse = get_loss("sce:alpha=0,beta=1,log_zero=-4")
    assert (reverse(*class_inputs()) <= 4.0).all()
    assert_close(reverse(*class_inputs(EXTREME_LOGITS)).detach(), torch.tensor([4.0, 0.0, 2.0, 4.0]))


# --- nce_rce --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "beta", "log_zero"), [(1.0, 1.0, -4.0), (10.0, 0.1, -4.0), (0.5, 2.0, -2.0)])
def test_nce_rce_hand_value(alpha: float, beta: float, log_zero: float) -> None:
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        log_p = log_softmax_loop(row)
        normalized = log_p[y] / sum(log_p)
        reverse = -sum(math.exp(lp) * (0.0 if k == y else log_zero) for k, lp in enumerate(log_p))
        expected.append(alpha * normalized + beta * reverse)
    spec = f"nce_rce:alpha={alpha},beta={beta},log_zero={log_zero}"
    assert_close(get_loss(spec)(*class_inputs()).detach(), torch.tensor(expected))


@pytest.mark.parametrize("logits", [LOGITS, EXTREME_LOGITS], ids=["moderate", "extreme"])
def test_nce_in_unit_interval(logits: list[list[float]]) -> None:
    normalized = get_loss("nce_rce:alpha=1,beta=0")(*class_inputs(logits))
    assert ((normalized >= 0) & (normalized <= 1)).all()


def test_nce_extremes_and_uniform() -> None:
    nce = get_loss("nce_rce:alpha=1,beta=0")
    # Wrong, with log p = (0, -2e4, -2e4): -2e4 / -4e4; right: 0; tie: log 2 / (2e4 + 3 log 2).
    tie = math.log(2) / (2e4 + 3 * math.log(2))
    assert_close(nce(*class_inputs(EXTREME_LOGITS)).detach(), torch.tensor([0.5, 0.0, tie, 0.5]))
    uniform = torch.zeros(len(LABELS), 3, requires_grad=True)
    assert_close(nce(uniform, torch.tensor(LABELS)).detach(), torch.full((len(LABELS),), 1 / 3))


def test_rce_with_log_zero_minus_2_equals_mae() -> None:
    reverse = loss_and_grad(get_loss("nce_rce:alpha=0,beta=1,log_zero=-2"), *class_inputs())
    logits, labels = class_inputs()
    one_hot = torch.nn.functional.one_hot(labels, 3).float()
    mae = (logits.softmax(dim=-1) - one_hot).abs().sum(dim=-1)
    (grad,) = torch.autograd.grad(mae.sum(), logits)
    assert_close(reverse, (mae.detach(), grad))


def test_nce_rce_bounded() -> None:
    loss = get_loss("nce_rce:alpha=1,beta=1,log_zero=-4")
    for logits in (LOGITS, EXTREME_LOGITS):
        values = loss(*class_inputs(logits))
        assert ((values >= 0) & (values <= 1 + 4)).all()


# --- bi_tempered ----------------------------------------------------------------------------------------------------


def exp_t_loop(u: float, t: float) -> float:
    return math.exp(u) if t == 1 else max(0.0, 1 + (1 - t) * u) ** (1 / (1 - t))


def log_t_loop(u: float, t: float) -> float:
    return math.log(u) if t == 1 else (u ** (1 - t) - 1) / (1 - t)


def tempered_softmax_loop(row: list[float], t: float) -> list[float]:
    """The exact tempered softmax, its normaliser found by bisection: sum_k exp_t(z_k - lam) is decreasing in lam,
    >= 1 at lam = max z and <= 1 at lam = max z - log_t(1 / K)."""
    low = max(row)
    high = low - log_t_loop(1 / len(row), t)
    for _ in range(200):
        mid = (low + high) / 2
        if sum(exp_t_loop(z - mid, t) for z in row) > 1:
            low = mid
        else:
            high = mid
    return [exp_t_loop(z - (low + high) / 2, t) for z in row]


def bi_tempered_loop(logits: list[list[float]], t1: float, t2: float) -> list[float]:
    """The reference's sum_k [y_k (log_t1 y_k - log_t1 p_k) - (y_k**(2-t1) - p_k**(2-t1)) / (2-t1)], term by term."""
    values = []
    for row, y in zip(logits, LABELS, strict=True):
        p = tempered_softmax_loop(row, t2)
        total = 0.0
        for k, p_k in enumerate(p):
            y_k = 1.0 if k == y else 0.0
            if y_k:
                total += y_k * (log_t_loop(y_k, t1) - log_t_loop(p_k, t1))
            total -= (y_k ** (2 - t1) - p_k ** (2 - t1)) / (2 - t1)
        values.append(total)
    return values


@pytest.mark.parametrize("t", [1.0, 1.2, 2.0, 4.0])
def test_tempered_softmax_converges_to_bisection(t: float) -> None:
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    expected = torch.tensor([tempered_softmax_loop(row, t) for row in LOGITS], dtype=torch.float64)
    assert_close(tempered_log_softmax(logits, t, 100).exp(), expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize(("t1", "t2"), [(0.8, 1.2), (0.5, 2.0), (1.0, 1.5), (0.8, 1.0), (0.0, 3.0)])
def test_bi_tempered_hand_value(t1: float, t2: float) -> None:
    expected = torch.tensor(bi_tempered_loop(LOGITS, t1, t2))
    converged = get_loss(f"bi_tempered:t1={t1},t2={t2},num_iters=100")(*class_inputs()).detach()
    assert_close(converged, expected)


def test_bi_tempered_default_iterations_close_to_exact() -> None:
    # Five fixed-point steps (the reference's default) leave the normaliser slightly off at t2 = 1.2.
    expected = torch.tensor(bi_tempered_loop(LOGITS, 0.8, 1.2))
    assert_close(get_loss("bi_tempered")(*class_inputs()).detach(), expected, atol=1e-4, rtol=1e-4)


def test_bi_tempered_gradient_matches_finite_differences_of_exact_loss() -> None:
    # Autograd through a converged fixed-point iteration gives the gradient of the exact loss.
    loss = get_loss("bi_tempered:t1=0.6,t2=1.5,num_iters=100")
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    (grad,) = torch.autograd.grad(loss(logits, torch.tensor(LABELS)).sum(), logits)
    step = 1e-6
    expected = torch.zeros_like(grad)
    for i, row in enumerate(LOGITS):
        for k in range(len(row)):
            up = [list(r) for r in LOGITS]
            down = [list(r) for r in LOGITS]
            up[i][k] += step
            down[i][k] -= step
            expected[i, k] = (sum(bi_tempered_loop(up, 0.6, 1.5)) - sum(bi_tempered_loop(down, 0.6, 1.5))) / (2 * step)
    assert_close(grad, expected, atol=1e-6, rtol=1e-5)


def test_bi_tempered_t1_t2_1_equals_cross_entropy() -> None:
    bi_tempered = loss_and_grad(get_loss("bi_tempered:t1=1,t2=1"), *class_inputs())
    cross_entropy = loss_and_grad(get_loss("cross_entropy"), *class_inputs())
    assert_close(bi_tempered, cross_entropy)


@pytest.mark.parametrize(("t1", "t2"), [(0.8, 1.2), (0.5, 2.0), (0.0, 1.0)])
def test_bi_tempered_bounded_for_t1_below_1(t1: float, t2: float) -> None:
    loss = get_loss(f"bi_tempered:t1={t1},t2={t2}")
    for logits in (LOGITS, EXTREME_LOGITS):
        values = loss(*class_inputs(logits))
        assert ((values >= -1e-6) & (values <= 1 / (1 - t1))).all()


def test_bi_tempered_heavy_tail_keeps_wrong_examples_bounded_unlike_cross_entropy() -> None:
    values = get_loss("bi_tempered")(*class_inputs(EXTREME_LOGITS)).detach()
    assert torch.isfinite(values).all() and values.max() <= 1 / (1 - 0.8)
    assert get_loss("cross_entropy")(*class_inputs(EXTREME_LOGITS)).max() >= 1e4


# --- parameters -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        ("gce:q=0", "q"),
        ("gce:q=-0.5", "q"),
        ("gce:q=1.5", "q"),
        ("sce:alpha=-0.1", "alpha"),
        ("sce:beta=-1", "beta"),
        ("sce:alpha=0,beta=0", "alpha"),
        ("sce:log_zero=0", "log_zero"),
        ("sce:log_zero=2", "log_zero"),
        ("nce_rce:alpha=-1", "alpha"),
        ("nce_rce:beta=-0.5", "beta"),
        ("nce_rce:alpha=0,beta=0", "beta"),
        ("nce_rce:log_zero=0", "log_zero"),
        ("bi_tempered:t1=-0.1", "t1"),
        ("bi_tempered:t1=1.1", "t1"),
        ("bi_tempered:t2=0.9", "t2"),
        ("bi_tempered:num_iters=0", "num_iters"),
    ],
)
def test_out_of_range_parameter_raises(spec: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"{parameter}="):
        get_loss(spec)


def test_default_params() -> None:
    assert get_loss("gce").params == {"q": 0.7}
    assert get_loss("sce").params == {"alpha": 0.1, "beta": 1.0, "log_zero": -4.0}
    assert get_loss("nce_rce").params == {"alpha": 1.0, "beta": 1.0, "log_zero": -4.0}
    assert get_loss("bi_tempered").params == {"t1": 0.8, "t2": 1.2, "num_iters": 5}
    assert isinstance(get_loss("bi_tempered:num_iters=7").num_iters, int)
