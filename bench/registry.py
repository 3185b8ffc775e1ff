"""A small name -> class registry with fnmatch patterns and did-you-mean errors, plus plug-in discovery."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message names it, suggests close matches and lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps snake_case names to plug-in classes (after fvcore's Registry)."""

    def __init__(self, kind: str, package: str, *, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
            self._items[name] = obj
            obj.name = name  # type: ignore[attr-defined]
            return obj

        return decorator

    def _discover(self) -> None:
        """Import every non-underscore module of the plug-in package, so dropping in a file is the only step."""
        if self._discovered:
            return
        self._discovered = True
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.startswith("_") and module.name != "base":
                importlib.import_module(f"{self.package}.{module.name}")

    def names(self, pattern: str = "*") -> list[str]:
        """Sorted registered names matching an fnmatch pattern (``'focal*'``)."""
        self._discover()
        return sorted(n for n in self._items if fnmatch.fnmatchcase(n, pattern))

    def get(self, name: str) -> T:
        self._discover()
        if name not in self._items:
            raise UnknownNameError(self._unknown_message(name))
        return self._items[name]

    def resolve(self, patterns: Iterable[str]) -> list[str]:
        """Expand names and fnmatch patterns in order, without duplicates; an unmatched one raises."""
        resolved: list[str] = []
        for pattern in patterns:
            matches = self.names(pattern)
            if not matches:
                raise UnknownNameError(self._unknown_message(pattern))
            resolved.extend(m for m in matches if m not in resolved)
        return resolved

    def _unknown_message(self, name: str) -> str:
        valid = self.names()
        close = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Valid {self.plural}: {', '.join(valid)}."


LOSSES: Registry = Registry("loss", "losses", plural="losses")
TASKS: Registry = Registry("task", "tasks")
