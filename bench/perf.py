"""`make perf`: how fast one lossbench run is against a plain Trainer and the tutorial way, how close it gets to this
machine's matmul peak, and how the cost grows with training size, matrix size and worker processes.

Every comparison runs side by side in this one invocation on the same data (interleaved repetitions; medians with
the min-max spread), and the results go to ``OUT/PERF.md``. ``--matrix`` also times the default matrix from scratch
and its rerun; without it those two rows come from ``OUT/invocations.jsonl`` (what ``make bench`` recorded).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

from bench.config import FINE_TUNE, HEAD_ONLY_DEFAULTS, RunSpec, TrainConfig
from bench.environment import git_commit, hardware
from bench.fit import training_arguments
from bench.matrix import build_matrix
from bench.models import resolve_model
from bench.plugins import get_task
from bench.results import ResultsStore
from bench.runner import run_one
from bench.splits import tokenizer, training_split
from bench.status import Status
from bench.study import PREVIOUS_DEFAULT

TASK, LOSS = "rt_polarity", "cross_entropy"  # the pairing timed run by run
TUTORIAL_MAX_LENGTH = 128
SHAPES = (384, 1536, 4096)  # matmul widths: the model's hidden size, its feed-forward size, a large one


@dataclass(frozen=True)
class Timing:
    """Seconds of one run: the training loop alone, and everything from loading the model to the test predictions."""

    train: float
    total: float


def spread(values: list[float]) -> str:
    """Median with the min-max spread, e.g. ``9.41 s (9.30-9.62, n=3)``."""
    return f"{statistics.median(values):.2f} s ({min(values):.2f}-{max(values):.2f}, n={len(values)})"


def median(values: list[float]) -> float:
    return statistics.median(values)


def _spec(train: TrainConfig, task: str = TASK, loss: str = LOSS, seed: int = 0) -> RunSpec:
    return RunSpec(task, get_task(task).metadata.version, loss, seed, train)


def lossbench_run(spec: RunSpec, *, torch_compile: bool = False) -> Timing:
    """A real lossbench run (``runner.run_one``: model load, training, test predictions, metrics, files), with
    ``torch.compile`` (inductor) on the model if asked."""
    with tempfile.TemporaryDirectory() as out:
        row = run_one(spec, Path(out), torch_compile=torch_compile)
    return Timing(row["train_seconds"], row["wall_seconds"])


def _prepared(spec: RunSpec):
    model_path = resolve_model(spec.train.model)
    train, splits = training_split(spec, model_path)
    transformers.set_seed(spec.seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=get_task(TASK).metadata.num_labels, ignore_mismatched_sizes=True
    )
    return model, train.remove_columns("clean_label"), splits["test"], tokenizer(model_path)


def plain_trainer_run(spec: RunSpec) -> Timing:
    """A plain ``transformers.Trainer`` on the same split and settings: the model's built-in cross-entropy."""
    started = time.perf_counter()
    model, train, test, tokenizer = _prepared(spec)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(
            model=model,
            args=training_arguments(spec, scratch, train_examples=len(train)),
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.remove_callback(transformers.PrinterCallback)
        train_seconds = trainer.train().metrics["train_runtime"]
        trainer.predict(test)
    return Timing(train_seconds, time.perf_counter() - started)


class TutorialTrainer(Trainer):
    """The tutorials' way: a Trainer subclass that overrides ``compute_loss`` with its own criterion."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = nn.CrossEntropyLoss()(outputs.logits, labels)
        return (loss, outputs) if return_outputs else loss


def tutorial_run(spec: RunSpec) -> Timing:
    """The tutorial style on the same split: every example padded to 128 tokens, fp32, shuffled batches, the
    Trainer's default evaluation batch of 8."""
    started = time.perf_counter()
    model, train, test, tokenizer = _prepared(spec)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=spec.train.epochs,
            learning_rate=spec.train.learning_rate,
            per_device_train_batch_size=spec.train.batch_size,
            per_device_eval_batch_size=8,
            weight_decay=spec.train.weight_decay,
            logging_steps=10,
            seed=spec.seed,
            report_to="none",
            disable_tqdm=True,
            use_cpu=True,
        )
        trainer = TutorialTrainer(
            model=model,
            args=args,
            train_dataset=train,
            data_collator=DataCollatorWithPadding(tokenizer, padding="max_length", max_length=TUTORIAL_MAX_LENGTH),
        )
        trainer.remove_callback(transformers.PrinterCallback)
        train_seconds = trainer.train().metrics["train_runtime"]
        trainer.predict(test)
    return Timing(train_seconds, time.perf_counter() - started)


