"""Task contract suite over every registered task (real packaged data, ~1 s each), plus clean/split on a tiny task.

Tasks that declare ``requires_network`` (hub datasets) are skipped, with the reason, when the hub cannot be used.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections import Counter
from typing import ClassVar

import datasets
import pandas as pd
import pytest

from bench.metric_table import HIGHER_IS_BETTER
from bench.plugins import get_task
from bench.registry import LOSSES, TASKS
from tasks._packaged import read_trec_questions
from tasks.base import SPLITS, HubTask, Task, TaskMetadata, hub_unavailable_reason
from tasks.trec_fine import MIN_QUESTIONS_PER_CLASS

TASK_NAMES = TASKS.names()
CLASSIFICATION_TASKS = [name for name in TASK_NAMES if get_task(name).metadata.problem_type == "classification"]
REGRESSION_TASKS = [name for name in TASK_NAMES if get_task(name).metadata.problem_type == "regression"]
HUB_TASKS = [name for name in TASK_NAMES if isinstance(get_task(name), HubTask)]
MAX_PROPORTION_GAP = 0.02


@functools.cache
def hub_reason() -> str | None:
    return hub_unavailable_reason()


def load(name: str) -> datasets.DatasetDict:
    """The task's splits, loaded once; a task that needs the hub is skipped when the hub cannot be used."""
    if get_task(name).requires_network and hub_reason():
        pytest.skip(f"{name} needs the Hugging Face hub: {hub_reason()}")
    return _load(name)


@functools.cache
def _load(name: str) -> datasets.DatasetDict:
    return get_task(name).load()


def all_texts(dataset: datasets.Dataset, text_fields: tuple[str, ...]) -> list[str]:
    return ["\x1f".join(row) for row in zip(*(dataset[field] for field in text_fields), strict=True)]


# --- contract: every registered task --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASK_NAMES)
def test_metadata(name: str) -> None:
    task = get_task(name)
    meta = task.metadata
    assert isinstance(task, Task)
    assert task.name == name
    assert meta.problem_type in {"classification", "regression"}
    assert meta.main_metric in HIGHER_IS_BETTER
    assert meta.higher_is_better == HIGHER_IS_BETTER[meta.main_metric]
    assert meta.source.strip() and meta.version.strip() and meta.description.strip()
    assert isinstance(task.requires_network, bool)
    baseline = LOSSES.get(meta.baseline_loss)  # the loss every other loss is compared with: registered, and it fits
    assert baseline.supports(meta.problem_type), f"baseline {meta.baseline_loss} does not support {meta.problem_type}"
    if meta.problem_type == "classification":
        assert meta.num_labels >= 2
        assert len(set(meta.label_names)) == meta.num_labels
    else:
        assert meta.num_labels == 1


@pytest.mark.parametrize("name", TASK_NAMES)
def test_splits(name: str) -> None:
    dataset = load(name)
    assert list(dataset) == list(SPLITS)
    assert all(len(dataset[split]) > 0 for split in SPLITS)


@pytest.mark.parametrize("name", TASK_NAMES)
def test_splits_disjoint(name: str) -> None:
    fields = get_task(name).metadata.text_fields
    texts = {split: set(all_texts(load(name)[split], fields)) for split in SPLITS}
    for i, first in enumerate(SPLITS):
        for second in SPLITS[i + 1 :]:
            assert not texts[first] & texts[second], f"{first} and {second} share texts"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_no_duplicate_texts(name: str) -> None:
    fields = get_task(name).metadata.text_fields
    texts = [text for split in SPLITS for text in all_texts(load(name)[split], fields)]
    duplicates = [text for text, count in Counter(texts).items() if count > 1]
    assert not duplicates, f"{len(duplicates)} duplicate texts, e.g. {duplicates[:3]}"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_no_empty_texts(name: str) -> None:
    for field in get_task(name).metadata.text_fields:
        for split in SPLITS:
            assert all(text.strip() for text in load(name)[split][field]), f"empty {field} in {split}"


