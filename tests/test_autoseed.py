"""``--seeds auto``: which tasks get more seeds and how many (a fake runner: no training), what seeds.json records,
the flags' checks, and one tiny end-to-end run."""

from __future__ import annotations

import json
import math
import re
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bench import autoseed, power
from bench.autoseed import BELOW_TARGET, CAP, DECIDED, NO_TEST, SEEDS_FILE, UNDECIDED, next_seed_count, run_auto
from bench.cli import main
from bench.config import RunSpec, TrainConfig
from bench.matrix import build_matrix
from bench.status import Status

TASKS = ("trec", "sms_spam", "rt_polarity")
LOSSES = ("cross_entropy", "focal", "label_smoothing")
# Per task, the paired difference of each other loss from the baseline: trec clearly better (decided); sms_spam
# no difference but a large seed noise (undecided, grows to the cap); rt_polarity no difference at a tiny noise (its
# minimum detectable difference is below the target at once).
EFFECT = {"trec": 0.1, "sms_spam": 0.0, "rt_polarity": 0.0}
NOISE = {"trec": 0.001, "sms_spam": 0.05, "rt_polarity": 1e-5}


def value(spec: RunSpec) -> float:
    """A run's main metric: deterministic in (task, loss, seed)."""
    task = str(spec.task)
    rng = np.random.default_rng(zlib.crc32(f"{task}/{spec.loss}/{spec.seed}".encode()))
    base = 0.6 + 0.05 * np.random.default_rng(spec.seed).standard_normal()  # shared by the seed's losses: paired
    return float(base + (EFFECT[task] if spec.loss != "cross_entropy" else 0.0) + NOISE[task] * rng.standard_normal())


