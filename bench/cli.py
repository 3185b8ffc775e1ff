"""Command line: ``lossbench list``, ``lossbench run``, ``lossbench report`` and ``lossbench compare``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.config import FINE_TUNE_DEFAULTS, HEAD_ONLY_DEFAULTS, MIN_MAX_LENGTH, PRECISIONS, RunSpec, TrainConfig
from bench.executors import Executor, LocalExecutor, ProcessExecutor, RayExecutor, import_ray
from bench.matrix_file import MatrixSettings
from bench.models import DEFAULT_MODEL, check_model
from bench.plugins import default_task_names, loss_defaults
from bench.registry import LOSSES, TASKS, PluginImportError, UnknownNameError
from bench.rerun import RERUN_KEYS, RerunFilter
from bench.trainer_args import split_item

# The config's declared defaults (precision stays 'auto', epochs and learning rate None: building a TrainConfig would
# resolve them).
DEFAULTS = SimpleNamespace(**{field.name: field.default for field in fields(TrainConfig)})
MAX_SEED = 2**32 - 1  # numpy's seed range: transformers.set_seed refuses a larger seed at the run's start
DEFAULT_SEEDS = [0, 1, 2]  # also --seeds auto's first round
AUTO = "auto"  # --seeds auto: seeds added to undecided tasks (bench.autoseed)
AUTO_MAX_SEEDS = 10  # --max-seeds' default
TUNE_TRIALS = 10  # lossbench tune --trials' default
AUTO_TARGET_MDD = 0.01  # --target-mdd's default: one point of a metric in [0, 1], or 0.01 of a Pearson r


def _csv(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _seeds(text: str) -> list[int]:
    """Comma-separated seeds: integers in numpy's seed range, no empty item, none twice."""
    seeds: list[int] = []
    for position, item in enumerate((item.strip() for item in text.split(",")), start=1):
        problem = None
        if not item:
            problem = f"item {position} is empty"
        elif not item.isdigit() or int(item) > MAX_SEED:
            problem = f"{item!r} is not an integer in [0, {MAX_SEED}]"
        elif int(item) in seeds:
            problem = f"{item} appears twice"
        if problem:
            raise argparse.ArgumentTypeError(
                f"seeds must be comma-separated integers in [0, {MAX_SEED}], no empty item and none twice "
                f"(e.g. 0,1,2); got {text!r}: {problem}"
            )
        seeds.append(int(item))
    return seeds


def _seeds_or_auto(text: str) -> list[int] | str:
    """``auto`` or comma-separated seeds (``_seeds``)."""
    return AUTO if text.strip().lower() == AUTO else _seeds(text)


def _rerun_filter(text: str) -> RerunFilter:
    try:
        return RerunFilter.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _train_size(text: str) -> int | None:
    if text.strip().lower() in {"all", "full", "none"}:
        return None
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"train-size must be an integer >= 1 or 'all', got {text!r}")
    return int(text)


ALL_LAYERS = "all"


def _train_layers(text: str) -> int | str:
    if text.strip().lower() == ALL_LAYERS:
        return ALL_LAYERS
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"train-layers must be an integer >= 0 or 'all', got {text!r}")
    return int(text)


def _integer_at_least(low: int, flag: str) -> Callable[[str], int]:
    """An argparse type: an integer >= ``low``, refused with the flag's name and valid range."""

    def parse(text: str) -> int:
        if not text.strip().isdigit() or int(text) < low:
            raise argparse.ArgumentTypeError(f"{flag} must be an integer >= {low}, got {text!r}")
        return int(text)

    return parse


