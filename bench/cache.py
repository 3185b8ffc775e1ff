"""The on-disk cache of encoder outputs (``$LOSSBENCH_CACHE``, default ``~/.cache/lossbench``) and its keys.

``--train-layers`` caches the states of the frozen layers below the trained ones (``states/``; with 0, the last
layer's, for the head alone). A key hashes everything the cached arrays depend on, so a change of data, tokenizer,
row order, model weights or settings can never attach stale arrays to other rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np

CACHE_ENV = "LOSSBENCH_CACHE"
KEY_CHARS = 20


def cache_dir(kind: str) -> Path:
    """The folder of one kind of cached arrays: ``$LOSSBENCH_CACHE/<kind>`` (default ``~/.cache/lossbench/<kind>``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "lossbench") / kind


def splits_key(settings: list[Any], model_path: str, splits: datasets.DatasetDict) -> str:
    """A hash of ``settings`` (task, version, model, max_length, precision, ...), the model's weight files (names,
    sizes and times, for a local checkpoint) and the token ids of every split in row order."""
    digest = hashlib.sha256()
    weights = sorted(p for p in Path(model_path).glob("*") if p.suffix in {".safetensors", ".bin"})
    identity = [*settings, *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in weights)]
    digest.update(json.dumps(identity).encode())
    for name in sorted(splits):
        ids = splits[name]["input_ids"]
        digest.update(name.encode() + np.asarray([len(row) for row in ids], dtype=np.int64).tobytes())
        digest.update(np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int64).tobytes())
    return digest.hexdigest()[:KEY_CHARS]
