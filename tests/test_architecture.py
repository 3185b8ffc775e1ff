"""The shape of the code: every module imports in any order (no import cycle), no private name crosses a module, and
the code that computes a run never imports the driver or the command line above it."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from bench import fingerprint

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "losses", "tasks", "findings")
SCRIPTS = ("bench/__main__.py", "bench/evaluate_metrics")  # run as a program, or loaded by path by `evaluate`
IMPORT_ORDERS = (0, 1, 2)  # seeds of the shuffled import orders
# The driver and what sits above it: the matrix's runner and executors, the command line, the benchmark script.
DRIVER = ("bench.runner", "bench.executors", "bench.cli", "bench.perf")
# Below the driver besides the code that computes a run (fingerprint.CORE_CODE): the run's settings, spec and row.
RUN_SUPPORT = ("bench/config.py", "bench/environment.py", "bench/rows.py", "bench/schema.py", "bench/status.py")
RUN_SUPPORT += ("bench/taskspec.py", "bench/registry.py")
IMPORT_SCRIPT = """
import importlib, json, random, sys
names = json.loads(sys.argv[1])
random.Random(int(sys.argv[2])).shuffle(names)
failed = {}
for name in names:
    try:
        importlib.import_module(name)
    except Exception as error:
        failed[name] = f"{type(error).__name__}: {error}"
print(json.dumps(failed))
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the three packages, by dotted name (the scripts left out)."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if not any(relative == script or relative.startswith(f"{script}/") for script in SCRIPTS):
                found[module_name(path)] = path
    return found


@cache
def imported_modules(name: str) -> frozenset[str]:
    """The modules of ours that ``name`` imports anywhere in its file, inside functions too."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(found & modules().keys())


def reachable(name: str) -> set[str]:
    """The modules ``name`` imports, directly or through others."""
    seen: set[str] = set()
    pending = [name]
    while pending:
        for imported in imported_modules(pending.pop()):
            if imported not in seen:
                seen.add(imported)
                pending.append(imported)
    return seen


def test_the_module_list_is_complete():
    names = modules()
    assert {"bench.runner", "bench.fit", "bench.depth", "bench.api.loss", "losses.focal", "tasks.trec"} <= set(names)
    assert len(names) > 50


@pytest.mark.parametrize("seed", IMPORT_ORDERS)
def test_every_module_imports_in_any_order_in_a_fresh_interpreter(seed):
    """A cycle fails one of the orders with an ImportError (a partly initialised module)."""
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_SCRIPT, json.dumps(sorted(modules())), str(seed)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}


def test_no_import_cycle_even_through_imports_inside_functions():
    cycles = sorted(name for name in modules() if name in reachable(name))
    assert not cycles, f"modules that import themselves through others: {cycles}"


def test_no_module_uses_a_private_name_of_another_module():
    """Neither ``from x import _y`` nor ``x._y`` on a module of ours (dunder names such as ``__version__`` are
    public)."""
    found = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text())
        aliases = set()  # local names bound to modules of ours
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                for alias in node.names:
                    if _private(alias.name):
                        found.append(f"{name}: from {node.module} import {alias.name}")
                    if f"{node.module}.{alias.name}" in modules():
                        aliases.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                aliases.update(alias.asname or alias.name for alias in node.names if alias.name in modules())
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
                if _private(node.attr):
                    found.append(f"{name}: {node.value.id}.{node.attr}")
    assert not found, found


def _private(name: str) -> bool:
    return name.startswith("_") and not name.endswith("__")


def test_the_code_that_computes_a_run_never_imports_the_driver_or_the_command_line():
    below = {
        module_name(path)
        for pattern in (*fingerprint.CORE_CODE, *RUN_SUPPORT)
        for path in ROOT.glob(pattern)
        if path.suffix == ".py" and module_name(path) in modules()
    }
    below |= {name for name in modules() if name.startswith(("losses.", "tasks."))}
    assert {"bench.fit", "bench.finetune", "bench.depth", "bench.splits", "bench.trainer", "bench.api.loss"} <= below
    upward = {name: sorted(reachable(name) & set(DRIVER)) for name in sorted(below)}
    assert not {name: found for name, found in upward.items() if found}
