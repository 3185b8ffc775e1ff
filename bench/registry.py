"""A small name -> class registry with fnmatch patterns and did-you-mean errors, plus plug-in discovery."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import pkgutil
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError):
    """An unknown registry name; the message names it, suggests close matches and lists the valid names."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


class PluginImportError(ImportError):
    """Plug-in modules failed to import; raised by every registry call, naming each file and its error."""


@dataclass(frozen=True)
class FailedImport:
    """A plug-in module that raised on import (after benchopt's ``FailedImport``): its file and the error."""

    path: str
    error: str

    @classmethod
    def from_exception(cls, path: str, error: Exception) -> FailedImport:
        """The error as Python names it, on one line, after the line of the plug-in file that raised it."""
        message = traceback.format_exception_only(type(error), error)[-1].strip()
        if isinstance(error, SyntaxError) and error.lineno is not None:
            return cls(path, f"line {error.lineno}: {message}")
        lines = [frame.lineno for frame in traceback.extract_tb(error.__traceback__) if frame.filename == path]
        return cls(path, f"line {lines[-1]}: {message}" if lines else message)


class Registry(Generic[T]):
    """Maps snake_case names to plug-in classes (after fvcore's Registry)."""

    def __init__(self, kind: str, package: str, *, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.package = package
        self._items: dict[str, T] = {}
        self._discovered = False
        self._failed_imports: list[FailedImport] = []

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
            self._items[name] = obj
            obj.name = name  # type: ignore[attr-defined]
            return obj

        return decorator

    def _discover(self) -> None:
        """Import every non-underscore module of the plug-in package once, so dropping in a file is the only step.

        A module that fails to import is recorded, not retried (its half-run registrations would clash), and this
        raises ``PluginImportError`` naming it on every call: a broken file never leaves a silently partial registry.
        """
        if not self._discovered:
            self._discovered = True  # first: a plug-in that looks up names while it is imported does not recurse
            self._failed_imports = self._import_plugins()
        if self._failed_imports:
            raise PluginImportError(self._failed_imports_message())

    def _import_plugins(self) -> list[FailedImport]:
        failed = []
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name.startswith("_") or module.name == "base":
                continue
            full_name = f"{self.package}.{module.name}"
            try:
                importlib.import_module(full_name)
            except Exception as error:  # noqa: BLE001 - any error in a plug-in file is reported, naming the file
                spec = module.module_finder.find_spec(full_name)  # type: ignore[call-arg]
                path = spec.origin if spec is not None and spec.origin else str(Path(*full_name.split(".")))
                failed.append(FailedImport.from_exception(path, error))
        return failed

    def _failed_imports_message(self) -> str:
        count = len(self._failed_imports)
        files = "".join(f"\n  {failure.path}, {failure.error}" for failure in self._failed_imports)
        return (
            f"{count} {self.kind} plug-in file{'s' if count > 1 else ''} in {self.package}/ failed to import; fix or "
            f"remove {'them' if count > 1 else 'it'} (until then no {self.kind} can be used):{files}"
        )

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
CARDS: Registry = Registry("finding card", "findings")  # bench.findings: claims checked against the literature
