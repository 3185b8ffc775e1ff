"""A matrix as a file (``lossbench run --config matrix.toml``) or as a Python mapping (``bench.notebook.run``).

Every key is the ``dest`` of one option of the ``run`` command (``tasks``, ``losses``, ``seeds``, ``train_size``,
``length_grouped``, ...) and becomes that option's command-line words, which the command's own parser then reads: a
value passes the same type and choice checks as the flag, and an option added to ``run`` later is a key at once. A
list becomes one comma-separated value (``seeds = [0, 1, 2]`` is ``--seeds 0,1,2``), or, for a repeatable option,
one flag per item; a table of a repeatable option gives ``KEY=VALUE`` items (``trainer_args = {max_grad_norm = 1.0}``
is ``--trainer-arg max_grad_norm=1.0``); a boolean sets or clears a switch. Options given on the command line
override the file's (a repeatable option given there replaces the file's items). The file is parsed with Python's
``tomllib`` and recorded as read, with the invocation (``record``).
"""

from __future__ import annotations

import argparse
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as the tomli package (pyproject's dependency there)
    import tomli as tomllib

# Keys a matrix cannot set: the file itself, and help.
NOT_SETTINGS = {"config": "a matrix file cannot name another one", "help": "not a setting"}
SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class MatrixSettings:
    """The settings of one matrix: ``values`` by option ``dest``, from ``source`` (a file's path, or a Python call),
    with the file's ``text`` as read."""

    source: str
    values: Mapping[str, Any] = field(default_factory=dict)
    text: str | None = None

    @classmethod
    def read(cls, path: str | Path) -> MatrixSettings:
        """The settings in a TOML file; a file that cannot be read or parsed is refused naming it (and the line)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            raise ValueError(f"{path}: cannot read the matrix file ({reason})") from None
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"{path}: not valid TOML: {error}") from None
        return cls(str(path), values, text)

    def record(self) -> dict[str, Any]:
        """What ``invocations.jsonl`` keeps of it: the file's path and content, or the Python call's values."""
        if self.text is not None:
            return {"config": {"path": self.source, "content": self.text}}
        return {"config": {"source": self.source, "values": dict(self.values)}}

    def arguments(self, parser: argparse.ArgumentParser, *, leave_out: Sequence[str] = ()) -> list[str]:
        """The command-line words of every setting, each value checked as its flag's would be (``ValueError`` naming
        the source, the key, the value and what is valid); the options whose ``dest`` is in ``leave_out`` are
        skipped (given on the command line)."""
        actions = settable_actions(parser)
        words: list[str] = []
        for key, value in self.values.items():
            if key in NOT_SETTINGS:
                raise ValueError(f"{self.source}: key {key!r} is not allowed: {NOT_SETTINGS[key]}.")
            if key not in actions:
                raise ValueError(unknown_key_message(self.source, key, actions))
            if key not in leave_out:
                words += option_words(actions[key], key, value, self.source)
        return words

    def parse(self, parser: argparse.ArgumentParser, argv: Sequence[str] = ()) -> argparse.Namespace:
        """The options of ``parser`` from these settings, then ``argv`` (the command line's words, which win)."""
        given = parser.parse_args(list(argv))
        repeated = [
            dest
            for dest, action in settable_actions(parser).items()
            if isinstance(action, argparse._AppendAction) and getattr(given, dest) != action.default
        ]
        args = parser.parse_args([*self.arguments(parser, leave_out=repeated), *argv])
        args.config = self
        return args


def settable_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The options of ``parser`` a matrix may set, by ``dest`` (argparse has no public way to list them)."""
    return {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest not in NOT_SETTINGS and action.dest != argparse.SUPPRESS
    }


def unknown_key_message(source: str, key: str, actions: Mapping[str, argparse.Action]) -> str:
    """An unknown key: the closest keys (a flag's spelling, ``train-size`` or ``--length-grouping``, points to its
    key) and every valid key."""
    spelled = {
        option.lstrip("-").replace("-", "_"): dest
        for dest, action in actions.items()
        for option in action.option_strings
    }
    wanted = key.lstrip("-").replace("-", "_")
    close = (
        [spelled[wanted]] if wanted in spelled else difflib.get_close_matches(wanted, list(actions), n=3, cutoff=0.6)
    )
    hint = f" Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
    return f"{source}: unknown key {key!r}.{hint} Valid keys: {', '.join(sorted(actions))}."


def flag_key(option: str) -> str:
    """``--length-grouping`` -> ``length_grouping``."""
    return option.lstrip("-").replace("-", "_")


def option_words(action: argparse.Action, key: str, value: Any, source: str) -> list[str]:
    """The command-line words that give ``action`` the ``value`` of ``key``."""
    flag = next((option for option in action.option_strings if option.startswith("--")), action.option_strings[0])
    if action.nargs == 0:  # a switch
        if not isinstance(value, bool):
            raise ValueError(f"{source}: {key} = {value!r}: must be true or false (the flag {flag}).")
        if isinstance(action, argparse.BooleanOptionalAction):
            return [flag if value else f"--no-{flag[2:]}"]
        if value == action.const:
            return [flag]
        if value == action.default:
            return []
        raise ValueError(f"{source}: {key} = {value!r}: {flag} can only be set, so only {action.const!r} is valid.")
    if isinstance(action, argparse._AppendAction):  # repeatable: one flag per item
        if isinstance(value, Mapping):
            items = [f"{name}={text(item, source, f'{key}.{name}')}" for name, item in value.items()]
        elif isinstance(value, list):
            items = [text(item, source, key) for item in value]
        else:
            items = [text(value, source, key)]
        for item in items:
            check_value(action, key, item, source)
        return [f"{flag}={item}" for item in items]
    if isinstance(value, Mapping):
        raise ValueError(f"{source}: {key} is a table, but {flag} takes one value (a string, number or list).")
    word = ",".join(text(item, source, key) for item in value) if isinstance(value, list) else text(value, source, key)
    check_value(action, key, word, source)
    return [f"{flag}={word}"]


def text(value: Any, source: str, key: str) -> str:
    """A TOML scalar as a command-line word (``true``/``false`` for booleans; a list of scalars comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list) and all(isinstance(item, SCALARS) for item in value):
        return ",".join(text(item, source, key) for item in value)
    if not isinstance(value, SCALARS):
        raise ValueError(f"{source}: {key} = {value!r}: give a string, a number, a boolean or a list of them.")
    return str(value)


def check_value(action: argparse.Action, key: str, word: str, source: str) -> None:
    """The flag's own checks on ``word``: its type and its choices."""
    try:
        value = action.type(word) if callable(action.type) else word
    except (argparse.ArgumentTypeError, TypeError, ValueError) as error:
        raise ValueError(f"{source}: {key} = {word!r}: {error}") from None
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(str(choice) for choice in action.choices)
        raise ValueError(f"{source}: {key} = {word!r} is not a valid choice; valid: {choices}.")