def _positive_number(flag: str) -> Callable[[str], float]:
    """An argparse type: a finite number > 0, refused with the flag's name and valid range."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{flag} must be a finite number > 0, got {text!r}")
        return value

    return parse


def _gpus_per_run(text: str) -> float:
    try:
        gpus = float(text)
    except ValueError:
        gpus = -1.0
    if not gpus >= 0 or (gpus > 1 and not gpus.is_integer()):
        raise argparse.ArgumentTypeError(
            f"gpus-per-run must be 0, a fraction of one GPU (e.g. 0.5) or a whole number, got {text!r}"
        )
    return int(gpus) if gpus.is_integer() else gpus


def _matrix_file(path: str) -> MatrixSettings:
    try:
        return MatrixSettings.read(path)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _loss_specs(text: str) -> list[str]:
    """Comma-separated loss specs; a comma followed by ``key=`` continues the previous spec's parameters."""
    specs: list[str] = []
    for item in _csv(text):
        if "=" in item.split(":")[0] and specs:
            specs[-1] += "," + item
        else:
            specs.append(item)
    return specs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list registered losses or tasks")
    listing.add_argument("kind", choices=["losses", "tasks"])
    listing.add_argument("--json", action="store_true", help="print a JSON array")

    run = commands.add_parser("run", help="fine-tune the task x loss x seed matrix and write runs.csv + REPORT.md")
    run.add_argument(
        "--tasks",
        default=None,
        help="comma-separated task names or fnmatch patterns, '*' for all (default: the default matrix's tasks, "
        "rt_polarity,trec,sms_spam,vader_movies)",
    )
    run.add_argument(
        "--losses", default="*", help="comma-separated loss specs or patterns, e.g. 'cross_entropy,focal:gamma=1.0'"
    )
    run.add_argument(
        "--seeds",
        type=_seeds_or_auto,
        default=DEFAULT_SEEDS,
        help="comma-separated non-negative integer seeds (default: 0,1,2), or 'auto': start with 0,1,2 and add seeds "
        "to the tasks whose comparisons with the baseline are undecided while their minimum detectable difference is "
        "above --target-mdd, up to --max-seeds; the choices go to OUT/seeds.json",
    )
    run.add_argument(
        "--max-seeds",
        type=_integer_at_least(len(DEFAULT_SEEDS), "max-seeds"),
        default=None,
        help=f"with --seeds auto: the most seeds a task gets (default {AUTO_MAX_SEEDS})",
    )
    run.add_argument(
        "--target-mdd",
        type=_positive_number("target-mdd"),
        default=None,
        help=f"with --seeds auto: stop adding seeds to a task once its minimum detectable difference on the main "
        f"metric is at most this (default {AUTO_TARGET_MDD:g}: one point of a metric in [0, 1])",
    )
    run.add_argument(
        "--train-size", type=_train_size, default=DEFAULTS.train_size, help="training examples (>= 1) or 'all'"
    )
    run.add_argument(
        "--epochs",
        type=_positive_number("epochs"),
        default=None,
        help=f"training epochs (default {FINE_TUNE_DEFAULTS['epochs']:g}; {HEAD_ONLY_DEFAULTS['epochs']:g} with "
        "--train-layers 0)",
    )
    run.add_argument(
        "--lr",
        type=_positive_number("lr"),
        default=None,
        help=f"peak learning rate (default {FINE_TUNE_DEFAULTS['learning_rate']:g}; "
        f"{HEAD_ONLY_DEFAULTS['learning_rate']:g} with --train-layers 0)",
    )
    run.add_argument("--batch-size", type=_integer_at_least(1, "batch-size"), default=DEFAULTS.batch_size)
    run.add_argument(
        "--max-length",
        type=_integer_at_least(MIN_MAX_LENGTH, "max-length"),
        default=DEFAULTS.max_length,
        help=f"truncate inputs to this many tokens (>= {MIN_MAX_LENGTH}, at most the model's position limit)",
    )
    run.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=DEFAULTS.precision,
        help="bf16 autocast or fp32 (default auto: bf16 on a CPU with AMX/AVX512-BF16 or a bf16 GPU, else fp32)",
    )
    run.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"embedded {DEFAULT_MODEL!r}, a local checkpoint directory or a hub id"
    )
    run.add_argument(
        "--freeze-encoder",
        action="store_true",
        help="the same as --train-layers 0: train only the head on the frozen encoder's cached states, a different "
        "protocol, labelled so in the report",
    )
    run.add_argument(
        "--eval-steps",
        type=_integer_at_least(0, "eval-steps"),
        default=0,
        help="also score the validation split every N training steps, for learning curves (default 0: never); "
        "with --select-checkpoint, how often it scores (0: about 4 times per epoch)",
    )
    run.add_argument(
        "--train-layers",
        type=_train_layers,
        default=None,
        metavar="K|all",
        help="fine-tune only the top K transformer layers and the head, on cached outputs of the frozen layers below "
        "(cached under $LOSSBENCH_CACHE, default ~/.cache/lossbench); K in [0, the model's layers] (0: the head "
        "only, on the frozen encoder), or all: every weight "
        f"(default {'all' if DEFAULTS.train_layers is None else DEFAULTS.train_layers})",
    )
    run.add_argument(
        "--select-checkpoint",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="score the validation split during training (--eval-steps), keep the best weights by the task's main "
        "metric and score the test split with them; rows add best_step, evaluations, stopped_early, test_last_* "
        f"(default: {'on' if FINE_TUNE_DEFAULTS['select_checkpoint'] else 'off'})",
    )
    run.add_argument(
        "--patience",
        type=_integer_at_least(0, "patience"),
        default=None,
        help="with --select-checkpoint: stop after P evaluations without improvement (0: never; default "
        f"{FINE_TUNE_DEFAULTS['patience']})",
    )
    run.add_argument(
        "--length-grouping",
        dest="length_grouped",
        action="store_true",
        help="batches of similar length: less padding, faster, but nearly one class per batch where length goes "
        "with the label (default: shuffled batches)",
    )
    run.add_argument(
        "--workers",
        type=_integer_at_least(1, "workers"),
        default=1,
        help="local worker processes, each with cores/N torch threads (default 1: this process, all threads)",
    )
    run.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: this machine (--workers); ray: each run a Ray task on a Ray cluster, or on a private Ray "
        "instance on this machine when neither --address nor RAY_ADDRESS is given (needs pip install -e '.[ray]')",
    )
    run.add_argument(
        "--address",
        default=None,
        help="with --executor ray: the cluster, 'auto' (the one started with 'ray start' on this machine), "
        "HOST:PORT or ray://HOST:10001 (default: RAY_ADDRESS, else a private instance on this machine)",
    )
    run.add_argument(
        "--cpus-per-run",
        type=_integer_at_least(1, "cpus-per-run"),
        default=None,
        help="with --executor ray: CPUs each run reserves, and its torch threads (default 1)",
    )
    run.add_argument(
        "--gpus-per-run",
        type=_gpus_per_run,
        default=None,
        help="with --executor ray: GPUs each run reserves; 0.5 puts two runs on one GPU (default 0: CPU only)",
    )
    run.add_argument("--out", default="results", help="results folder (default: results)")
    run.add_argument(
        "--retry-failed", action="store_true", help="run again the runs recorded with status=error or diverged"
    )
    run.add_argument(
        "--rerun",
        type=_rerun_filter,
        action="append",
        default=[],
        metavar="KEY=PATTERN",
        help="run again the finished runs whose KEY matches the fnmatch PATTERN, even when current, e.g. "
        f"'loss=focal*'; repeat to combine (all must match); keys: {', '.join(RERUN_KEYS)}. Runs whose code or data "
        "changed run again without it",
    )
    run.add_argument(
        "--force",
        action="store_true",
        help="add runs to an --out folder whose finished runs used other settings (it runs nothing again: see --rerun)",
    )
    run.add_argument(
        "--trainer-arg",
        dest="trainer_args",
        type=split_item,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a transformers TrainingArguments field for every run, e.g. gradient_accumulation_steps=4, "
        "max_grad_norm=1.0, lr_scheduler_type=cosine, optim=adamw_torch_fused; repeat for more. Checked against the "
        "installed TrainingArguments before any training; part of each run's identity. Fields lossbench sets "
        "(output dir, seeds, epochs, lr, batch size, precision, evaluation, saving, report_to) are refused with the "
        "flag to use",
    )
    run.add_argument(
        "--report-to",
        type=_csv,
        default=None,
        metavar="TRACKER,...",
        help="experiment trackers the Trainer logs each run to, e.g. tensorboard,mlflow (default none): TensorBoard "
        "event files go to OUT/runs/<run_id>/, MLflow to MLFLOW_TRACKING_URI; each run is named by its run_id, task, "
        "loss and seed, with its lossbench parameters. Not part of a run's identity",
    )
    run.add_argument("--quiet", action="store_true", help="print only the summary")
    run.add_argument(
        "--config",
        type=_matrix_file,
        default=None,
        metavar="FILE.toml",
        help="read the matrix and settings from a TOML file whose keys are these options' names (tasks, losses, "
        "seeds, train_size, ...); options given here override the file's; see configs/",
    )

    report = commands.add_parser(
        "report", help="rebuild DIR/REPORT.md, DIR/stats.csv and DIR/plots/ from DIR/runs.csv and DIR/runs/"
    )
    report.add_argument("--out", default="results", help="results folder (default: results)")

    compare = commands.add_parser(
        "compare", help="two results folders side by side per task and loss, paired by seed, with the report's tests"
    )
    compare.add_argument("a", metavar="A", help="a results folder (the reference: differences are B - A)")
    compare.add_argument("b", metavar="B", help="another results folder")
    compare.add_argument("--out", default=None, metavar="FILE.md", help="also write the table to this Markdown file")

    # Built last from run's options (parents), so that every option run has, tune has too.
    tune = commands.add_parser(
        "tune",
        parents=[run],
        add_help=False,
        help="tune each (task, loss) on the validation split with the same Optuna budget, then run each loss at its "
        "chosen learning rate and parameters over --seeds (docs/tuning.md)",
    )
    tune.add_argument(
        "--trials",
        type=_integer_at_least(1, "trials"),
        default=TUNE_TRIALS,
        help=f"trials per (task, loss), the same for every loss (default {TUNE_TRIALS}); a study already in "
        "OUT/tuning.sqlite3 runs only its missing trials",
    )
    tune.add_argument(
        "--trial-seed",
        type=_integer_at_least(0, "trial-seed"),
        default=0,
        help="the training seed of every trial and the TPE sampler's seed, the same for every loss (default 0)",
    )
    tune.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="the studies' Optuna storage, an SQLAlchemy URL such as postgresql://USER@HOST/DB that every node "
        "reaches (needed with --executor ray on a cluster); its URL without the password is noted in "
        "OUT/tuning-storage.txt (default: the SQLite file OUT/tuning.sqlite3)",
    )
    return parser


