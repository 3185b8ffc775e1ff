"""The settings of a run and the identity of a run: a small frozen config with flat fields and typed defaults."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.models import DEFAULT_MODEL
from bench.taskspec import TaskSpec
from bench.trainer_args import AS_SETTINGS, EMPTY, canonical, encode, slug_tag

PRECISIONS = ("auto", "bf16", "fp32")
TUNED_SUFFIX = " (tuned)"  # a tuned run's loss as rows and reports name it (``focal (tuned)``): never pooled with focal
MIN_MAX_LENGTH = 8  # tokens: room for [CLS], [SEP] and a few words
# The protocols, as rows and reports name them: fine-tuning (some or all layers), or only the head on a frozen encoder
# (``train_layers=0``). Their results are never pooled in one report.
FINE_TUNE, FROZEN_ENCODER = "fine-tune", "frozen encoder (head only)"
# Each depth's epochs, learning rate and checkpoint selection, used where a TrainConfig leaves them out (None), both
# chosen by the protocol study (`make protocol`, results/PROTOCOL.md). Fine-tuning: the top layer (DEFAULT_TRAIN_LAYERS)
# trained at 1e-3 for one epoch of 2000 examples (125 steps), the best of 4 validation checkpoints. The head alone
# (train_layers=0) learns slower: 5 epochs, the best of 20 checkpoints; 1e-3, 3e-3 and 1e-2 reached the same mean
# best validation score (0.693-0.694 over the 4 default tasks, 3 seeds): the middle one.
FINE_TUNE_DEFAULTS = {"epochs": 1.0, "learning_rate": 1e-3, "select_checkpoint": True, "patience": 4}
HEAD_ONLY_DEFAULTS = {"epochs": 5.0, "learning_rate": 3e-3, "select_checkpoint": True, "patience": 4}
DEFAULT_TRAIN_LAYERS: int | None = 1  # fine-tuning's depth: the top layer (None: every layer; 0: the head only)
DEFAULT_TRAIN_SIZE = 2000


@dataclass(frozen=True)
class TrainConfig:
    """Training settings shared by every run of a matrix.

    The defaults are the protocol the study in results/PROTOCOL.md chose (`make protocol`): fine-tune the top
    transformer layer and the head (``train_layers=1``) on cached states of the frozen layers below, on 2000 training
    examples for one epoch (125 steps of 16) at 1e-3, score the validation split 4 times and keep the best weights
    (``select_checkpoint``), which score the test split. That keeps `make bench` (144 runs) near 30 min in fp32 on 2
    cores; ``train_layers=None`` fine-tunes every layer, ``train_layers=0`` trains only the head on the frozen
    encoder's cached last-layer states (the frozen-encoder protocol, which wants more epochs at a larger rate).
    ``epochs``, ``learning_rate``, ``select_checkpoint`` and ``patience`` left at None become the depth's defaults
    (``FINE_TUNE_DEFAULTS``, ``HEAD_ONLY_DEFAULTS``) when the config is made, so a config always holds, and its run's
    identity names, the values used (``replace(config, train_layers=0)`` keeps the resolved fine-tuning values; add
    ``epochs=None, learning_rate=None, select_checkpoint=None, patience=None`` for the head-only ones).
    """

    model: str = DEFAULT_MODEL
    train_size: int | None = DEFAULT_TRAIN_SIZE
    epochs: float | None = None  # None: the protocol's default (FINE_TUNE_DEFAULTS, HEAD_ONLY_DEFAULTS)
    learning_rate: float | None = None  # None: the protocol's default
    batch_size: int = 16
    max_length: int = 128
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    precision: str = "auto"  # bf16 autocast or fp32; auto = bf16 where the hardware runs it natively
    # Batches of similar length (the Trainer's group_by_length): 1.4x faster training on rt_polarity, but off by
    # default: where length goes with the label (sms_spam: spam is long) its batches are nearly one class each, and
    # mean scores fell (rt_polarity -0.012, sms_spam -0.015 over 39 / 23 paired runs; measured, see PERF.md).
    length_grouped: bool = False
    # Opt-in settings (bench.depth, bench.checkpoint); at their defaults they leave a run, and its run_id, as before.
    train_layers: int | None = DEFAULT_TRAIN_LAYERS  # fine-tune the top K layers and the head on cached lower-layer
    # states; None: all; 0: the head only, on the frozen encoder (another protocol)
    select_checkpoint: bool | None = None  # keep the best validation checkpoint (in memory), which scores the test
    # split; None: the protocol's default
    eval_steps: int = 0  # with select_checkpoint: validation every N steps; 0: about 4 times per epoch
    patience: int | None = None  # with select_checkpoint: stop after this many evaluations without improvement (0:
    # never); None: the protocol's default with select_checkpoint, else 0
    # --trainer-arg: other TrainingArguments fields, as a JSON object with sorted keys (a mapping or (key, value)
    # pairs are checked and put in this form; bench.trainer_args)
    trainer_args: str = EMPTY
    # lossbench tune: the trials each loss's tuning spent (0: untuned); the learning rate and loss parameters of a
    # tuned run are the ones its tuning chose (bench.tuning)
    tuning_trials: int = 0

    def __post_init__(self) -> None:
        if self.trainer_args != EMPTY:
            parsed = canonical(self.trainer_args)
            for key, setting in AS_SETTINGS.items():  # a field TrainConfig holds becomes that setting
                if key in parsed and (key != "warmup_steps" or parsed[key] < 1):
                    object.__setattr__(self, setting, parsed.pop(key))
            object.__setattr__(self, "trainer_args", encode(parsed))
        if self.precision not in PRECISIONS:
            raise ValueError(f"Invalid precision={self.precision!r}; valid choices: {', '.join(PRECISIONS)}")
        if self.precision == "auto":
            from bench.environment import bf16_supported  # imports torch: only when resolving

            # Resolved here, so that the run's identity and its CSV row name the precision actually used.
            object.__setattr__(self, "precision", "bf16" if bf16_supported() else "fp32")
        defaults = HEAD_ONLY_DEFAULTS if self.train_layers == 0 else FINE_TUNE_DEFAULTS
        for name in ("epochs", "learning_rate", "select_checkpoint"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, defaults[name])
        if self.patience is None:
            object.__setattr__(self, "patience", defaults["patience"] if self.select_checkpoint else 0)
        checks = {  # name: (whether the value is valid, the valid range in words)
            "train_size": (self.train_size is None or self.train_size >= 1, "an integer >= 1, or None for all"),
            "epochs": (0 < self.epochs < math.inf, "a finite number > 0"),
            "learning_rate": (0 < self.learning_rate < math.inf, "a finite number > 0"),
            "batch_size": (self.batch_size >= 1, "an integer >= 1"),
            "max_length": (self.max_length >= MIN_MAX_LENGTH, f"an integer >= {MIN_MAX_LENGTH}"),
            "weight_decay": (0 <= self.weight_decay < math.inf, "a finite number >= 0"),
            "warmup_ratio": (0 <= self.warmup_ratio < 1, "a number in [0, 1)"),
            "train_layers": (
                self.train_layers is None
                or (
                    isinstance(self.train_layers, int)
                    and not isinstance(self.train_layers, bool)
                    and self.train_layers >= 0
                ),
                "an integer >= 0 (at most the model's layers), or None for all",
            ),
            "eval_steps": (self.eval_steps >= 0, "an integer >= 0"),
            "tuning_trials": (self.tuning_trials >= 0, "an integer >= 0"),
            "patience": (self.patience >= 0, "an integer >= 0"),
        }
        for name, (ok, valid) in checks.items():
            if not ok:
                raise ValueError(f"Invalid {name}={getattr(self, name)!r}: must be {valid}")
        combinations = {  # a setting that needs (or excludes) another: (whether it is fine, the rule in words)
            "train_layers": (
                self.train_layers is None or not self.length_grouped,
                "trains on cached states, which are not grouped by length (not with length_grouped)",
            ),
            "eval_steps": (self.select_checkpoint or not self.eval_steps, "needs select_checkpoint"),
            "patience": (self.select_checkpoint or not self.patience, "needs select_checkpoint"),
        }
        for name, (ok, rule) in combinations.items():
            if not ok:
                raise ValueError(f"Invalid {name}={getattr(self, name)!r}: {rule}")

    @property
    def protocol(self) -> str:
        """``fine-tune``, or ``frozen encoder (head only)`` for ``train_layers=0``: runs of different protocols are
        never compared."""
        return FROZEN_ENCODER if self.train_layers == 0 else FINE_TUNE

    @property
    def tuned(self) -> bool:
        """Whether the run's learning rate and loss parameters were chosen by ``lossbench tune``."""
        return self.tuning_trials > 0

    @property
    def slug(self) -> str:
        """A folder name for the results of these settings: protocol, training examples, epochs, learning rate (not
        for tuned runs: each loss has the one its tuning chose) and precision, then every other setting that differs
        from its default (``finetune-450ex-1ep-lr2e-4-bf16``, ``finetune-2000ex-1ep-fp32-top1-...-tuned8``)."""
        size = "all" if self.train_size is None else str(self.train_size)
        parts = ["finetune", f"{size}ex", f"{self.epochs:g}ep"]
        parts += [] if self.tuned else [f"lr{_short_float(self.learning_rate)}"]
        parts += [self.precision]
        for name, tag in _SLUG_TAGS.items():
            value = getattr(self, name)
            if value != ORIGINAL_SETTINGS[name]:
                parts.append(tag(value))
        return "-".join(parts)


