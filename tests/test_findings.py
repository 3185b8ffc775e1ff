"""Finding cards: a contract suite over every registered card, the verdicts on synthetic numbers, the validation-noise
stressor, and `python -m bench.findings` end to end on the tiny model."""

from __future__ import annotations

import math

import datasets
import numpy as np
import pandas as pd
import pytest

from bench import findings, runner
from bench.api.card import Card, Comparison
from bench.findings import card_names, card_plan, main, run_findings
from bench.metric_table import METRICS_BY_PROBLEM_TYPE
from bench.registry import CARDS, TASKS, Registry, UnknownNameError
from bench.results import ResultsStore
from bench.stressors import stress_validation_split
from bench.taskspec import TaskSpec
from bench.verdict import (
    CONTRADICTED,
    HIGHER,
    INCONCLUSIVE,
    LOWER,
    REPRODUCED,
    direction_verdict,
    paired_effect,
    paired_verdict,
    range_verdict,
)

CARD_BUDGET_SECONDS = 12 * 60  # "about 10 minutes" per card on the project's 2-core machine, states not cached


# --- the contract every card meets ----------------------------------------------------------------------------------


@pytest.fixture(params=CARDS.names(), ids=str)
def card(request) -> Card:
    return CARDS.get(request.param)()


def test_every_card_module_registers_a_card():
    assert len(CARDS.names()) >= 4


def test_card_states_a_one_sentence_claim_and_a_reference(card):
    assert card.claim.strip().endswith(".") and ". " not in card.claim.strip()[:-1]
    assert card.reference.strip() and card.comparisons + card.spreads


def test_card_matrix_is_compatible_and_fits_the_budget(card):
    config, runs, skipped = card_plan(card, {})
    assert runs and not skipped
    assert all(str(TaskSpec.parse(task)) == task for task in card.tasks)  # canonical, as rows name them
    assert len(card.seeds) >= 2 and len(set(card.seeds)) == len(card.seeds)
    tasks = {run.task.base for run in runs}
    assert card.estimated_seconds(len(runs), len(tasks)) <= CARD_BUDGET_SECONDS


def test_card_statistics_read_columns_the_rows_have(card):
    config, _, _ = card_plan(card, {})
    cells = [(c.task, c.loss, c.column) for c in card.comparisons]
    cells += [(c.task, c.baseline, c.baseline_column or c.column) for c in card.comparisons]
    cells += [(s.task, s.loss, s.column) for s in card.spreads]
    for task, loss, column in cells:
        assert task in card.tasks and loss in card.losses, (task, loss)
        problem_type = TASKS.get(TaskSpec.parse(task).base).metadata.problem_type
        metric = column.removeprefix("test_")
        if metric.startswith("last_"):
            assert config.select_checkpoint, f"{column} needs select_checkpoint"
            metric = metric.removeprefix("last_")
        assert column.startswith("test_") and metric in METRICS_BY_PROBLEM_TYPE[problem_type], column
    for comparison in card.comparisons:
        assert comparison.expected in (HIGHER, LOWER) and comparison.min_effect > 0


def synthetic_rows(card: Card, sign: int, seed: int = 0) -> pd.DataFrame:
    """Rows for the card's matrix: noise everywhere, and each comparison's effect planted 5 minimum effects in the
    expected direction times ``sign`` (0: none)."""
    rng = np.random.default_rng(seed)
    _, runs, _ = card_plan(card, {})
    rows = pd.DataFrame({"task": [str(r.task) for r in runs], "loss_spec": [r.loss for r in runs]})
    rows["seed"] = [r.seed for r in runs]
    for column in card.columns():
        rows[column] = 0.5 + rng.normal(scale=0.001, size=len(rows))
    for c in card.comparisons:
        base = rows[(rows["task"] == c.task) & (rows["loss_spec"] == c.baseline)].set_index("seed")
        target = (rows["task"] == c.task) & (rows["loss_spec"] == c.loss)
        planted = base[c.baseline_column or c.column].loc[rows.loc[target, "seed"]].to_numpy()
        noise = rng.normal(scale=0.01 * c.min_effect, size=target.sum())
        rows.loc[target, c.column] = planted + sign * c.expected * 5 * c.min_effect + noise
    return rows