def run_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``run`` command's own parser inside ``parser`` (``build_parser``): its options are a matrix file's keys
    (argparse has no public way to reach a subcommand's parser)."""
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return commands.choices["run"]


def list_command(kind: str, as_json: bool) -> None:
    if kind == "losses":
        items = [
            {
                "name": name,
                "problem_types": sorted(LOSSES.get(name).problem_types),
                "params": loss_defaults(LOSSES.get(name)),
            }
            for name in LOSSES.names()
        ]
    else:
        items = []
        for name in TASKS.names():
            task_class = TASKS.get(name)
            meta = task_class.metadata
            items.append(
                {
                    "name": name,
                    "problem_type": meta.problem_type,
                    "num_labels": meta.num_labels,
                    "main_metric": meta.main_metric,
                    "version": meta.version,
                    "source": meta.source,
                    "description": meta.description,
                    "requires_network": task_class.requires_network,
                }
            )
    if as_json:
        print(json.dumps(items, indent=2))
        return
    width = max((len(item["name"]) for item in items), default=0) + 2
    source_width = max((len(item.get("source", "")) for item in items), default=0) + 2
    for item in items:
        if kind == "losses":
            params = ", ".join(f"{k}={v}" for k, v in item["params"].items())
            print(f"{item['name']:<{width}} {'/'.join(item['problem_types']):<16} {params}")
        else:
            version = f"v{item['version']}"
            print(
                f"{item['name']:<{width}} {item['problem_type']:<15} {version:<6} {item['source']:<{source_width}}"
                f"{item['description']}"
            )


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor that ``--executor``, ``--workers`` and the Ray options ask for; a combination that does not
    apply is refused, naming the options."""
    ray_options = {"--address": args.address, "--cpus-per-run": args.cpus_per_run, "--gpus-per-run": args.gpus_per_run}
    if args.executor == "local":
        given = [name for name, value in ray_options.items() if value is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise ValueError(f"{', '.join(given)} {verb} to --executor ray only; this command uses --executor local.")
        return ProcessExecutor(args.workers) if args.workers > 1 else LocalExecutor()
    if args.workers > 1:
        raise ValueError(
            f"--workers {args.workers} applies to --executor local only; with --executor ray the cluster's CPUs and "
            "--cpus-per-run decide how many runs go at once."
        )
    try:
        import_ray()
    except ImportError as error:
        raise ValueError(f"--executor ray: {error}") from None
    return RayExecutor(args.address, cpus_per_run=args.cpus_per_run or 1, gpus_per_run=args.gpus_per_run or 0)


def folder_for(out: str, train: TrainConfig) -> str:
    """Where runs refused by ``out`` can go: a sibling folder named by their settings (``results-<slug>``)."""
    path = Path(out)
    return str(path.with_name(f"{path.name}-{train.slug}")) if path.name else train.slug


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run settings of ``lossbench run``; without --epochs / --lr, the protocol's own (``TrainConfig``)."""
    if args.freeze_encoder and args.train_layers not in (None, 0):
        raise ValueError(
            f"--freeze-encoder is --train-layers 0 (the head only); --train-layers {args.train_layers} fine-tunes "
            "encoder layers: give one."
        )
    train_layers = 0 if args.freeze_encoder else args.train_layers
    layers = {None: DEFAULTS.train_layers, ALL_LAYERS: None}.get(train_layers, train_layers)
    selecting = args.select_checkpoint
    if selecting is None:
        selecting = (HEAD_ONLY_DEFAULTS if layers == 0 else FINE_TUNE_DEFAULTS)["select_checkpoint"]
    if args.patience and not selecting:
        raise ValueError(f"--patience {args.patience} needs --select-checkpoint (it stops on validation scores).")
    if args.length_grouped and layers is not None:
        given = f"--train-layers {train_layers}" if train_layers is not None else "the default depth"
        raise ValueError(
            f"--length-grouping groups full fine-tuning's batches; {given} trains top layers on cached states, which "
            "are not grouped by length: add --train-layers all, or drop --length-grouping."
        )
    return TrainConfig(
        model=args.model,
        train_size=args.train_size,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        precision=args.precision,
        length_grouped=args.length_grouped,
        train_layers=layers,
        select_checkpoint=selecting,
        eval_steps=args.eval_steps if selecting else 0,  # else only learning curves: not a setting
        patience=args.patience,
        trainer_args=args.trainer_args,
    )


def plan_matrix(args: argparse.Namespace, train: TrainConfig) -> tuple[list[RunSpec], list[dict[str, Any]]]:
    """The runs of ``lossbench run``, every task, stressor, loss and loss parameter checked: before transformers,
    datasets or scikit-learn are imported (``bench.matrix`` is light), so that a typo fails in seconds."""
    from bench.matrix import build_matrix

    tasks = _csv(args.tasks) if args.tasks is not None else default_task_names()
    seeds = DEFAULT_SEEDS if args.seeds == AUTO else args.seeds
    runs, skipped = build_matrix(tasks, _loss_specs(args.losses), seeds, train)
    if not runs:
        reasons = "; ".join(row["message"] for row in skipped)
        raise ValueError(f"The matrix is empty: no loss in --losses supports any task in --tasks ({reasons}).")
    return runs, skipped


def check_seed_options(args: argparse.Namespace) -> None:
    """Refuse --max-seeds and --target-mdd without --seeds auto, and --rerun with it."""
    if args.seeds != AUTO:
        for flag, value in (("--max-seeds", args.max_seeds), ("--target-mdd", args.target_mdd)):
            if value is not None:
                raise ValueError(
                    f"{flag} {value:g} applies to --seeds auto only; these runs use --seeds given by hand."
                )
    elif args.rerun:
        raise ValueError(
            "--rerun applies to fixed --seeds: with --seeds auto the seeds of later rounds depend on the rows. Give "
            "the seeds recorded in OUT/seeds.json, e.g. --seeds 0,1,2,3,4 --tasks trec --rerun 'loss=focal*'."
        )


def check_out_dir(out: str) -> None:
    """Refuse an ``--out`` that is a regular file, lies under one, or cannot be written, before anything is loaded.

    Creates nothing: a probe file is written and deleted in the folder, or, when the folder does not exist yet, in
    its nearest existing parent (where the folder will be created).
    """
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out}: it is a regular file, not a folder; give a folder path (created if missing).")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {out}: cannot be created, since {existing} is a regular file, not a folder.")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".lossbench-write-probe-"):
            pass
    except OSError as error:
        where = "cannot be written" if existing == path else f"cannot be created in {existing}"
        raise ValueError(
            f"--out {out}: {where} ({error.strerror}); give a folder you can write to, e.g. --out ~/lossbench-results."
        ) from None


