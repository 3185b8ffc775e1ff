"""Fine-tuning depth (--train-layers K) and checkpoint selection (--select-checkpoint) as opt-in settings, end to end
on the tiny model: the rows they make, the states cache, the refusals, and that selection sees only validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench import cache, cli, depth, fit, runner
from bench.checkpoint import BestCheckpoint
from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.models import resolve_model
from bench.splits import tokenized_splits
from bench.trainer import LossTrainer


@pytest.fixture
def tiny_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(  # a full fine-tune with the last weights: the tests below opt in to depth and selection
        model=str(tiny_model_dir),
        train_size=24,
        batch_size=8,
        max_length=32,
        precision="fp32",
        train_layers=None,
        select_checkpoint=False,
    )


@pytest.fixture
def state_cache(tmp_path, monkeypatch):
    """An empty states cache and memo for the test."""
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(depth, "_STATES", {})
    return tmp_path / "cache" / depth.STATES_DIR


def _run(train: TrainConfig, out, task: str = "trec", loss: str = "cross_entropy", seed: int = 0) -> dict:
    runs, _ = build_matrix([task], [loss], [seed], train)
    return runner.run_one(runs[0], out)


def test_top_layer_run_trains_and_a_second_run_reuses_the_cached_states(tiny_train, tmp_path, state_cache, monkeypatch):
    train = TrainConfig(**{**tiny_train.__dict__, "train_layers": 1})
    encoded = []
    real = depth.lower_layer_states
    monkeypatch.setattr(depth, "lower_layer_states", lambda *a, **k: encoded.append(a[1]) or real(*a, **k))
    row = _run(train, tmp_path / "a")
    assert row["status"] == "ok" and row["train_layers"] == 1 and np.isfinite(row["test_f1_macro"])
    assert encoded == [1, 1, 1] and row["states_seconds"] > 0  # train, validation, test: once each
    assert len(list(state_cache.glob("trec-top1-*.npz"))) == 1

    depth._STATES.clear()  # a new process: the disk cache answers
    again = _run(train, tmp_path / "b", loss="focal", seed=1)
    assert again["status"] == "ok" and again["states_seconds"] == 0.0 and encoded == [1, 1, 1]


def test_only_the_top_layers_and_the_head_receive_gradients(tiny_train, tmp_path, state_cache, monkeypatch):
    seen = {}
    real_fit = fit.fit

    def recording_fit(spec, model, *args, **kwargs):
        seen["model"] = model
        return real_fit(spec, model, *args, **kwargs)

    monkeypatch.setattr("bench.finetune.fit", recording_fit)
    _run(TrainConfig(**{**tiny_train.__dict__, "train_layers": 1}), tmp_path)
    top = seen["model"]
    assert len(top.model.base_model.encoder.layer) == 1  # of 2: the lower one is in the cache
    assert not [name for name, _ in top.named_parameters() if "embeddings" in name]


def test_train_layers_all_keeps_the_full_fine_tune_and_its_run_id(tiny_train, tmp_path):
    """A full fine-tune with the last weights has the identity it had before depth and selection existed, whatever
    today's defaults are: the published runs keep their run_ids."""
    previous = TrainConfig(precision="fp32", train_size=450, epochs=1.0, learning_rate=2e-4)
    previous = TrainConfig(**{**previous.__dict__, "train_layers": None, "select_checkpoint": False, "patience": 0})
    spec = RunSpec("trec", "1.1", "cross_entropy", 0, previous)
    assert "train_layers" not in spec.identity() and "select_checkpoint" not in spec.identity()
    assert spec.train.slug == "finetune-450ex-1ep-lr2e-4-fp32"
    other = RunSpec("trec", "1.1", "cross_entropy", 0, TrainConfig(**{**previous.__dict__, "train_layers": 2}))
    assert other.run_id != spec.run_id and other.train.slug.endswith("-top2")


def test_bad_depth_settings_are_refused_naming_the_value_and_the_range(tiny_model_dir, tmp_path, capsys):
    base = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0", "--model", str(tiny_model_dir)]
    base += ["--out", str(tmp_path / "out")]
    assert cli.main([*base, "--train-layers", "3"]) == 2
    assert "--train-layers 3: Invalid train_layers=3: must be in [0, 2]" in capsys.readouterr().err
    assert cli.main([*base, "--no-select-checkpoint", "--patience", "2"]) == 2
    assert "--patience 2 needs --select-checkpoint" in capsys.readouterr().err
    assert cli.main([*base, "--train-layers", "1", "--freeze-encoder"]) == 2
    assert "--freeze-encoder is --train-layers 0" in capsys.readouterr().err
    assert cli.main([*base, "--length-grouping"]) == 2  # the default depth trains on cached, ungrouped states
    assert "add --train-layers all" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*base, "--train-layers", "-1"])
    assert "train-layers must be an integer >= 0 or 'all', got '-1'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything ran
    with pytest.raises(ValueError, match=r"Invalid train_layers=-1: must be an integer >= 0"):
        TrainConfig(train_layers=-1, precision="fp32")


def test_a_model_without_a_bert_style_encoder_is_refused_before_training(tmp_path):
    from transformers import GPT2Config, GPT2ForSequenceClassification

    GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="--train-layers needs a BERT-style encoder"):
        cli.check_train_layers(str(tmp_path), 1)
    cli.check_train_layers(str(tmp_path), None)  # a full fine-tune needs no such structure


