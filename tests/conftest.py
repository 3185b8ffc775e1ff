"""Shared fixtures: a tiny random-initialised BERT checkpoint (with the embedded model's real tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, BertForSequenceClassification

from bench.models import DEFAULT_MODEL, resolve_model
from tests.helpers import tiny_bert_config


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local checkpoint directory, loadable with ``--model DIR`` like any fine-tuned checkpoint."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(tiny_bert_config()).save_pretrained(directory)
    AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL)).save_pretrained(directory)
    return directory