def check_max_length(model_path: str, max_length: int) -> None:
    """Refuse ``--max-length`` above the model's position limit (its config says it; no weights are loaded)."""
    from transformers import AutoConfig

    limit = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    if isinstance(limit, int) and max_length > limit:
        raise ValueError(
            f"--max-length {max_length} is more than the model's {limit} positions: give --max-length in "
            f"[{MIN_MAX_LENGTH}, {limit}]."
        )


def check_train_layers(model_path: str, train_layers: int | None) -> None:
    """Refuse ``--train-layers`` for a model without a BERT-style encoder, or above its depth, before any training:
    the model is built from its config on the meta device (no weights loaded, no memory)."""
    if train_layers is None:
        return
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from bench.depth import check_train_layers as check_depth
    from bench.depth import encoder_layers

    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(model_path))
    try:
        check_depth(train_layers, len(encoder_layers(model)))
    except ValueError as error:
        raise ValueError(f"--train-layers {train_layers}: {error}") from None


def check_trainer_settings(args: argparse.Namespace, runs: list[RunSpec]) -> list[RunSpec]:
    """``--report-to`` checked against transformers' integrations and set on every run; with it or ``--trainer-arg``,
    the first run's full ``TrainingArguments`` built and its optimizer looked up, so that a combination transformers
    refuses (e.g. ``lr_scheduler_type=reduce_lr_on_plateau`` without validation) fails before any training."""
    if not args.report_to and not args.trainer_args:
        return runs
    from bench.trackers import check_report_to

    report_to = check_report_to(args.report_to or [])
    runs = [replace(run, report_to=report_to) for run in runs]
    from transformers import Trainer

    from bench.fit import selection_eval_steps, training_arguments

    spec = runs[0]
    examples = spec.train.train_size or 1000
    eval_steps = selection_eval_steps(spec, examples) if spec.train.select_checkpoint else args.eval_steps
    given = " ".join(f"--trainer-arg {key}={value}" for key, value in args.trainer_args)
    with tempfile.TemporaryDirectory(prefix="lossbench-check-") as scratch:
        try:
            Trainer.get_optimizer_cls_and_kwargs(
                training_arguments(spec, scratch, train_examples=examples, eval_steps=eval_steps)
            )
        except (ValueError, ImportError, RuntimeError) as error:
            raise ValueError(f"{given or '--report-to'}: transformers refuses these settings: {error}") from None
    return runs


