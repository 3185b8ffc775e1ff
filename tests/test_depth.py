"""Fine-tuning depth (bench.depth): the top K layers on cached lower-layer states compute exactly what the full model
computes, and only they and the head receive gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoTokenizer, BertForSequenceClassification

from bench.depth import (
    PackedStates,
    StatesDataset,
    TopLayers,
    collate_states,
    encoder_layers,
    lower_layer_states,
)
from bench.models import DEFAULT_MODEL, resolve_model
from tests.helpers import tiny_bert_config

LAYERS = 3
TEXTS = ["a short one", "a somewhat longer sentence to pad the batch", "mid length text here", "x"]


@pytest.fixture(scope="module")
def model_and_rows():
    torch.manual_seed(0)
    config = tiny_bert_config(dropout=0.1, num_labels=3)
    config.num_hidden_layers = LAYERS
    model = BertForSequenceClassification(config)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    rows = dict(tokenizer(TEXTS))
    return model, rows, tokenizer


def padded(rows: dict, tokenizer) -> dict[str, torch.Tensor]:
    return tokenizer.pad(
        {key: rows[key] for key in ("input_ids", "token_type_ids", "attention_mask")}, return_tensors="pt"
    )


@pytest.mark.parametrize("k", range(LAYERS + 1))
def test_top_layers_on_cached_states_equal_the_full_forward(model_and_rows, k):
    model, rows, tokenizer = model_and_rows
    model.eval()
    states = lower_layer_states(model, k, rows, tokenizer.pad_token_id, batch_size=3)  # 2 batches, unequal lengths
    assert states.is_valid_for([len(ids) for ids in rows["input_ids"]], model.config.hidden_size)
    top = TopLayers(model, k).eval()
    batch = collate_states(
        [{"inputs_embeds": torch.from_numpy(states.row(i)), "labels": torch.tensor(0)} for i in range(4)]
    )
    with torch.no_grad():
        got = top(batch["inputs_embeds"], batch["attention_mask"], output_hidden_states=True)
        want = model(**padded(rows, tokenizer), output_hidden_states=True)
    torch.testing.assert_close(got.logits, want.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got.hidden_states[-1][:, 0], want.hidden_states[-1][:, 0], rtol=1e-5, atol=1e-5)
    assert len(encoder_layers(top.model)) == k


@pytest.mark.parametrize("k", [0, 1, LAYERS])
def test_only_the_top_layers_and_the_head_are_trained_with_the_full_models_gradients(model_and_rows, k):
    model, rows, tokenizer = model_and_rows
    model.eval()  # no dropout, so the two forwards are the same function
    states = lower_layer_states(model, k, rows, tokenizer.pad_token_id)
    top = TopLayers(model, k).eval()
    batch = collate_states(
        [{"inputs_embeds": torch.from_numpy(states.row(i)), "labels": torch.tensor(i % 3)} for i in range(4)]
    )
    nn.functional.cross_entropy(top(batch["inputs_embeds"], batch["attention_mask"]).logits, batch["labels"]).backward()

    full = BertForSequenceClassification(model.config)
    full.load_state_dict(model.state_dict())
    full.eval().zero_grad()
    nn.functional.cross_entropy(full(**padded(rows, tokenizer)).logits, batch["labels"]).backward()

    first_trained = LAYERS - k
    trained = dict(top.model.named_parameters())
    expected = {
        name
        for name, _ in full.named_parameters()
        if name.startswith(("bert.pooler", "classifier"))
        or any(name.startswith(f"bert.encoder.layer.{i}.") for i in range(first_trained, LAYERS))
    }
    renamed = {_full_name(name, first_trained) for name in trained}
    assert renamed == expected  # nothing else is in the trained model, so nothing else can receive a gradient
    full_params = dict(full.named_parameters())
    for name, parameter in trained.items():
        assert parameter.grad is not None
        torch.testing.assert_close(
            parameter.grad, full_params[_full_name(name, first_trained)].grad, rtol=1e-4, atol=1e-6
        )


def _full_name(name: str, offset: int) -> str:
    """A TopLayers parameter's name in the full model (its layer i is the full model's layer offset + i)."""
    parts = name.split(".")
    if parts[:3] == ["bert", "encoder", "layer"]:
        parts[3] = str(int(parts[3]) + offset)
    return ".".join(parts)


def test_packed_states_validation_and_dataset():
    states = PackedStates(np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0, 2, 3, 6]))
    assert states.is_valid_for([2, 1, 3], 2)
    assert not states.is_valid_for([2, 2, 2], 2)
    assert not states.is_valid_for([2, 1, 3], 3)
    bad = PackedStates(np.full((6, 2), np.nan, dtype=np.float32), states.offsets)
    assert not bad.is_valid_for([2, 1, 3], 2)
    dataset = StatesDataset(states, np.array([1, 0]), indices=np.array([2, 0]))
    batch = collate_states([dataset[0], dataset[1]])
    assert batch["inputs_embeds"].shape == (2, 3, 2)
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [1, 0]
    with pytest.raises(ValueError, match="2 labels for 3 rows"):
        StatesDataset(states, np.array([1, 0]))


def test_bad_depth_and_models_are_refused(model_and_rows):
    model, _, _ = model_and_rows
    with pytest.raises(ValueError, match=r"train_layers=4: must be in \[0, 3\]"):
        TopLayers(model, 4)
    with pytest.raises(ValueError, match="BERT-style encoder"):
        encoder_layers(nn.Linear(2, 2))
