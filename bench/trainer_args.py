"""``--trainer-arg KEY=VALUE``: any field of the installed ``transformers.TrainingArguments``, parsed once at the
boundary by transformers' own ``HfArgumentParser`` into a canonical form (a JSON object with sorted keys) that a run's
settings, identity and row carry. The settings lossbench owns are refused, naming the reason and the flag to use."""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

_SCHEDULE = "the schedule, logging and checkpoint selection follow from --epochs and --train-size"
_NO_CHECKPOINTS = (
    "lossbench writes no checkpoint: --select-checkpoint keeps the best validation weights in memory, by the task's "
    "main metric"
)
_WHEN_SCORED = "--select-checkpoint and --eval-steps decide when the validation split is scored"
_PRECISION = "--precision (bf16 autocast or fp32; the losses compute in float32)"
_NO_MODEL = "lossbench saves no model and pushes nothing (its output is runs.csv and each run's files)"
# TrainingArguments fields that lossbench sets from its own settings, each with why (and the flag to use instead).
OWNED = {
    "output_dir": "each run trains in a scratch folder and its files go to OUT/runs/<run_id>/: use --out",
    "per_device_train_batch_size": "use --batch-size",
    "num_train_epochs": "use --epochs",
    "max_steps": f"use --epochs ({_SCHEDULE})",
    "learning_rate": "use --lr",
    "seed": "use --seeds (each run's seed sets the model's initialisation and the data order)",
    "data_seed": "use --seeds (each run's seed sets the model's initialisation and the data order)",
    "bf16": f"use {_PRECISION}",
    "fp16": f"use {_PRECISION}",
    "bf16_full_eval": f"use {_PRECISION}",
    "fp16_full_eval": f"use {_PRECISION}",
    "report_to": "use --report-to",
    "run_name": "lossbench names each run by its run_id, task, loss and seed",
    "use_cpu": "lossbench trains on a GPU when there is one, else on the CPU (with Ray: --gpus-per-run)",
    "eval_strategy": f"use --select-checkpoint or --eval-steps ({_WHEN_SCORED})",
    "eval_steps": f"use --eval-steps ({_WHEN_SCORED})",
    "eval_delay": _WHEN_SCORED,
    "eval_on_start": _WHEN_SCORED,
    "save_strategy": _NO_CHECKPOINTS,
    "save_steps": _NO_CHECKPOINTS,
    "save_total_limit": _NO_CHECKPOINTS,
    "save_only_model": _NO_CHECKPOINTS,
    "save_on_each_node": _NO_CHECKPOINTS,
    "enable_jit_checkpoint": _NO_CHECKPOINTS,
    "load_best_model_at_end": f"use --select-checkpoint ({_NO_CHECKPOINTS})",
    "metric_for_best_model": f"{_NO_CHECKPOINTS}; the metric is the task's (lossbench list tasks)",
    "greater_is_better": f"{_NO_CHECKPOINTS}; the direction is the task's main metric's",
    "resume_from_checkpoint": _NO_CHECKPOINTS,
    "restore_callback_states_from_checkpoint": _NO_CHECKPOINTS,
    "push_to_hub": _NO_MODEL,
    "hub_model_id": _NO_MODEL,
    "hub_strategy": _NO_MODEL,
    "hub_token": f"{_NO_MODEL}; a token would also be written into runs.csv",
    "hub_private_repo": _NO_MODEL,
    "hub_always_push": _NO_MODEL,
    "hub_revision": _NO_MODEL,
    "train_sampling_strategy": "use --length-grouping",
    "length_column_name": "use --length-grouping",
    "auto_find_batch_size": "use --batch-size (a run trains with the batch it names)",
    "label_smoothing_factor": "the Trainer ignores it under the run's loss: use --losses label_smoothing",
    "prediction_loss_only": "lossbench scores the test split from its predictions",
    "label_names": "lossbench's data and losses name the labels",
    "remove_unused_columns": "lossbench's data holds only the model's inputs and the labels",
}
# Fields lossbench's settings (TrainConfig) already hold: a trainer arg for them becomes that setting, so that one
# training has one identity (``warmup_steps`` below 1 is a ratio, as TrainConfig.warmup_ratio).
AS_SETTINGS = {"weight_decay": "weight_decay", "warmup_steps": "warmup_ratio"}
EMPTY = "{}"  # no trainer args: the canonical form every run without them records