def run_command(args: argparse.Namespace) -> int:
    check_seed_options(args)
    train = train_config(args)
    runs, skipped = plan_matrix(args, train)
    check_out_dir(args.out)
    executor = make_executor(args)
    model_path = check_model(args.model)
    check_max_length(model_path, args.max_length)
    check_train_layers(model_path, train.train_layers)
    runs = check_trainer_settings(args, runs)

    from bench.compatibility import protocol_conflict, settings_conflicts
    from bench.report import write_report  # heavy imports only once every argument is known to be good
    from bench.runner import run_matrix

    mixed = protocol_conflict(args.out, train)
    if mixed:  # not even with --force: the report cannot pool two protocols
        raise ValueError(f"{mixed} Use --out {folder_for(args.out, train)} for these runs.")
    conflicts = settings_conflicts(args.out, train)
    if conflicts and not args.force:
        raise ValueError(
            f"{args.out} holds finished runs with other settings ({'; '.join(conflicts)}); one report would mix "
            f"them. Use --out {folder_for(args.out, train)} (a folder named by these settings), or --force to add "
            "these runs anyway."
        )
    started = time.perf_counter()
    run = partial(
        run_matrix,
        out_dir=args.out,
        retry_failed=args.retry_failed,
        rerun=args.rerun,
        quiet=args.quiet,
        eval_steps=0 if train.select_checkpoint else args.eval_steps,  # else in the settings (TrainConfig)
        executor=executor,
    )
    if args.config is not None:  # the matrix file's content goes with each invocation's record
        run = with_note(run, args.config.record())
    count = len(runs)
    try:
        if args.seeds == AUTO:
            count, failed = run_auto_seeds(args, runs, skipped, run)
        else:
            failed = run(runs, skipped)
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Every run that finished is saved in {args.out}/runs.csv; the run in progress was not. "
            "Run the same command again to resume: finished runs are skipped.",
            file=sys.stderr,
        )
        return 130
    report = write_report(args.out)
    print(f"Wrote {report} ({count} runs) in {time.perf_counter() - started:.0f} s wall time.")
    if failed:
        print(f"{len(failed)} run(s) failed; see the 'Failed runs' section of the report:", file=sys.stderr)
        for row in failed:
            print(f"  {row['task']} {row['loss_spec']} seed={row['seed']}: {row['error_type']}", file=sys.stderr)
        return 1
    return 0


