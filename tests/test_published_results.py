"""The published results live apart from a user's own runs: `make bench` on a fresh clone runs whatever precision
this machine picks, leaves the published files byte for byte as they were, and a folder that would mix settings
names where the new runs should go."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from dataclasses import fields
from pathlib import Path

import pandas as pd
import pytest

from bench import cli
from bench.config import ORIGINAL_SETTINGS, TrainConfig
from bench.report import render_report
from bench.results import ResultsStore

REPO_ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = Path("results") / "published"
USER_OUTPUT = ("runs.csv", "REPORT.md", "stats.csv", "invocations.jsonl", "plots/x.png", "runs/0123/run.log")


def _git(*args: str) -> str:
    """A git command's output in this checkout; the test is skipped outside a git checkout."""
    try:
        result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    except OSError:
        pytest.skip("git is not installed")
    if result.returncode == 128:  # "not a git repository"
        pytest.skip("not a git checkout")
    return result.stdout


def _tracked_results() -> list[str]:
    return _git("ls-files", "--", "results").splitlines()


def _published_folders() -> list[Path]:
    return sorted(
        {Path(*Path(path).parts[:3]) for path in _tracked_results() if Path(path).parts[:2] == PUBLISHED.parts}
    )


def _committed_runs() -> Path:
    """A tracked runs.csv (a published one, once they have moved), as a clone has it."""
    tracked = sorted(path for path in _tracked_results() if Path(path).name == "runs.csv")
    assert tracked, "no results are tracked"
    return REPO_ROOT / tracked[-1]


def _other_precision(runs: Path) -> str:
    """The precision that the finished runs in ``runs`` were not made with."""
    return "fp32" if "bf16" in set(pd.read_csv(runs)["precision"]) else "bf16"


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def test_the_published_runs_are_out_of_the_default_output_folder_and_named_by_their_settings():
    tracked = _tracked_results()
    kept = ("results/PERF.md", "results/PROTOCOL.md", "results/FINDINGS.md")  # measured figures, not a user's output
    assert not [path for path in tracked if Path(path).parent == Path("results") and path not in kept]
    assert not [path for path in tracked if path.startswith(("results/runs/", "results/plots/"))]
    folders = _published_folders()
    assert folders, "no published results are tracked"
    for folder in folders:
        assert f"{folder}/runs.csv" in tracked and f"{folder}/REPORT.md" in tracked
        finished = ResultsStore(REPO_ROOT / folder).load().query("status == 'ok'")
        assert folder.name == TrainConfig(**_one_setting_each(finished, folder)).slug


def _one_setting_each(finished: pd.DataFrame, folder: Path) -> dict:
    """The TrainConfig of a published folder's runs, which must all share it; a tuned comparison's folder also holds
    the untuned runs it compares with (as ``bench.compatibility.settings_conflicts`` allows): the learning rate is
    then shared by the untuned runs and the tuning budget by the tuned ones."""
    trials = pd.to_numeric(finished.get("tuning_trials", pd.Series(0, index=finished.index)), errors="coerce")
    tuned = trials.fillna(0) > 0
    only = {"learning_rate": finished[~tuned], "tuning_trials": finished[tuned] if tuned.any() else finished}
    settings = {}
    for field in fields(TrainConfig):
        rows = only.get(field.name, finished)
        values = rows[field.name].dropna().unique() if field.name in rows.columns else []
        assert len(values) <= 1, f"{folder} mixes {field.name}={list(values)}"
        # A setting a row does not name had the value every run had before it existed.
        value = values[0] if len(values) else ORIGINAL_SETTINGS.get(field.name, field.default)
        value = value.item() if hasattr(value, "item") else value
        if type(field.default) is int and isinstance(value, float) and value.is_integer():
            value = int(value)  # a column with empty cells (rows older than the setting) reads back as floats
        settings[field.name] = value
    return settings


def test_git_ignores_a_users_own_results_but_not_the_published_ones():
    ignored = set(_git("check-ignore", "--no-index", *(f"results/{name}" for name in USER_OUTPUT)).splitlines())
    assert ignored == {f"results/{name}" for name in USER_OUTPUT}
    kept = [f"{PUBLISHED}/any-settings/runs.csv", "results/PERF.md"]
    assert _git("check-ignore", "--no-index", *kept) == ""


