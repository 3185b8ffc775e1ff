"""Maths of the imbalance losses (weighted_cross_entropy, ldam, poly1, dice) against hand-computed values, their
degenerate cases, class weights and margins from class counts, parameter validation and the class-count requirement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bench.plugins import get_loss
from losses.base import Loss
from tests.helpers import CLASS_COUNTS

LOGITS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.5, 2.5, -0.5], [-2.0, 0.1, 0.4]]
LABELS = [1, 0, 2, 1]
COUNTS = CLASS_COUNTS  # (50, 30, 5): class 2 is rare
COUNTED_LOSSES = ["weighted_cross_entropy", "ldam"]


def class_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, requires_grad=True), torch.tensor(LABELS)


def counted(spec: str, counts: tuple[int, ...] = COUNTS) -> Loss:
    loss = get_loss(spec)
    loss.set_class_counts(list(counts))
    return loss


def loss_and_grad(loss: Loss, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    values = loss(logits, labels)
    (grad,) = torch.autograd.grad(values.sum(), logits)
    return values.detach(), grad


def log_softmax_loop(row: list[float]) -> list[float]:
    log_norm = math.log(sum(math.exp(z) for z in row))
    return [z - log_norm for z in row]


def cross_entropy_and_grad() -> tuple[torch.Tensor, torch.Tensor]:
    return loss_and_grad(get_loss("cross_entropy"), *class_inputs())


# --- weighted_cross_entropy -----------------------------------------------------------------------------------------


def effective_number_weights_loop(counts: tuple[int, ...], beta: float) -> list[float]:
    raw = [(1 - beta) / (1 - beta ** max(n, 1)) for n in counts]
    return [len(raw) * v / sum(raw) for v in raw]


def test_inverse_frequency_weights_hand_value() -> None:
    # 1/50, 1/30, 1/5 = 3/150, 5/150, 30/150; scaled to sum to K = 3: 9/38, 15/38, 90/38.
    weights = get_loss("weighted_cross_entropy:scheme=inverse_frequency").class_weights(COUNTS)
    assert_close(weights, torch.tensor([9 / 38, 15 / 38, 90 / 38], dtype=torch.float64))


def test_effective_number_weights_hand_value() -> None:
    weights = get_loss("weighted_cross_entropy:scheme=effective_number,beta=0.999").class_weights(COUNTS)
    expected = effective_number_weights_loop(COUNTS, 0.999)
    assert_close(weights, torch.tensor(expected, dtype=torch.float64))
    assert_close(weights, torch.tensor([0.241379, 0.398320, 2.360301], dtype=torch.float64), atol=1e-6, rtol=0)


@pytest.mark.parametrize("scheme", ["inverse_frequency", "effective_number"])
def test_weights_reach_the_loss(scheme: str) -> None:
    # Zero logits: CE = log 3 for every label, so the loss is w_y * log 3.
    loss = counted(f"weighted_cross_entropy:scheme={scheme}")
    values = loss(torch.zeros(3, 3), torch.tensor([0, 1, 2]))
    assert_close(values, loss.class_weights(COUNTS).float() * math.log(3))


@pytest.mark.parametrize("scheme", ["inverse_frequency", "effective_number"])
def test_weights_sum_to_num_classes_and_favour_the_rare_class(scheme: str) -> None:
    weights = get_loss(f"weighted_cross_entropy:scheme={scheme}").class_weights(COUNTS)
    assert weights.sum().item() == pytest.approx(3.0)
    assert weights[2] > weights[1] > weights[0]
    assert weights[2] > 1 > weights[0]


@pytest.mark.parametrize("scheme", ["inverse_frequency", "effective_number"])
def test_weighted_cross_entropy_hand_value(scheme: str) -> None:
    if scheme == "inverse_frequency":
        raw = [1 / n for n in COUNTS]
        weights = [3 * v / sum(raw) for v in raw]
    else:
        weights = effective_number_weights_loop(COUNTS, 0.999)
    expected = [-weights[y] * log_softmax_loop(row)[y] for row, y in zip(LOGITS, LABELS, strict=True)]
    values = counted(f"weighted_cross_entropy:scheme={scheme}")(*class_inputs())
    assert_close(values.detach(), torch.tensor(expected))


@pytest.mark.parametrize("scheme", ["inverse_frequency", "effective_number"])
def test_weighted_cross_entropy_matches_torch_per_example_weighted_ce(scheme: str) -> None:
    loss = counted(f"weighted_cross_entropy:scheme={scheme}")
    logits, labels = class_inputs()
    weight = loss.class_weights(COUNTS).float()
    assert_close(loss(logits, labels), F.cross_entropy(logits, labels, weight=weight, reduction="none"))


@pytest.mark.parametrize("scheme", ["inverse_frequency", "effective_number"])
def test_weighted_cross_entropy_equal_counts_equals_cross_entropy(scheme: str) -> None:
    weighted = loss_and_grad(counted(f"weighted_cross_entropy:scheme={scheme}", (7, 7, 7)), *class_inputs())
    assert_close(weighted, cross_entropy_and_grad())


def test_effective_number_beta0_equals_cross_entropy() -> None:
    weighted = loss_and_grad(counted("weighted_cross_entropy:beta=0"), *class_inputs())
    assert_close(weighted, cross_entropy_and_grad())


def test_effective_number_tends_to_inverse_frequency() -> None:
    effective = get_loss("weighted_cross_entropy:beta=0.999999").class_weights(COUNTS)
    inverse = get_loss("weighted_cross_entropy:scheme=inverse_frequency").class_weights(COUNTS)
    assert_close(effective, inverse, rtol=1e-4, atol=0)


@pytest.mark.parametrize("scheme", ["inverse_frequency", "effective_number"])
def test_zero_count_is_treated_as_one(scheme: str) -> None:
    loss = get_loss(f"weighted_cross_entropy:scheme={scheme}")
    weights = loss.class_weights((10, 0, 5))
    assert torch.isfinite(weights).all()
    assert_close(weights, loss.class_weights((10, 1, 5)))


# --- poly1 ----------------------------------------------------------------------------------------------------------


def test_poly1_eps0_equals_cross_entropy() -> None:
    assert_close(loss_and_grad(get_loss("poly1:epsilon=0"), *class_inputs()), cross_entropy_and_grad())


@pytest.mark.parametrize("epsilon", [1.0, -1.0, 2.5])
def test_poly1_hand_value_and_gradient(epsilon: float) -> None:
    expected, expected_grad = [], []
    for row, y in zip(LOGITS, LABELS, strict=True):
        p = [math.exp(lp) for lp in log_softmax_loop(row)]
        expected.append(-math.log(p[y]) + epsilon * (1 - p[y]))
        # d/dz_k: (p_k - [k = y]) - epsilon * p_y * ([k = y] - p_k)
        expected_grad.append([p[k] - (k == y) - epsilon * p[y] * ((k == y) - p[k]) for k in range(len(row))])
    values, grad = loss_and_grad(get_loss(f"poly1:epsilon={epsilon}"), *class_inputs())
    assert_close(values, torch.tensor(expected))
    assert_close(grad, torch.tensor(expected_grad))


def test_poly1_non_negative_at_lowest_epsilon() -> None:
    # -log p >= 1 - p, so epsilon = -1 keeps the loss non-negative, also for a confident correct prediction.
    logits = torch.tensor([[8.0, 0.0, 0.0], *LOGITS])
    values = get_loss("poly1:epsilon=-1")(logits, torch.tensor([0, *LABELS]))
    assert (values >= 0).all()


# --- ldam -----------------------------------------------------------------------------------------------------------


def margins_loop(counts: tuple[int, ...], max_margin: float) -> list[float]:
    inverse_root = [max(n, 1) ** -0.25 for n in counts]
    return [max_margin * v / max(inverse_root) for v in inverse_root]


def test_ldam_margins_hand_value() -> None:
    margins = get_loss("ldam:max_margin=0.5").class_margins(COUNTS)
    assert_close(margins, torch.tensor(margins_loop(COUNTS, 0.5), dtype=torch.float64))
    # 0.5 * (5 / n_c) ** (1/4)
    assert_close(margins, torch.tensor([0.281171, 0.319472, 0.5], dtype=torch.float64), atol=1e-6, rtol=0)


def test_ldam_rare_class_gets_the_largest_margin() -> None:
    margins = get_loss("ldam:max_margin=0.3").class_margins(COUNTS)
    assert margins[2] > margins[1] > margins[0] > 0
    assert margins.max().item() == pytest.approx(0.3)


@pytest.mark.parametrize(("max_margin", "scale"), [(0.5, 1.0), (0.3, 30.0), (1.0, 2.0)])
def test_ldam_hand_value(max_margin: float, scale: float) -> None:
    margins = margins_loop(COUNTS, max_margin)
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        shifted = [scale * (z - (margins[y] if k == y else 0.0)) for k, z in enumerate(row)]
        expected.append(-log_softmax_loop(shifted)[y])
    values = counted(f"ldam:max_margin={max_margin},scale={scale}")(*class_inputs())
    assert_close(values.detach(), torch.tensor(expected))


def test_ldam_margin0_scale1_equals_cross_entropy() -> None:
    assert_close(loss_and_grad(counted("ldam:max_margin=0,scale=1"), *class_inputs()), cross_entropy_and_grad())


def test_ldam_above_cross_entropy_at_scale1() -> None:
    # Lowering the true-class logit raises the cross-entropy.
    ldam = counted("ldam:scale=1")(*class_inputs())
    assert (ldam > get_loss("cross_entropy")(*class_inputs())).all()


def test_ldam_zero_count_is_treated_as_one() -> None:
    loss = get_loss("ldam")
    margins = loss.class_margins((10, 0, 5))
    assert torch.isfinite(margins).all()
    assert_close(margins, loss.class_margins((10, 1, 5)))
    assert margins[1].item() == pytest.approx(0.5)


# --- dice -----------------------------------------------------------------------------------------------------------


def dice_loop(alpha: float, smooth: float) -> list[float]:
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        p = math.exp(log_softmax_loop(row)[y])
        p_tilde = (1 - p) ** alpha * p
        expected.append(1 - (2 * p_tilde + smooth) / (p_tilde + 1 + smooth))
    return expected


@pytest.mark.parametrize(("alpha", "smooth"), [(1.0, 1.0), (2.0, 0.5), (0.5, 1.0), (0.0, 1.0), (0.0, 0.1)])
def test_dice_hand_value(alpha: float, smooth: float) -> None:
    values = get_loss(f"dice:alpha={alpha},smooth={smooth}")(*class_inputs())
    assert_close(values.detach(), torch.tensor(dice_loop(alpha, smooth)))


@pytest.mark.parametrize("smooth", [1.0, 0.1])
def test_dice_alpha0_is_the_plain_smoothed_dice_loss(smooth: float) -> None:
    logits, labels = class_inputs()
    p = logits.softmax(dim=-1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    plain = 1 - (2 * p + smooth) / (p + 1 + smooth)
    (plain_grad,) = torch.autograd.grad(plain.sum(), logits)
    dice = loss_and_grad(get_loss(f"dice:alpha=0,smooth={smooth}"), *class_inputs())
    assert_close(dice, (plain.detach(), plain_grad))


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
def test_dice_smallest_at_p_one_over_one_plus_alpha(alpha: float) -> None:
    # Two classes, logits (logit(p), 0) with label 0: p = 1 / (1 + alpha) is a stationary point of the loss.
    p = 1 / (1 + alpha)
    logits = torch.tensor([[math.log(p / (1 - p)), 0.0]], dtype=torch.float64, requires_grad=True)
    values, grad = loss_and_grad(get_loss(f"dice:alpha={alpha}"), logits, torch.tensor([0]))
    assert_close(grad, torch.zeros_like(grad), atol=1e-12, rtol=0)
    for shift in (-0.5, 0.5):
        other = get_loss(f"dice:alpha={alpha}")(logits.detach() + torch.tensor([[shift, 0.0]]), torch.tensor([0]))
        assert (other > values).all()


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, 0.0), (1.0, 0.5)])
def test_dice_at_a_certain_correct_prediction(alpha: float, expected: float) -> None:
    # p = 1: alpha = 0 gives 0; alpha > 0 gives 1 / (1 + smooth) = 0.5 at smooth = 1.
    values = get_loss(f"dice:alpha={alpha},smooth=1")(torch.tensor([[40.0, 0.0, 0.0]]), torch.tensor([0]))
    assert values.item() == pytest.approx(expected, abs=1e-6)


# --- parameters and class counts ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parameter"),
    [
        ("weighted_cross_entropy:beta=1.0", "beta"),
        ("weighted_cross_entropy:beta=-0.1", "beta"),
        ("poly1:epsilon=-1.5", "epsilon"),
        ("ldam:max_margin=-0.1", "max_margin"),
        ("ldam:scale=0", "scale"),
        ("ldam:scale=-30", "scale"),
        ("dice:alpha=-1", "alpha"),
        ("dice:smooth=0", "smooth"),
    ],
)
def test_out_of_range_parameter_raises(spec: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"{parameter}=.*valid range"):
        get_loss(spec)


def test_bad_scheme_names_the_value_and_the_choices() -> None:
    with pytest.raises(ValueError, match="scheme='inverse'") as error:
        get_loss("weighted_cross_entropy:scheme=inverse")
    assert "'inverse_frequency'" in str(error.value) and "'effective_number'" in str(error.value)


def test_bad_scheme_in_constructor_raises() -> None:
    with pytest.raises(ValueError, match="scheme"):
        type(get_loss("weighted_cross_entropy"))(scheme="balanced")


def test_default_params() -> None:
    assert get_loss("weighted_cross_entropy").params == {"scheme": "effective_number", "beta": 0.999}
    assert get_loss("poly1").params == {"epsilon": 1.0}
    assert get_loss("ldam").params == {"max_margin": 0.5, "scale": 1.0}


@pytest.mark.parametrize("name", COUNTED_LOSSES)
def test_class_counts_are_required(name: str) -> None:
    loss = get_loss(name)
    assert loss.needs_class_counts
    with pytest.raises(ValueError, match=f"{name}' needs class counts"):
        loss(*class_inputs())


@pytest.mark.parametrize("name", COUNTED_LOSSES)
def test_class_counts_must_match_the_number_of_classes(name: str) -> None:
    loss = counted(name, (5, 7))
    with pytest.raises(ValueError, match="2 class counts for 3 classes"):
        loss(*class_inputs())