def tune_command(args: argparse.Namespace) -> int:
    """``lossbench tune``: the studies of every (task, loss) of the matrix (``bench.tuning``), then each loss at its
    chosen configuration over --seeds into runs.csv, REPORT.md and TUNING.md."""
    refused = {"--config": args.config, "--seeds auto": args.seeds == AUTO}
    given = [flag for flag, value in refused.items() if value not in (None, False)]
    if given:
        raise ValueError(
            f"{', '.join(given)} applies to lossbench run only; give tune its options on the command line."
        )
    if args.lr is not None:
        raise ValueError(f"--lr {args.lr:g}: tune searches the learning rate (docs/tuning.md); drop --lr.")
    train = train_config(args)
    if not train.select_checkpoint:
        raise ValueError("tune scores each trial by its best validation checkpoint: drop --no-select-checkpoint.")
    runs, skipped = plan_matrix(args, train)
    check_out_dir(args.out)
    executor = make_executor(args)
    from bench.tuning import is_sqlite, shown_url, storage_url

    storage = args.storage or storage_url(args.out)
    cluster = args.address or os.environ.get("RAY_ADDRESS")
    if args.executor == "ray" and cluster and is_sqlite(storage):
        raise ValueError(
            f"--executor ray on a cluster ({cluster}): the studies' SQLite file {shown_url(storage)} is on this "
            "machine and the nodes cannot share a file. Give --storage postgresql://USER@HOST/DB (or "
            "mysql+pymysql://...), a database that every node reaches; without --address and RAY_ADDRESS, a private "
            "Ray instance on this machine uses the SQLite file."
        )
    model_path = check_model(args.model)
    check_max_length(model_path, args.max_length)
    check_train_layers(model_path, train.train_layers)
    runs = check_trainer_settings(args, runs)

    from bench.compatibility import protocol_conflict, settings_conflicts
    from bench.report import write_report
    from bench.runner import run_matrix
    from bench.tuning import final_runs, tune_all
    from bench.tuning_report import write_tuning_report

    tuned = replace(train, tuning_trials=args.trials)
    mixed = protocol_conflict(args.out, train)
    conflicts = settings_conflicts(args.out, tuned)
    if mixed or (conflicts and not args.force):
        why = mixed or f"{args.out} holds finished runs with other settings ({'; '.join(conflicts)})"
        raise ValueError(f"{why}. Use --out {folder_for(args.out, tuned)} for these runs.")
    started = time.perf_counter()
    try:
        studies, broken = tune_all(
            runs, args.out, trials=args.trials, trial_seed=args.trial_seed, executor=executor, storage=storage
        )
        for line in broken:
            print(f"tuning failed, no final runs for {line}", file=sys.stderr)
        seeds = sorted({spec.seed for spec in runs})
        finals, missing = final_runs(studies, seeds)
        for line in missing:
            print(f"no final runs for {line}", file=sys.stderr)
        failed = run_matrix(
            finals,
            skipped,
            args.out,
            retry_failed=args.retry_failed,
            rerun=args.rerun,
            quiet=args.quiet,
            executor=executor,
            note={"tuning_trials": args.trials},
        )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. Finished trials are saved in {shown_url(storage)} and finished runs in "
            f"{args.out}/runs.csv. Run the same command again to resume: only the missing trials and runs run.",
            file=sys.stderr,
        )
        return 130
    report, tuning = write_report(args.out), write_tuning_report(args.out, storage)
    print(
        f"Wrote {report} and {tuning} in {time.perf_counter() - started:.0f} s wall time. "
        f"The studies: optuna-dashboard {shown_url(storage)}"
    )
    for line in broken:  # again at the end, where it is seen
        print(f"tuning failed: {line}", file=sys.stderr)
    return 1 if failed or missing or broken else 0


