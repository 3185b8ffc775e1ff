"""Where tasks read their data: hub datasets (offline errors, and the same loading code on a local directory) and
the user-file helper (CSV and JSON Lines)."""

from __future__ import annotations

import http.server
import json
import math
import socket
import threading
import time
from pathlib import Path

import datasets
import pandas as pd
import pytest

from bench.plugins import get_task
from tasks.base import (
    SPLITS,
    DatasetUnavailableError,
    FileTask,
    HubTask,
    Task,
    TaskMetadata,
    hub_unavailable_reason,
)

BINARY = TaskMetadata(
    problem_type="classification",
    label_names=("neg", "pos"),
    main_metric="accuracy",
    higher_is_better=True,
    source="tmp files",
    version="0",
    description="A tiny binary task for tests.",
)
PAIRS = TaskMetadata(
    problem_type="regression",
    text_fields=("sentence1", "sentence2"),
    main_metric="pearson",
    higher_is_better=True,
    source="tmp files",
    version="0",
    description="A tiny sentence-pair regression task for tests.",
)


@pytest.fixture
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty datasets cache, so that neither a real cached copy nor the test's own files leak between tests."""
    cache = tmp_path / "hf-datasets-cache"
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(cache))
    return cache


def total_rows(dataset: datasets.DatasetDict) -> int:
    return sum(len(dataset[split]) for split in SPLITS)


# --- hub tasks offline ----------------------------------------------------------------------------------------------


def test_hub_task_offline_fails_fast_with_how_to(datasets_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets at import
    started = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as error:
        get_task("sst2").load()
    assert time.perf_counter() - started < 5
    message = str(error.value)
    for part in (
        "'sst2'",
        "'nyu-mll/glue'",
        "network access",
        "Hugging Face cache",
        "HF_HUB_OFFLINE=0",
        "--tasks sst2",
    ):
        assert part in message
    assert isinstance(error.value, ConnectionError)


def test_hub_task_unreachable_hub_fails_before_load_dataset(
    datasets_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nobody listens on: connection refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", f"http://127.0.0.1:{port}")

    def never(*args, **kwargs):
        raise AssertionError("load_dataset would retry for a minute")

    monkeypatch.setattr(datasets, "load_dataset", never)
    with pytest.raises(DatasetUnavailableError, match=f"127.0.0.1:{port} is not reachable.*HF_HUB_OFFLINE=0"):
        get_task("stsb").load()


def test_hub_probe_times_out_instead_of_hanging(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as silent:  # accepts connections (in the kernel backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
        started = time.perf_counter()
        reason = hub_unavailable_reason(timeout=0.5)
    assert time.perf_counter() - started < 3
    assert reason is not None and "not reachable" in reason and "timed out" in reason


def test_hub_probe_counts_an_error_status_as_reachable(monkeypatch: pytest.MonkeyPatch) -> None:
    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), NotFound) as server:
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(datasets.config, "HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert hub_unavailable_reason(timeout=2) is None
        thread.join(timeout=5)


def test_hub_offline_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert hub_unavailable_reason() == "offline mode is on (HF_HUB_OFFLINE=1)"


# --- the same hub loading code on a local dataset directory ---------------------------------------------------------


def write_binary_parquet_dataset(tmp_path: Path) -> Path:
    """Parquet files named after their splits, as on the hub: a ClassLabel, a few unlabelled rows, a hidden test."""
    directory = tmp_path / "binary"
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
            "idx": datasets.Value("int32"),
        }
    )
    sizes = {"train": 60, "validation": 20, "test": 10}
    for split, size in sizes.items():
        labels = [-1] * size if split == "test" else [i % 2 for i in range(size)]
        if split == "train":
            labels[:4] = [-1] * 4  # unlabelled rows inside a labelled split
        rows = {"sentence": [f"{split} sentence {i}" for i in range(size)], "label": labels, "idx": list(range(size))}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(directory / f"{split}.parquet")
    return directory


def local_binary_task(directory: Path) -> type[HubTask]:
    class LocalBinaryTask(HubTask):
        name = "local_binary"
        requires_network = False
        dataset = str(directory)
        revision = None
        columns = {"sentence": "text"}
        metadata = BINARY

    return LocalBinaryTask


