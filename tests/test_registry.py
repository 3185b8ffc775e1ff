"""Registry behaviour (did-you-mean errors, fnmatch patterns, duplicates) and meta-tests over the plug-in packages."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

from bench.plugins import get_loss, get_task
from bench.registry import LOSSES, TASKS, Registry, UnknownNameError

REGISTRIES = [pytest.param(LOSSES, id="losses"), pytest.param(TASKS, id="tasks")]


def plugin_modules(registry: Registry) -> list[str]:
    """Module names the registry discovers: every non-underscore, non-base module of its package."""
    package = importlib.import_module(registry.package)
    return sorted(
        m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_") and m.name != "base"
    )


@pytest.mark.parametrize(
    ("registry", "bad", "close"),
    [(LOSSES, "focall", "focal"), (LOSSES, "cross_entrpy", "cross_entropy"), (TASKS, "trek", "trec")],
    ids=["focall", "cross_entrpy", "trek"],
)
def test_unknown_name_suggests_and_lists(registry: Registry, bad: str, close: str) -> None:
    with pytest.raises(UnknownNameError) as error:
        registry.get(bad)
    message = str(error.value)
    assert repr(bad) in message
    assert f"Did you mean {close!r}" in message
    assert all(name in message for name in registry.names())


def test_unknown_name_without_close_match_lists_valid() -> None:
    with pytest.raises(UnknownNameError) as error:
        LOSSES.get("zzzzzz")
    message = str(error.value)
    assert "'zzzzzz'" in message
    assert "Did you mean" not in message
    assert all(name in message for name in LOSSES.names())


def test_unknown_name_is_key_error() -> None:
    with pytest.raises(KeyError):
        LOSSES.get("nope")


def test_get_loss_and_task_unknown_raise() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'focal'"):
        get_loss("focall:gamma=1")
    with pytest.raises(UnknownNameError, match="Did you mean 'trec'"):
        get_task("trek")


def test_names_pattern() -> None:
    assert LOSSES.names("focal*") == ["focal"]
    assert LOSSES.names() == sorted(LOSSES.names())
    assert LOSSES.names("no_such_*") == []


def test_resolve_patterns_in_order() -> None:
    assert LOSSES.resolve(["cross_*", "mse"]) == ["cross_entropy", "mse"]


def test_resolve_deduplicates() -> None:
    assert LOSSES.resolve(["mse", "m*", "mse"]) == ["mse", "mae"]


def test_resolve_unmatched_pattern_raises() -> None:
    with pytest.raises(UnknownNameError, match="no_such_"):
        LOSSES.resolve(["mse", "no_such_*"])


def test_duplicate_registration_raises() -> None:
    registry: Registry = Registry("thing", "losses")

    @registry.register("a")
    class First:
        pass

    with pytest.raises(ValueError, match="'a' is already registered"):

        @registry.register("a")
        class Second:
            pass

    assert registry.get("a") is First
    assert First.name == "a"  # type: ignore[attr-defined]
    assert registry.names() == ["a"]


@pytest.mark.parametrize("registry", REGISTRIES)
def test_every_module_registers_a_name(registry: Registry) -> None:
    registered_modules = {registry.get(name).__module__ for name in registry.names()}
    unregistered = [m for m in plugin_modules(registry) if f"{registry.package}.{m}" not in registered_modules]
    assert not unregistered, f"{registry.package} modules that register nothing: {unregistered}"


@pytest.mark.parametrize("registry", REGISTRIES)
def test_module_file_name_is_registry_key(registry: Registry) -> None:
    for module in plugin_modules(registry):
        assert module in registry.names(), f"{registry.package}/{module}.py does not register {module!r}"
        assert registry.get(module).__module__ == f"{registry.package}.{module}"
        assert registry.get(module).name == module
