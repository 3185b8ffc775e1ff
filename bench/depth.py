"""Fine-tuning depth: train the top K transformer layers and the head, on cached outputs of the frozen layers below.

A BERT-style encoder of L layers computes ``h_0 = embeddings(x)`` and ``h_i = layer_i(h_{i-1})``. With the embeddings
and layers 1..L-K frozen, ``h_{L-K}`` never changes during training, so it is computed once per task and model (no
gradient, eval mode) and cached; each training and evaluation step then runs only layers L-K+1..L, the pooler and the
classifier. A step costs about K/L of a full fine-tune's encoder work. K = L is a full fine-tune (the cache holds the
embedding output); K = 0 trains only the head (pooler and classifier) on the last layer's frozen states.

One difference from a full fine-tune with the same layers frozen: the frozen part runs once in eval mode, so its
dropout (after the embeddings and inside the frozen layers) is off; dropout in the trained layers and the head is on.
The run's ``train_layers`` setting records K. References: Lee et al. 2019, "What Would Elsa Do? Freezing Layers
During Transformer Fine-Tuning" (freezing the lower layers of BERT keeps most of the fine-tuned score).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from bench import cache
from bench.config import TrainConfig
from bench.results import atomic_file

INPUT_COLUMNS = ("input_ids", "token_type_ids", "attention_mask")
ENCODE_BATCH = 64


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The transformer layers of a BERT-style model (``base_model.encoder.layer``), with a clear error otherwise."""
    base = getattr(model, "base_model", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList) or not hasattr(base, "embeddings"):
        raise ValueError(
            f"--train-layers needs a BERT-style encoder (base_model.embeddings and base_model.encoder.layer); "
            f"{type(model).__name__} has another structure. Use --train-layers all for a full fine-tune."
        )
    return layers


def check_train_layers(k: int, depth: int) -> None:
    """``k`` must be an integer in [0, depth]."""
    if not 0 <= k <= depth:
        raise ValueError(f"Invalid train_layers={k}: must be in [0, {depth}] for this {depth}-layer model, or 'all'")


class PassThroughEmbeddings(nn.Module):
    """Stands in for the frozen embeddings (and frozen layers): the cached hidden states come in as
    ``inputs_embeds`` and go on to the trained layers unchanged."""

    def forward(self, input_ids=None, position_ids=None, token_type_ids=None, inputs_embeds=None, **kwargs) -> Tensor:
        if inputs_embeds is None:
            raise ValueError("a model on cached lower-layer states takes inputs_embeds (the cached states)")
        return inputs_embeds


class TopLayers(nn.Module):
    """The trained part: the top ``k`` layers, the pooler and the classifier of a sequence-classification model,
    reading the cached output of the layers below as ``inputs_embeds``.

    Returns what ``LossTrainer`` reads: ``logits``, and with ``output_hidden_states`` a tuple whose last entry is the
    last layer's states (the cached states themselves when k = 0).
    """

    def __init__(self, model: PreTrainedModel, k: int) -> None:
        super().__init__()
        layers = encoder_layers(model)
        check_train_layers(k, len(layers))
        self.model = copy.deepcopy(model)
        self.model.base_model.embeddings = PassThroughEmbeddings()
        self.model.base_model.encoder.layer = nn.ModuleList(list(encoder_layers(self.model))[len(layers) - k :])
        self.config = self.model.config

    def forward(
        self,
        inputs_embeds: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,  # in the signature so the Trainer keeps the label column; the loss is ours
        output_hidden_states: bool = False,
    ) -> SequenceClassifierOutput:
        output = self.model(
            inputs_embeds=inputs_embeds, attention_mask=attention_mask, output_hidden_states=output_hidden_states
        )
        hidden = output.hidden_states
        if output_hidden_states and not hidden:  # no trained layer: the last layer's states are the cached ones
            hidden = (inputs_embeds,)
        return SequenceClassifierOutput(logits=output.logits, hidden_states=hidden)


@dataclass(frozen=True)
class PackedStates:
    """Variable-length hidden states of many rows in one array: row i is ``tokens[offsets[i]:offsets[i + 1]]``."""

    tokens: np.ndarray  # (total tokens, hidden), float32
    offsets: np.ndarray  # (rows + 1,), int64, starting at 0

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, index: int) -> np.ndarray:
        return self.tokens[self.offsets[index] : self.offsets[index + 1]]

    def is_valid_for(self, lengths: Iterable[int], hidden: int) -> bool:
        """Whether these states fit rows of these token lengths (validated on reading a cache)."""
        lengths = np.asarray(list(lengths), dtype=np.int64)
        return (
            self.tokens.ndim == 2
            and self.tokens.shape[1] == hidden
            and self.offsets.ndim == 1
            and len(self.offsets) == len(lengths) + 1
            and self.offsets[0] == 0
            and np.array_equal(np.diff(self.offsets), lengths)
            and self.offsets[-1] == len(self.tokens)
            and bool(np.isfinite(self.tokens).all())
        )


