"""What computed a run: a fingerprint of the code and data behind each row of ``runs.csv``.

A row's ``run_id`` names its cell of the matrix (task, task version, loss, parameters, seed, settings), and stays the
same when the code changes. Beside it, the row records a ``fingerprint`` of what computed it, made of four parts
(``fingerprint_parts``, JSON of each part's short hash, says which part changed):

- ``loss``: the loss class's module, the modules of its plug-in base classes and of the code it wraps (an adapter's
  module or function), and the helper modules of its plug-in package that these import;
- ``task``: the same for the task class (e.g. ``tasks/trec.py`` and ``tasks/_packaged.py``);
- ``data``: the task's loaded, cleaned splits (texts and labels), so a changed data file or package counts too;
- ``core``: the code that computes every run, ``CORE_CODE``.

Python sources are compared by their syntax tree with docstrings removed, so editing a comment, a docstring or the
layout keeps results current, while any change to the code makes them stale. A row whose fingerprint is not the
current one is stale: ``lossbench run`` runs it again (the new row replaces it) and ``lossbench report`` flags it.
Rows written before fingerprints existed count as stale. Hashes are memoised per process: the code and data a process
loaded are the ones it runs.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.data import loaded_task
from bench.registry import LOSSES, TASKS
from bench.status import Status
from bench.taskspec import TaskSpec

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent  # the folder that holds bench/, losses/ and tasks/
# The code that computes a run, relative to ROOT (glob patterns allowed): data preparation (data, splits, stressors),
# the fit step and the trainer, checkpoint selection, fine-tuning at every depth (its states cache),
# metrics, model loading, the plug-in API and the adapters.
# Orchestration that does not change a number (the driver, matrix, rows, executors, results, report, CLI) is left
# out, so editing it keeps results current.
CORE_CODE = (
    "bench/adapters.py",
    "bench/cache.py",
    "bench/api/*.py",
    "bench/checkpoint.py",
    "bench/collapse.py",
    "bench/data.py",
    "bench/depth.py",
    "bench/evaluate_metrics/*/*.py",
    "bench/finetune.py",
    "bench/fit.py",
    "bench/metrics.py",
    "bench/models.py",
    "bench/plugins.py",
    "bench/splits.py",
    "bench/stressors.py",
    "bench/trainer.py",
    "losses/base.py",
    "tasks/base.py",
)
PLUGIN_PACKAGES = ("losses", "tasks")
PARTS = ("loss", "task", "data", "core")
UNRECORDED = "unrecorded"  # a row written before fingerprints existed
PART_HASH_CHARS = 12
FINGERPRINT_CHARS = 16


@dataclass(frozen=True)
class Fingerprint:
    """The parts' short hashes (``data`` is None when the task's data cannot be loaded now, e.g. a hub dataset
    offline) and the hash of them all."""

    parts: Mapping[str, str | None]

    @property
    def value(self) -> str:
        return hashlib.sha256(json.dumps(dict(self.parts), sort_keys=True).encode()).hexdigest()[:FINGERPRINT_CHARS]

    def columns(self) -> dict[str, str]:
        """The row's ``fingerprint`` and ``fingerprint_parts`` columns."""
        return {"fingerprint": self.value, "fingerprint_parts": json.dumps(dict(self.parts), sort_keys=True)}


def fingerprint(task: str, loss: str) -> Fingerprint:
    """The current fingerprint of a (task spec, loss name) pair's runs; the seed, parameters and stressors do not
    enter it (they are in the run's identity)."""
    base = TaskSpec.parse(task).base
    return Fingerprint({"loss": loss_hash(loss), "task": task_hash(base), "data": data_hash(base), "core": core_hash()})


def changed_parts(row: Mapping[str, Any], current: Fingerprint) -> list[str]:
    """The parts of ``current`` that differ from those that computed ``row`` (``[UNRECORDED]`` for a row without a
    fingerprint); empty when the row is current. A part unknown now (None) is not counted as a change."""
    if not recorded(row):
        return [UNRECORDED]
    if row["fingerprint"] == current.value:
        return []
    try:
        parts = json.loads(row.get("fingerprint_parts") or "")
    except (TypeError, ValueError):
        return [UNRECORDED]
    if not isinstance(parts, dict):
        return [UNRECORDED]
    return [part for part in PARTS if current.parts.get(part) is not None and parts.get(part) != current.parts[part]]


def recorded(row: Mapping[str, Any]) -> bool:
    """Whether a row has a fingerprint (rows written before fingerprints existed do not)."""
    value = row.get("fingerprint")
    return isinstance(value, str) and bool(value)


def describe_changes(changes: Iterable[tuple[str, str, list[str]]]) -> str:
    """What changed, from ``(task, loss, changed parts)`` of stale rows: ``loss code changed: focal; core code
    changed``."""
    names: dict[str, set[str]] = {}
    for task, loss, parts in changes:
        for part in parts:
            names.setdefault(part, set()).add(loss if part == "loss" else task.split("@")[0])
    words = {
        "loss": "loss code changed",
        "task": "task code changed",
        "data": "task data changed",
        "core": "core code changed",
        UNRECORDED: "written before fingerprints",
    }
    described = []
    for part in (*PARTS, UNRECORDED):
        if part in names:
            listed = part in ("loss", "task", "data")
            described.append(words[part] + (f": {', '.join(sorted(names[part]))}" if listed else ""))
    return "; ".join(described)


# --- the parts ------------------------------------------------------------------------------------------------------


@cache
def core_hash() -> str:
    """The hash of ``CORE_CODE``."""
    return _files_hash(path for pattern in CORE_CODE for path in ROOT.glob(pattern))


