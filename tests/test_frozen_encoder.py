"""The frozen-encoder protocol is one setting of fine-tuning depth (``--train-layers 0``, alias ``--freeze-encoder``):
the head alone on cached last-layer states, through the same code path as every other depth (``bench.finetune``,
``bench.depth``). On the tiny model: defaults, identity, rows, what trains, the CLI alias, the report's labels."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pandas as pd
import pytest
import torch

from bench import cache, fit, runner
from bench.cli import main
from bench.config import FINE_TUNE, FINE_TUNE_DEFAULTS, FROZEN_ENCODER, HEAD_ONLY_DEFAULTS, RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.report import report_protocol


@pytest.fixture(scope="module", autouse=True)
def state_cache(tmp_path_factory):
    """States go to a temporary cache folder, never to the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(cache.CACHE_ENV, str(tmp_path_factory.mktemp("lossbench-cache")))
        yield


@pytest.fixture
def head_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(
        model=str(tiny_model_dir),
        train_size=24,
        batch_size=8,
        max_length=32,
        epochs=2,
        train_layers=0,
        precision="fp32",
    )


def test_the_config_holds_each_depths_own_epochs_learning_rate_and_selection():
    """Left out (None), epochs, learning rate and checkpoint selection are the depth's, wherever the config is
    built; given, they stay."""
    head, fine_tune = TrainConfig(train_layers=0, precision="fp32"), TrainConfig(precision="fp32")
    assert {name: getattr(head, name) for name in HEAD_ONLY_DEFAULTS} == HEAD_ONLY_DEFAULTS
    assert {name: getattr(fine_tune, name) for name in FINE_TUNE_DEFAULTS} == FINE_TUNE_DEFAULTS
    given = TrainConfig(train_layers=0, precision="fp32", epochs=2, learning_rate=3e-3)
    assert (given.epochs, given.learning_rate) == (2, 3e-3)
    explicit = TrainConfig(train_layers=0, precision="fp32", **HEAD_ONLY_DEFAULTS)
    assert asdict(explicit) == asdict(head) and replace(head) == head


def test_the_protocol_follows_the_depth_and_enters_the_identity(head_train):
    one_layer = replace(head_train, train_layers=1)
    assert head_train.protocol == FROZEN_ENCODER and one_layer.protocol == FINE_TUNE
    assert replace(head_train, train_layers=None).protocol == FINE_TUNE
    spec = RunSpec("trec", "1", "cross_entropy", 0, head_train)
    assert spec.run_id != RunSpec("trec", "1", "cross_entropy", 0, one_layer).run_id
    assert "freeze_encoder" not in asdict(head_train) and spec.identity()["freeze_encoder"] is False  # retired


def test_a_head_only_run_returns_a_row_through_the_fine_tuning_path(head_train, tmp_path, monkeypatch):
    called = []
    run_top_layers = runner.run_finetune.__globals__["run_top_layers"]
    monkeypatch.setitem(
        runner.run_finetune.__globals__, "run_top_layers", lambda *a, **k: called.append(1) or run_top_layers(*a, **k)
    )
    runs, _ = build_matrix(["trec"], ["cross_entropy"], [0], head_train)
    row = runner.run_one(runs[0], tmp_path)
    assert called == [1]  # the one code path of every depth
    assert row["status"] == "ok" and row["protocol"] == FROZEN_ENCODER and row["train_layers"] == 0
    assert row["train_examples"] == 24 and row["states_seconds"] >= 0
    assert all(math.isfinite(row[key]) for key in ("test_accuracy", "test_f1_macro", "test_ece", "train_loss"))


@pytest.mark.parametrize(
    ("task", "loss"),
    [("trec", "supcon_ce"), ("trec", "weighted_cross_entropy"), ("vader_movies", "gaussian_nll"),
     ("vader_movies", "pearson")],
)  # fmt: skip
def test_losses_with_capabilities_train_the_head_alone(task, loss, head_train, tmp_path):
    """Embeddings, class counts, a wider head and a batch-level loss all work on the frozen states."""
    runs, _ = build_matrix([task], [loss], [0], head_train)
    row = runner.run_one(runs[0], tmp_path)
    assert row["status"] == "ok"
    assert all(math.isfinite(row[key]) for key in (f"test_{row['main_metric']}", "train_loss", "test_loss"))