def test_local_hub_dataset_through_hub_task(
    tmp_path: Path, datasets_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_binary_parquet_dataset(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # a local directory needs no hub
    task = local_binary_task(directory)()

    frame = task.read()
    assert len(frame) == 60 - 4 + 20  # the hidden test split and the unlabelled rows are left out
    assert not frame["text"].str.startswith("test").any()
    assert set(frame["label"]) == {"neg", "pos"}
    assert frame.loc[frame["text"] == "train sentence 5", "label"].item() == "pos"

    dataset = task.load()
    assert list(dataset) == list(SPLITS)
    assert total_rows(dataset) == 76
    assert dataset["train"].features["label"] == datasets.ClassLabel(names=["neg", "pos"])
    assert set(dataset["train"].column_names) == {"text", "label"}
    texts = [set(dataset[split]["text"]) for split in SPLITS]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])


def test_hub_task_splits_and_label_names_are_checked(tmp_path: Path, datasets_cache: Path) -> None:
    base = local_binary_task(write_binary_parquet_dataset(tmp_path))

    class OnlyTrain(base):
        splits = ("train",)

    assert len(OnlyTrain().read()) == 56

    class MissingSplit(base):
        splits = ("train", "dev")

    with pytest.raises(ValueError, match="no split 'dev'.*'validation'"):
        MissingSplit().read()

    class OtherNames(base):
        metadata = TaskMetadata(**{**BINARY.__dict__, "label_names": ("pos", "neg")})

    with pytest.raises(ValueError, match=r"names its classes \['neg', 'pos'\]"):
        OtherNames().read()

    class NoColumnMap(base):
        columns = {}

    with pytest.raises(ValueError, match="no column 'text'.*'sentence'"):
        NoColumnMap().read()


def test_local_csv_pairs_through_hub_task(tmp_path: Path, datasets_cache: Path) -> None:
    directory = tmp_path / "pairs"
    directory.mkdir()
    for split, size in {"train": 80, "validation": 20}.items():
        pd.DataFrame(
            {
                "s1": [f"{split} first {i}" for i in range(size)],
                "s2": [f"{split} second {i}" for i in range(size)],
                "score": [i / 20 for i in range(size)],
            }
        ).to_csv(directory / f"{split}.csv", index=False)
    pd.DataFrame({"s1": ["a"], "s2": ["b"]}).to_csv(directory / "test.csv", index=False)  # no label column

    class LocalPairsTask(HubTask):
        name = "local_pairs"
        requires_network = False
        dataset = str(directory)
        revision = None
        columns = {"s1": "sentence1", "s2": "sentence2", "score": "label"}
        metadata = PAIRS

    dataset = LocalPairsTask().load()
    assert total_rows(dataset) == 100
    assert dataset["test"].column_names == ["sentence1", "sentence2", "label"]
    assert dataset["test"].features["label"] == datasets.Value("float32")


# --- your own CSV / JSON Lines file ---------------------------------------------------------------------------------


def test_file_task_csv_classification_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [(f"review {i}", ("neg", "pos")[i % 2]) for i in range(40)] + [("review 0", "neg")]
    pd.DataFrame(rows, columns=["review", "sentiment"]).to_csv(tmp_path / "reviews.csv", index=False)
    monkeypatch.chdir(tmp_path)

    class ReviewsTask(FileTask):
        name = "reviews"
        path = "reviews.csv"  # relative: resolved against the current directory
        columns = {"review": "text", "sentiment": "label"}
        metadata = BINARY

    dataset = ReviewsTask().load()
    assert total_rows(dataset) == 40  # the duplicate is cleaned away
    assert dataset["train"].features["label"].names == ["neg", "pos"]
    assert {name: len(dataset[name]) for name in SPLITS} == {"train": 28, "validation": 6, "test": 6}


def test_file_task_numeric_class_names(tmp_path: Path) -> None:
    pd.DataFrame({"text": [f"t{i}" for i in range(50)], "label": [1 + i % 5 for i in range(50)]}).to_csv(
        tmp_path / "stars.csv.gz", index=False
    )

    class StarsTask(FileTask):
        name = "stars"
        path = tmp_path / "stars.csv.gz"
        metadata = TaskMetadata(**{**BINARY.__dict__, "label_names": ("1", "2", "3", "4", "5")})

    assert StarsTask().read()["label"].tolist()[:6] == ["1", "2", "3", "4", "5", "1"]
    assert total_rows(StarsTask().load()) == 50


def test_file_task_jsonl_regression(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    lines = [{"sentence1": f"a {i}", "sentence2": f"b {i}", "label": i / 10} for i in range(100)]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))

    class PairsTask(FileTask):
        name = "pairs"
        path = str(tmp_path / "pairs.jsonl")
        metadata = PAIRS

    dataset = PairsTask().load()
    assert total_rows(dataset) == 100
    assert dataset["train"].features["label"] == datasets.Value("float32")
    assert sorted(label for split in SPLITS for label in dataset[split]["label"])[-1] == pytest.approx(9.9)


