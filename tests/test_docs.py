"""README stays true to the code."""

from __future__ import annotations

from bench.docs import README, readme_with_table
from bench.registry import LOSSES, TASKS


def test_readme_loss_table_is_generated_from_the_registry():
    text = README.read_text()
    assert readme_with_table(text) == text, "README's loss table is stale: run `make docs`"
    for name in LOSSES.names():
        assert f"| `{name}` |" in text


def test_readme_tasks_table_lists_every_task():
    text = README.read_text()
    section = text[text.index("## Tasks\n") : text.index("## Losses\n")]
    for name in TASKS.names():
        assert f"| `{name}` |" in section, f"README's Tasks table lacks {name}"