class TrainerArgError(ValueError):
    """A ``--trainer-arg`` that is unknown, owned by lossbench, or does not parse as its field's type."""


def split_item(text: str) -> tuple[str, str]:
    """``KEY=VALUE`` as given to ``--trainer-arg`` (an argparse type: nothing imported)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(
            f"trainer-arg must be KEY=VALUE with a TrainingArguments field as KEY, e.g. max_grad_norm=1.0; got {text!r}"
        )
    return key.strip().replace("-", "_"), value.strip()


@cache
def _parser() -> argparse.ArgumentParser:
    from transformers import HfArgumentParser, TrainingArguments

    return HfArgumentParser(TrainingArguments, exit_on_error=False)


@cache
def field_types() -> dict[str, str]:
    """Every field of the installed ``TrainingArguments`` that its constructor takes, with its declared type."""
    from dataclasses import fields

    from transformers import TrainingArguments

    return {
        field.name: getattr(field.type, "__name__", str(field.type))
        for field in fields(TrainingArguments)
        if field.init
    }


def parse_value(key: str, value: Any) -> Any:
    """``value`` as ``HfArgumentParser(TrainingArguments)`` parses ``--key value``: a number, a bool, a choice of the
    field's enum (as its string) or a string. A list field takes comma-separated items; a non-string value (from
    Python) is parsed from its string form, so ``2`` and ``"2"`` give the same."""
    if isinstance(value, (list, tuple)):
        value = ",".join(str(item) for item in value)
    text = json.dumps(value) if isinstance(value, (bool, dict)) else str(value)
    action = next(action for action in _parser()._actions if action.dest == key)
    items = [item.strip() for item in text.split(",")] if action.nargs in ("+", "*") else [text]
    try:
        parsed = getattr(_parser().parse_args([f"--{key}", *items]), key)
    except argparse.ArgumentError as error:
        raise TrainerArgError(
            f"--trainer-arg {key}={text}: TrainingArguments.{key} is {field_types()[key]}; {error.message}"
        ) from None
    return getattr(parsed, "value", parsed)  # an enum member as its string


def canonical(trainer_args: Mapping[str, Any] | Iterable[tuple[str, Any]] | str | None) -> dict[str, Any]:
    """Trainer args checked and parsed: a mapping, (key, value) pairs or a JSON object. An unknown key is refused
    with the closest fields, one lossbench owns with the reason, a key given twice or a value that does not parse
    as its field's type with the key, the value and the type."""
    if not trainer_args:
        return {}
    if isinstance(trainer_args, str):
        trainer_args = json.loads(trainer_args)
    pairs = list(trainer_args.items() if isinstance(trainer_args, Mapping) else trainer_args)
    known = field_types()
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=3)
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
            raise TrainerArgError(
                f"--trainer-arg {key}: transformers.TrainingArguments has no field {key!r}.{hint} Valid fields: "
                f"{', '.join(sorted(set(known) - set(OWNED)))}."
            )
        if key in OWNED:
            raise TrainerArgError(f"--trainer-arg {key}: lossbench sets it: {OWNED[key]}.")
        if key in result:
            raise TrainerArgError(f"--trainer-arg {key} is given twice ({result[key]!r} and {value!r}); give it once.")
        result[key] = parse_value(key, value)
    return dict(sorted(result.items()))


def encode(trainer_args: Mapping[str, Any]) -> str:
    """The canonical form a run records: a JSON object with sorted keys (``{}`` for none)."""
    return json.dumps(dict(trainer_args), sort_keys=True)


def slug_tag(encoded: str) -> str:
    """A folder-name tag for the trainer args: ``ta-``, each key's initials and value joined by ``_``, and a short
    hash of the whole (initials can collide), e.g. ``ta-gas4_mgn0.5-1a2b3c`` for gradient_accumulation_steps=4,
    max_grad_norm=0.5."""
    parts = []
    for key, value in json.loads(encoded).items():
        initials = "".join(word[0] for word in key.split("_") if word)
        parts.append(initials + re.sub(r"[^A-Za-z0-9.]+", "", f"{value:g}" if isinstance(value, float) else str(value)))
    return f"ta-{'_'.join(parts)}-{hashlib.sha256(encoded.encode()).hexdigest()[:6]}"
