"""The frozen-encoder protocol (``--freeze-encoder``): a linear probe.

The pretrained encoder embeds every text of a task once; the features are cached in memory and on disk, and only a
linear head ``logits = W e + b`` is trained on them, under every loss, with the shared ``LossTrainer``. This is a
different protocol from fine-tuning (the encoder never learns), so its results are not comparable with fine-tuned
ones; rows say which protocol made them (``protocol``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from torch import Tensor, nn
from transformers import AutoModel
from transformers.modeling_outputs import SequenceClassifierOutput

from bench import cache
from bench.config import RunSpec, TrainConfig
from bench.fit import fit
from bench.models import resolve_model
from bench.registry import LOSSES, TASKS
from bench.results import atomic_file
from bench.splits import label_stats, tokenized_splits, tokenizer, training_split

FEATURES_DIR = "features"
ENCODE_BATCH = 64
ROW = "feature_row"  # the training split's row index, carried through the subset and stressor draws
INIT_STD = 0.02  # the head's initial weights ~ N(0, 0.02^2), bias 0: as BERT's classification head
_FEATURES: dict[tuple, dict[str, np.ndarray]] = {}  # this process's features: settings -> split -> (rows, hidden)


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The sentence embedding: the mean of the token states over the attention mask, padding left out.

        e = sum_t m_t * h_t / sum_t m_t

    All-MiniLM-L6-v2 (the default model) was trained with this pooling (sentence-transformers' ``Pooling`` module,
    mean mode); its L2 normalisation, a rescaling a linear head absorbs, is not applied.
    """
    mask = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


@torch.inference_mode()
def encode_features(
    splits: datasets.DatasetDict, model_path: str, *, precision: str, batch_size: int = ENCODE_BATCH
) -> dict[str, np.ndarray]:
    """The mean-pooled last hidden state of the pretrained encoder for every row of every split: float32 (rows,
    hidden) in the splits' row order. No gradient, batches of similar length, bf16 autocast when ``precision`` is."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = AutoModel.from_pretrained(model_path).to(device).eval()  # the checkpoint's base model, head dropped
    model_tokenizer = tokenizer(model_path)
    features = {}
    for name, split in splits.items():
        columns = [c for c in ("input_ids", "token_type_ids", "attention_mask") if c in split.column_names]
        inputs = split.select_columns(columns)
        order = np.argsort([len(ids) for ids in inputs["input_ids"]], kind="stable")
        out = np.zeros((len(split), encoder.config.hidden_size), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = model_tokenizer.pad(inputs[chunk.tolist()], return_tensors="pt").to(device)
            with torch.autocast(device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                hidden = encoder(**batch).last_hidden_state
            out[chunk] = mean_pool(hidden.float(), batch["attention_mask"]).cpu().numpy()
        features[name] = out
    return features


def cache_dir() -> Path:
    """Where features are stored: ``$LOSSBENCH_CACHE/features`` (default ``~/.cache/lossbench/features``)."""
    return cache.cache_dir(FEATURES_DIR)


def features_key(task: str, version: str, model_path: str, train: TrainConfig, splits: datasets.DatasetDict) -> str:
    """A hash of everything the features depend on (``bench.cache.splits_key``): the task and its version, the
    model, max_length, precision, and the token ids of every split in row order."""
    settings = [task, version, model_path, train.max_length, train.precision]
    return f"{task}-{cache.splits_key(settings, model_path, splits)}"


def _read(path: Path, splits: datasets.DatasetDict) -> dict[str, np.ndarray] | None:
    """Cached features, or None when absent, unreadable or not one finite row per example of every split."""
    try:
        with np.load(path) as saved:
            features = {name: saved[name] for name in splits}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    for name, array in features.items():
        if array.ndim != 2 or len(array) != len(splits[name]) or not np.isfinite(array).all():
            return None
    return features


def _write(path: Path, features: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file in the same folder, then rename): concurrent workers never read half a file."""
    with atomic_file(path, "wb") as handle:
        np.savez(handle, **features)


