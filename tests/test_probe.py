"""The frozen-encoder protocol (``--freeze-encoder``) on the tiny model: features, cache, head, rows, CLI, report."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

from bench import cache, fit, probe, runner
from bench.cli import main
from bench.config import FINE_TUNE, FINE_TUNE_DEFAULTS, LINEAR_PROBE, PROBE_DEFAULTS, RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.report import report_protocol
from bench.results import PREDICTIONS_FILE, RUNS_DIR


@pytest.fixture(scope="module", autouse=True)
def feature_cache(tmp_path_factory):
    """Features go to a temporary cache folder, never to the user's."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("lossbench-cache")
        patch.setenv(cache.CACHE_ENV, str(folder))
        yield folder


@pytest.fixture
def probe_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(
        model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32, epochs=2, freeze_encoder=True
    )


def _tiny_splits(model_dir, texts: dict[str, list[str]]) -> datasets.DatasetDict:
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    splits = {
        name: datasets.Dataset.from_dict({**tokenizer(rows), "label": [0] * len(rows)}) for name, rows in texts.items()
    }
    return datasets.DatasetDict(splits)


def test_mean_pooling_leaves_padding_out():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, -1.0], [100.0, 100.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert torch.equal(probe.mean_pool(hidden, mask), torch.tensor([[2.0, 3.0], [5.0, -1.0]]))


def test_a_text_gets_the_same_features_alone_and_padded_in_a_batch(tiny_model_dir):
    short, long = "a short one", "a much longer text that makes the short one padded in its batch"
    alone = probe.encode_features(_tiny_splits(tiny_model_dir, {"x": [short]}), str(tiny_model_dir), precision="fp32")
    padded = probe.encode_features(
        _tiny_splits(tiny_model_dir, {"x": [long, short]}), str(tiny_model_dir), precision="fp32"
    )
    assert alone["x"].dtype == np.float32 and alone["x"].shape == (1, 16)
    # Same process, same threads: only the summation order can differ (a longer batch's matmuls may be blocked
    # otherwise on another CPU; the difference is 0.0 on this project's machine). A float32 sum of k <= 32 terms (the
    # widest layer) moves by at most about k ulps when reordered; at these magnitudes (about 2, ulp 2.4e-7) that is
    # 32 x 2.4e-7 = 7.6e-6, within the 1e-5 allowed.
    np.testing.assert_allclose(padded["x"][1], alone["x"][0], atol=1e-5)


def test_features_are_encoded_once_then_read_from_memory_or_disk(tiny_model_dir, probe_train, monkeypatch):
    splits = _tiny_splits(tiny_model_dir, {"train": ["one", "two words", "three more words"], "test": ["four"]})
    calls = []
    encode = probe.encode_features
    monkeypatch.setattr(probe, "encode_features", lambda *a, **k: calls.append(1) or encode(*a, **k))
    model = str(tiny_model_dir)

    first, seconds = probe.task_features("tiny", "1", splits, model, probe_train)
    assert len(calls) == 1 and seconds > 0 and first["train"].shape == (3, 16)
    again, seconds = probe.task_features("tiny", "1", splits, model, probe_train)
    assert len(calls) == 1 and seconds == 0 and again is first  # this process's memo

    monkeypatch.setattr(probe, "_FEATURES", {})  # a fresh process: the disk cache answers
    from_disk, seconds = probe.task_features("tiny", "1", splits, model, probe_train)
    assert len(calls) == 1 and seconds == 0
    for name in splits:
        np.testing.assert_array_equal(from_disk[name], first[name])

    path = probe.cache_dir() / f"{probe.features_key('tiny', '1', model, probe_train, splits)}.npz"
    np.savez(path, train=np.zeros((2, 16), np.float32), test=np.zeros((1, 16), np.float32))  # wrong row count
    monkeypatch.setattr(probe, "_FEATURES", {})
    recomputed, seconds = probe.task_features("tiny", "1", splits, model, probe_train)
    assert len(calls) == 2 and seconds > 0
    np.testing.assert_array_equal(recomputed["train"], first["train"])
    assert not list(path.parent.glob("*.tmp"))


def test_the_cache_key_follows_the_rows(tiny_model_dir, probe_train):
    model = str(tiny_model_dir)
    key = probe.features_key("tiny", "1", model, probe_train, _tiny_splits(tiny_model_dir, {"train": ["a", "b c"]}))
    swapped = _tiny_splits(tiny_model_dir, {"train": ["b c", "a"]})
    assert probe.features_key("tiny", "1", model, probe_train, swapped) != key
    fp32, bf16 = replace(probe_train, precision="fp32"), replace(probe_train, precision="bf16")
    splits = _tiny_splits(tiny_model_dir, {"train": ["a", "b c"]})
    assert probe.features_key("tiny", "1", model, fp32, splits) != probe.features_key("tiny", "1", model, bf16, splits)


def test_the_config_holds_each_protocols_own_epochs_and_learning_rate():
    """Left out (None), epochs, learning rate and checkpoint selection are the protocol's, wherever the config is
    built; given, they stay."""
    probe_config, fine_tune = TrainConfig(freeze_encoder=True, precision="fp32"), TrainConfig(precision="fp32")
    assert {name: getattr(probe_config, name) for name in PROBE_DEFAULTS} == PROBE_DEFAULTS
    assert {name: getattr(fine_tune, name) for name in FINE_TUNE_DEFAULTS} == FINE_TUNE_DEFAULTS
    assert probe_config.train_layers is None  # the probe trains no encoder layer, whatever fine-tuning's depth
    given = TrainConfig(freeze_encoder=True, precision="fp32", epochs=2, learning_rate=3e-3)
    assert (given.epochs, given.learning_rate) == (2, 3e-3)
    explicit = TrainConfig(freeze_encoder=True, precision="fp32", **PROBE_DEFAULTS)
    assert asdict(explicit) == asdict(probe_config) and replace(probe_config) == probe_config


def test_freeze_encoder_is_part_of_the_run_identity(probe_train):
    fine_tune = replace(probe_train, freeze_encoder=False)
    assert fine_tune.protocol == FINE_TUNE and probe_train.protocol == LINEAR_PROBE
    spec = RunSpec("trec", "1", "cross_entropy", 0, probe_train)
    assert spec.run_id != RunSpec("trec", "1", "cross_entropy", 0, fine_tune).run_id


def test_a_probe_run_returns_a_row_and_writes_the_run_files(probe_train, tmp_path):
    runs, _ = build_matrix(["trec"], ["cross_entropy"], [0], probe_train)
    row = runner.run_one(runs[0], tmp_path, eval_steps=1)  # dispatches to the probe
    assert row["status"] == "ok" and row["protocol"] == LINEAR_PROBE and row["freeze_encoder"] is True
    assert row["train_examples"] == 24 and row["feature_seconds"] >= 0
    metrics = ("test_accuracy", "test_f1_macro", "test_ece", "train_loss", "test_loss", "train_seconds")
    assert all(math.isfinite(row[key]) for key in metrics)
    run_dir = tmp_path / RUNS_DIR / runs[0].run_id
    saved = np.load(run_dir / PREDICTIONS_FILE)
    assert saved["logits"].shape == (row["test_examples"], 6) and saved["labels"].shape == (row["test_examples"],)
    history = json.loads((run_dir / "log_history.json").read_text())
    assert [entry["step"] for entry in history if "eval_f1_macro" in entry] == [1, 2, 3, 4, 5, 6]  # 2 epochs of 3


def test_same_seed_gives_identical_metrics(probe_train, tmp_path):
    runs, _ = build_matrix(["trec"], ["label_smoothing"], [3], probe_train)
    first, second = runner.run_one(runs[0], tmp_path), runner.run_one(runs[0], tmp_path)
    for key in ("test_accuracy", "test_f1_macro", "test_nll", "train_loss"):
        assert first[key] == second[key]


@pytest.mark.parametrize(
    ("task", "loss"),
    [("trec", "supcon_ce"), ("trec", "weighted_cross_entropy"), ("vader_movies", "gaussian_nll"),
     ("vader_movies", "pearson")],
)  # fmt: skip
def test_losses_with_capabilities_train_a_probe(task, loss, probe_train, tmp_path):
    """Embeddings, class counts, a wider head and a batch-level loss all work on the frozen features."""
    runs, _ = build_matrix([task], [loss], [0], probe_train)
    row = runner.run_one(runs[0], tmp_path)
    assert row["status"] == "ok"
    assert all(math.isfinite(row[key]) for key in (f"test_{row['main_metric']}", "train_loss", "test_loss"))


def test_same_head_and_batches_for_every_loss_of_a_seed_and_only_the_head_learns(probe_train, tmp_path, monkeypatch):
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
    runs, _ = build_matrix(["trec@noise=0.2"], losses, [5], probe_train)
    for spec in runs:
        runner.run_one(spec, tmp_path)
    reference = seen["cross_entropy"]
    for name in losses:
        record = seen[name]
        assert record["trainable"] == ["linear.weight", "linear.bias"], name  # no encoder in the trained model
        assert not record["batch"]["features"].requires_grad
        assert not torch.equal(record["trained"]["linear.weight"], record["head"]["linear.weight"]), name
        for key, value in reference["head"].items():
            assert torch.equal(record["head"][key], value), f"{name}: initial head {key} differs"
        for key, value in reference["batch"].items():
            assert torch.equal(record["batch"][key], value), f"{name}: first batch {key} differs"


def test_cli_freeze_encoder_uses_probe_defaults_reports_the_protocol_and_never_mixes(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "probe"
    common = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0", "--train-size", "16"]
    common += ["--model", str(tiny_model_dir), "--out", str(out), "--quiet"]
    assert main([*common, "--freeze-encoder"]) == 0
    row = pd.read_csv(out / "runs.csv").iloc[0]
    assert row["status"] == "ok" and row["protocol"] == LINEAR_PROBE and bool(row["freeze_encoder"])
    assert row["epochs"] == PROBE_DEFAULTS["epochs"] and row["learning_rate"] == PROBE_DEFAULTS["learning_rate"]
    report = (out / "REPORT.md").read_text()
    assert report.startswith("# lossbench report: linear probe on a frozen encoder")
    assert "not comparable with fine-tuning" in report and f"**{LINEAR_PROBE}**" in report

    capsys.readouterr()
    assert main([*common, "--force"]) == 2  # fine-tuning into the same folder: refused, even with --force
    message = capsys.readouterr().err
    assert LINEAR_PROBE in message and FINE_TUNE in message and "not comparable" in message
    assert len(pd.read_csv(out / "runs.csv")) == 1


def test_the_report_never_pools_two_protocols():
    runs = pd.DataFrame({"status": ["ok", "ok"], "protocol": [FINE_TUNE, LINEAR_PROBE]})
    with pytest.raises(ValueError, match="mix protocols"):
        report_protocol(runs)
    assert report_protocol(pd.DataFrame({"status": ["ok"]})) == FINE_TUNE  # rows from before the column existed