def test_file_task_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    class MissingTask(FileTask):
        name = "my_missing"
        path = "data/nope.csv"
        metadata = BINARY

    with pytest.raises(FileNotFoundError, match="'my_missing'.*'data/nope.csv'") as error:
        MissingTask().load()
    assert str(tmp_path / "data" / "nope.csv") in str(error.value)

    (tmp_path / "data.parquet").write_bytes(b"")

    class WrongSuffix(MissingTask):
        path = "data.parquet"

    with pytest.raises(ValueError, match="not .csv, .tsv, .jsonl or .json"):
        WrongSuffix().load()

    pd.DataFrame({"review": ["a", "b"], "label": ["neg", "pos"]}).to_csv(tmp_path / "bad.csv", index=False)

    class MissingColumn(MissingTask):
        path = "bad.csv"

    with pytest.raises(ValueError, match="'my_missing'.*no column 'text'.*'review'"):
        MissingColumn().load()


@pytest.mark.parametrize(
    ("rows", "problem"),
    [
        ([("good", "pos"), (" ", "neg")], r"line 3: empty text in column 'text'"),
        ([("good", "pos"), ("fine", None)], r"line 3: missing label"),
        ([("good", "pos"), ("fine", "neg"), ("odd", "neutral")], r"line 4: label 'neutral' is not one of 'neg', 'pos'"),
        ([("", "pos"), ("odd", "neutral")], r"line 2: empty text .*\(2 rows have problems; the first is shown\)"),
    ],
)
def test_file_task_bad_rows_name_the_task_line_and_value(tmp_path: Path, rows, problem) -> None:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "bad.csv", index=False)

    class BadRowsTask(FileTask):
        name = "my_reviews"
        path = tmp_path / "bad.csv"
        metadata = BINARY

    with pytest.raises(ValueError, match=r"Task 'my_reviews': .*bad.csv " + problem):
        BadRowsTask().load()


def test_file_task_non_numeric_regression_label(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text(
        '{"sentence1": "a", "sentence2": "b", "label": 0.5}\n{"sentence1": "c", "sentence2": "d", "label": "high"}\n'
    )

    class PairsTask(FileTask):
        name = "pairs"
        path = tmp_path / "pairs.jsonl"
        metadata = PAIRS

    with pytest.raises(ValueError, match=r"pairs.jsonl line 2: label 'high' is not a number"):
        PairsTask().load()


# --- a user file that cannot make a task: refused before training, naming the task, the file, the line and the fix -


def my_reviews(path: Path, metadata: TaskMetadata = BINARY, **attributes) -> type[FileTask]:
    return type("MyReviewsTask", (FileTask,), {"name": "my_reviews", "path": path, "metadata": metadata, **attributes})


NEEDS_7_PER_CLASS = r"the stratified 70/15/15 train/validation/test split needs at least 7 examples of every class"


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.csv", b"", r"line 1: the file is empty\. Write a header line naming the columns \('text,label'\)"),
        ("blank.csv", b"\n\n", r"line 1: the file is empty\. Write a header line"),
        ("header.csv", b"text,label\n", r"line 2: no example after the header line\. Add one example per line"),
        ("empty.jsonl", b"", r"line 1: no JSON object in the file\. Write one JSON object per line with the keys"),
    ],
)
def test_file_task_without_examples(tmp_path: Path, name: str, content: bytes, problem: str) -> None:
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"Task 'my_reviews': .*{name} {problem}.*; {NEEDS_7_PER_CLASS}"):
        my_reviews(tmp_path / name)().load()


