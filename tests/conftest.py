"""Shared fixtures: a tiny random-initialised BERT checkpoint (with the embedded model's real tokenizer)."""

from __future__ import annotations

import os

# No test may reach the network: set before transformers and huggingface_hub read it at import, so a hub id fails at
# once instead of waiting for connection timeouts (about 20 s each where there is no network).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer, BertForSequenceClassification

from bench.cache import CACHE_ENV
from bench.models import DEFAULT_MODEL, resolve_model
from tests.helpers import tiny_bert_config

RAY_FILES = "test_ray_"  # the test files that start Ray


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under pytest-xdist (``make test``), tests go to the workers one at a time, as with ``--dist load``, except the
    ``test_ray_*.py`` files: one worker runs all of them, in order, since their tests check that a Ray instance leaves
    no files behind and a second instance on the machine would leave its own meanwhile."""
    from xdist.scheduler import LoadScopeScheduling

    class RayFilesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return RAY_FILES if Path(nodeid.split("::")[0]).name.startswith(RAY_FILES) else nodeid

    return RayFilesTogether(config, log)


@pytest.fixture(scope="session", autouse=True)
def state_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Cached encoder states go to this session's temporary folder, never to the user's ``~/.cache/lossbench``; the
    processes a test starts inherit it."""
    folder = tmp_path_factory.mktemp("lossbench-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local checkpoint directory, loadable with ``--model DIR`` like any fine-tuned checkpoint."""
    directory = tmp_path_factory.mktemp("tiny-bert")
    BertForSequenceClassification(tiny_bert_config()).save_pretrained(directory)
    AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL)).save_pretrained(directory)
    return directory
