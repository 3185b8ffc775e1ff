"""--trainer-arg KEY=VALUE: any TrainingArguments field, checked by transformers' own parser before any training, in
the run's settings, identity, folder slug and row; gradient accumulation through it stays exact."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer, BertForSequenceClassification

from bench import cache, cli, depth, fit, runner
from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.models import DEFAULT_MODEL, resolve_model
from bench.trainer_args import OWNED, field_types
from tests.helpers import tiny_bert_config, torch_threads


def _config(**trainer_args) -> TrainConfig:
    return TrainConfig(precision="fp32", trainer_args=trainer_args)


def _spec(train: TrainConfig) -> RunSpec:
    return RunSpec("trec", "1.1", "cross_entropy", 0, train)


def test_values_are_parsed_by_transformers_into_one_canonical_form():
    train = _config(
        gradient_accumulation_steps="4", max_grad_norm=1, lr_scheduler_type="cosine", optim="adamw_torch_fused"
    )
    assert json.loads(train.trainer_args) == {
        "gradient_accumulation_steps": 4,
        "lr_scheduler_type": "cosine",
        "max_grad_norm": 1.0,
        "optim": "adamw_torch_fused",
    }
    same = TrainConfig(precision="fp32", trainer_args=[("max_grad_norm", "1.0"), ("optim", "adamw_torch_fused")])
    other = _config(optim="adamw_torch_fused", max_grad_norm=1.0)
    assert same == other and _spec(same).run_id == _spec(other).run_id
    assert replace(train, batch_size=8).trainer_args == train.trainer_args  # the canonical form parses again


def test_a_run_without_trainer_args_keeps_its_identity_and_with_them_names_them():
    plain = _spec(TrainConfig(precision="fp32"))
    assert "trainer_args" not in plain.identity() and "-ta-" not in plain.train.slug
    tuned = _spec(_config(max_grad_norm=0.5))
    assert tuned.identity()["trainer_args"] == '{"max_grad_norm": 0.5}'
    assert tuned.run_id != plain.run_id
    assert tuned.train.slug.startswith(plain.train.slug + "-ta-mgn0.5-")
    assert _spec(_config(max_grad_norm=0.25)).train.slug != tuned.train.slug


def test_fields_the_config_holds_become_those_settings():
    train = _config(weight_decay="0", warmup_steps="0.05")
    assert (train.weight_decay, train.warmup_ratio, train.trainer_args) == (0.0, 0.05, "{}")
    assert train == TrainConfig(precision="fp32", weight_decay=0.0, warmup_ratio=0.05)
    steps = _config(warmup_steps=10)  # a step count is no ratio: it stays a trainer arg
    assert json.loads(steps.trainer_args) == {"warmup_steps": 10.0} and steps.warmup_ratio == 0.1


@pytest.mark.parametrize(
    ("trainer_args", "expected"),
    [
        ({"gradient_acumulation_steps": 2}, "no field 'gradient_acumulation_steps'. Did you mean gradient_accum"),
        ({"max_grad_norm": "big"}, "max_grad_norm=big: TrainingArguments.max_grad_norm is float; invalid float"),
        ({"optim": "adamw"}, "optim=adamw: TrainingArguments.optim is"),
        ({"bf16": "maybe"}, "lossbench sets it: use --precision"),
        ({"seed": 3}, "lossbench sets it: use --seeds"),
        ({"save_strategy": "steps"}, "lossbench writes no checkpoint"),
        ({"output_dir": "x"}, "use --out"),
    ],
)
def test_bad_trainer_args_are_refused_with_key_value_and_reason(trainer_args, expected):
    with pytest.raises(ValueError, match="--trainer-arg") as error:
        _config(**trainer_args)
    assert expected in str(error.value)


def test_every_owned_field_is_a_field_of_the_installed_training_arguments():
    assert set(OWNED) <= set(field_types())


def test_training_arguments_apply_them_and_count_steps_with_accumulation():
    spec = _spec(
        TrainConfig(
            precision="fp32",
            batch_size=8,
            trainer_args={"gradient_accumulation_steps": 2, "lr_scheduler_type": "cosine", "max_grad_norm": 0.5},
        )
    )
    args = fit.training_arguments(spec, "unused", train_examples=160)
    assert (args.gradient_accumulation_steps, args.lr_scheduler_type, args.max_grad_norm) == (2, "cosine", 0.5)
    assert args.per_device_train_batch_size == 8 and args.seed == 0 and args.save_strategy == "no"
    # 160 examples in steps of 16: 10 optimizer steps, scored about 4 times (every 3), logged every step
    assert fit.selection_eval_steps(spec, 160) == 3 and args.logging_steps == 1


def test_the_command_refuses_bad_trainer_args_before_any_training(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(runner, "run_matrix", lambda *a, **k: pytest.fail("trained"))
    base = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--model", str(tiny_model_dir)]
    base += ["--out", str(tmp_path / "out")]
    assert cli.main([*base, "--trainer-arg", "gradient_acumulation_steps=2"]) == 2
    assert "Did you mean gradient_accumulation_steps" in capsys.readouterr().err
    assert cli.main([*base, "--trainer-arg", "lr=1"]) == 2
    assert "no field 'lr'" in capsys.readouterr().err
    bad = ["--no-select-checkpoint", "--trainer-arg", "lr_scheduler_type=reduce_lr_on_plateau"]
    assert cli.main([*base, *bad]) == 2
    assert "transformers refuses these settings: lr_scheduler_type reduce_lr_on_plateau requires an eval" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "out" / "runs.csv").exists()


@pytest.fixture
def no_dropout_model(tmp_path):
    """The tiny model without dropout: micro-batches and one batch then see the same network."""
    directory = tmp_path / "tiny-no-dropout"
    BertForSequenceClassification(tiny_bert_config(dropout=0.0)).save_pretrained(directory)
    AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL)).save_pretrained(directory)
    return directory


def test_accumulation_through_the_run_path_trains_like_one_batch(no_dropout_model, tmp_path, monkeypatch):
    """The default protocol (the top layer on cached states, checkpoint selection) with batches of 8, or with
    micro-batches of 4 and --trainer-arg gradient_accumulation_steps=2: the same test predictions and row."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(depth, "_STATES", {})
    base = TrainConfig(model=str(no_dropout_model), train_size=32, max_length=32, precision="fp32", epochs=2.0)
    rows, logits = {}, {}
    for name, train in {
        "one batch": replace(base, batch_size=8),
        "accumulated": replace(base, batch_size=4, trainer_args={"gradient_accumulation_steps": 2}),
    }.items():
        spec = build_matrix(["trec"], ["cross_entropy"], [0], train)[0][0]
        with torch_threads(1):
            rows[name] = runner.run_one(spec, tmp_path / name)
        logits[name] = np.load(tmp_path / name / "runs" / spec.run_id / "test_predictions.npz")["logits"]
    one, accumulated = rows["one batch"], rows["accumulated"]
    assert one["status"] == accumulated["status"] == "ok"
    assert json.loads(accumulated["trainer_args"]) == {"gradient_accumulation_steps": 2}
    assert (one["best_step"], one["evaluations"]) == (accumulated["best_step"], accumulated["evaluations"])
    np.testing.assert_allclose(logits["accumulated"], logits["one batch"], atol=1e-5, rtol=1e-4)
    assert accumulated["train_loss"] == pytest.approx(one["train_loss"], abs=1e-5)
    assert not np.allclose(logits["one batch"], logits["one batch"][0])  # it trained something input-dependent
    frame = pd.DataFrame([one, accumulated])
    assert list(frame["trainer_args"]) == ["{}", '{"gradient_accumulation_steps": 2}']