def with_note(run: Callable[..., list], recorded: dict[str, Any]) -> Callable[..., list]:
    """``run`` (``run_matrix``) with ``recorded`` added to the note of every invocation it logs."""

    def noted(runs: list[RunSpec], skipped: list[dict[str, Any]], note: dict[str, Any] | None = None) -> list:
        return run(runs, skipped, note={**recorded, **(note or {})})

    return noted


def run_auto_seeds(
    args: argparse.Namespace, first: list[RunSpec], skipped: list[dict[str, Any]], run: Callable[..., list]
) -> tuple[int, list[dict[str, Any]]]:
    """``--seeds auto``: ``first`` (the matrix at ``DEFAULT_SEEDS``), then seeds added to the undecided tasks, round
    by round (``bench.autoseed``). Returns the runs of every round together and their failed rows."""
    from bench.autoseed import SEEDS_FILE, run_auto
    from bench.results import ResultsStore

    result = run_auto(
        first,
        skipped,
        args.out,
        run_round=lambda runs, pairs, note: run(runs, pairs, note=note),
        load_rows=ResultsStore(args.out).load,
        target=args.target_mdd if args.target_mdd is not None else AUTO_TARGET_MDD,
        cap=args.max_seeds if args.max_seeds is not None else AUTO_MAX_SEEDS,
    )
    print(f"--seeds auto: {result.runs} runs in {result.rounds} round(s); seeds per task in {args.out}/{SEEDS_FILE}")
    return result.runs, result.failed


def compare_command(a: str, b: str, out: str | None) -> None:
    from bench.compare import compare_folders, comparison_markdown

    text = comparison_markdown(compare_folders(a, b))
    print(text, end="")
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"Wrote {out}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run" and args.config is not None:  # the file's settings, then the command line's
            args = args.config.parse(run_parser(parser), argv[argv.index("run") + 1 :])
            args.command = "run"
        if args.command == "compare":
            compare_command(args.a, args.b, args.out)
            return 0
        if args.command == "list":
            list_command(args.kind, args.json)
            return 0
        if args.command == "report":
            from bench.report import write_report

            print(f"Wrote {write_report(args.out)}")
            return 0
        if args.command == "tune":
            return tune_command(args)
        return run_command(args)
    except (UnknownNameError, PluginImportError, ValueError, FileNotFoundError) as error:
        print(f"lossbench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