@pytest.mark.parametrize("name", TASK_NAMES)
def test_deterministic(name: str) -> None:
    first, second = load(name), get_task(name).load()
    for split in SPLITS:
        assert first[split].features == second[split].features
        assert first[split].to_dict() == second[split].to_dict()


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_classification_labels(name: str) -> None:
    meta = get_task(name).metadata
    for split in SPLITS:
        feature = load(name)[split].features["label"]
        assert isinstance(feature, datasets.ClassLabel)
        assert feature.num_classes == meta.num_labels
        assert feature.names == list(meta.label_names)
        assert all(0 <= label < meta.num_labels for label in load(name)[split]["label"])


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_every_class_in_every_split(name: str) -> None:
    num_labels = get_task(name).metadata.num_labels
    for split in SPLITS:
        assert set(load(name)[split]["label"]) == set(range(num_labels)), split


@pytest.mark.parametrize("name", CLASSIFICATION_TASKS)
def test_stratified(name: str) -> None:
    num_labels = get_task(name).metadata.num_labels

    def proportions(split: str) -> list[float]:
        counts = Counter(load(name)[split]["label"])
        return [counts[label] / len(load(name)[split]) for label in range(num_labels)]

    train = proportions("train")
    for split in ("validation", "test"):
        gaps = [abs(a - b) for a, b in zip(train, proportions(split), strict=True)]
        assert max(gaps) <= MAX_PROPORTION_GAP, f"train vs {split}: {gaps}"


@pytest.mark.parametrize("name", REGRESSION_TASKS)
def test_regression_labels(name: str) -> None:
    for split in SPLITS:
        dataset = load(name)[split]
        assert dataset.features["label"] == datasets.Value("float32")
        assert all(math.isfinite(label) for label in dataset["label"])


# --- task-specific checks -------------------------------------------------------------------------------------------


def test_sms_spam_no_merged_messages() -> None:
    texts = [text for split in SPLITS for text in load("sms_spam")[split]["text"]]
    assert max(map(len, texts)) <= 1000
    assert not [text for text in texts if "\nham\t" in text]


def test_trec_labels() -> None:
    meta = get_task("trec").metadata
    assert meta.num_labels == 6
    counts = Counter(label for split in SPLITS for label in load("trec")[split]["label"])
    assert min(counts, key=counts.__getitem__) == meta.label_names.index("ABBR")


@pytest.mark.parametrize("name", HUB_TASKS)
def test_hub_task_pins_its_revision(name: str) -> None:
    task = get_task(name)
    assert task.requires_network
    assert re.fullmatch(r"[0-9a-f]{40}", task.revision), "pin a commit sha, not a branch or tag"
    assert task.dataset in task.metadata.source and task.revision in task.metadata.source


def test_trec_fine_labels_match_the_data() -> None:
    frame = read_trec_questions()
    counts = frame.assign(text=frame["text"].str.strip()).drop_duplicates()["label"].value_counts()
    kept = sorted(counts.index[counts >= MIN_QUESTIONS_PER_CLASS])
    meta = get_task("trec_fine").metadata
    assert list(meta.label_names) == kept
    assert meta.num_labels == 35 and len(counts) == 50
    assert f"{meta.num_labels} fine classes" in meta.description


def test_trec_fine_long_tail() -> None:
    counts = Counter(label for split in SPLITS for label in load("trec_fine")[split]["label"])
    assert max(counts.values()) >= 40 * min(counts.values())
    held_out = [Counter(load("trec_fine")[split]["label"]) for split in ("validation", "test")]
    assert all(min(split_counts.values()) >= 3 for split_counts in held_out)


def test_rt_polarity_full_contains_rt_polarity() -> None:
    def texts(name: str) -> set[str]:
        return {text for split in SPLITS for text in load(name)[split]["text"]}

    assert texts("rt_polarity") < texts("rt_polarity_full")
    assert len(texts("rt_polarity_full")) > 12_000


@pytest.mark.parametrize("name", TASKS.names("vader_*"))
def test_vader_label_range(name: str) -> None:
    labels = [label for split in SPLITS for label in load(name)[split]["label"]]
    assert -4 <= min(labels) and max(labels) <= 4


# --- clean/split on a tiny in-memory task (not registered) ----------------------------------------------------------


class TinyTask(Task):
    name = "tiny"
    metadata = TaskMetadata(
        problem_type="classification",
        label_names=("neg", "pos"),
        main_metric="accuracy",
        higher_is_better=True,
        source="in-memory",
        version="0",
        description="A tiny in-memory task for tests.",
    )
    rows: ClassVar[list[tuple[object, object]]] = [(f"text {i}", ("neg", "pos")[i % 2]) for i in range(40)]

    def read(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["text", "label"])


