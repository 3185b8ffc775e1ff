"""The Python API (``bench.notebook``): the example of docs/python-api.md runs as written (on the tiny model), the
same checks as the command refuse bad values before any training, and a second call resumes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from bench import notebook
from bench.registry import UnknownNameError
from bench.results import INVOCATIONS_FILE

PAGE = Path(__file__).resolve().parent.parent / "docs" / "python-api.md"


def doc_example() -> str:
    """The page's Python example, as written there."""
    (code,) = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), flags=re.DOTALL | re.MULTILINE)
    return code


def test_the_docs_example_runs_and_a_second_call_resumes(tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the example writes results-notebook/ where it runs
    monkeypatch.setattr(notebook, "run", partial(notebook.run, model=str(tiny_model_dir)))  # the only change
    scope: dict = {}
    exec(doc_example(), scope)
    runs, path = scope["runs"], scope["path"]
    assert len(runs) == 2 and set(runs["loss_spec"]) == {"cross_entropy", "focal:gamma=1.0"}
    assert (runs["status"] == "ok").all() and runs["test_f1_macro"].between(0, 1).all()
    assert path == Path("results-notebook") / "REPORT.md" and "## sms_spam" in path.read_text()
    assert "test_f1_macro" in capsys.readouterr().out  # the example prints its table

    again = notebook.run("sms_spam", "cross_entropy,focal:gamma=1.0", [0], "results-notebook", train_size=100,
                         max_length=64, model=str(tiny_model_dir), quiet=True)  # fmt: skip
    assert again.equals(runs)  # the same rows: nothing ran again
    records = [json.loads(line) for line in (tmp_path / "results-notebook" / INVOCATIONS_FILE).read_text().splitlines()]
    assert [record["to_run"] for record in records] == [2, 0]
    assert records[0]["config"]["source"] == notebook.SOURCE
    assert records[0]["config"]["values"]["losses"] == ["cross_entropy", "focal:gamma=1.0"]


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"train_size": 0}, ValueError, "train-size must be an integer >= 1 or 'all'"),
        ({"train_sise": 10}, ValueError, "unknown key 'train_sise'. Did you mean 'train_size'"),
        ({"tasks": "trecc"}, UnknownNameError, "Did you mean 'trec'"),
        ({"seeds": (0, 0)}, ValueError, "0 appears twice"),
        ({"patience": 2, "select_checkpoint": False}, ValueError, "--patience 2 needs --select-checkpoint"),
    ],
)
def test_bad_values_raise_before_any_training(tmp_path, settings, error, message):
    with pytest.raises(error, match=re.escape(message)):
        notebook.run(**{"out": tmp_path / "out", **settings})
    assert not (tmp_path / "out").exists()


def test_importing_bench_and_the_api_stays_light():
    """``import bench.notebook`` loads neither transformers nor datasets: only ``run`` does, when it trains."""
    code = (
        "import sys, bench, bench.notebook; print(sorted(m for m in ('transformers', 'datasets') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "[]"