@pytest.mark.parametrize(("sign", "verdict"), [(1, REPRODUCED), (-1, CONTRADICTED)])
def test_card_verdicts_follow_planted_effects(card, sign, verdict):
    verdicts = card.verdicts(synthetic_rows(card, sign))
    assert len(verdicts) == len(card.comparisons) + len(card.spreads)
    assert [v.verdict for v in verdicts[: len(card.comparisons)]] == [verdict] * len(card.comparisons)
    assert all(v.effect.n == len(card.seeds) for v in verdicts[: len(card.comparisons)])


def test_card_verdicts_without_runs_are_inconclusive(card):
    rows = synthetic_rows(card, 0).iloc[0:0]
    assert {v.verdict for v in card.verdicts(rows)} == {INCONCLUSIVE}


# --- verdicts -------------------------------------------------------------------------------------------------------


def test_paired_effect_is_the_mean_difference_with_its_t_interval():
    effect = paired_effect([0.01, 0.03, 0.02, float("nan")])
    assert effect.n == 3 and effect.estimate == pytest.approx(0.02) and effect.sd == pytest.approx(0.01)
    half = 4.302653 * 0.01 / math.sqrt(3)  # t_{0.975, 2}
    assert (effect.ci_low, effect.ci_high) == pytest.approx((0.02 - half, 0.02 + half), rel=1e-5)


def test_each_verdict_from_the_interval_and_the_expected_side():
    assert paired_verdict("x", [0.05, 0.06, 0.055], HIGHER, 0.01).verdict == REPRODUCED
    assert paired_verdict("x", [0.05, 0.06, 0.055], LOWER, 0.01).verdict == CONTRADICTED
    assert paired_verdict("x", [-0.05, -0.06, -0.055], LOWER, 0.01).verdict == REPRODUCED
    assert paired_verdict("x", [0.05, -0.04, 0.01], HIGHER, 0.01).verdict == INCONCLUSIVE
    assert paired_verdict("x", [0.05], HIGHER, 0.01).verdict == INCONCLUSIVE  # one seed: no interval


def test_an_inconclusive_verdict_says_whether_the_seeds_could_detect_the_effect_of_interest():
    noisy = paired_verdict("x", [0.05, -0.04, 0.01, -0.02], HIGHER, 0.01)
    assert noisy.verdict == INCONCLUSIVE and noisy.mdd > 0.01 and noisy.decidable is False
    quiet = paired_verdict("x", [0.001, -0.001, 0.0005, -0.0004, 0.0, 0.0002], HIGHER, 0.01)
    assert quiet.verdict == INCONCLUSIVE and quiet.mdd < 0.01 and quiet.decidable is True


def test_bad_verdict_inputs_are_refused():
    with pytest.raises(ValueError, match="expected_sign"):
        direction_verdict(paired_effect([1.0, 2.0]), 0)
    with pytest.raises(ValueError, match="min_effect"):
        paired_verdict("x", [1.0, 2.0], HIGHER, 0.0)
    with pytest.raises(ValueError, match="range"):
        range_verdict("x", [1.0, 2.0], 0.5, 0.1)


def test_a_spread_against_a_reported_range():
    rng = np.random.default_rng(0)
    values = rng.normal(scale=0.01, size=30)
    assert range_verdict("x", values, 0.005, 0.02).verdict == REPRODUCED
    assert range_verdict("x", values, 0.05, 0.1).verdict == CONTRADICTED  # far more spread reported
    assert range_verdict("x", values[:3], 0.0105, 0.5).verdict in (INCONCLUSIVE, REPRODUCED)
    assert range_verdict("x", values[:1], 0.0, 1.0).verdict == INCONCLUSIVE


# --- the validation-noise stressor ---------------------------------------------------------------------------------