class FakeFolder:
    """A results folder that skips finished runs, as ``run_matrix`` does, and counts the runs it trains."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.trained: list[RunSpec] = []
        self.notes: list[dict] = []

    def run_round(self, runs: list[RunSpec], skipped: list[dict], note: dict) -> list[dict]:
        self.notes.append(note)
        for spec in runs:
            if spec.run_id not in self.rows:
                self.trained.append(spec)
                self.rows[spec.run_id] = {
                    "run_id": spec.run_id,
                    "task": str(spec.task),
                    "problem_type": "classification",
                    "main_metric": "accuracy",
                    "loss": spec.loss,
                    "loss_spec": spec.loss,
                    "seed": spec.seed,
                    "status": Status.OK,
                    "test_accuracy": value(spec),
                }
        return []

    def load_rows(self) -> pd.DataFrame:
        return pd.DataFrame(list(self.rows.values()))


def first_round(tasks=TASKS, losses=LOSSES) -> list[RunSpec]:
    runs, _ = build_matrix(tasks, losses, [0, 1, 2], TrainConfig())
    return runs


def auto(folder: FakeFolder, out, *, cap: int = 10, target: float = 0.01, runs=None):
    return run_auto(
        runs or first_round(),
        [],
        out,
        run_round=folder.run_round,
        load_rows=folder.load_rows,
        target=target,
        cap=cap,
        say=lambda _: None,
    )


def seeds_run(folder: FakeFolder) -> dict[str, list[int]]:
    found: dict[str, set[int]] = {}
    for spec in folder.trained:
        found.setdefault(str(spec.task), set()).add(spec.seed)
    return {task: sorted(seeds) for task, seeds in found.items()}


def test_only_the_undecided_task_grows_doubling_per_round_up_to_the_cap(tmp_path):
    folder = FakeFolder()
    result = auto(folder, tmp_path)
    states = result.tasks
    assert states["trec"].state == DECIDED and states["trec"].seeds == (0, 1, 2)
    assert states["rt_polarity"].state == BELOW_TARGET and states["rt_polarity"].seeds == (0, 1, 2)
    assert states["sms_spam"].state == CAP and states["sms_spam"].seeds == tuple(range(10))
    assert seeds_run(folder) == {"trec": [0, 1, 2], "rt_polarity": [0, 1, 2], "sms_spam": list(range(10))}
    # 3 -> 6 (at most double) -> 10 (the cap), every loss of the task at every seed
    rounds = [note["seeds_auto"]["seeds"]["sms_spam"] for note in folder.notes]
    assert rounds == [[0, 1, 2], list(range(6)), list(range(10))]
    assert result.rounds == 3 and result.runs == len(folder.trained) == 3 * 3 * 3 + 7 * 3
    assert states["sms_spam"].mdd > 0.01 and states["sms_spam"].comparisons == 2


def test_next_seed_count_follows_seeds_needed_with_at_least_one_more_at_most_double_and_the_cap():
    needed = power.seeds_needed(0.004, 0.01, 2)
    assert 3 < needed < 6
    assert next_seed_count(3, 0.004, math.nan, 2, 0.01, 10) == needed
    assert next_seed_count(3, 0.05, math.nan, 2, 0.01, 10) == 6  # needs far more: doubled
    assert next_seed_count(6, 0.05, math.nan, 2, 0.01, 10) == 10  # doubled would be 12: the cap
    assert next_seed_count(3, 0.05, math.nan, 2, 0.01, 4) == 4
    assert next_seed_count(5, 1e-6, math.nan, 2, 0.01, 10) == 6  # needs fewer than it has (failed runs): one more


def test_a_rerun_in_the_same_folder_trains_nothing_and_makes_the_same_choices(tmp_path):
    folder = FakeFolder()
    auto(folder, tmp_path)
    first = (tmp_path / SEEDS_FILE).read_text()
    trained = len(folder.trained)
    auto(folder, tmp_path)  # the folder now holds 10 seeds of sms_spam: round 1 still decides from seeds 0, 1, 2
    assert len(folder.trained) == trained
    assert (tmp_path / SEEDS_FILE).read_text() == first
    assert [note["seeds_auto"] for note in folder.notes[:3]] == [note["seeds_auto"] for note in folder.notes[3:]]


def test_a_lower_cap_stops_there_and_seeds_json_records_every_task(tmp_path):
    folder = FakeFolder()
    auto(folder, tmp_path, cap=4)
    record = json.loads((tmp_path / SEEDS_FILE).read_text())
    settings = (record["max_seeds"], record["target_mdd"], record["first_seeds"], record["rounds"])
    assert settings == (4, 0.01, [0, 1, 2], 2)
    assert set(record["tasks"]) == set(TASKS)
    sms = record["tasks"]["sms_spam"]
    assert sms["seeds"] == [0, 1, 2, 3] and sms["state"] == CAP and sms["mdd"] > 0.01 and sms["pooled_std"] > 0
    assert record["tasks"]["trec"]["state"] == DECIDED and record["tasks"]["trec"]["significant"] == 2
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_a_task_with_only_its_baseline_has_nothing_to_decide(tmp_path):
    folder = FakeFolder()
    result = auto(folder, tmp_path, runs=first_round(("trec",), ("cross_entropy",)))
    assert result.tasks["trec"].state == NO_TEST and result.rounds == 1
    assert json.loads((tmp_path / SEEDS_FILE).read_text())["tasks"]["trec"]["mdd"] is None


def test_run_auto_refuses_a_cap_below_the_first_round_and_a_bad_target(tmp_path):
    with pytest.raises(ValueError, match="max-seeds must be an integer >= 3"):
        auto(FakeFolder(), tmp_path, cap=2)
    with pytest.raises(ValueError, match="target-mdd must be a finite number > 0"):
        auto(FakeFolder(), tmp_path, target=0.0)


# --- the command line -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-seeds", "2"], "max-seeds must be an integer >= 3, got '2'"),
        (["--max-seeds", "many"], "max-seeds must be an integer >= 3, got 'many'"),
        (["--target-mdd", "0"], "target-mdd must be a finite number > 0, got '0'"),
        (["--target-mdd", "nan"], "target-mdd must be a finite number > 0, got 'nan'"),
    ],
)
def test_bad_values_are_refused_with_their_range(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--tasks", "trec", "--losses", "focal", "--out", str(tmp_path), "--seeds", "auto", *extra])
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-seeds", "5"], "--max-seeds 5 applies to --seeds auto only"),
        (["--seeds", "0,1", "--target-mdd", "0.02"], "--target-mdd 0.02 applies to --seeds auto only"),
        (["--seeds", "auto", "--rerun", "loss=focal"], "--rerun applies to fixed --seeds"),
    ],
)
def test_flags_that_need_seeds_auto_or_do_not_go_with_it_are_refused(tmp_path, capsys, extra, message):
    out = tmp_path / "results"
    assert main(["run", "--tasks", "trec", "--losses", "focal", "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_seeds_auto_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """The real runner, two rounds: the tiny random model scores every run alike (no seed noise), so round 1 is made
    undecided here to see round 2 run the next seed of every loss."""
    decide = autoseed.decide

    def undecided_at_first(task, rows, seeds, target, cap):
        state = decide(task, rows, seeds, target, cap)
        return replace(state, state=UNDECIDED, next_seeds=4) if len(seeds) == 3 else state

    monkeypatch.setattr(autoseed, "decide", undecided_at_first)
    out = tmp_path / "results"
    command = ["run", "--tasks", "sms_spam", "--losses", "cross_entropy,focal", "--seeds", "auto", "--max-seeds", "4"]
    command += ["--train-size", "16", "--max-length", "32", "--model", str(tiny_model_dir), "--out", str(out)]
    command += ["--quiet"]
    assert main(command) == 0
    record = json.loads((out / SEEDS_FILE).read_text())
    task = record["tasks"]["sms_spam"]
    assert task["seeds"] == [0, 1, 2, 3] and task["state"] != UNDECIDED and record["rounds"] == 2
    frame = pd.read_csv(out / "runs.csv")
    assert (frame["status"] == "ok").all() and len(frame) == 8
    assert sorted(frame.groupby("loss_spec")["seed"].apply(sorted).tolist()) == [[0, 1, 2, 3]] * 2
    entries = [json.loads(line) for line in (out / "invocations.jsonl").read_text().splitlines()]
    assert [entry["seeds_auto"] for entry in entries] == [
        {"round": 1, "seeds": {"sms_spam": [0, 1, 2]}},
        {"round": 2, "seeds": {"sms_spam": [0, 1, 2, 3]}},
    ]
    assert [entry["to_run"] for entry in entries] == [6, 2]
    assert "--seeds auto: 8 runs in 2 round(s)" in capsys.readouterr().out
    assert "## sms_spam" in (out / "REPORT.md").read_text()