def test_make_bench_on_a_fresh_clone_runs_with_the_other_precision_and_keeps_the_published_files(
    tiny_model_dir, tmp_path, monkeypatch, capsys
):
    """A clone's tracked results, and the default --out: a run in the precision the published runs were not made in
    (the issue: bf16 rows there, fp32 on this CPU) finishes, and leaves every published file as it was."""
    clone = tmp_path / "clone"
    for path in _tracked_results():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / path, clone / path)
    other = _other_precision(_committed_runs())
    before = _digests(clone / "results")
    monkeypatch.chdir(clone)

    args = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0", "--model", str(tiny_model_dir)]
    args += ["--train-size", "16", "--batch-size", "8", "--max-length", "32", "--precision", other, "--quiet"]
    assert cli.main(args) == 0, capsys.readouterr().err

    own = ResultsStore(clone / "results").load()
    assert list(own["status"]) == ["ok"] and list(own["precision"]) == [other]
    assert (clone / "results" / "REPORT.md").exists()
    after = _digests(clone / "results")
    assert {name: after[name] for name in before} == before  # every committed file, byte for byte


def test_a_folder_with_other_settings_names_a_folder_for_the_new_runs(tiny_model_dir, tmp_path, capsys):
    """The layout before the published results moved: bf16 rows in the output folder, refused before any training;
    the message's folder takes the runs."""
    source = _committed_runs()
    other = _other_precision(source)
    out = tmp_path / "results"
    out.mkdir()
    shutil.copy2(source, out / "runs.csv")
    args = ["run", "--tasks", "trec", "--losses", "cross_entropy", "--seeds", "0", "--model", str(tiny_model_dir)]
    args += ["--train-size", "16", "--batch-size", "8", "--max-length", "32", "--precision", other, "--quiet"]

    assert cli.main([*args, "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert re.search(rf"precision=\S+ there, {other} now", error) and "--force" in error
    suggested = re.search(r"Use --out (\S+) \(a folder named by these settings\)", error).group(1)
    assert suggested == f"{out}-finetune-16ex-1ep-lr1e-3-{other}-{tiny_model_dir.name}-bs8-len32-top1-best-patience4"
    assert (out / "runs.csv").read_bytes() == source.read_bytes()  # nothing trained, nothing written

    assert cli.main([*args, "--out", suggested]) == 0, capsys.readouterr().err
    assert list(ResultsStore(suggested).load()["status"]) == ["ok"]


@pytest.mark.parametrize(
    ("settings", "slug"),
    [
        ({"precision": "bf16"}, "finetune-2000ex-1ep-lr1e-3-bf16-top1-best-patience4"),
        ({"precision": "bf16", "train_size": 450, "epochs": 1, "learning_rate": 2e-4, "train_layers": None,
          "select_checkpoint": False}, "finetune-450ex-1ep-lr2e-4-bf16"),
        ({"precision": "fp32", "train_size": None, "epochs": 2.5, "learning_rate": 3.5e-5, "train_layers": 2,
          "eval_steps": 10, "patience": 0}, "finetune-allex-2.5ep-lr3.5e-5-fp32-top2-best-eval10"),
        ({"precision": "fp32", "train_layers": 0, "epochs": 5, "learning_rate": 1e-2, "select_checkpoint": False},
         "finetune-2000ex-5ep-lr1e-2-fp32-top0"),
        ({"precision": "fp32", "model": "org/bert-base-uncased", "batch_size": 32, "length_grouped": True,
          "train_layers": None, "select_checkpoint": False},
         "finetune-2000ex-1ep-lr1e-3-fp32-bert-base-uncased-bs32-grouped"),
        ({"precision": "fp32", "tuning_trials": 8}, "finetune-2000ex-1ep-fp32-top1-best-patience4-tuned8"),
    ],
)  # fmt: skip
def test_the_slug_names_the_settings_that_differ(settings, slug):
    assert TrainConfig(**settings).slug == slug


def test_the_report_lists_each_hardware_and_precision_when_the_runs_mix_them():
    runs = ResultsStore(_committed_runs().parent).load()
    runs = runs[runs["task"] == "rt_polarity"]
    assert "hardware, precision" not in render_report(runs)  # one of each: the settings rows say it

    ok = runs[runs["status"] == "ok"]
    gpu = ok.head(3).assign(  # three more seeds of one loss, made elsewhere in fp32 (with --force)
        run_id=lambda frame: frame["run_id"] + "-gpu",
        seed=[100, 101, 102],
        hardware="Some CPU, 8 cores, 8 torch threads, GPU H200",
        precision="fp32",
    )
    mixed = pd.concat([runs, gpu], ignore_index=True)
    [line] = [line for line in render_report(mixed).splitlines() if line.startswith("| hardware, precision")]
    hardware = ok["hardware"].iloc[0]
    assert f"{hardware}, {ok['precision'].iloc[0]}: {len(ok)} ok runs" in line
    assert "Some CPU, 8 cores, 8 torch threads, GPU H200, fp32: 3 ok runs" in line
