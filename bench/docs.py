"""README's tables of losses and tasks, generated from the registries: ``make docs`` rewrites them, a test checks them.

``make docs`` lists every registered plug-in, a user's dropped-in modules included. The check compares only the
plug-ins shipped with lossbench (the modules git tracks), and ignores the rows of the others, so a user's own loss or
task never makes the default test suite fail.
"""

from __future__ import annotations

import functools
import inspect
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from bench.plugins import loss_defaults
from bench.registry import LOSSES, TASKS, Registry

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


@dataclass(frozen=True)
class Table:
    """A README table between ``<!-- {marker}:start -->`` and ``<!-- {marker}:end -->``, one row per plug-in."""

    marker: str
    registry: Registry
    header: tuple[str, ...]
    row: Callable[[str], tuple[str, ...]]

    @property
    def start(self) -> str:
        return f"<!-- {self.marker}:start -->"

    @property
    def end(self) -> str:
        return f"<!-- {self.marker}:end -->"

    def render(self, names: Iterable[str]) -> str:
        rows = ["| " + " | ".join(cells) + " |" for cells in (self.header, *(self.row(name) for name in names))]
        return "\n".join([rows[0], "|" + "---|" * len(self.header), *rows[1:]])


def formula_and_reference(loss_class: type) -> tuple[str, str]:
    """The docstring's first formula block (indented lines from the first one with '='), on one line, and its
    'Reference:' line."""
    lines = inspect.cleandoc(loss_class.__doc__ or "").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(" ") and "=" in line), len(lines))
    block = []
    for line in lines[start:]:
        if not line.startswith(" "):
            break
        block.append(" ".join(line.split()))
    reference = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("Reference:")), "")
    return "; ".join(block), reference


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def loss_row(name: str) -> tuple[str, ...]:
    loss_class = LOSSES.get(name)
    params = ", ".join(f"`{key}={value}`" for key, value in loss_defaults(loss_class).items())
    formula, reference = formula_and_reference(loss_class)
    types = ", ".join(sorted(loss_class.problem_types))
    return f"`{name}`", types, params, f"`{_cell(formula)}`", _cell(reference)


def task_type(meta) -> str:
    """'binary classification', '6-class classification' or 'regression', and 'sentence pairs' for two texts."""
    if meta.problem_type == "classification":
        kind = "binary classification" if meta.num_labels == 2 else f"{meta.num_labels}-class classification"
    else:
        kind = meta.problem_type
    return kind + (", sentence pairs" if len(meta.text_fields) == 2 else "")


def task_row(name: str) -> tuple[str, ...]:
    task_class = TASKS.get(name)
    meta = task_class.metadata
    metric = f"`{meta.main_metric}` {'↑' if meta.higher_is_better else '↓'}"
    default = "yes" if task_class.in_default_matrix else ""
    return f"`{name}`", task_type(meta), metric, meta.version, default, f"`{meta.source}`", _cell(meta.description)


TABLES = (
    Table("loss-table", LOSSES, ("loss", "problem types", "parameters (defaults)", "formula", "reference"), loss_row),
    Table(
        "task-table",
        TASKS,
        ("task", "type", "main metric", "version", "default matrix", "source", "description"),
        task_row,
    ),
)


def readme_with_tables(text: str, names: Callable[[Registry], list[str]] = lambda registry: registry.names()) -> str:
    """``text`` with every table regenerated, listing ``names(registry)`` (default: every registered plug-in)."""
    for table in TABLES:
        before, rest = text.split(table.start, 1)
        _, after = rest.split(table.end, 1)
        text = f"{before}{table.start}\n{table.render(names(table.registry))}\n{table.end}{after}"
    return text


@functools.cache
def _tracked_files() -> frozenset[str] | None:
    """The files git tracks in this checkout (relative paths), or None outside a git checkout of lossbench."""
    try:
        top = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--show-toplevel"], capture_output=True, text=True)
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
            return None
        listed = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return frozenset(listed.stdout.split("\0")) - {""}


def is_shipped(registry: Registry, name: str) -> bool:
    """Whether the plug-in's module is one git tracks (all are, outside a git checkout)."""
    tracked = _tracked_files()
    if tracked is None:
        return True
    module = Path(*registry.get(name).__module__.split("."))
    return f"{module.as_posix()}.py" in tracked or f"{module.as_posix()}/__init__.py" in tracked


def shipped_names(registry: Registry) -> list[str]:
    return [name for name in registry.names() if is_shipped(registry, name)]


def _without_rows(text: str, names: Iterable[str]) -> str:
    """``text`` less the table rows of ``names`` (a user's plug-ins that ``make docs`` listed)."""
    pattern = "|".join(re.escape(name) for name in names)
    return re.sub(rf"(?m)^\| `(?:{pattern})` \|.*\n", "", text) if pattern else text


def stale_tables(text: str) -> list[str]:
    """The markers of the tables that do not list exactly the shipped plug-ins as ``make docs`` writes them. Rows
    of a user's own plug-ins (modules git does not track) are ignored, whether ``make docs`` has listed them or not."""
    user_names = [name for table in TABLES for name in table.registry.names() if not is_shipped(table.registry, name)]
    expected = readme_with_tables(text, shipped_names)
    actual = _without_rows(text, user_names)
    return [table.marker for table in TABLES if _region(expected, table) != _region(actual, table)]


def _region(text: str, table: Table) -> str:
    return text.split(table.start, 1)[1].split(table.end, 1)[0]


def main() -> int:
    text = README.read_text()
    updated = readme_with_tables(text)
    if updated != text:
        README.write_text(updated)
        print(f"Updated the loss and task tables in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
