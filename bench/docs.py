"""README's loss table, generated from the registry: ``python -m bench.docs`` rewrites it, a test checks it."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from bench.plugins import loss_defaults
from bench.registry import LOSSES

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- loss-table:start -->", "<!-- loss-table:end -->"


def _formula_and_reference(loss_class: type) -> tuple[str, str]:
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


def loss_table() -> str:
    rows = [
        "| loss | problem types | parameters (defaults) | formula | reference |",
        "|---|---|---|---|---|",
    ]
    for name in LOSSES.names():
        loss_class = LOSSES.get(name)
        params = ", ".join(f"`{key}={value}`" for key, value in loss_defaults(loss_class).items())
        formula, reference = _formula_and_reference(loss_class)
        formula = formula.replace("|", "\\|")
        types = ", ".join(sorted(loss_class.problem_types))
        rows.append(f"| `{name}` | {types} | {params} | `{formula}` | {reference} |")
    return "\n".join(rows)


def readme_with_table(text: str) -> str:
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{loss_table()}\n{END}{after}"


def main() -> int:
    text = README.read_text()
    updated = readme_with_table(text)
    if updated != text:
        README.write_text(updated)
        print(f"Updated the loss table in {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