def compiled_run(spec: RunSpec) -> Timing:
    """A lossbench run with ``torch.compile`` (inductor) on the model, compile time included."""
    return lossbench_run(spec, torch_compile=True)


def interleaved(variants: dict[str, Callable[[], Timing]], repeats: int) -> dict[str, list[Timing]]:
    """Each variant ``repeats`` times, round-robin, so that drift in the machine's speed hits all of them alike."""
    for run in variants.values():
        run()  # warm-up: first-touch costs (imports, tokenization cache, allocator) are not any variant's
    timings: dict[str, list[Timing]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            timings[name].append(run())
    return timings


def matmul_gflops(dtype: torch.dtype, n: int, rows: int = 4096, seconds: float = 1.0) -> float:
    """GFLOP/s of ``(rows x n) @ (n x n)`` in ``dtype``, repeated for about ``seconds``."""
    a, b = torch.randn(rows, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * rows * n * n * count / (time.perf_counter() - started) / 1e9


def training_flops(model: nn.Module, lengths: list[int], epochs: float) -> float:
    """FLOPs of training on sequences of these lengths: 6 x encoder parameters per token (forward 2, backward 4)
    plus attention scores and mixing, 12 x L^2 x hidden per layer per sequence (Kaplan et al. 2020, sec. 2.1)."""
    config = model.config
    encoder_params = sum(p.numel() for p in model.base_model.encoder.parameters())
    tokens = sum(lengths)
    attention = 12 * config.num_hidden_layers * config.hidden_size * sum(length**2 for length in lengths)
    return epochs * (6 * encoder_params * tokens + attention)


def timed_command(args: list[str]) -> float:
    """Wall seconds of a ``lossbench`` command in a fresh process (start-up included)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def matrix_rows(out_dir: Path, live: bool) -> list[tuple[str, str, str]]:
    """The default matrix from scratch and its rerun: timed now (``live``) or read from ``invocations.jsonl``."""
    if live:
        with tempfile.TemporaryDirectory() as scratch:
            first = timed_command(["run", "--out", scratch, "--quiet"])
            rerun = timed_command(["run", "--out", scratch, "--quiet"])
        source = "timed now, `lossbench run` with its defaults, report included"
    else:
        records = [r for r in ResultsStore(out_dir).invocations() if r.get("runs")]
        fresh = [r for r in records if r["to_run"] == r["runs"] and r["finished"] == r["runs"]]
        if not fresh:
            return [
                ("default matrix from scratch", "not recorded", "run `make bench`, or `make perf PERF_ARGS=--matrix`")
            ]
        first = fresh[-1]["process_seconds"]
        with tempfile.TemporaryDirectory() as scratch:  # a copy: timing the rerun must not touch OUT
            shutil.copytree(out_dir, scratch, dirs_exist_ok=True)
            rerun = timed_command(["run", "--out", scratch, "--quiet"])
        source = (
            f"recorded by `lossbench run` in {out_dir}/invocations.jsonl (start-up to last run, report not included;"
            f" commit {fresh[-1]['git_commit']}, {fresh[-1]['workers']} worker(s))"
        )
    return [
        ("default matrix from scratch", f"{first / 60:.1f} min", f"goal <= 15 min; {source}"),
        ("rerun of the finished matrix", f"{rerun:.1f} s", "goal <= 30 s; timed now, report included"),
    ]


def probe_rows(train: TrainConfig, repeats: int, fine_tune_total: float) -> list[tuple[str, str, str]]:
    """The frozen-encoder protocol (``--train-layers 0``) on the timed pairing: encoding the task once, then each run
    on cached states."""
    spec = _spec(replace(train, train_layers=0, **HEAD_ONLY_DEFAULTS))
    with tempfile.TemporaryDirectory() as cache:
        previous = os.environ.get("LOSSBENCH_CACHE")
        os.environ["LOSSBENCH_CACHE"] = cache  # a cold cache: the first run encodes the task
        try:
            first = lossbench_run(spec).total
            cached = [lossbench_run(spec).total for _ in range(repeats)]
        finally:
            os.environ.pop("LOSSBENCH_CACHE") if previous is None else os.environ.update(LOSSBENCH_CACHE=previous)
    per_task = len(build_matrix([TASK], ["*"], [0, 1, 2], train)[0])
    amortised = median(cached) + (first - median(cached)) / per_task
    return [
        ("first run (encodes the task's splits)", f"{first:.2f} s", ""),
        ("each further run (cached states)", spread(cached), f"{fine_tune_total / median(cached):.0f}x faster"),
        (
            f"per run, encoding shared by the {per_task} runs of {TASK} in the default matrix",
            f"{amortised:.2f} s",
            f"{fine_tune_total / amortised:.0f}x faster than fine-tuning ({fine_tune_total:.2f} s)",
        ),
    ]


def train_size_rows(train: TrainConfig) -> list[tuple[str, str, str]]:
    """One run at several training sizes: the training loop grows linearly, the fixed part (load, test) does not."""
    rows = []
    for size in (train.train_size // 2, train.train_size, train.train_size * 2, train.train_size * 4):
        timing = lossbench_run(_spec(replace(train, train_size=size)))
        rows.append((f"{size} examples", f"{timing.train:.2f} s", f"{timing.total:.2f} s"))
    return rows


def matrix_size_rows() -> list[tuple[str, str, str]]:
    """Whole ``lossbench run`` commands (start-up, data, runs, report) on growing matrices and with workers."""
    matrices = {
        1: ["--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0"],
        4: ["--tasks", "rt_polarity,trec", "--losses", "cross_entropy,focal", "--seeds", "0"],
        8: ["--tasks", "rt_polarity,trec", "--losses", "cross_entropy,focal", "--seeds", "0,1"],
    }
    rows, cores = [], os.cpu_count() or 1
    for runs, selection in matrices.items():
        for workers in (1, 2) if runs == max(matrices) else (1,):
            with tempfile.TemporaryDirectory() as out:
                seconds = timed_command(["run", *selection, "--workers", str(workers), "--out", out, "--quiet"])
            threads = max(1, cores // workers)
            rows.append(
                (f"{runs} runs", f"{workers} x {threads} thread(s)", f"{seconds:.1f} s ({seconds / runs:.1f} s/run)")
            )
    return rows


LOSSBENCH = "lossbench"
PLAIN = "plain Trainer, built-in cross-entropy"
TUTORIAL = "tutorial: compute_loss override, padding to 128, fp32"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def one_run_variants(train: TrainConfig) -> dict[str, Callable[[], Timing]]:
    """lossbench against the plain Trainer and the tutorial way, and lossbench without each of its speed choices."""
    spec = _spec(train)
    return {
        LOSSBENCH: lambda: lossbench_run(spec),
        PLAIN: lambda: plain_trainer_run(spec),
        TUTORIAL: lambda: tutorial_run(spec),
        "lossbench, fp32": lambda: lossbench_run(_spec(replace(train, precision="fp32"))),
        "lossbench, length-grouped batches (--length-grouping)": lambda: lossbench_run(
            _spec(replace(train, length_grouped=True))
        ),
    }


def one_run_rows(timings: dict[str, list[Timing]], compiled: list[Timing], ours_total: float) -> list[tuple]:
    rows = [
        (
            name,
            spread([t.train for t in values]),
            spread([t.total for t in values]),
            f"{median([t.total for t in values]) / ours_total:.2f}",
        )
        for name, values in timings.items()
    ]
    first, second = compiled
    rows.append(
        (
            "lossbench + torch.compile: first run, then second",
            f"{first.train:.2f} s, then {second.train:.2f} s",
            f"{first.total:.2f} s, then {second.total:.2f} s",
            f"{second.total / ours_total:.2f}",
        )
    )
    return rows


def where_time_goes(out_dir: Path) -> list[tuple[str, ...]]:
    """Per task, from the finished fine-tuning runs in ``OUT/runs.csv``: medians of training, test evaluation and
    the whole run."""
    frame = ResultsStore(out_dir).load()
    if "protocol" in frame.columns:
        frame = frame[frame["protocol"].fillna(FINE_TUNE) == FINE_TUNE]
    frame = frame[frame["status"] == Status.OK] if "status" in frame.columns else frame.iloc[0:0]
    rows = []
    for task, runs in frame.groupby("task"):
        rows.append(
            (
                task,
                str(len(runs)),
                f"{runs['train_seconds'].median():.2f} s",
                f"{runs['eval_seconds'].median():.2f} s ({int(runs['test_examples'].iloc[0])} examples)",
                f"{runs['wall_seconds'].median():.2f} s",
            )
        )
    return rows


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results", help="folder for PERF.md (and its invocations.jsonl)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions of each timed variant (default 3)")
    parser.add_argument("--matrix", action="store_true", help="also time the default matrix from scratch (~15 min)")
    args = parser.parse_args(argv)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    import datasets

    datasets.disable_progress_bars()
    started = time.perf_counter()
    # A full fine-tune (every layer, the last weights: what a plain Trainer run does) at the budget PERF.md was
    # measured with; the default protocol trains the top layer on cached states (results/PROTOCOL.md times it).
    train = replace(PREVIOUS_DEFAULT, precision=TrainConfig().precision)
    spec = _spec(train)
    say = lambda text: print(text, flush=True)  # noqa: E731

    say(f"Timing {TASK} x {LOSS}, {args.repeats} repetitions of each variant ...")
    timings = interleaved(one_run_variants(train), args.repeats)
    say("torch.compile ...")
    compiled = [compiled_run(spec) for _ in range(2)]
    ours = timings[LOSSBENCH]
    ours_train, ours_total = median([t.train for t in ours]), median([t.total for t in ours])
    run_rows = one_run_rows(timings, compiled, ours_total)
    overhead = ours_total / median([t.total for t in timings[PLAIN]])
    overhead_train = ours_train / median([t.train for t in timings[PLAIN]])
    speedup = median([t.total for t in timings[TUTORIAL]]) / ours_total

    say("Matmul peak and achieved FLOP/s ...")
    peaks = {(name, n): matmul_gflops(dtype, n) for name, dtype in DTYPES.items() for n in SHAPES}
    model, split, test, _ = _prepared(spec)
    flops = training_flops(model, [len(ids) for ids in split["input_ids"]], train.epochs)
    achieved = flops / ours_train / 1e9
    peak_fp32 = max(peaks[("fp32", n)] for n in SHAPES)
    peak_bf16 = max(peaks[("bf16", n)] for n in SHAPES)

    say("Frozen-encoder protocol ...")
    probe = probe_rows(train, args.repeats, ours_total)
    say("Training size ...")
    sizes = train_size_rows(train)
    say("Matrix size and worker processes (whole commands) ...")
    matrices = matrix_size_rows()
    say("Default matrix ...")
    matrix = matrix_rows(Path(args.out), live=args.matrix)

    time_rows = where_time_goes(Path(args.out))
    breakdown = (
        table(("task", "runs", "training loop", "test evaluation", "run"), time_rows)
        if time_rows
        else "No finished runs there yet: run `make bench` first."
    )
    fraction = f"{achieved / peak_fp32:.0%} of fp32 peak, {achieved / peak_bf16:.0%} of bf16 peak"
    peak_rows = [(d, *(f"{peaks[(d, n)]:.0f} GFLOP/s" for n in SHAPES)) for d in DTYPES]
    text = f"""# lossbench performance

Generated by `make perf` (`python -m bench.perf`) in {(time.perf_counter() - started) / 60:.1f} min on {hardware()};
torch {torch.__version__}, transformers {transformers.__version__}, commit {git_commit()}.
Timed pairing: {TASK} x {LOSS}, seed 0, {train.train_size} training examples, {train.epochs:g} epoch, batch
{train.batch_size}, default settings ({train.precision}, shuffled batches) unless the row says otherwise.
Medians of {args.repeats} interleaved repetitions, (min-max) spread. "Run" = model load, training, test predictions
({len(test)} examples); lossbench's run also computes its metrics and writes its files.

## Headline
| measure | value | goal |
|---|---|---|
| lossbench run / plain Trainer run | {overhead:.3f} (training loop alone {overhead_train:.3f}) | <= 1.03 |
| tutorial run / lossbench run | {speedup:.1f}x | >= 2x |
| achieved training FLOP/s | {achieved:.0f} GFLOP/s = {fraction} | >= 50% of fp32 peak |
{chr(10).join(f"| {name} | {value} | {note} |" for name, value, note in matrix)}

## One run, side by side
{table(("variant", "training loop", "run", "run / lossbench"), run_rows)}

## Where a run's time goes (the default matrix's runs in {args.out}/runs.csv, medians per task)
{breakdown}

## FLOP/s
Training FLOPs = 6 x {sum(p.numel() for p in model.base_model.encoder.parameters()) / 1e6:.1f}M encoder parameters x
{sum(len(ids) for ids in split["input_ids"])} real tokens + attention (12 x L^2 x hidden x layers per sequence) =
{flops / 1e9:.0f} GFLOP in {ours_train:.2f} s. Matmul peak, (4096 x n) @ (n x n), {torch.get_num_threads()} threads:

{table(("dtype", *(f"n={n}" for n in SHAPES)), peak_rows)}

## Frozen-encoder protocol (`--train-layers 0`, the head only: a different protocol, not comparable scores)
{table(("what", "time", "vs fine-tuning"), probe)}

## Scaling
Training size (one run):

{table(("training examples", "training loop", "run"), sizes)}

Matrix size and worker processes (a whole `lossbench run` command: start-up, data, runs, report):

{table(("matrix", "workers x threads", "wall time"), matrices)}
"""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "PERF.md").write_text(text)
    print(text)
    print(f"Wrote {out / 'PERF.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
