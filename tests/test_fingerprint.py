"""A run's fingerprint: changed code or data makes its rows stale, so they run again and the report flags them;
``--rerun`` runs chosen finished runs again."""

from __future__ import annotations

import json

import datasets
import pandas as pd
import pytest
from torch import nn

from bench import cli
from bench import fingerprint as fp
from bench.adapters import register_module_loss
from bench.config import TrainConfig
from bench.matrix import build_matrix
from bench.registry import LOSSES, TASKS, Registry
from bench.report import write_report
from bench.rerun import RerunFilter
from bench.results import RUNS_FILE, ResultsStore
from bench.runner import run_matrix
from losses.base import Loss
from tasks.base import Task
from tests.test_results import NoTraining

SOURCE = '''"""A module."""

def scale(x):
    """Double it."""
    return 2 * x  # twice
'''


def _source_hash(tmp_path, text: str) -> str:
    path = tmp_path / f"m{len(list(tmp_path.iterdir()))}.py"
    path.write_text(text)
    return fp.source_hash(path)


def test_comments_docstrings_and_layout_keep_the_hash_code_changes_it(tmp_path):
    original = _source_hash(tmp_path, SOURCE)
    cosmetic = '"""Another docstring."""\n\n\ndef scale( x ):\n    """Twice x."""\n    # a comment\n    return 2*x\n'
    assert _source_hash(tmp_path, cosmetic) == original
    assert _source_hash(tmp_path, SOURCE.replace("2 * x", "3 * x")) != original
    assert _source_hash(tmp_path, SOURCE.replace("return 2 * x", "return 2 * x + 0")) != original


def test_every_core_entry_names_existing_code():
    for pattern in fp.CORE_CODE:
        assert list(fp.ROOT.glob(pattern)), f"CORE_CODE entry {pattern!r} matches no file"


class TutorialMSE(nn.Module):
    def forward(self, outputs, labels):
        return ((outputs.logits - labels) ** 2).mean()


def test_a_plugin_is_fingerprinted_by_its_own_files():
    root = fp.ROOT
    assert fp.plugin_files(LOSSES.get("focal"), Loss) == [root / "losses" / "focal.py"]
    assert fp.plugin_files(TASKS.get("trec"), Task) == [root / "tasks" / "_packaged.py", root / "tasks" / "trec.py"]
    adapted = register_module_loss(
        "tutorial_mse", TutorialMSE, problem_types={"regression"}, registry=Registry("x", "losses")
    )
    assert [path.name for path in fp.plugin_files(adapted, Loss)] == ["test_fingerprint.py"]  # the wrapped module


def test_a_change_of_the_task_data_changes_the_data_part(monkeypatch):
    splits = fp.loaded_task("trec")
    assert fp.data_hash.__wrapped__("trec") == fp.data_hash("trec")
    changed = datasets.DatasetDict({**splits, "test": splits["test"].map(lambda row: {"text": row["text"] + "!"})})
    monkeypatch.setattr(fp, "loaded_task", lambda name: changed)
    assert fp.data_hash.__wrapped__("trec") != fp.data_hash("trec")


@pytest.fixture
def tiny_train(tiny_model_dir) -> TrainConfig:
    return TrainConfig(model=str(tiny_model_dir), train_size=24, batch_size=8, max_length=32)


@pytest.fixture
def matrix(tiny_train):
    return build_matrix(["trec", "vader_movies"], ["cross_entropy", "focal", "mse"], [0, 1], tiny_train)


def _fingerprint_changes(monkeypatch, part: str, name: str) -> None:
    """Make ``name``'s ``part`` (loss or task code) look changed since the runs were made."""
    function = {"loss": "loss_hash", "task": "task_hash"}[part]
    original = getattr(fp, function)
    monkeypatch.setattr(fp, function, lambda n: "edited" if n == name else original(n))


