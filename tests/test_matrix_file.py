"""Matrix files (``lossbench run --config FILE.toml``): keys onto the run command's options, checked like the flags,
overridden by the command line, recorded with the invocation; and the shipped ``configs/`` (no training)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench import cli
from bench.matrix_file import MatrixSettings
from bench.rerun import RerunFilter
from bench.results import INVOCATIONS_FILE

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return cli.run_parser(cli.build_parser())


def plan(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    runs, skipped = cli.plan_matrix(args, cli.train_config(args))
    return [spec.run_id for spec in runs], [row["run_id"] for row in skipped]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def test_the_default_config_is_the_default_matrix_and_settings(parser):
    from_file = MatrixSettings.read(CONFIGS / "default.toml").parse(parser)
    no_options = parser.parse_args([])
    assert cli.train_config(from_file) == cli.train_config(no_options)
    assert plan(from_file) == plan(no_options)
    assert len(plan(from_file)[0]) == 144
    assert from_file.out == no_options.out


@pytest.mark.parametrize("name", ["label_noise", "imbalance"])
def test_the_example_studies_parse_and_build_their_matrix(parser, name):
    args = MatrixSettings.read(CONFIGS / f"{name}.toml").parse(parser)
    runs, skipped = cli.plan_matrix(args, cli.train_config(args))
    assert args.out == f"results-{name.replace('_', '-')}"
    assert {spec.seed for spec in runs} == {0, 1, 2, 3, 4} and not skipped
    stressed = {str(spec.task) for spec in runs if "@" in str(spec.task)}
    assert stressed and all(("noise" if name == "label_noise" else "imbalance") in task for task in stressed)
    assert "cross_entropy" in {spec.loss for spec in runs}


def test_every_config_shipped_is_tested():
    assert sorted(path.stem for path in CONFIGS.glob("*.toml")) == ["default", "imbalance", "label_noise"]


def test_keys_map_onto_the_options_and_the_command_line_wins(parser, tmp_path):
    path = write(
        tmp_path,
        'tasks = ["trec@noise=0.2", "sms_spam"]\nlosses = "cross_entropy,focal:gamma=1.0,alpha=0.25"\n'
        'seeds = [3, 4]\ntrain_size = 300\nlr = 3e-4\ntrain_layers = "all"\nselect_checkpoint = false\n'
        'length_grouped = true\nrerun = ["loss=focal*", "seed=3"]\n',
    )
    args = MatrixSettings.read(path).parse(parser)
    assert (args.tasks, args.seeds, args.train_size, args.lr) == ("trec@noise=0.2,sms_spam", [3, 4], 300, 3e-4)
    assert args.losses == "cross_entropy,focal:gamma=1.0,alpha=0.25"
    assert args.train_layers == "all" and args.select_checkpoint is False and args.length_grouped is True
    assert args.rerun == [RerunFilter.parse(t) for t in ("loss=focal*", "seed=3")]
    train = cli.train_config(args)
    assert train.train_layers is None and not train.select_checkpoint and train.learning_rate == 3e-4
    overridden = MatrixSettings.read(path).parse(parser, ["--seeds", "0", "--select-checkpoint", "--rerun", "task=x"])
    assert overridden.seeds == [0] and overridden.select_checkpoint is True and overridden.train_size == 300
    assert overridden.rerun == [RerunFilter.parse("task=x")]  # replaced, not added


def test_a_table_gives_key_value_items_to_a_repeatable_option(parser, tmp_path):
    args = MatrixSettings("python", {"rerun": {"loss": "focal*", "seed": 1}}).parse(parser)
    assert args.rerun == [RerunFilter.parse(t) for t in ("loss=focal*", "seed=1")]
    path = write(tmp_path, "[trainer_args]\ngradient_accumulation_steps = 4\nmax_grad_norm = 1.0\nbf16 = false\n")
    from_file = MatrixSettings.read(path).parse(parser)
    flags = ["--trainer-arg", "gradient_accumulation_steps=4", "--trainer-arg", "max_grad_norm=1.0"]
    assert from_file.trainer_args == parser.parse_args([*flags, "--trainer-arg", "bf16=false"]).trainer_args
    as_list = MatrixSettings("python", {"trainer_args": ["gradient_accumulation_steps=4", "max_grad_norm=1.0"]})
    assert as_list.parse(parser).trainer_args == parser.parse_args(flags).trainer_args


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"train_sise": 500}, "unknown key 'train_sise'. Did you mean 'train_size'"),
        ({"train-size": 500}, "Did you mean 'train_size'?"),
        ({"length_grouping": True}, "Did you mean 'length_grouped'?"),
        ({"train_size": 0}, "train_size = '0': train-size must be an integer >= 1 or 'all'"),
        ({"lr": -1}, "lr must be a finite number > 0"),
        ({"precision": "fp16"}, "precision = 'fp16' is not a valid choice; valid: auto, bf16, fp32"),
        ({"seeds": [0, 0]}, "0 appears twice"),
        ({"select_checkpoint": "yes"}, "must be true or false"),
        ({"force": False, "quiet": 1}, "quiet = 1: must be true or false"),
        ({"batch_size": {"a": 1}}, "batch_size is a table"),
        ({"config": "other.toml"}, "a matrix file cannot name another one"),
    ],
)
def test_bad_keys_and_values_are_refused_naming_the_source_and_the_valid_choices(parser, values, message):
    with pytest.raises(ValueError, match="^matrix.toml: ") as error:
        MatrixSettings("matrix.toml", values).parse(parser)
    assert message in str(error.value)
    if "unknown key" in message:
        assert "Valid keys: " in str(error.value) and "train_size" in str(error.value)


def test_the_command_refuses_a_bad_file_before_any_training(tmp_path, capsys):
    for path, message in [
        (write(tmp_path, "seeds = [0, 1]\ntrain_size = \n"), "not valid TOML: Invalid value (at line 2, column 14)"),
        (tmp_path / "missing.toml", "cannot read the matrix file (No such file or directory)"),
    ]:
        with pytest.raises(SystemExit) as exit_status:  # as a bad flag value: argparse's usage and message
            cli.main(["run", "--config", str(path)])
        assert exit_status.value.code == 2 and message in capsys.readouterr().err
    assert cli.main(["run", "--config", str(write(tmp_path, 'tasks = "trecc"\n'))]) == 2
    assert "Did you mean 'trec'" in capsys.readouterr().err
    assert cli.main(["run", "--config", str(write(tmp_path, "epoch = 2\n"))]) == 2
    assert "unknown key 'epoch'. Did you mean 'epochs'?" in capsys.readouterr().err


def test_the_files_content_is_recorded_with_the_invocation(tmp_path, monkeypatch):
    """The run itself is replaced: what matters is what run_command hands the runner to record."""
    text = f'tasks = "trec"\nlosses = ["cross_entropy"]\nseeds = [0]\nout = "{tmp_path / "out"}"\n'
    path = write(tmp_path, text)
    seen = {}

    def fake_run_matrix(runs, skipped, *, out_dir, note=None, **_):
        seen.update(runs=len(runs), note=note)
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / INVOCATIONS_FILE).write_text(json.dumps(note) + "\n")
        return []

    monkeypatch.setattr("bench.runner.run_matrix", fake_run_matrix)
    monkeypatch.setattr("bench.report.write_report", lambda out: Path(out) / "REPORT.md")
    monkeypatch.setattr(cli, "check_model", lambda model: model)
    monkeypatch.setattr(cli, "check_max_length", lambda *_: None)
    monkeypatch.setattr(cli, "check_train_layers", lambda *_: None)
    assert cli.main(["run", "--config", str(path)]) == 0
    assert seen["runs"] == 1
    assert seen["note"] == {"config": {"path": str(path), "content": text}}
