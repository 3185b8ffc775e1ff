"""Two generic task sources: ``HubTask`` (a Hugging Face hub dataset at a pinned revision, or a local dataset
directory) and ``FileTask`` (your own CSV or JSON Lines file). Task modules import them through ``tasks.base``.
"""

from __future__ import annotations

import functools
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pandas as pd

from bench.api.task import F32_MAX, Task

if TYPE_CHECKING:  # imported where used, so that listing tasks and checking names stay fast
    import datasets


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
