"""The protocol study (bench.protocol, bench.protocol_report): its arms vary one setting each, its verdicts apply the
targets, and a small study on the tiny model runs, resumes without redoing work and writes PROTOCOL.md."""

from __future__ import annotations

import math
from dataclasses import asdict, replace

import pytest

from bench import protocol, protocol_report, study
from bench.config import TrainConfig
from bench.protocol_report import Cell, Verdict, recommended, score_share
from bench.study import CENTRE, REFERENCE, Arm, distinct_arms, study_arms


def test_each_arm_differs_from_the_centre_in_its_axis_setting_only():
    arms = study_arms()
    assert arms[-1].axis == REFERENCE and arms[-1].train.train_size is None and arms[-1].train.train_layers is None
    centre = asdict(CENTRE)
    for arm in arms[:-1]:
        setting = study.AXIS_SETTINGS[arm.axis][0]
        differing = {name for name, value in asdict(arm.train).items() if centre[name] != value}
        assert differing <= {setting} and getattr(arm.train, setting) == arm.value
    # The centre belongs to every axis but runs once.
    assert sum(arm.train == CENTRE for arm in arms) == len(study.AXES)
    assert sum(arm.train == CENTRE for arm in distinct_arms(arms)) == 1


def test_folders_do_not_depend_on_the_defaults():
    """A slug names what differs from the original settings, so changing a default renames no study folder."""
    assert CENTRE.slug == "finetune-1000ex-2ep-lr1e-3-fp32-top1-best-patience4"
    assert TrainConfig(precision="fp32", train_layers=None).slug.startswith("finetune-")


def test_score_share_in_both_directions():
    assert score_share(0.9, 1.0, higher_is_better=True) == pytest.approx(0.9)
    assert score_share(2.0, 1.0, higher_is_better=False) == pytest.approx(0.5)


def _verdict(share: float, *, std_ok=True, collapse_ok=True, minutes=10.0) -> Verdict:
    return Verdict({"t": share}, share >= 0.9, std_ok, collapse_ok, minutes)


def test_recommended_arm_meets_every_target_with_the_highest_share():
    verdicts = {
        "slow": _verdict(0.99, minutes=45.0),  # over the time budget
        "noisy": _verdict(0.98, std_ok=False),
        "collapsing": _verdict(0.97, collapse_ok=False),
        "good": _verdict(0.95),
        "fine": _verdict(0.93),
        "low": _verdict(0.85),
    }
    assert recommended(verdicts) == "good"
    assert recommended({"low": verdicts["low"], "slow": verdicts["slow"]}) is None


def test_verdict_applies_the_targets(monkeypatch):
    monkeypatch.setattr(protocol_report, "matrix_runs", lambda arm, task: 10)
    arm = Arm("learning rate", 1e-3, CENTRE, (0, 1, 2))
    reference = {"trec": Cell(1, 0.8, math.nan, 0, 100.0, 0.0, 50, 60, 1)}
    good = {"trec": Cell(3, 0.75, 0.01, 0, 6.0, 30.0, 40, 60, 3)}
    result = protocol_report.verdict(arm, good, reference, ["trec"], {"trec": 30.0})
    assert result.share["trec"] == pytest.approx(0.9375) and result.meets_all
    assert result.minutes == pytest.approx((30 + 10 * 6) / 60)
    noisy = {"trec": replace(good["trec"], std=0.03, collapsed=1)}
    result = protocol_report.verdict(arm, noisy, reference, ["trec"])
    assert not result.meets_std and not result.no_collapse and not result.meets_all
    missing = protocol_report.verdict(arm, {}, reference, ["trec"])
    assert not missing.meets_score and math.isnan(missing.minutes)


def test_a_small_study_runs_resumes_and_writes_the_report(tiny_model_dir, tmp_path, capsys):
    base = TrainConfig(
        model=str(tiny_model_dir), train_size=24, epochs=1.0, batch_size=8, max_length=32, precision="fp32"
    )
    selecting = replace(base, select_checkpoint=True, patience=2, learning_rate=1e-3)
    arms = [
        Arm(REFERENCE, None, replace(selecting, train_size=48), (0,)),
        Arm("learning rate", 1e-3, selecting, (0, 1)),
        Arm("learning rate", 3e-3, replace(selecting, learning_rate=3e-3), (0, 1)),
    ]
    out = tmp_path / "protocol"
    assert study.run_study(arms, ["trec"], out, quiet=True) == 0
    runs_files = {arm.folder: (out / arm.folder / "runs.csv").read_bytes() for arm in arms}
    assert study.run_study(arms, ["trec"], out, quiet=True) == 0  # nothing to redo
    assert {arm.folder: (out / arm.folder / "runs.csv").read_bytes() for arm in arms} == runs_files

    report = protocol_report.write_protocol_report(arms, ["trec"], out)
    text = report.read_text()
    assert report == tmp_path / "PROTOCOL.md"
    assert "## Reference scores" in text and "## Learning rate" in text
    assert "| 0.001 | " in text and "| 0.003 | " in text
    assert (out / "plots" / "learning_rate.png").is_file()
    for arm in arms[1:]:
        assert f"`{arm.folder}`" in text


def test_an_unknown_task_is_refused_before_any_run(tmp_path, capsys):
    assert protocol.main(["--tasks", "no_such_task", "--out", str(tmp_path / "p")]) == 2
    assert "no_such_task" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
