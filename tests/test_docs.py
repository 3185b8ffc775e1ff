"""The docs stay true to the code: the loss and task tables in docs/ are generated from the registries."""

from __future__ import annotations

import functools
import shutil

import pytest

from bench import docs
from bench.registry import LOSSES, TASKS
from losses.base import CLASSIFICATION, Loss
from tasks.base import Task, TaskMetadata

TABLES = {table.marker: table for table in docs.TABLES}


def page_texts() -> dict[str, str]:
    return {page: (docs.ROOT / page).read_text() for page in docs.table_pages()}


def test_tables_are_generated_from_the_registries():
    assert docs.stale_tables() == [], "the tables in docs/ are stale: run `make docs`"


def test_tables_live_in_the_docs_pages_not_in_the_readme():
    assert {table.page for table in docs.TABLES} == {"docs/losses.md", "docs/tasks.md"}
    readme = docs.README.read_text()
    for table in docs.TABLES:
        start, end = docs.region_markers(table.marker)
        assert start not in readme and end not in readme, f"README still holds the {table.marker}"


@pytest.mark.parametrize(("marker", "registry"), [("loss-table", LOSSES), ("task-table", TASKS)])
def test_tables_list_every_shipped_plugin(marker, registry):
    table = TABLES[marker]
    region = docs.region(page_texts()[table.page], marker)
    for name in docs.shipped_names(registry):
        assert f"| `{name}` |" in region, f"{table.page}'s {marker} lacks {name}"


def test_tracked_plugin_modules_are_shipped():
    assert {"cross_entropy", "focal"} <= set(docs.shipped_names(LOSSES))
    assert {"trec", "vader_movies"} <= set(docs.shipped_names(TASKS))


class ThrowawayLoss(Loss):
    r"""A user's loss dropped into losses/.

        L = 0

    Reference: nobody.
    """

    problem_types = frozenset({CLASSIFICATION})


class ThrowawayTask(Task):
    metadata = TaskMetadata(
        problem_type="regression",
        main_metric="mae",
        higher_is_better=False,
        source="my.csv",
        version="0.1",
        description="A user's task dropped into tasks/.",
    )


@pytest.fixture
def user_plugins(monkeypatch) -> None:
    """A throwaway loss and task registered as if their modules (untracked by git) were in losses/ and tasks/."""
    for registry, plugin, name in [(LOSSES, ThrowawayLoss, "throwaway_loss"), (TASKS, ThrowawayTask, "throwaway_task")]:
        monkeypatch.setattr(registry, "_items", dict(registry._items))
        monkeypatch.setattr(plugin, "__module__", f"{registry.package}.{name}")
        registry.register(name)(plugin)


@pytest.mark.usefixtures("user_plugins")
def test_a_users_plugins_do_not_break_the_check_and_make_docs_lists_them():
    texts = page_texts()
    assert "throwaway_loss" not in docs.shipped_names(LOSSES) and "throwaway_task" not in docs.shipped_names(TASKS)
    assert docs.stale_tables(texts) == [], "a user's plug-in that the docs do not list must not fail the check"
    regenerated = {page: docs.with_tables(text, page) for page, text in texts.items()}  # what `make docs` writes
    assert "| `throwaway_loss` | classification |  | `L = 0` | nobody. |" in regenerated["docs/losses.md"]
    assert (
        "| `throwaway_task` | regression | `mae` ↓ | 0.1 |  | `my.csv` | A user's task dropped into tasks/. |"
        in (regenerated["docs/tasks.md"])
    )
    assert docs.stale_tables(regenerated) == [], "nor once `make docs` has listed it"


def test_the_check_finds_a_missing_or_changed_shipped_row():
    texts = page_texts()
    tasks = texts["docs/tasks.md"]
    without_trec = "".join(line for line in tasks.splitlines(keepends=True) if not line.startswith("| `trec` |"))
    assert docs.stale_tables({**texts, "docs/tasks.md": without_trec}) == ["task-table"]
    losses = texts["docs/losses.md"]
    focal = "| `focal` | classification | `gamma=2.0` |"
    changed_focal = losses.replace(focal, focal.replace("classification", "regression"))
    assert changed_focal != losses
    assert docs.stale_tables({**texts, "docs/losses.md": changed_focal}) == ["loss-table"]


@pytest.fixture
def docs_copy(tmp_path, monkeypatch) -> dict[str, str]:
    """A copy of docs/ under a temporary ROOT, which ``make docs`` then writes: page -> its current text.

    ``make docs`` here lists the shipped plug-ins only, so that a user's dropped-in plug-in (which ``make docs``
    does list) does not change what these tests expect."""
    shutil.copytree(docs.DOCS, tmp_path / "docs")
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    monkeypatch.setattr(docs, "with_tables", functools.partial(docs.with_tables, names=docs.shipped_names))
    return {f"docs/{path.name}": path.read_text() for path in sorted((tmp_path / "docs").glob("*.md"))}


def test_make_docs_writes_both_tables(tmp_path, docs_copy):
    for page in docs.table_pages():
        text = docs_copy[page]
        renamed = text.replace("| `trec` |", "| `trec_old` |").replace("| `focal` |", "| `focal_old` |")
        assert renamed != text
        (tmp_path / page).write_text(renamed)
    assert docs.main() == 0
    assert {page: (tmp_path / page).read_text() for page in docs_copy} == docs_copy


def test_make_docs_leaves_current_pages_untouched(tmp_path, docs_copy):
    before = {page: (tmp_path / page).stat().st_mtime_ns for page in docs_copy}
    assert docs.main() == 0
    assert {page: (tmp_path / page).stat().st_mtime_ns for page in docs_copy} == before


def test_the_report_page_holds_the_reports_own_how_to_read_text():
    text = (docs.ROOT / docs.REPORT_PAGE).read_text()
    assert docs.with_report_guide(text) == text, "docs/report.md is stale: run `make docs`"
