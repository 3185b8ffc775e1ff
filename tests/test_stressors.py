"""Stressors: spec parsing and validation, the seeded draws, and stressed variants of the real tasks."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix, expand_task_specs
from bench.models import DEFAULT_MODEL, resolve_model
from bench.plugins import get_task
from bench.splits import training_split
from bench.stressors import VERSION as STRESSORS_VERSION
from bench.stressors import asymmetric_noise, few_shot, long_tail, symmetric_noise
from bench.taskspec import Stressor, TaskSpec

RATE_TOLERANCE = 0.02  # measured noise rate within 2 points of the requested one


# --- parsing and validation -----------------------------------------------------------------------------------------


def test_parse_spec_types_and_order():
    spec = TaskSpec.parse("trec@imbalance=0.1@noise=0.20@fewshot=8")
    assert spec.base == "trec"
    assert spec.stressors == (Stressor("imbalance", 0.1), Stressor("noise", 0.2), Stressor("fewshot", 8))
    assert isinstance(spec.stressors[2].value, int)
    assert str(spec) == "trec@imbalance=0.1@noise=0.2@fewshot=8"
    assert TaskSpec.parse("rt_polarity") == TaskSpec("rt_polarity", ())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("trec@nosie=0.2", r"Unknown stressor 'nosie'.*Did you mean 'noise'.*Valid stressors: noise=0.3"),
        ("trec@noise", r"needs a value, e.g. 'trec@noise=0.3'"),
        ("trec@noise=abc", r"noise='abc'.*not a valid float"),
        ("trec@noise=1.0", r"noise=1.0.*out of range; valid range is \[0.0, 1.0\)"),
        ("trec@imbalance=0", r"imbalance=0.0.*out of range; valid range is \(0.0, 1.0\]"),
        ("trec@fewshot=0", r"fewshot=0.*out of range"),
        ("trec@fewshot=2.5", r"fewshot='2.5'.*not a valid int"),
        ("trec@noise=0.1@noise=0.2", r"'noise' appears twice"),
        ("trec@fewshot=8@train=100", r"both fewshot and train"),
    ],
)
def test_bad_specs_name_the_value_and_the_valid_choices(spec, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec.parse(spec)


def test_label_stressors_refuse_regression_before_training():
    with pytest.raises(ValueError, match=r"noise=0.2 needs class labels; task 'vader_movies' is regression"):
        build_matrix(["vader_movies@noise=0.2"], ["mse"], [0], TrainConfig(precision="fp32"))


def test_task_specs_expand_patterns_and_canonicalise():
    specs = expand_task_specs(["rt_polarity@noise=.30", "rt_polarity@noise=0.3", "trec"])
    assert [str(spec) for spec in specs] == ["rt_polarity@noise=0.3", "trec"]
    assert [str(spec) for spec in expand_task_specs(["vader_m*@train=100"])] == ["vader_movies@train=100"]


def test_stressed_runs_have_their_own_identity_and_task_version():
    train = TrainConfig(precision="fp32")
    (clean,), _ = build_matrix(["trec"], ["cross_entropy"], [0], train)
    (noisy,), _ = build_matrix(["trec@noise=0.2"], ["cross_entropy"], [0], train)
    assert clean.run_id != noisy.run_id
    assert noisy.task_version == f"{clean.task_version}+stressors.{STRESSORS_VERSION}"


# --- the draws on plain label arrays ----------------------------------------------------------------------------------

LABELS = np.repeat(np.arange(4), [400, 300, 200, 100])


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_symmetric_noise_flips_the_requested_share_to_other_classes_uniformly():
    indices, noisy = symmetric_noise(LABELS, 0.3, 4, None, rng())
    flipped = noisy != LABELS
    assert (indices == np.arange(len(LABELS))).all()
    assert flipped.mean() == pytest.approx(0.3, abs=1e-3)
    offsets = (noisy[flipped] - LABELS[flipped]) % 4
    assert set(np.unique(offsets)) == {1, 2, 3}  # always a different class, each of the others drawn
    assert np.bincount(offsets)[1:].min() > 0.25 * flipped.sum()


def test_asymmetric_noise_flips_each_class_to_its_target():
    targets = np.array([1, 0, 3, 0])
    _, noisy = asymmetric_noise(LABELS, 0.25, 4, targets, rng())
    for label, count in enumerate([400, 300, 200, 100]):
        members = LABELS == label
        assert (noisy[members] != label).sum() == round(0.25 * count)
        assert set(noisy[members & (noisy != LABELS)]) == {targets[label]}


def test_long_tail_profile():
    indices, labels = long_tail(LABELS, 0.1, 4, None, rng())
    counts = np.bincount(labels, minlength=4)
    expected = [int(400 * 0.1 ** (rank / 3)) for rank in range(4)]  # 400, 185, 86, 40
    assert counts.tolist() == [min(e, n) for e, n in zip(expected, [400, 300, 200, 100], strict=True)]
    assert (LABELS[indices] == labels).all()  # a subset, labels untouched


def test_long_tail_binary_minority_is_the_ratio_of_the_majority():
    labels = np.repeat([0, 1], [500, 480])
    _, kept = long_tail(labels, 0.2, 2, None, rng())
    assert np.bincount(kept).tolist() == [500, 100]


def test_few_shot_per_class_and_regression_total():
    chosen = few_shot(LABELS, 16, "classification", rng())
    assert np.bincount(LABELS[chosen]).tolist() == [16] * 4
    assert len(few_shot(np.linspace(0, 1, 50), 10, "regression", rng())) == 10
    with pytest.raises(ValueError, match="class 3 has only 100"):
        few_shot(LABELS, 101, "classification", rng())


# --- stressed variants of real tasks ----------------------------------------------------------------------------------

STRESSED = [
    "rt_polarity@noise=0.3",
    "trec@noise_asym=0.3",
    "sms_spam@noise=0.1",
    "trec@imbalance=0.1@noise=0.2",
    "rt_polarity@imbalance=0.2",
    "trec@fewshot=8",
    "vader_movies@fewshot=40",
    "rt_polarity@train=300@noise=0.2",
]


@functools.cache
def stressed(spec: str, seed: int, loss: str = "cross_entropy", train_size: int | None = 450):
    task = get_task(TaskSpec.parse(spec).base)
    run = RunSpec(spec, task.metadata.version, loss, seed, TrainConfig(train_size=train_size, precision="fp32"))
    return training_split(run, resolve_model(DEFAULT_MODEL))


@pytest.mark.parametrize("spec", STRESSED)
def test_evaluation_splits_stay_clean(spec):
    clean = stressed(TaskSpec.parse(spec).base, 0)[1]
    _, splits = stressed(spec, 0)
    for name in ("validation", "test"):
        assert splits[name]["label"] == clean[name]["label"]
        assert splits[name]["input_ids"] == clean[name]["input_ids"]


@pytest.mark.parametrize("spec", STRESSED)
def test_measured_noise_rate_is_the_requested_one(spec):
    train, _ = stressed(spec, 0)
    requested = sum(s.value for s in TaskSpec.parse(spec).stressors if s.name.startswith("noise"))
    measured = np.mean(np.asarray(train["label"]) != np.asarray(train["clean_label"]))
    assert measured == pytest.approx(requested, abs=RATE_TOLERANCE)


@pytest.mark.parametrize("spec", STRESSED)
def test_paired_across_losses_and_deterministic_per_seed(spec):
    train, _ = stressed(spec, 1)
    other_loss, _ = stressed(spec, 1, loss="focal")
    assert train["label"] == other_loss["label"] and train["input_ids"] == other_loss["input_ids"]
    stressed.cache_clear()
    again, _ = stressed(spec, 1)
    assert again["label"] == train["label"] and again["input_ids"] == train["input_ids"]


@pytest.mark.parametrize("spec", ["rt_polarity@noise=0.3", "trec@fewshot=8"])
def test_another_seed_draws_again(spec):
    first, _ = stressed(spec, 0)
    second, _ = stressed(spec, 1)
    assert first["label"] != second["label"] or first["input_ids"] != second["input_ids"]


def test_imbalance_class_ratio_as_requested():
    train, _ = stressed("rt_polarity@imbalance=0.2", 0)
    counts = sorted(np.bincount(train["label"]).tolist())
    assert counts[0] == int(counts[1] * 0.2)


def test_train_and_fewshot_replace_train_size():
    assert len(stressed("rt_polarity@train=300@noise=0.2", 0)[0]) == 300
    assert len(stressed("trec@fewshot=8", 0, train_size=100)[0]) == 8 * 6
    assert len(stressed("rt_polarity@noise=0.3", 0)[0]) == 450


@pytest.mark.parametrize("spec", STRESSED)
def test_stressed_training_split_stays_disjoint_from_evaluation(spec):
    train, splits = stressed(spec, 0)
    clean_train = {tuple(ids) for ids in splits["train"]["input_ids"]}
    held_out = {tuple(ids) for name in ("validation", "test") for ids in splits[name]["input_ids"]}
    stressed_ids = {tuple(ids) for ids in train["input_ids"]}
    # Stressors only select and relabel training examples: they add no overlap with the held-out splits. (sms_spam
    # has one text in train and test that differ only in case, identical for the uncased tokenizer.)
    assert stressed_ids <= clean_train and stressed_ids & held_out <= clean_train & held_out
