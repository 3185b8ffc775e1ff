"""The real embedded model on real data (``pytest -m slow``; about a minute)."""

from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification

from bench.config import TrainConfig
from bench.matrix import build_matrix
from bench.models import DEFAULT_MODEL, resolve_model
from bench.runner import run_one

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("num_labels", [1, 2, 6])
def test_embedded_model_loads_offline_with_only_a_new_head(num_labels, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, info = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(DEFAULT_MODEL), num_labels=num_labels, output_loading_info=True
    )
    assert info["missing_keys"] and all(key.startswith("classifier.") for key in info["missing_keys"])
    assert model.config.num_hidden_layers == 6 and model.config.hidden_size == 384


@pytest.mark.parametrize(("task", "loss", "metric", "floor"), [("rt_polarity", "focal", "accuracy", 0.6)])
def test_real_fine_tune_learns(task, loss, metric, floor, tmp_path):
    runs, _ = build_matrix([task], [loss], [0], TrainConfig(train_size=400))
    row = run_one(runs[0], tmp_path)
    assert row["status"] == "ok"
    assert row[f"test_{metric}"] > floor
