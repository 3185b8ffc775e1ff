"""Every relative link and every command shown in README.md and docs/ exists: linked files and their anchors, `make`
targets, `lossbench` subcommands and options, and `python -m` modules."""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import docs
from bench.cli import build_parser
from bench.status import Status

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", flags=re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", flags=re.MULTILINE)
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}
LOSSBENCH = {"lossbench", ".venv/bin/lossbench"}
PYTHON = {"python", "python3", ".venv/bin/python"}
# Third-party programs that the docs show with their own options (not lossbench's).
OTHER_PROGRAMS = {"pip", "ray", "git", "cd", "tensorboard", "export", "optuna-dashboard"}


def without_code(text: str) -> str:
    """``text`` less its fenced code blocks and inline code spans, where a ``[x](y)`` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (``-`` and ``_`` kept), spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or whose anchor in a Markdown file, does not exist."""
    broken = []
    for target in LINK.findall(without_code(page.read_text())):
        if re.match(r"[a-z][a-z+.-]*:", target):  # https:, mailto:, ...
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    return broken


def shown_commands(text: str) -> Iterator[tuple[str, bool]]:
    """(command line, from a shell code block) for every line of the shell code blocks (continuation lines joined)
    and every inline code span of ``text``."""
    for language, body in FENCE.findall(text):
        if language in SHELL_BLOCKS:
            for line in body.replace("\\\n", " ").splitlines():
                if line.strip():
                    yield line, True
    for _, code in INLINE_CODE.findall(FENCE.sub("", text)):
        yield " ".join(code.split()), False


