"""The generated parts of the docs: the loss table in docs/losses.md and the task table in docs/tasks.md, written from
the registries by ``make docs`` and checked by a test; and docs/report.md's how-to-read text, the report's own
(``bench.report_guide``).

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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.plugins import loss_defaults
from bench.registry import LOSSES, TASKS, Registry

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def doc_pages() -> list[Path]:
    """README.md and every page of docs/: the files whose links and commands the tests check."""
    return [README, *sorted(DOCS.glob("*.md"))]


def region_markers(marker: str) -> tuple[str, str]:
    """The comments that open and close a generated region: ``<!-- {marker}:start -->``, ``<!-- {marker}:end -->``."""
    return f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"


def region(text: str, marker: str) -> str:
    """What lies between the markers of a generated region of ``text``."""
    start, end = region_markers(marker)
    return text.split(start, 1)[1].split(end, 1)[0]


def with_region(text: str, marker: str, body: str) -> str:
    """``text`` with its generated region ``marker`` holding ``body``, on lines of their own between the markers."""
    start, end = region_markers(marker)
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{body}\n{end}{after}"


@dataclass(frozen=True)
class Table:
    """A generated table, one row per plug-in, in the region ``marker`` of the page ``page`` (relative to ROOT)."""

    marker: str
    page: str
    registry: Registry
    header: tuple[str, ...]
    row: Callable[[str], tuple[str, ...]]

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
    Table(
        "loss-table",
        "docs/losses.md",
        LOSSES,
        ("loss", "problem types", "parameters (defaults)", "formula", "reference"),
        loss_row,
    ),
    Table(
        "task-table",
        "docs/tasks.md",
        TASKS,
        ("task", "type", "main metric", "version", "default matrix", "source", "description"),
        task_row,
    ),
)


def all_names(registry: Registry) -> list[str]:
    return registry.names()


def with_tables(text: str, page: str, names: Callable[[Registry], list[str]] = all_names) -> str:
    """``text``, the page ``page``, with each of its tables regenerated, listing ``names(registry)`` (default: every
    registered plug-in)."""
    for table in TABLES:
        if table.page == page:
            text = with_region(text, table.marker, table.render(names(table.registry)))
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


def table_pages() -> list[str]:
    """The pages that hold generated tables, relative to ROOT, in the order of TABLES."""
    return list(dict.fromkeys(table.page for table in TABLES))


def stale_tables(texts: Mapping[str, str] | None = None) -> list[str]:
    """The markers of the tables that do not list exactly the shipped plug-ins as ``make docs`` writes them, read
    from ``texts`` (page -> text; default: the pages on disk). Rows of a user's own plug-ins (modules git does not
    track) are ignored, whether ``make docs`` has listed them or not."""
    if texts is None:
        texts = {page: (ROOT / page).read_text() for page in table_pages()}
    user_names = [name for table in TABLES for name in table.registry.names() if not is_shipped(table.registry, name)]
    stale = []
    for table in TABLES:
        text = texts[table.page]
        expected = with_tables(text, table.page, shipped_names)
        if region(expected, table.marker) != region(_without_rows(text, user_names), table.marker):
            stale.append(table.marker)
    return stale


REPORT_PAGE = "docs/report.md"
HOW_TO_READ_MARKER = "how-to-read"  # its region holds the text under "How to read this report" in every REPORT.md


def with_report_guide(text: str) -> str:
    """``text``, the page docs/report.md, with its how-to-read region holding the report's own text
    (``bench.report_guide.GUIDE``: ``HOW_TO_READ`` and ``SELECTION_GUIDE``), so that the page and every report say
    the same."""
    from bench.report_guide import GUIDE  # loads the statistics stack (scipy, evaluate): only for this page

    return with_region(text, HOW_TO_READ_MARKER, GUIDE)


def main() -> int:
    for page in table_pages():
        path = ROOT / page
        text = path.read_text()
        updated = with_tables(text, page)
        if updated != text:
            path.write_text(updated)
            print(f"Updated the generated tables in {path}")
    path = ROOT / REPORT_PAGE
    text = path.read_text()
    updated = with_report_guide(text)
    if updated != text:
        path.write_text(updated)
        print(f"Updated the report's how-to-read text in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
