"""The fine-tuning protocol: the pretrained model trains under the run's loss, every weight of it, or (``train_layers``
K) its top K layers and the head on cached states of the frozen layers below (``bench.depth``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import transformers
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from bench.config import RunSpec
from bench.depth import StatesDataset, TopLayers, collate_states, task_states
from bench.fit import fit
from bench.models import resolve_model
from bench.registry import LOSSES, TASKS
from bench.splits import label_stats, tokenized_splits, tokenizer, training_split

ROW = "states_row"  # the training split's row index, carried through the subset and stressor draws


def run_finetune(
    spec: RunSpec, out_dir: Path, *, eval_steps: int = 0, torch_compile: bool = False, validation_only: bool = False
) -> dict[str, Any]:
    """Fine-tune one (task, loss, seed) and evaluate on the test split; returns the finished row.

    ``eval_steps > 0`` also evaluates the validation split every that many steps, for learning curves (it logs
    ``eval_<metric>`` entries in the run's log history and does not change the training itself).
    ``validation_only`` (a tuning trial): scored on the validation split alone, the test split never read
    (``bench.fit.train_and_record``).
    """
    if spec.train.train_layers is not None:
        return run_top_layers(
            spec, out_dir, eval_steps=eval_steps, torch_compile=torch_compile, validation_only=validation_only
        )
    started = time.perf_counter()
    meta = TASKS.get(spec.task.base).metadata
    loss = LOSSES.get(spec.loss)(**spec.loss_params)
    model_path = resolve_model(spec.train.model)
    train, splits = training_split(spec, model_path)
    labels = label_stats(train, meta)
    splits = datasets.DatasetDict({**splits, "train": train.remove_columns("clean_label")})
    model_tokenizer = tokenizer(model_path)

    if loss.needs_class_counts:
        loss.set_class_counts(labels.class_counts)

    transformers.set_seed(spec.seed)  # the new head is initialised the same way for every loss of this seed
    model = pretrained_model(model_path, loss.head_size(meta.num_labels), meta.problem_type)
    return fit(
        spec,
        model,
        splits,
        out_dir,
        loss=loss,
        meta=meta,
        data_collator=DataCollatorWithPadding(model_tokenizer),
        processing_class=model_tokenizer,
        labels=labels,
        started=started,
        eval_steps=eval_steps,
        torch_compile=torch_compile,
        validation_only=validation_only,
    )


def pretrained_model(model_path: str, outputs: int, problem_type: str) -> transformers.PreTrainedModel:
    """The pretrained checkpoint with a new sequence-classification head of ``outputs`` outputs."""
    return AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=outputs,
        problem_type="regression" if problem_type == "regression" else "single_label_classification",
        ignore_mismatched_sizes=True,  # a checkpoint with another head gets a new one of the task's size
    )


def run_top_layers(
    spec: RunSpec, out_dir: Path, *, eval_steps: int = 0, torch_compile: bool = False, validation_only: bool = False
) -> dict[str, Any]:
    """Fine-tune the top ``train_layers`` layers and the head on the cached states of the frozen part below them;
    returns the row, with the same columns and run files as a full fine-tune plus ``states_seconds`` (encoding time,
    0 when the states were cached). The training subset and stressors are drawn exactly as for a full fine-tune (a row
    index follows the rows through them), and the head starts as it would there, so the losses of one seed stay
    paired. Validation and test are scored by the same top layers."""
    started = time.perf_counter()
    base = spec.task.base
    meta = TASKS.get(base).metadata
    loss = LOSSES.get(spec.loss)(**spec.loss_params)
    model_path = resolve_model(spec.train.model)
    transformers.set_seed(spec.seed)  # the same initial head as a full fine-tune of this seed
    model = pretrained_model(model_path, loss.head_size(meta.num_labels), meta.problem_type)
    top = TopLayers(model, spec.train.train_layers)  # refuses a model of another structure, or K above its depth
    splits = tokenized_splits(base, model_path, spec.train.max_length)
    states, states_seconds = task_states(base, meta.version, splits, model, model_path, spec.train)
    del model  # the frozen part lives on only as the cached states

    indexed = datasets.DatasetDict({**splits, "train": splits["train"].add_column(ROW, range(len(splits["train"])))})
    train, indexed = training_split(spec, model_path, indexed)  # validation labels flipped under val_noise
    labels = label_stats(train, meta)
    if loss.needs_class_counts:
        loss.set_class_counts(labels.class_counts)
    picked = train.select_columns([ROW, "label"]).with_format("numpy")[:]
    data = {"train": StatesDataset(states["train"], picked["label"], indices=picked[ROW])}
    for name in ("validation", "test"):
        data[name] = StatesDataset(states[name], np.asarray(indexed[name].with_format("numpy")["label"]))
    row = fit(
        spec,
        top,
        data,
        out_dir,
        loss=loss,
        meta=meta,
        data_collator=collate_states,
        labels=labels,
        started=started,
        length_grouped=False,  # the config refuses length grouping with train_layers
        eval_steps=eval_steps,
        torch_compile=torch_compile,
        validation_only=validation_only,
    )
    return {**row, "states_seconds": states_seconds}
