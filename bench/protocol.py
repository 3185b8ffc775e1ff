"""``make protocol`` (``python -m bench.protocol``): run the protocol study's arms (``bench.study``) that have not
finished, then write PROTOCOL.md (``bench.protocol_report``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bench.config import TrainConfig
from bench.models import DEFAULT_MODEL
from bench.registry import UnknownNameError
from bench.study import (
    CANDIDATES,
    HEAD_ONLY_CANDIDATES,
    PREVIOUS_DEFAULT,
    REFERENCE_SEEDS,
    STUDY_SEEDS,
    run_study,
    study_arms,
)

DEFAULT_OUT = Path("results/protocol")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(seed) for seed in _names(text)]
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers >= 0, got {text!r}")
    return seeds


def build_parser() -> argparse.ArgumentParser:
    from bench.plugins import default_task_names

    parser = argparse.ArgumentParser(
        prog="python -m bench.protocol",
        description="Run the protocol study (baseline loss x default tasks x learning rate, training examples, "
        "trained layers, and each task's reference score) and write PROTOCOL.md with its plots.",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"the study's folder (default: {DEFAULT_OUT})")
    parser.add_argument(
        "--tasks", type=_names, default=None, help="comma-separated tasks (default: the default matrix's tasks)"
    )
    parser.add_argument("--seeds", type=_seeds, default=list(STUDY_SEEDS), help="seeds of every arm (default: 0,1,2)")
    parser.add_argument(
        "--reference-seeds", type=_seeds, default=list(REFERENCE_SEEDS), help="seeds of the reference arm (default: 0)"
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="as lossbench run --model")
    parser.add_argument(
        "--precision", choices=("auto", "bf16", "fp32"), default="fp32", help="of the arms (default fp32)"
    )
    parser.add_argument("--report-only", action="store_true", help="only rebuild PROTOCOL.md from the finished runs")
    parser.set_defaults(default_tasks=default_task_names)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tasks = args.tasks or args.default_tasks()
    try:
        arms = study_arms(
            model=args.model,
            precision=args.precision,
            seeds=args.seeds,
            reference_seeds=args.reference_seeds,
            # The previous default, the candidates and today's default, as lossbench run makes it (arms that are
            # the same run once).
            extra=[
                replace(PREVIOUS_DEFAULT, precision=args.precision),
                *(replace(candidate, precision=args.precision) for candidate in CANDIDATES),
                *(replace(candidate, precision=args.precision) for candidate in HEAD_ONLY_CANDIDATES),
                TrainConfig(precision=args.precision),
                TrainConfig(precision="auto"),  # the default at bf16 where the CPU has it: its time, side by side
            ],
        )
        from bench.matrix import expand_task_specs

        expand_task_specs(tasks)  # an unknown task fails here, before any run
    except (ValueError, UnknownNameError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    failed = 0 if args.report_only else run_study(arms, tasks, args.out)
    from bench.protocol_report import write_protocol_report

    path = write_protocol_report(arms, tasks, args.out)
    print(f"Wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
