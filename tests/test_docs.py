"""README stays true to the code: its loss and task tables are generated from the registries (``make docs``)."""

from __future__ import annotations

import pytest

from bench import docs
from bench.registry import LOSSES, TASKS
from losses.base import CLASSIFICATION, Loss
from tasks.base import Task, TaskMetadata


def test_readme_tables_are_generated_from_the_registries():
    assert docs.stale_tables(docs.README.read_text()) == [], "README's tables are stale: run `make docs`"


@pytest.mark.parametrize(("table", "registry"), [("loss-table", LOSSES), ("task-table", TASKS)])
def test_readme_tables_list_every_shipped_plugin(table, registry):
    text = docs.README.read_text()
    region = text.split(f"<!-- {table}:start -->", 1)[1].split(f"<!-- {table}:end -->", 1)[0]
    for name in docs.shipped_names(registry):
        assert f"| `{name}` |" in region, f"README's {table} lacks {name}"


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
    text = docs.README.read_text()
    assert "throwaway_loss" not in docs.shipped_names(LOSSES) and "throwaway_task" not in docs.shipped_names(TASKS)
    assert docs.stale_tables(text) == [], "a user's plug-in that README does not list must not fail the check"
    regenerated = docs.readme_with_tables(text)  # what `make docs` writes
    assert "| `throwaway_loss` | classification |  | `L = 0` | nobody. |" in regenerated
    assert "| `throwaway_task` | regression | `mae` ↓ | 0.1 |  | `my.csv` | A user's task dropped into tasks/. |" in (
        regenerated
    )
    assert docs.stale_tables(regenerated) == [], "nor once `make docs` has listed it"


def test_the_check_finds_a_missing_or_changed_shipped_row():
    text = docs.README.read_text()
    without_trec = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("| `trec` |"))
    assert docs.stale_tables(without_trec) == ["task-table"]
    changed_focal = text.replace("| `focal` | classification | `gamma=2.0` |", "| `focal` | regression | `gamma=2.0` |")
    assert docs.stale_tables(changed_focal) == ["loss-table"]


def test_make_docs_writes_both_tables(tmp_path, monkeypatch):
    current = docs.README.read_text()
    readme = tmp_path / "README.md"
    readme.write_text(current.replace("| `trec` |", "| `trec_old` |").replace("| `focal` |", "| `focal_old` |"))
    monkeypatch.setattr(docs, "README", readme)
    assert docs.main() == 0
    assert readme.read_text() == current