@torch.inference_mode()
def lower_layer_states(
    model: PreTrainedModel,
    k: int,
    rows: Mapping[str, list[list[int]]],
    pad_token_id: int,
    *,
    precision: str = "fp32",
    batch_size: int = ENCODE_BATCH,
) -> PackedStates:
    """The output of the frozen part (embeddings and layers 1..L-k) for every row: ``rows`` holds the tokenized
    columns (``input_ids`` and, where the model has them, ``token_type_ids``, ``attention_mask``), one list per row.
    Eval mode, no gradient, batches of similar length, bf16 autocast when ``precision`` is ``bf16``."""
    depth = len(encoder_layers(model))
    check_train_layers(k, depth)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    lengths = np.asarray([len(ids) for ids in rows["input_ids"]], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = np.zeros((int(offsets[-1]), model.config.hidden_size), dtype=np.float32)
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = int(lengths[chunk].max())
        batch = {}
        for column in (c for c in INPUT_COLUMNS if c in rows):
            fill = pad_token_id if column == "input_ids" else 0
            padded = np.full((len(chunk), width), fill, dtype=np.int64)
            for i, index in enumerate(chunk):
                padded[i, : lengths[index]] = rows[column][index]
            batch[column] = torch.from_numpy(padded).to(device)
        if "attention_mask" not in batch:
            batch["attention_mask"] = (torch.arange(width)[None, :] < torch.from_numpy(lengths[chunk])[:, None]).to(
                device
            )
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            hidden = model.base_model(**batch, output_hidden_states=True).hidden_states[depth - k]
        hidden = hidden.float().cpu().numpy()
        for i, index in enumerate(chunk):
            tokens[offsets[index] : offsets[index + 1]] = hidden[i, : lengths[index]]
    model.train(was_training)
    return PackedStates(tokens, offsets)


class StatesDataset(torch.utils.data.Dataset):
    """Rows of (cached states, label) for the Trainer; ``indices`` picks rows of ``states`` (a training subset)."""

    def __init__(self, states: PackedStates, labels: np.ndarray, indices: np.ndarray | None = None) -> None:
        self.states = states
        self.indices = np.arange(len(states)) if indices is None else np.asarray(indices, dtype=np.int64)
        labels = np.asarray(labels)
        if len(labels) != len(self.indices):
            raise ValueError(f"{len(labels)} labels for {len(self.indices)} rows")
        dtype = torch.long if np.issubdtype(labels.dtype, np.integer) else torch.float32
        self.labels = torch.as_tensor(labels, dtype=dtype)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"inputs_embeds": torch.from_numpy(self.states.row(self.indices[index])), "labels": self.labels[index]}


def collate_states(rows: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Pad a batch of variable-length states with zeros and mask the padding out."""
    lengths = [len(row["inputs_embeds"]) for row in rows]
    width, hidden = max(lengths), rows[0]["inputs_embeds"].shape[1]
    states = torch.zeros(len(rows), width, hidden)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, (row, length) in enumerate(zip(rows, lengths, strict=True)):
        states[i, :length] = row["inputs_embeds"]
        mask[i, :length] = 1
    return {"inputs_embeds": states, "attention_mask": mask, "labels": torch.stack([row["labels"] for row in rows])}


# The cache of lower-layer states: per (task, model, max_length, K, precision, token ids), in this process's memory and
# on disk (``bench.cache``).
STATES_DIR = "states"
_STATES: dict[tuple, dict[str, PackedStates]] = {}  # this process's states: settings -> split -> states


def cache_dir() -> Path:
    """Where states are stored: ``$LOSSBENCH_CACHE/states`` (default ``~/.cache/lossbench/states``)."""
    return cache.cache_dir(STATES_DIR)


def states_key(
    task: str, version: str, model_path: str, k: int, train: TrainConfig, splits: datasets.DatasetDict
) -> str:
    """A hash of everything the states depend on (``bench.cache.splits_key``): the task and its version, the model,
    max_length, K, precision, and the token ids of every split in row order."""
    settings = [task, version, model_path, train.max_length, k, train.precision]
    return f"{task}-top{k}-{cache.splits_key(settings, model_path, splits)}"


def _token_lengths(split: datasets.Dataset) -> list[int]:
    return [len(ids) for ids in split["input_ids"]]


def read_states(path: Path, splits: datasets.DatasetDict, hidden: int) -> dict[str, PackedStates] | None:
    """Cached states, or None when absent, unreadable or not fitting every split's rows (``is_valid_for``)."""
    try:
        with np.load(path) as saved:
            states = {name: PackedStates(saved[f"{name}.tokens"], saved[f"{name}.offsets"]) for name in splits}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if not all(states[name].is_valid_for(_token_lengths(splits[name]), hidden) for name in splits):
        return None
    return states


def write_states(path: Path, states: Mapping[str, PackedStates]) -> None:
    """Write atomically (``bench.results.atomic_file``): concurrent workers never read half a file."""
    arrays = {}
    for name, packed in states.items():
        arrays[f"{name}.tokens"], arrays[f"{name}.offsets"] = packed.tokens, packed.offsets
    with atomic_file(path, "wb") as handle:
        np.savez(handle, **arrays)


def task_states(
    task: str, version: str, splits: datasets.DatasetDict, model: PreTrainedModel, model_path: str, train: TrainConfig
) -> tuple[dict[str, PackedStates], float]:
    """The states below the top ``train.train_layers`` layers for every split of a task, from this process's memo,
    else the disk cache, else ``model``'s frozen part (then stored in both); with the seconds spent encoding (0 when
    cached). ``model`` is the pretrained model the run fine-tunes: its frozen part is the checkpoint's."""
    k = train.train_layers
    settings = (task, version, model_path, train.max_length, k, train.precision)
    if settings in _STATES:
        return _STATES[settings], 0.0
    path = cache_dir() / f"{states_key(task, version, model_path, k, train, splits)}.npz"
    states, seconds = read_states(path, splits, model.config.hidden_size), 0.0
    if states is None:
        started = time.perf_counter()
        pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
        states = {}
        for name, split in splits.items():
            rows = split.select_columns([c for c in INPUT_COLUMNS if c in split.column_names])[:]
            states[name] = lower_layer_states(model, k, rows, pad, precision=train.precision)
        seconds = time.perf_counter() - started
        write_states(path, states)
    _STATES[settings] = states
    return states, seconds