def tokens(command: str) -> list[str]:
    """The shell words of ``command`` without its comment, and without the ``[``, ``]``, ``|`` and ``...`` of a
    synopsis."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:  # an unbalanced quote in prose: fall back to plain words
        words = command.split()
    return [stripped for word in words if (stripped := word.strip("[]|")) and stripped != "..."]


def makefile_targets() -> set[str]:
    text = (docs.ROOT / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))


def cli_options() -> dict[str, set[str]]:
    """Each ``lossbench`` subcommand and its options (``--help`` included), read from the parser's actions: argparse
    has no public way to list them."""
    subcommands = next(
        action for action in build_parser()._actions if isinstance(action, argparse._SubParsersAction)
    ).choices
    return {
        name: {option for action in parser._actions for option in action.option_strings}
        for name, parser in subcommands.items()
    }


def lossbench_problems(words: list[str], options: dict[str, set[str]]) -> list[str]:
    """What is wrong with the arguments ``words`` of a ``lossbench`` command: an unknown subcommand or option."""
    if not words or words[0] in ("-h", "--help"):
        return []
    subcommand, *rest = words
    if subcommand not in options:
        return [f"`lossbench {subcommand}`: no such subcommand (known: {', '.join(sorted(options))})"]
    return [
        f"`lossbench {subcommand} {word}`: no such option"
        for word in rest
        if word.startswith("--") and word.split("=", 1)[0] not in options[subcommand]
    ]


def command_problems(command: str, in_shell_block: bool, options: dict[str, set[str]], targets: set[str]) -> list[str]:
    """What is wrong with one command shown in the docs; commands of other programs are not checked, and a shell
    block's program must be lossbench's own or a known third-party one."""
    words = tokens(command)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # environment assignments: HF_HUB_OFFLINE=0 make ...
        words.pop(0)
    if words[:1] == ["time"]:
        words.pop(0)
    if not words:
        return []
    program, *arguments = words
    if program == "make":
        problems = [f"`make {word}`: no such target" for word in arguments if "=" not in word and word not in targets]
        for word in arguments:
            if word.startswith("BENCH_ARGS="):
                problems += lossbench_problems(["run", *tokens(word.split("=", 1)[1])], options)
        return problems
    if program in LOSSBENCH:
        return lossbench_problems(arguments, options)
    if program in PYTHON and arguments[:1] == ["-m"] and len(arguments) > 1:
        module = arguments[1]
        if module == "bench":
            return lossbench_problems(arguments[2:], options)
        if module.startswith("bench.") and importlib.util.find_spec(module) is None:
            return [f"`python -m {module}`: no such module"]
        return []
    if program.startswith("--"):  # an option shown alone, e.g. `--workers N`: lossbench's
        known = set().union(*options.values())
        return [
            f"`{word}`: no such lossbench option"
            for word in words
            if word.startswith("--") and word.split("=", 1)[0] not in known
        ]
    if in_shell_block and program not in OTHER_PROGRAMS | PYTHON:
        return [f"`{command.strip()}`: unknown program {program!r} (add it to OTHER_PROGRAMS if it is not lossbench's)"]
    return []


def page_problems(text: str) -> list[str]:
    options, targets = cli_options(), makefile_targets()
    return [
        problem
        for command, block in shown_commands(text)
        for problem in command_problems(command, block, options, targets)
    ]


PAGES = docs.doc_pages()
IDS = [page.relative_to(docs.ROOT).as_posix() for page in PAGES]


def test_the_docs_pages_exist():
    assert {"README.md", "docs/cli.md", "docs/losses.md", "docs/tasks.md", "docs/report.md"} <= set(IDS)


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_resolve(page):
    assert broken_links(page) == []


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_commands_shown_exist(page):
    assert page_problems(page.read_text()) == []


def test_every_docs_page_is_linked_from_the_readme_or_the_docs_index():
    linked = {
        (base.parent / target.partition("#")[0]).resolve()
        for base in (docs.README, docs.DOCS / "README.md")
        for target in LINK.findall(without_code(base.read_text()))
    }
    index_pages = {docs.README, docs.DOCS / "README.md"}
    assert [page.name for page in PAGES if page not in linked | index_pages] == []


def test_every_lossbench_option_is_in_the_cli_page():
    text = (docs.DOCS / "cli.md").read_text()
    for subcommand, names in cli_options().items():
        assert f"lossbench {subcommand}" in text, subcommand
        for option in names - {"-h", "--help"}:
            shown = re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text)
            assert shown, f"docs/cli.md does not show lossbench {subcommand} {option}"


def test_every_make_target_is_shown():
    text = "\n".join(page.read_text() for page in PAGES)
    documented = set(re.findall(r"^([a-z][a-z-]*):.*## ", (docs.ROOT / "Makefile").read_text(), flags=re.MULTILINE))
    assert [target for target in sorted(documented) if f"make {target}" not in text] == []


def test_readme_is_at_most_15_kb():
    assert len(docs.README.read_bytes()) <= 15_000, "move the detail to docs/"


def test_the_checker_finds_what_is_broken(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading: yes\n")
    page.write_text(
        "# Page\n\n[ok](other.md) [ok](other.md#a-code-heading-yes) [ok](#page) [web](https://example.com)\n"
        "[missing](nowhere.md) [bad anchor](other.md#nope) [bad local](#nope) `[not a link](nowhere.md)`\n\n"
        '```bash\nmake bench BENCH_ARGS="--tasks trec --no-such-option"\nmake no-such-target\n'
        "lossbench run --seeds 0 \\\n    --bogus\nlossbench frobnicate\npython -m bench.no_such_module\n"
        "lossbnech run\npip install --no-deps x  # other programs' options are theirs\n```\n\n"
        "Inline: `make lint`, `--workers 2`, `--nonexistent`, `lossbench report --out x`.\n"
    )
    assert broken_links(page) == [
        "nowhere.md: no such file",
        "other.md#nope: no heading with anchor #nope in other.md",
        "#nope: no heading with anchor #nope in page.md",
    ]
    assert page_problems(page.read_text()) == [
        "`lossbench run --no-such-option`: no such option",
        "`make no-such-target`: no such target",
        "`lossbench run --bogus`: no such option",
        "`lossbench frobnicate`: no such subcommand (known: compare, list, report, run, tune)",
        "`python -m bench.no_such_module`: no such module",
        "`lossbnech run`: unknown program 'lossbnech' (add it to OTHER_PROGRAMS if it is not lossbench's)",
        "`--nonexistent`: no such lossbench option",
    ]


def section(path: Path, heading: str) -> str:
    """The part of ``path`` from the line ``heading`` to the next second-level heading."""
    text = path.read_text()
    start = text.index(f"\n{heading}\n") + 1
    return text[start:].split("\n## ", 1)[0]


def test_every_status_is_documented():
    statuses = section(docs.DOCS / "results.md", "## Status")
    readme = section(docs.README, "## What you get")
    for status in Status:
        assert f"- `{status.value}`" in statuses, status.value
        assert f"`{status.value}`" in readme, status.value


def test_the_design_page_names_every_module_of_bench():
    layout = section(docs.DOCS / "design.md", "## Layout")
    named = set(re.findall(r"\b(\w+)\.py\b", layout))
    modules = {path.stem for folder in ("bench", "bench/api") for path in (docs.ROOT / folder).glob("*.py")}
    modules -= {"__init__"}
    plugin_files = {path.stem for folder in ("losses", "tasks") for path in (docs.ROOT / folder).glob("*.py")}
    assert sorted(modules - named) == [], "docs/design.md's layout does not name these modules"
    assert sorted(named - modules - plugin_files) == [], "docs/design.md's layout names modules that do not exist"