@pytest.mark.parametrize(("name", "line"), [("reviews.csv", 4), ("reviews.csv.gz", 4), ("reviews.jsonl", 3)])
def test_file_task_not_utf8_names_the_line_and_the_fix(tmp_path: Path, name: str, line: int) -> None:
    frame = pd.DataFrame({"text": ["good film", "bad film", "café crème"], "label": ["pos", "neg", "pos"]})
    if name.endswith(".jsonl"):
        frame.to_json(tmp_path / name, orient="records", lines=True, force_ascii=False)
        (tmp_path / name).write_bytes((tmp_path / name).read_text(encoding="utf-8").encode("latin-1"))
    else:
        frame.to_csv(tmp_path / name, index=False, encoding="latin-1")
    problem = rf"{name} line {line} is not valid utf-8 \(.*b'\\xe9'\)\. Save the file as UTF-8, or set `encoding ="
    with pytest.raises(ValueError, match=rf"Task 'my_reviews': .*{problem} 'latin-1'`"):
        my_reviews(tmp_path / name)().read()
    assert my_reviews(tmp_path / name, encoding="latin-1")().read()["text"].tolist()[2] == "café crème"


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("inf", "label 'inf' is not a finite number"),
        ("-Infinity", "label '-Infinity' is not a finite number"),
        ("NAN", "label 'NAN' is not a finite number"),
        ("1e300", "label '1e300' is not a finite number"),  # beyond float32, where targets are stored
        ("nan", "missing label"),  # pandas reads 'nan' as a missing value
    ],
)
def test_file_task_regression_target_must_be_finite(tmp_path: Path, target: str, problem: str) -> None:
    (tmp_path / "scores.csv").write_text(f"text,label\ngood,0.5\nodd,{target}\nfine,1.0\n")
    regression = TaskMetadata(**{**PAIRS.__dict__, "text_fields": ("text",)})
    with pytest.raises(ValueError, match=rf"Task 'my_reviews': .*scores.csv line 3: {problem}\. Fix or remove the row"):
        my_reviews(tmp_path / "scores.csv", regression)().load()


def test_task_cleaning_refuses_an_infinite_regression_target() -> None:
    class InMemory(Task):
        name = "in_memory"
        metadata = TaskMetadata(**{**PAIRS.__dict__, "text_fields": ("text",)})

        def read(self) -> pd.DataFrame:
            return pd.DataFrame({"text": [f"t{i}" for i in range(40)], "label": [1.0] * 39 + [math.inf]})

    with pytest.raises(ValueError, match=r"Task 'in_memory' \(tmp files\): 1 regression target.*not finite.*'t39'"):
        InMemory().load()


def test_file_task_too_few_examples_per_class_names_the_short_classes(tmp_path: Path) -> None:
    rows = [(f"good {i}", "pos") for i in range(20)] + [(f"bad {i}", "neg") for i in range(3)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "few.csv", index=False)
    three = TaskMetadata(**{**BINARY.__dict__, "label_names": ("neg", "neutral", "pos")})
    message = (
        rf"Task 'my_reviews' \(.*few.csv\): too few examples after cleaning \(23 in all; 'neg' has 3, 'neutral' has "
        rf"0\); {NEEDS_7_PER_CLASS}: add examples of these classes, or remove the classes from the data and from "
        "label_names"
    )
    with pytest.raises(ValueError, match=message):
        my_reviews(tmp_path / "few.csv", three)().load()


def test_seven_examples_per_class_are_enough_for_every_split(tmp_path: Path) -> None:
    rows = [(f"good {i}", "pos") for i in range(7)] + [(f"bad {i}", "neg") for i in range(7)]
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(tmp_path / "seven.csv", index=False)
    dataset = my_reviews(tmp_path / "seven.csv")().load()
    assert all(sorted(set(dataset[split]["label"])) == [0, 1] for split in SPLITS)


def test_file_task_too_few_regression_examples(tmp_path: Path) -> None:
    (tmp_path / "six.jsonl").write_text("".join(f'{{"text": "t{i}", "label": {i}}}\n' for i in range(6)))
    regression = TaskMetadata(**{**PAIRS.__dict__, "text_fields": ("text",)})
    with pytest.raises(ValueError, match=r"too few examples after cleaning \(6 in all\); .* at least 7 examples of"):
        my_reviews(tmp_path / "six.jsonl", regression)().load()


def test_a_bad_user_file_stops_the_command_before_any_training(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import runner
    from bench.cli import main
    from bench.registry import TASKS

    (tmp_path / "header.csv").write_text("text,label\n")
    TASKS.names()  # discover the plug-ins first, then add this one
    monkeypatch.setitem(TASKS._items, "my_reviews", my_reviews(tmp_path / "header.csv"))

    def must_not_run(*args, **kwargs):
        raise AssertionError("a run started before the data were checked")

    monkeypatch.setattr(runner, "run_cell", must_not_run)
    out = tmp_path / "out"
    command = ["run", "--tasks", "my_reviews", "--losses", "cross_entropy", "--seeds", "0", "--out", str(out)]
    assert main([*command, "--model", str(tiny_model_dir)]) == 2
    message = capsys.readouterr().err
    assert f"lossbench: error: Task 'my_reviews': {tmp_path / 'header.csv'} line 2: no example" in message
    assert not (out / "runs.csv").exists()