def test_a_changed_loss_reruns_its_runs_and_the_report_flags_them_until_then(matrix, tmp_path, monkeypatch, capsys):
    runs, skipped = matrix
    run_matrix(runs, skipped, tmp_path, executor=NoTraining())
    before = ResultsStore(tmp_path).load().set_index("run_id")
    assert before["fingerprint"].notna().all()
    assert {json.loads(parts)["loss"] for parts in before["fingerprint_parts"]} == {
        fp.loss_hash(name) for name in ("cross_entropy", "focal", "mse")
    }

    _fingerprint_changes(monkeypatch, "loss", "focal")
    stale = fp.stale_rows(before.reset_index())
    assert stale.values.tolist() == [["trec", "focal", "loss code changed: focal", True, 2]]
    report = write_report(tmp_path, plots=False).read_text()
    assert "**2 stale row(s)**" in report
    stale_section = report[report.index("## Stale rows") :]
    assert "loss code changed: focal" in stale_section and "cross_entropy" not in stale_section

    capsys.readouterr()
    executor = NoTraining()
    run_matrix(runs, skipped, tmp_path, executor=executor)
    assert sorted((spec.loss, spec.seed) for spec in executor.ran) == [("focal", 0), ("focal", 1)]
    summary = f"6 runs: 4 already in {tmp_path / RUNS_FILE}, 2 to run (2 stale: loss code changed: focal)"
    assert summary in capsys.readouterr().out
    after = ResultsStore(tmp_path).load().set_index("run_id")
    assert sorted(after.index) == sorted(before.index)  # replaced, same run_id, one row per run
    focal = after[after["loss"] == "focal"]
    assert (focal["fingerprint"] != before.loc[focal.index, "fingerprint"]).all()
    assert "Stale rows" not in write_report(tmp_path, plots=False).read_text()


def test_the_summary_says_what_changed_and_old_rows_count_as_stale(matrix, tmp_path, monkeypatch, capsys):
    runs, skipped = matrix
    run_matrix(runs, skipped, tmp_path, quiet=True, executor=NoTraining())
    _fingerprint_changes(monkeypatch, "task", "trec")
    run_matrix(runs, skipped, tmp_path, executor=NoTraining())
    assert "4 to run (4 stale: task code changed: trec)" in capsys.readouterr().out

    frame = pd.read_csv(tmp_path / RUNS_FILE, dtype=str)  # as written before fingerprints existed
    frame.drop(columns=["fingerprint", "fingerprint_parts"]).to_csv(tmp_path / RUNS_FILE, index=False)
    assert "written before fingerprints" in write_report(tmp_path, plots=False).read_text()
    executor = NoTraining()
    run_matrix(runs, skipped, tmp_path, executor=executor)
    assert len(executor.ran) == len(runs) == 6
    assert "6 to run (6 stale: written before fingerprints)" in capsys.readouterr().out


def test_rerun_filters_choose_finished_runs_to_run_again(matrix, tmp_path, capsys):
    runs, skipped = matrix
    run_matrix(runs, skipped, tmp_path, quiet=True, executor=NoTraining())
    executor = NoTraining()
    chosen = [RerunFilter.parse("loss=foc*"), RerunFilter.parse("seed=0")]
    run_matrix(runs, skipped, tmp_path, rerun=chosen, executor=executor)
    assert [(str(spec.task), spec.loss, spec.seed) for spec in executor.ran] == [("trec", "focal", 0)]
    assert "(1 chosen by --rerun)" in capsys.readouterr().out

    executor = NoTraining()
    run_matrix(runs, skipped, tmp_path, rerun=[RerunFilter.parse("task=vader_*")], quiet=True, executor=executor)
    assert [(str(spec.task), spec.loss) for spec in executor.ran] == [("vader_movies", "mse")] * 2


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        (["loss=dice"], "--rerun loss=dice matches no run of this matrix (its loss values: cross_entropy, focal, mse)"),
        (["task=vader_movies", "loss=focal"], "match no run of this matrix together"),
    ],
)
def test_rerun_filters_that_match_nothing_are_refused_before_any_run(matrix, tmp_path, filters, message):
    executor = NoTraining()
    with pytest.raises(ValueError, match="valid keys: task, loss, loss_spec, seed, status|together") as error:
        run_matrix(*matrix, tmp_path, rerun=[RerunFilter.parse(f) for f in filters], quiet=True, executor=executor)
    assert message in str(error.value)
    assert executor.ran == [] and not (tmp_path / RUNS_FILE).exists()


def test_the_command_line_refuses_a_bad_rerun_filter(capsys):
    for bad, why in (("colour=red", "unknown key 'colour'; valid keys: task, loss"), ("focal", "expected KEY=PATTERN")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["run", "--rerun", bad])
        assert exit_info.value.code == 2 and why in capsys.readouterr().err
    parsed = cli.build_parser().parse_args(["run", "--rerun", "loss=focal*", "--rerun", "seed=0"])
    assert parsed.rerun == [RerunFilter("loss", "focal*"), RerunFilter("seed", "0")]
