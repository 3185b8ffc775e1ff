"""The protocol study's arms (``make protocol``, ``bench.protocol``): how the baseline loss's test score, and its
spread over seeds, on each default task depends on the learning rate, the training budget and the fine-tuning depth;
and each task's reference score, the ceiling the default protocol is measured against.

The study is a list of arms. Each arm is one ``TrainConfig`` that differs from the study's centre in one setting (the
axis it belongs to), run for each task's baseline loss (cross_entropy, mse) over several seeds into its own folder
``OUT/<slug>/`` by ``bench.runner.run_matrix``: a finished arm is not run again, an interrupted study resumes where it
stopped, and a code change reruns what it made stale. The reference arm fine-tunes every layer on the whole training
split with checkpoint selection and early stopping (Mosbach et al. 2021; Dodge et al. 2020). ``bench.protocol_report``
turns the folders into ``OUT/../PROTOCOL.md`` and its plots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from bench.config import TrainConfig
from bench.models import DEFAULT_MODEL

REFERENCE = "reference"
AXES = ("learning rate", "training examples", "trained layers")
# The centre of the study: the top layer and the head trained on cached states of the five frozen layers below, 1000
# examples for at most 2 epochs (125 steps of 16), the best of 8 validation checkpoints, stopped after 4 without
# progress. Chosen so that one run costs about what the 30-minute default matrix allows (~11 s in fp32 on 2 cores).
CENTRE = TrainConfig(
    train_size=1000,
    epochs=2.0,
    learning_rate=1e-3,
    precision="fp32",
    train_layers=1,
    select_checkpoint=True,
    patience=4,
)
# Each axis: the setting it varies and the values (the centre's value among them).
AXIS_SETTINGS = {
    "learning rate": ("learning_rate", (3e-4, 1e-3, 3e-3)),
    "training examples": ("train_size", (500, 1000, 2000)),
    "trained layers": ("train_layers", (0, 1, 2)),
}
# Every layer fine-tuned on the whole training split at a full fine-tune's rate until the validation metric stops
# improving: validated 4 times an epoch, stopped after 4 validations (one epoch) without progress, at most 4 epochs
# (852-1856 steps; Mosbach et al. 2021 train small data for longer than the usual 3 epochs). PROTOCOL.md says where the
# best checkpoint was the last one, i.e. where the reference may still have been improving.
REFERENCE_CONFIG = TrainConfig(
    train_size=None,
    train_layers=None,
    epochs=4.0,
    learning_rate=1e-4,
    precision="auto",  # bf16 where the hardware has it: the longest runs of the study, and a ceiling, not a contender
    select_checkpoint=True,
    patience=4,
)
# The default protocol before this study (published results/published/finetune-450ex-1ep-lr2e-4-bf16/): every layer,
# 450 examples, one epoch (29 steps), lr 2e-4, the last weights; written out so that it stays this when defaults change.
PREVIOUS_DEFAULT = TrainConfig(
    train_size=450,
    epochs=1.0,
    learning_rate=2e-4,
    precision="fp32",
    train_layers=None,
    select_checkpoint=False,
    eval_steps=0,
    patience=0,
)
# Candidates for the default, from the axes: 2000 examples (trec's seed std 0.006 there, against 0.06 at 1000) for
# one epoch instead of two (half the cost), validated 4 or 3 times (each validation costs about as much as training
# on a third of the validation split's size).
CANDIDATES = tuple(
    replace(CENTRE, train_size=2000, epochs=1.0, eval_steps=eval_steps, patience=patience)
    for eval_steps, patience in ((0, 4), (42, 0))
)
# The head alone on the frozen encoder (--train-layers 0) learns slower: 5 epochs (625 steps of 16, a few seconds a
# run), the best of 20 validation checkpoints, at three rates; the best becomes that depth's default.
HEAD_ONLY_CANDIDATES = tuple(
    TrainConfig(train_layers=0, epochs=5.0, learning_rate=rate, precision="fp32", select_checkpoint=True, patience=4)
    for rate in (1e-3, 3e-3, 1e-2)
)
STUDY_SEEDS = (0, 1, 2)
REFERENCE_SEEDS = (0,)
BASELINE_LOSSES = ("cross_entropy", "mse")  # the report's baselines (classification, regression)


@dataclass(frozen=True)
class Arm:
    """One setting of the study: its axis (or ``reference``), the value it gives the axis's setting, the run settings
    and the seeds."""

    axis: str
    value: float | int | None
    train: TrainConfig
    seeds: tuple[int, ...]

    @property
    def folder(self) -> str:
        return self.train.slug


def study_arms(
    *,
    model: str = DEFAULT_MODEL,
    precision: str = "fp32",
    seeds: Sequence[int] = STUDY_SEEDS,
    reference_seeds: Sequence[int] = REFERENCE_SEEDS,
    extra: Sequence[TrainConfig] = (),
) -> list[Arm]:
    """Each axis's arms in order (an arm shared by several axes, the centre, is listed in each but runs once: its
    folder is the same), ``extra``'s candidate protocols, then the reference arm (the longest runs, last)."""
    centre = replace(CENTRE, model=model, precision=precision)
    arms = []
    for axis, (setting, values) in AXIS_SETTINGS.items():
        arms += [Arm(axis, value, replace(centre, **{setting: value}), tuple(seeds)) for value in values]
    arms += [Arm("candidates", None, replace(config, model=model), tuple(seeds)) for config in extra]
    return [*arms, Arm(REFERENCE, None, replace(REFERENCE_CONFIG, model=model), tuple(reference_seeds))]


def distinct_arms(arms: Sequence[Arm]) -> list[Arm]:
    """The arms with distinct folders, in order (the centre belongs to every axis but runs once)."""
    seen: dict[str, Arm] = {}
    for arm in arms:
        seen.setdefault(arm.folder, arm)
    return list(seen.values())


def run_study(arms: Sequence[Arm], tasks: Sequence[str], out: Path, *, quiet: bool = False) -> int:
    """Run every arm's baseline runs not finished yet, each arm into ``out/<slug>/``; returns the count of failed runs
    (a failed run is a row like any other: the study goes on)."""
    from bench.matrix import build_matrix
    from bench.runner import run_matrix

    failed = 0
    for arm in distinct_arms(arms):
        runs, _ = build_matrix(tasks, BASELINE_LOSSES, arm.seeds, arm.train)
        if not quiet:
            print(f"\n== {arm.axis}: {arm.folder} ({len(runs)} runs)")
        failed += len(run_matrix(runs, [], out / arm.folder, quiet=quiet))
    return failed
