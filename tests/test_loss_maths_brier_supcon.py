"""Maths of brier and supcon_ce against explicit loops, and their degenerate cases."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

from bench.plugins import get_loss

LOGITS = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.5, 2.5, -0.5], [-2.0, 0.1, 0.4], [0.3, 0.2, 0.1]]
LABELS = [1, 0, 2, 1, 1]
EMBEDDINGS = [[1.0, 0.0, 0.5], [0.2, 1.0, -0.3], [-0.7, 0.4, 0.9], [0.9, 0.1, 0.4], [0.0, -1.0, 0.2]]


def softmax_loop(row: list[float]) -> list[float]:
    exps = [math.exp(z) for z in row]
    return [e / sum(exps) for e in exps]


def class_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True), torch.tensor(LABELS)


# --- brier -----------------------------------------------------------------------------------------------------------


def test_brier_hand_value() -> None:
    expected = []
    for row, y in zip(LOGITS, LABELS, strict=True):
        p = softmax_loop(row)
        expected.append(sum((p_k - (k == y)) ** 2 for k, p_k in enumerate(p)))
    assert_close(get_loss("brier")(*class_inputs()).detach(), torch.tensor(expected, dtype=torch.float64))


def test_brier_binary_is_twice_the_binary_brier_score() -> None:
    logits = torch.tensor([[0.0, 1.2], [2.0, -1.0]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    p_positive = torch.softmax(logits, dim=-1)[:, 1]
    assert_close(get_loss("brier")(logits, labels), 2 * (p_positive - 1) ** 2)


def test_brier_bounds() -> None:
    perfect = torch.tensor([[50.0, -50.0, -50.0]])
    wrong = torch.tensor([[-50.0, 50.0, -50.0]])
    label = torch.tensor([0])
    assert get_loss("brier")(perfect, label).item() == pytest.approx(0.0, abs=1e-12)
    assert get_loss("brier")(wrong, label).item() == pytest.approx(2.0)


# --- supcon_ce -------------------------------------------------------------------------------------------------------


def supcon_loop(embeddings: list[list[float]], labels: list[int], temperature: float) -> list[float]:
    """SCL_i of Gunel et al. (2021), eq. 2, one example at a time."""
    normed = [[x / math.sqrt(sum(v * v for v in e)) for x in e] for e in embeddings]
    n = len(labels)

    def sim(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(normed[i], normed[j], strict=True)) / temperature

    out = []
    for i in range(n):
        positives = [j for j in range(n) if j != i and labels[j] == labels[i]]
        denominator = sum(math.exp(sim(i, k)) for k in range(n) if k != i)
        terms = [math.log(math.exp(sim(i, j)) / denominator) for j in positives]
        out.append(-sum(terms) / len(positives) if positives else 0.0)
    return out


def supcon_inputs() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logits, labels = class_inputs()
    return logits, labels, torch.tensor(EMBEDDINGS, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize(("lam", "temperature"), [(0.9, 0.3), (0.5, 1.0)])
def test_supcon_ce_hand_value(lam: float, temperature: float) -> None:
    logits, labels, embeddings = supcon_inputs()
    scl = supcon_loop(EMBEDDINGS, LABELS, temperature)
    ce = [-math.log(softmax_loop(row)[y]) for row, y in zip(LOGITS, LABELS, strict=True)]
    expected = [(1 - lam) * c + lam * s for c, s in zip(ce, scl, strict=True)]
    value = get_loss(f"supcon_ce:lam={lam},temperature={temperature}")(logits, labels, embeddings=embeddings)
    assert_close(value.detach(), torch.tensor(expected, dtype=torch.float64))


def test_supcon_ce_example_without_positive_has_no_contrastive_term() -> None:
    # Labels 0 and 2 appear once each in LABELS: their contrastive term is 0, so their loss is (1 - lam) * CE.
    logits, labels, embeddings = supcon_inputs()
    values = get_loss("supcon_ce:lam=0.9")(logits, labels, embeddings=embeddings)
    ce = F.cross_entropy(logits, labels, reduction="none")
    assert_close(values[[1, 2]], 0.1 * ce[[1, 2]])


def test_supcon_ce_lam0_equals_cross_entropy_and_ignores_embeddings() -> None:
    logits, labels, embeddings = supcon_inputs()
    values = get_loss("supcon_ce:lam=0")(logits, labels, embeddings=embeddings)
    assert_close(values, get_loss("cross_entropy")(logits, labels))


def test_supcon_ce_pulls_same_class_embeddings_together() -> None:
    """A step along the negative gradient raises the cosine similarity of same-class embeddings."""
    logits, labels, embeddings = supcon_inputs()
    loss = get_loss("supcon_ce:lam=1")
    loss(logits, labels, embeddings=embeddings).sum().backward()

    def same_class_similarity(e: torch.Tensor) -> float:
        normed = F.normalize(e, dim=-1)
        return float(sum(normed[i] @ normed[j] for i, j in [(0, 3), (0, 4), (3, 4)]))

    moved = embeddings.detach() - 0.05 * embeddings.grad
    assert same_class_similarity(moved) > same_class_similarity(embeddings.detach())


def test_supcon_ce_single_example_batch_is_finite() -> None:
    logits = torch.tensor([[0.2, -0.1, 0.4]], requires_grad=True)
    embeddings = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    value = get_loss("supcon_ce")(logits, torch.tensor([2]), embeddings=embeddings)
    value.sum().backward()
    assert torch.isfinite(value).all() and torch.isfinite(logits.grad).all() and torch.isfinite(embeddings.grad).all()


@pytest.mark.parametrize(
    ("spec", "parameter"), [("supcon_ce:lam=1.5", "lam"), ("supcon_ce:temperature=0", "temperature")]
)
def test_supcon_ce_out_of_range_parameter_raises(spec: str, parameter: str) -> None:
    with pytest.raises(ValueError, match=f"{parameter}=.*valid range"):
        get_loss(spec)