class TinyRegressionTask(TinyTask):
    name = "tiny_regression"
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="pearson",
        higher_is_better=True,
        source="in-memory",
        version="0",
        description="A tiny in-memory regression task for tests.",
    )
    rows: ClassVar[list[tuple[object, object]]] = [(f"text {i}", float(i)) for i in range(100)]


def clean(task: Task, rows: list[tuple[object, object]]) -> pd.DataFrame:
    return task.clean(pd.DataFrame(rows, columns=["text", "label"]))


def test_tiny_not_registered() -> None:
    assert "tiny" not in TASKS.names()


def test_clean_removes_duplicates() -> None:
    frame = clean(TinyTask(), [("a", "pos"), ("a", "pos"), ("  a ", "pos"), ("b", "neg")])
    assert frame["text"].tolist() == ["a", "b"]
    assert frame["label"].tolist() == ["pos", "neg"]


def test_clean_drops_conflicting_labels() -> None:
    frame = clean(TinyTask(), [("a", "pos"), ("b", "neg"), ("a", "neg"), ("a ", "pos")])
    assert frame["text"].tolist() == ["b"]


def test_clean_drops_empty_and_missing() -> None:
    frame = clean(TinyTask(), [("  ", "pos"), ("", "neg"), ("\t\n", "pos"), (None, "pos"), ("x", None), ("ok", "neg")])
    assert frame["text"].tolist() == ["ok"]


def test_clean_unknown_label_raises() -> None:
    with pytest.raises(ValueError, match="maybe"):
        clean(TinyTask(), [("a", "pos"), ("b", "maybe")])


def test_clean_regression_keeps_first_copy() -> None:
    frame = clean(TinyRegressionTask(), [("a", 1.0), ("b", 2.0), ("a", 3.0)])
    assert frame["text"].tolist() == ["a", "b"]
    assert frame["label"].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("task_class", [TinyTask, TinyRegressionTask], ids=["classification", "regression"])
def test_tiny_load(task_class: type[TinyTask]) -> None:
    dataset = task_class().load()
    total = len(task_class.rows)
    assert list(dataset) == list(SPLITS)
    sizes = [len(dataset[split]) for split in SPLITS]
    assert sum(sizes) == total
    assert sizes[0] > sizes[1] > 0 and sizes[2] > 0
    texts = [set(dataset[split]["text"]) for split in SPLITS]
    assert sum(map(len, texts)) == len(set().union(*texts)) == total
    assert dataset["train"].to_dict() == task_class().load()["train"].to_dict()


def test_tiny_split_stratified() -> None:
    dataset = TinyTask().load()
    for split in SPLITS:
        counts = Counter(dataset[split]["label"])
        assert abs(counts[0] - counts[1]) <= 1, split


def test_the_baseline_loss_defaults_by_problem_type_and_can_be_declared() -> None:
    assert TinyTask.metadata.baseline_loss == "cross_entropy"
    assert TinyRegressionTask.metadata.baseline_loss == "mse"
    declared = dataclasses.replace(TinyTask.metadata, baseline_loss="focal")
    assert declared.baseline_loss == "focal"
    assert dataclasses.replace(declared, problem_type="regression").baseline_loss == "focal"  # declared: kept


def test_the_plugin_api_lives_in_the_core_and_base_modules_re_export_it() -> None:
    """Plug-ins keep importing from ``tasks.base`` / ``losses.base``; the classes are the core's own."""
    from bench.api import loss as core_loss
    from bench.api import task as core_task
    from bench.api import task_sources
    from losses import base as losses_base
    from tasks import base as tasks_base

    assert tasks_base.Task is core_task.Task and tasks_base.TaskMetadata is core_task.TaskMetadata
    assert tasks_base.FileTask is task_sources.FileTask and tasks_base.HubTask is task_sources.HubTask
    assert losses_base.Loss is core_loss.Loss and losses_base.upcast is core_loss.upcast
    for module in (tasks_base, losses_base):
        assert set(module.__all__) <= set(vars(module)), module.__name__
