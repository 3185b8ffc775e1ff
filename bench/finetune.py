"""The fine-tuning protocol: every weight of the pretrained model trains under the run's loss."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import datasets
import transformers
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from bench.config import RunSpec
from bench.fit import fit
from bench.models import resolve_model
from bench.registry import LOSSES, TASKS
from bench.splits import label_stats, tokenizer, training_split


def run_finetune(spec: RunSpec, out_dir: Path, *, eval_steps: int = 0, torch_compile: bool = False) -> dict[str, Any]:
    """Fine-tune one (task, loss, seed) and evaluate on the test split; returns the finished row.

    ``eval_steps > 0`` also evaluates the validation split every that many steps, for learning curves (it logs
    ``eval_<metric>`` entries in the run's log history and does not change the training itself).
    """
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
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path,
        num_labels=loss.head_size(meta.num_labels),
        problem_type="regression" if meta.problem_type == "regression" else "single_label_classification",
        ignore_mismatched_sizes=True,  # a checkpoint with another head gets a new one of the task's size
    )
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
    )