def task_features(
    task: str, version: str, splits: datasets.DatasetDict, model_path: str, train: TrainConfig
) -> tuple[dict[str, np.ndarray], float]:
    """A task's features from this process's memo, else the disk cache, else the encoder (then stored in both);
    with the seconds spent encoding (0 when cached). Within a process the tokenized splits of these settings are
    fixed (``splits.tokenized_splits`` is memoised too), so the memo needs no token digest."""
    settings = (task, version, model_path, train.max_length, train.precision)
    if settings in _FEATURES:
        return _FEATURES[settings], 0.0
    path = cache_dir() / f"{features_key(task, version, model_path, train, splits)}.npz"
    features, seconds = _read(path, splits), 0.0
    if features is None:
        started = time.perf_counter()
        features = encode_features(splits, model_path, precision=train.precision)
        seconds = time.perf_counter() - started
        _write(path, features)
    _FEATURES[settings] = features
    return features, seconds


class LinearProbe(nn.Module):
    """The trained part of the probe: ``logits = W e + b`` on the frozen sentence embedding ``e``, no dropout.

    Returns what the Trainer and ``LossTrainer`` read from a model: ``logits``, and with ``output_hidden_states``
    the embedding as a one-token last layer, so ``hidden_states[-1][:, 0]`` is ``e``. A loss that needs embeddings
    (``supcon_ce``) therefore sees the frozen features: its embedding term is a constant that trains nothing.
    """

    def __init__(self, hidden: int, outputs: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden, outputs)
        nn.init.normal_(self.linear.weight, std=INIT_STD)
        nn.init.zeros_(self.linear.bias)

    def forward(
        self, features: Tensor, labels: Tensor | None = None, output_hidden_states: bool = False
    ) -> SequenceClassifierOutput:
        # ``labels`` is in the signature so the Trainer finds the label column; the loss is the LossTrainer's.
        logits = self.linear(features)
        return SequenceClassifierOutput(
            logits=logits, hidden_states=(features[:, None],) if output_hidden_states else None
        )


class FeatureDataset(torch.utils.data.Dataset):
    """Rows of (features, label); ``collate`` stacks them into the head's batch."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, problem_type: str) -> None:
        self.features = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
        dtype = torch.long if problem_type == "classification" else torch.float32
        self.labels = torch.as_tensor(np.asarray(labels), dtype=dtype)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"features": self.features[index], "labels": self.labels[index]}


def _columns(split: datasets.Dataset, names: list[str]) -> dict[str, np.ndarray]:
    """Columns as numpy arrays, read in one go (much faster than iterating a ``datasets`` column)."""
    return split.select_columns(names).with_format("numpy")[:]


def collate(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {key: torch.stack([row[key] for row in rows]) for key in ("features", "labels")}


def run_probe(spec: RunSpec, out_dir: Path, *, eval_steps: int = 0, torch_compile: bool = False) -> dict[str, Any]:
    """Train a linear head on the frozen encoder's features for one (task, loss, seed); returns the result row, with
    the same columns and run files as fine-tuning (``bench.finetune``) plus ``feature_seconds``.

    The training subset and stressors are drawn exactly as for fine-tuning (a row index follows the rows through
    them), and the head's initialisation depends on the seed only, so the losses of one seed stay paired.
    """
    started = time.perf_counter()
    base = spec.task.base
    meta = TASKS.get(base).metadata
    loss = LOSSES.get(spec.loss)(**spec.loss_params)
    model_path = resolve_model(spec.train.model)
    splits = tokenized_splits(base, model_path, spec.train.max_length)
    features, feature_seconds = task_features(base, meta.version, splits, model_path, spec.train)
    indexed = datasets.DatasetDict({**splits, "train": splits["train"].add_column(ROW, range(len(splits["train"])))})
    train, _ = training_split(spec, model_path, indexed)
    labels = label_stats(train, meta)
    if loss.needs_class_counts:
        loss.set_class_counts(labels.class_counts)
    picked = _columns(train, [ROW, "label"])
    data = {"train": FeatureDataset(features["train"][picked[ROW]], picked["label"], meta.problem_type)}
    for name in ("validation", "test"):
        data[name] = FeatureDataset(features[name], _columns(splits[name], ["label"])["label"], meta.problem_type)

    transformers.set_seed(spec.seed)  # the same initial head for every loss of this seed
    head = LinearProbe(features["train"].shape[1], loss.head_size(meta.num_labels))
    row = fit(
        spec,
        head,
        data,
        out_dir,
        loss=loss,
        meta=meta,
        data_collator=collate,
        labels=labels,
        started=started,
        length_grouped=False,  # a row is one feature vector: there are no lengths to group batches by
        eval_steps=eval_steps,
        torch_compile=torch_compile,
    )
    return {**row, "feature_seconds": feature_seconds}
