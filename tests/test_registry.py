"""Registry behaviour (did-you-mean errors, fnmatch patterns, duplicates) and meta-tests over the plug-in packages."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

from bench import cli
from bench.plugins import get_loss, get_task
from bench.registry import LOSSES, TASKS, PluginImportError, Registry, UnknownNameError

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


def imported_modules(path: Path) -> set[str]:
    """The modules a Python file imports (``import x.y`` and ``from x.y import z``, absolute imports only)."""
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    froms = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
    return names | {module for module in froms if module}


def test_the_core_never_imports_the_plugin_packages() -> None:
    """bench/ holds the plug-in API (``bench.api``); losses/ and tasks/ build on it, never the other way round."""
    core = Path(cli.__file__).resolve().parent
    plugin_packages = {LOSSES.package, TASKS.package}
    offenders = {}
    for path in sorted(core.rglob("*.py")):
        plugins = sorted(module for module in imported_modules(path) if module.split(".")[0] in plugin_packages)
        if plugins:
            offenders[str(path.relative_to(core.parent))] = plugins
    assert not offenders


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


# --- a plug-in file that fails to import ------------------------------------------------------------------------------

GOOD_PLUGIN = "from {package} import THINGS\n\n\n@THINGS.register('good')\nclass Good:\n    pass\n"
BROKEN_PLUGIN = "import numpy\n\nimport no_such_module_for_lossbench_tests  # noqa: F401\n"


@pytest.fixture
def broken_plugins(tmp_path, monkeypatch) -> tuple[Registry, Path]:
    """A temporary plug-in package (not losses/) with one good and one broken module, and its registry."""
    package = f"plugins_{tmp_path.name}"
    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("from bench.registry import Registry\n\nTHINGS = Registry('thing', __name__)\n")
    (folder / "good.py").write_text(GOOD_PLUGIN.format(package=package))
    (folder / "broken.py").write_text(BROKEN_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = importlib.import_module(package).THINGS
    yield registry, folder / "broken.py"
    for name in [name for name in sys.modules if name == package or name.startswith(f"{package}.")]:
        del sys.modules[name]


def test_a_plugin_that_fails_to_import_fails_every_call_naming_the_file(broken_plugins):
    registry, broken_file = broken_plugins
    messages = []
    for call in (registry.names, lambda: registry.get("good"), lambda: registry.resolve(["good"]), registry.names):
        with pytest.raises(PluginImportError) as error:
            call()
        messages.append(str(error.value))
    assert len(set(messages)) == 1, "every call must fail the same way"
    assert str(broken_file) in messages[0]
    assert "line 3: ModuleNotFoundError: No module named 'no_such_module_for_lossbench_tests'" in messages[0]
    assert "good.py" not in messages[0]


def test_cli_reports_a_broken_plugin_as_an_error(broken_plugins, monkeypatch, capsys):
    """`lossbench list losses` with a broken file among the loss plug-ins: exit 2 and the file named, twice."""
    registry, broken_file = broken_plugins
    monkeypatch.setattr(LOSSES, "package", registry.package)
    monkeypatch.setattr(LOSSES, "_items", {})
    monkeypatch.setattr(LOSSES, "_discovered", False)
    monkeypatch.setattr(LOSSES, "_failed_imports", [])
    for _ in range(2):
        assert cli.main(["list", "losses"]) == 2
        error = capsys.readouterr().err
        assert error.startswith("lossbench: error: 1 loss plug-in file in ")
        assert str(broken_file) in error and "No module named 'no_such_module_for_lossbench_tests'" in error
