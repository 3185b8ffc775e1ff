"""make findings: run every finding card's matrix through the normal runner, then write results/FINDINGS.md.

    python -m bench.findings                      every card
    python -m bench.findings --cards imbalance    some cards (names or fnmatch patterns, comma-separated)
    python -m bench.findings --dry-run            each card's runs and estimated time, nothing run

A card's runs are ordinary rows in a results folder, one per settings (``<out>/findings/<settings slug>/``), so they
are resumable and cached: cards that share a run (the same task, loss, seed and settings) share its row, and a second
call runs only what is missing or stale. Every card name, task, loss and setting is checked before any training.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.api.card import Card
from bench.config import PRECISIONS, RunSpec, TrainConfig
from bench.findings_report import CardResult, write_findings
from bench.matrix import build_matrix
from bench.registry import CARDS
from bench.status import Status

FINDINGS_DIR = "findings"


def card_names(selection: str | None) -> list[str]:
    """The cards chosen by a comma-separated list of names or patterns (all when None); an unknown name raises with
    a did-you-mean."""
    if not selection:
        return CARDS.names()
    return CARDS.resolve([part.strip() for part in selection.split(",") if part.strip()])


def card_plan(card: Card, overrides: Mapping[str, Any]) -> tuple[TrainConfig, list[RunSpec], list[dict[str, Any]]]:
    """The card's settings (its own, then ``overrides``) and its matrix; an incompatible pair is refused."""
    config = TrainConfig(**{**card.settings, **overrides})
    runs, skipped = build_matrix(card.tasks, card.losses, card.seeds, config)
    if skipped:
        raise ValueError(f"Card {card.name!r} pairs incompatible tasks and losses: {skipped[0]['message']}")
    return config, runs, skipped


def card_folder(out: Path, config: TrainConfig) -> Path:
    return out / FINDINGS_DIR / config.slug


def run_findings(
    names: Sequence[str], out: str | Path, overrides: Mapping[str, Any] | None = None, *, quiet: bool = False
) -> Path:
    """Run the named cards (every matrix is built and checked first), compute their verdicts, write FINDINGS.md."""
    from bench.results import ResultsStore
    from bench.runner import run_matrix  # imports torch and transformers: not for --dry-run or bad names

    out = Path(out)
    cards = [CARDS.get(name)() for name in names]
    plans = [card_plan(card, overrides or {}) for card in cards]
    results = []
    for card, (config, runs, skipped) in zip(cards, plans, strict=True):
        folder = card_folder(out, config)
        if not quiet:
            print(f"card {card.name}: {len(runs)} runs in {folder}")
        run_matrix(runs, skipped, folder, quiet=quiet, note={"findings_card": card.name})
        rows = ResultsStore(folder).load()
        rows = rows[rows["run_id"].isin({run.run_id for run in runs}) & (rows["status"] == Status.OK)]
        results.append(CardResult(card, config, folder, len(runs), len(rows), card.verdicts(rows)))
    return write_findings(results, out)


def dry_run(names: Sequence[str], overrides: Mapping[str, Any]) -> list[str]:
    """One line per card: its runs and the time they take on the project's 2-core machine, none cached."""
    lines, total = [], 0.0
    for name in names:
        card = CARDS.get(name)()
        config, runs, _ = card_plan(card, overrides)
        seconds = card.estimated_seconds(len(runs), len({run.task.base for run in runs}))
        total += seconds
        lines.append(f"{name}: {len(runs)} runs, about {seconds / 60:.0f} min ({config.slug})")
    lines.append(f"all: about {total / 60:.0f} min before runs shared between cards are counted once")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.findings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cards", help="comma-separated card names or patterns (default: every card)")
    parser.add_argument("--out", default="results", help="where FINDINGS.md and findings/ go (default: results)")
    parser.add_argument("--model", help="another model (a hub id or a local checkpoint) instead of the default")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="as lossbench run --precision (default: the card's own, else auto: bf16 where the hardware runs it)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list each card's runs and estimated time; run nothing")
    args = parser.parse_args(argv)
    overrides = {name: value for name, value in (("model", args.model), ("precision", args.precision)) if value}
    try:
        names = card_names(args.cards)
        lines = dry_run(names, overrides)  # builds and checks every card's matrix before any training
    except (KeyError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print("\n".join(lines))
        return 0
    path = run_findings(names, args.out, overrides)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