def test_val_noise_flips_validation_labels_seeded_and_only_under_its_stressor():
    feature = datasets.ClassLabel(names=["a", "b", "c"])
    labels = [i % 3 for i in range(200)]
    split = datasets.Dataset.from_dict({"label": labels}, features=datasets.Features({"label": feature}))
    spec = TaskSpec.parse("trec@noise=0.4@val_noise=0.4")
    noisy = stress_validation_split(split, spec.stressors, seed=0, num_labels=3)
    assert (np.asarray(noisy["label"]) != np.asarray(labels)).sum() == 80
    assert noisy.features["label"] == feature
    assert noisy["label"] == stress_validation_split(split, spec.stressors, seed=0, num_labels=3)["label"]
    assert noisy["label"] != stress_validation_split(split, spec.stressors, seed=1, num_labels=3)["label"]
    assert stress_validation_split(split, TaskSpec.parse("trec@noise=0.4").stressors, seed=0, num_labels=3) is split


def test_val_noise_is_checked_and_named_in_the_spec():
    assert str(TaskSpec.parse("trec@val_noise=.4")) == "trec@val_noise=0.4"
    with pytest.raises(ValueError, match="Did you mean 'val_noise'"):
        TaskSpec.parse("trec@valnoise=0.4")
    with pytest.raises(ValueError, match="needs class labels"):
        TaskSpec.parse("vader_movies@val_noise=0.4").check_applicable("regression")


# --- python -m bench.findings ----------------------------------------------------------------------------------------


class TinyCard(Card):
    claim = "GCE scores higher than cross-entropy on noisy trec."
    reference = "A test card."
    tasks = ("trec@noise=0.2@val_noise=0.2",)
    losses = ("cross_entropy", "gce")
    seeds = (0, 1)
    comparisons = (
        Comparison(tasks[0], "gce", "cross_entropy", "test_f1_macro", HIGHER, 0.02),
        Comparison(tasks[0], "gce", "cross_entropy", "test_last_f1_macro", HIGHER, 0.02, regime="last checkpoint"),
        Comparison(tasks[0], "cross_entropy", "cross_entropy", "test_ece_ts", LOWER, 0.01, baseline_column="test_ece"),
    )


def test_unknown_card_names_are_refused_with_a_suggestion(capsys):
    with pytest.raises(UnknownNameError, match="Did you mean 'imbalance'"):
        card_names("imbalanse")
    assert main(["--cards", "imbalanse", "--dry-run"]) == 2
    assert "Valid finding cards" in capsys.readouterr().err


def test_findings_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path, monkeypatch):
    registry = Registry("finding card", "findings")
    registry.register("tiny")(TinyCard)
    monkeypatch.setattr(findings, "CARDS", registry)
    # one step of 16 per run: the validation split is scored once to choose, once for temperature scaling
    overrides = {"model": str(tiny_model_dir), "train_size": 16, "batch_size": 16, "max_length": 16}
    path = run_findings(["tiny"], tmp_path, overrides, quiet=True)

    text = path.read_text()
    assert path == tmp_path / "FINDINGS.md" and "## tiny" in text and TinyCard.claim in text
    assert "trec@noise=0.2@val_noise=0.2: gce test_f1_macro vs cross_entropy test_f1_macro" in text
    assert text.count("**reproduced**") + text.count("**contradicted**") + text.count("**inconclusive**") == 3
    assert (tmp_path / "findings" / "plots" / "tiny.png").stat().st_size > 0
    folders = list((tmp_path / "findings").glob("finetune-*"))
    assert len(folders) == 1
    rows = ResultsStore(folders[0]).load()
    assert len(rows) == 4 and (rows["status"] == "ok").all()
    assert rows[["test_ece_ts", "test_nll_ts", "temperature", "test_last_f1_macro"]].notna().all().all()
    assert (rows["stress_val_noise"] == 0.2).all()

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(runner, "run_one", must_not_run)  # resumable: the second call only rewrites FINDINGS.md
    assert run_findings(["tiny"], tmp_path, overrides, quiet=True).read_text() == text