@cache
def loss_hash(name: str) -> str:
    """The hash of a registered loss's own code (``plugin_files``)."""
    from bench.api.loss import Loss

    return _files_hash(plugin_files(LOSSES.get(name), Loss))


@cache
def task_hash(name: str) -> str:
    """The hash of a registered task's own code (``plugin_files``)."""
    from bench.api.task import Task

    return _files_hash(plugin_files(TASKS.get(name), Task))


@cache
def data_hash(name: str) -> str | None:
    """The hash of a task's cleaned splits (split names, columns, every text and label); None when the data cannot be
    fetched now (a hub dataset offline), so that it is not counted as changed."""
    import pandas as pd

    try:
        splits = loaded_task(name)
    except ConnectionError:  # bench.api.task_sources.DatasetUnavailableError
        return None
    digest = hashlib.sha256()
    for split in sorted(splits):
        frame = splits[split].to_pandas()
        digest.update(json.dumps([split, list(frame.columns), len(frame)]).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:PART_HASH_CHARS]


def plugin_files(plugin: type, base: type) -> list[Path]:
    """The files that define a plug-in class beyond the core: the modules of the classes between it and ``base`` in
    its MRO, of the classes and functions those hold as attributes (an adapter's wrapped module or function), and the
    helper modules of the plug-in packages that these import (``tasks/_packaged.py``)."""
    core = {path.resolve() for pattern in CORE_CODE for path in ROOT.glob(pattern)}
    found: set[Path] = set()
    for cls in plugin.__mro__:
        if cls is base or not issubclass(cls, base):
            continue
        held = [value.__func__ if isinstance(value, staticmethod) else value for value in vars(cls).values()]
        for obj in [cls, *(value for value in held if isinstance(value, type) or callable(value))]:
            path = _own_source(obj)
            if path is not None:
                found |= _with_package_imports(path)
    return sorted(found - core)


def _own_source(obj: Any) -> Path | None:
    """The source file of the module that defines ``obj``, unless it is the standard library or an installed
    library (the plug-in packages count as ours wherever they are installed)."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    file = getattr(module, "__file__", None)
    if not file or not file.endswith(".py"):
        return None
    path = Path(file).resolve()
    ours = module.__name__.split(".")[0] in ("bench", *PLUGIN_PACKAGES)
    return path if ours or not _is_library(path) else None


def _is_library(path: Path) -> bool:
    paths = sysconfig.get_paths()
    folders = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib") if key in paths}
    return any(path.is_relative_to(folder) for folder in folders)


def _with_package_imports(path: Path) -> set[Path]:
    """``path`` and, recursively, the modules of the plug-in packages it imports (``from tasks._packaged import``)."""
    found, pending = set(), [path]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.add(current)
        try:
            tree = ast.parse(current.read_bytes())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                if node.module.split(".")[0] in PLUGIN_PACKAGES:
                    spec = importlib.util.find_spec(node.module)
                    if spec is not None and spec.origin and spec.origin.endswith(".py"):
                        pending.append(Path(spec.origin).resolve())
    return found


def _files_hash(paths: Iterable[Path]) -> str:
    """One hash of files, each named by its path under ROOT (else its file name), so a moved checkout keeps it."""
    digest = hashlib.sha256()
    for path in sorted({path.resolve() for path in paths}):
        name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
        digest.update(f"{name}\0{source_hash(path)}\0".encode())
    return digest.hexdigest()[:PART_HASH_CHARS]


@cache
def source_hash(path: Path) -> str:
    """A Python file's syntax tree without docstrings (comments and layout are not in a syntax tree); the raw bytes
    of any other file, or of a file that does not parse."""
    content = path.read_bytes()
    if path.suffix == ".py":
        try:
            content = json.dumps(_canonical(_without_docstrings(ast.parse(content)))).encode()
        except (SyntaxError, ValueError):
            pass
    return hashlib.sha256(content).hexdigest()


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:]
    return tree


def _canonical(node: Any) -> Any:
    """A syntax tree as nested lists, without empty fields (None, []), so that a field a newer Python adds with an
    empty default (``type_params``) does not change it."""
    if isinstance(node, ast.AST):
        fields = {name: _canonical(value) for name, value in ast.iter_fields(node) if value is not None and value != []}
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(item) for item in node]
    return repr(node)


def stale_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (task, loss, what changed): how many of the runs' rows (skipped pairs left out) were computed by other code
    or data than the current ones (``checked`` True), or cannot be checked now, e.g. a loss no longer registered
    (``checked`` False, ``changed`` says why)."""
    import pandas as pd

    current: dict[tuple[str, str], Fingerprint | str] = {}
    found = []
    for row in runs[runs["status"] != Status.SKIPPED].to_dict("records"):
        pair = (str(row["task"]), str(row["loss"]))
        if not recorded(row):
            found.append((*pair, describe_changes([(*pair, [UNRECORDED])]), True))
            continue
        if pair not in current:
            try:
                current[pair] = fingerprint(*pair)
            except Exception as error:  # noqa: BLE001 - a report flags what it cannot check, and goes on
                current[pair] = f"not checked: {type(error).__name__}: {str(error)[:120]}"
        if isinstance(current[pair], str):
            found.append((*pair, current[pair], False))
        elif changes := changed_parts(row, current[pair]):
            found.append((*pair, describe_changes([(*pair, changes)]), True))
    columns = ["task", "loss", "changed", "checked"]
    frame = pd.DataFrame(found, columns=columns)
    return frame.groupby(columns, sort=True).size().rename("rows").reset_index()