class RecordingCheckpoint(BestCheckpoint):
    """BestCheckpoint that also keeps the weights of every evaluation, by step."""

    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        RecordingCheckpoint.snapshots[state.global_step] = {k: v.clone() for k, v in model.state_dict().items()}
        super().on_evaluate(args, state, control, metrics=metrics, model=model, **kwargs)


def test_selection_scores_only_validation_restores_the_best_step_and_records_it(tiny_train, tmp_path, monkeypatch):
    """Every score the selection sees comes from the validation split; the test split is scored after training, with
    the last weights and then with the restored best ones. The scorer here makes the first evaluation the best."""
    events, trained = [], []
    real_scorer = fit.validation_scorer

    def scorer(meta, class_counts, eval_steps):
        score = real_scorer(meta, class_counts, eval_steps)

        def recording(prediction):
            events.append(("scored", np.asarray(prediction.label_ids)))
            return {**score(prediction), meta.main_metric: -len(events)}  # worse every time: the first is the best

        return recording

    real_record, real_predict = fit.train_and_record, LossTrainer.predict

    def record(spec, trainer, *args, **kwargs):
        trained.append(trainer)
        return real_record(spec, trainer, *args, **kwargs)

    def predict(trainer, dataset, *args, **kwargs):
        events.append(("predicted", dataset))
        return real_predict(trainer, dataset, *args, **kwargs)

    monkeypatch.setattr(fit, "validation_scorer", scorer)
    monkeypatch.setattr(fit, "train_and_record", record)
    monkeypatch.setattr(fit, "BestCheckpoint", RecordingCheckpoint)
    monkeypatch.setattr(LossTrainer, "predict", predict)
    RecordingCheckpoint.snapshots = {}
    train = TrainConfig(**{**tiny_train.__dict__, "epochs": 2.0, "select_checkpoint": True, "eval_steps": 2})
    row = _run(train, tmp_path)

    validation = tokenized_splits("trec", resolve_model(train.model), train.max_length)["validation"]
    # 24 examples / 8 = 3 steps per epoch, 6 in all: evaluations at 2, 4, 6, then the test split twice, then the
    # validation split once with the selected weights, for temperature scaling (after the test split: no choice)
    assert [kind for kind, _ in events] == ["scored"] * 3 + ["predicted"] * 3
    assert all(np.array_equal(labels, validation["label"]) for kind, labels in events if kind == "scored")
    predicted = [len(dataset) for kind, dataset in events if kind == "predicted"]
    assert predicted == [row["test_examples"], row["test_examples"], len(validation)]
    assert row["evaluations"] == 3 and row["best_step"] == 2 and row["stopped_early"] is False
    assert np.isfinite(row["test_last_f1_macro"]) and np.isfinite(row["test_f1_macro"])
    restored = trained[0].model.state_dict()
    assert all(torch.equal(restored[k], v) for k, v in RecordingCheckpoint.snapshots[2].items())
    assert not all(torch.equal(restored[k], v) for k, v in RecordingCheckpoint.snapshots[6].items())


def test_the_test_split_is_scored_once_when_the_best_step_is_the_last(tiny_train, tmp_path, monkeypatch):
    events, scored = [], []
    real_scorer, real_predict = fit.validation_scorer, LossTrainer.predict

    def scorer(meta, class_counts, eval_steps):
        score = real_scorer(meta, class_counts, eval_steps)

        def improving(prediction):
            scored.append(1)
            return {**score(prediction), meta.main_metric: float(len(scored))}  # better every time: the last is best

        return improving

    def predict(trainer, dataset, *args, **kwargs):
        events.append(len(dataset))
        return real_predict(trainer, dataset, *args, **kwargs)

    monkeypatch.setattr(fit, "validation_scorer", scorer)
    monkeypatch.setattr(LossTrainer, "predict", predict)
    train = TrainConfig(**{**tiny_train.__dict__, "epochs": 2.0, "select_checkpoint": True, "eval_steps": 2})
    row = _run(train, tmp_path)

    # the last weights are the selected ones: one pass over the test split (then validation, for temperature scaling)
    validation = tokenized_splits("trec", resolve_model(train.model), train.max_length)["validation"]
    assert events == [row["test_examples"], len(validation)]
    assert row["best_step"] == 6 and row["evaluations"] == 3
    assert row["test_last_f1_macro"] == row["test_f1_macro"]


def test_patience_stops_early_and_the_last_step_is_evaluated(tiny_train, tmp_path, monkeypatch):
    real_scorer = fit.validation_scorer
    calls = []

    def scorer(meta, class_counts, eval_steps):
        score = real_scorer(meta, class_counts, eval_steps)
        return lambda p: {**score(p), meta.main_metric: -float(calls.append(1) or len(calls))}

    monkeypatch.setattr(fit, "validation_scorer", scorer)
    stopping = TrainConfig(
        **{**tiny_train.__dict__, "epochs": 3.0, "select_checkpoint": True, "eval_steps": 1, "patience": 2}
    )
    row = _run(stopping, tmp_path / "a")
    assert row["stopped_early"] is True and row["best_step"] == 1 and row["evaluations"] == 3

    calls.clear()  # 3 steps, evaluated every 2: at 2, then once more at the last step, 3
    last = TrainConfig(**{**tiny_train.__dict__, "select_checkpoint": True, "eval_steps": 2})
    row = _run(last, tmp_path / "b")
    assert row["evaluations"] == 2 and row["best_step"] == 2 and row["stopped_early"] is False