def _short_float(value: float) -> str:
    """``2e-4`` for 0.0002, ``3.5e-5`` for 0.000035: exact, short, and safe in a folder name."""
    mantissa, exponent = f"{value:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


# The settings a slug names only when they differ from their defaults, each as a short tag.
_SLUG_TAGS = {
    "model": lambda model: re.sub(r"[^A-Za-z0-9._-]+", "_", model.rstrip("/").rsplit("/", 1)[-1]),
    "batch_size": lambda size: f"bs{size}",
    "max_length": lambda length: f"len{length}",
    "weight_decay": lambda decay: f"wd{_short_float(decay)}",
    "warmup_ratio": lambda ratio: f"warmup{ratio:g}",
    "length_grouped": lambda grouped: "grouped",
    "train_layers": lambda k: f"top{k}",
    "select_checkpoint": lambda selected: "best",
    "eval_steps": lambda steps: f"eval{steps}",
    "patience": lambda patience: f"patience{patience}",
    "trainer_args": slug_tag,
    "tuning_trials": lambda trials: f"tuned{trials}",
}
# The value each setting a slug names had before any default changed: fixed, so that changing a default renames no
# folder (a slug names what differs from these, whatever today's defaults are).
ORIGINAL_SETTINGS = {
    "model": DEFAULT_MODEL,
    "batch_size": 16,
    "max_length": 128,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "length_grouped": False,
    "train_layers": None,
    "select_checkpoint": False,
    "eval_steps": 0,
    "patience": 0,
    "trainer_args": EMPTY,
    "tuning_trials": 0,
}
# Settings added after runs were published: a run's identity names them only when they differ from the value every
# run had before they existed (``ORIGINAL_SETTINGS``), so the runs made before them keep their run_ids, and changing
# their defaults changes no run_id.
OPT_IN_SETTINGS = ("train_layers", "select_checkpoint", "eval_steps", "patience", "trainer_args", "tuning_trials")
# Settings that no longer exist, with the value every run made before their removal had: identities keep naming it,
# so those runs keep their run_ids. ``freeze_encoder`` became ``train_layers=0`` (one code path, ``bench.depth``).
RETIRED_SETTINGS = {"freeze_encoder": False}