def test_same_head_and_batches_for_every_loss_of_a_seed_and_only_the_head_learns(head_train, tmp_path, monkeypatch):
    seen: dict[str, dict] = {}

    class RecordingTrainer(fit.LossTrainer):
        def __init__(self, *args, loss, **kwargs):
            super().__init__(*args, loss=loss, **kwargs)
            seen[loss.name] = {"head": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            record = seen[self.loss.name]
            if model.training and "batch" not in record:
                record["batch"] = {k: v.clone() for k, v in inputs.items()}
                record["trainable"] = [name for name, p in model.named_parameters() if p.requires_grad]
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

        def train(self, *args, **kwargs):
            result = super().train(*args, **kwargs)
            seen[self.loss.name]["trained"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            return result

    monkeypatch.setattr(fit, "LossTrainer", RecordingTrainer)
    losses = ["cross_entropy", "focal", "supcon_ce"]
    runs, _ = build_matrix(["trec@noise=0.2"], losses, [5], replace(head_train, select_checkpoint=False, patience=0))
    for spec in runs:
        runner.run_one(spec, tmp_path)
    reference = seen["cross_entropy"]
    for name in losses:
        record = seen[name]
        assert record["trainable"] and all(  # no encoder layer, no embedding: the pooler and the classifier
            part.startswith(("model.bert.pooler.", "model.classifier.")) for part in record["trainable"]
        ), (name, record["trainable"])
        assert not record["batch"]["inputs_embeds"].requires_grad
        weight = "model.classifier.weight"
        assert not torch.equal(record["trained"][weight], record["head"][weight]), name
        for key, value in reference["head"].items():
            assert torch.equal(record["head"][key], value), f"{name}: initial head {key} differs"
        for key, value in reference["batch"].items():
            assert torch.equal(record["batch"][key], value), f"{name}: first batch {key} differs"


def test_cli_freeze_encoder_is_train_layers_0_reports_the_protocol_and_never_mixes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "frozen"
    common = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0", "--train-size", "16"]
    common += ["--model", str(tiny_model_dir), "--out", str(out), "--quiet"]
    assert main([*common, "--freeze-encoder"]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row["status"] == "ok" and row["protocol"] == FROZEN_ENCODER and row["train_layers"] == 0
    assert row["epochs"] == HEAD_ONLY_DEFAULTS["epochs"] and row["learning_rate"] == HEAD_ONLY_DEFAULTS["learning_rate"]
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# lossbench report: a head on a frozen encoder")
    assert "not comparable with fine-tuning" in report and f"**{FROZEN_ENCODER}**" in report

    before = (out / "runs.csv").read_text()
    assert main([*common, "--train-layers", "0"]) == 0  # the same run: nothing to run again
    assert (out / "runs.csv").read_text() == before
    capsys.readouterr()
    assert main([*common, "--force"]) == 2  # fine-tuning into the same folder: refused, even with --force
    message = capsys.readouterr().err
    assert FROZEN_ENCODER in message and FINE_TUNE in message and "not comparable" in message
    assert main([*common, "--freeze-encoder", "--train-layers", "2"]) == 2
    assert "--freeze-encoder is --train-layers 0" in capsys.readouterr().err
    assert len(pd.read_csv(out / "runs.csv")) == 1


def test_the_report_never_pools_two_protocols():
    runs = pd.DataFrame({"status": ["ok", "ok"], "protocol": [FINE_TUNE, FROZEN_ENCODER]})
    with pytest.raises(ValueError, match="mix protocols"):
        report_protocol(runs)
    assert report_protocol(pd.DataFrame({"status": ["ok"]})) == FINE_TUNE  # rows from before the column existed