@dataclass(frozen=True)
class RunSpec:
    """One cell of the matrix: a task (with its stressors), a loss with its parameters, a seed, and the shared
    settings. A task given as a string is parsed here, once (``TaskSpec.parse``)."""

    task: TaskSpec
    task_version: str
    loss: str
    seed: int
    train: TrainConfig
    loss_params: dict[str, Any] = field(default_factory=dict)
    # --report-to: the experiment trackers the run logs to (bench.trackers); not in its identity: it changes no number
    report_to: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            object.__setattr__(self, "task", TaskSpec.parse(self.task))

    def identity(self) -> dict[str, Any]:
        """Everything that defines the run's result (the opt-in settings only where they differ from their original
        value)."""
        settings = {**RETIRED_SETTINGS, **asdict(self.train)}
        for name in OPT_IN_SETTINGS:
            if settings[name] == ORIGINAL_SETTINGS[name]:
                del settings[name]
        return {
            "task": str(self.task),  # the canonical spec string
            "task_version": self.task_version,
            "loss": self.loss,
            "loss_params": self.loss_params,
            "seed": self.seed,
            **settings,
        }

    @property
    def run_id(self) -> str:
        """A stable hash of ``identity()``: the same run always gets the same id, so finished runs are skipped."""
        payload = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]
