"""Layering is a contract: app/ serves and training/ trains, both on top of model_core/.

- model_core imports neither app nor training, app does not import training, and neither
  training nor model_core imports the web stack (app, FastAPI, Starlette); loaded for real,
  they do not pull it in through a third-party package either.
- No import cycle among the modules of app, model_core and training.

The graph comes from the AST of every module, so imports inside functions and under
`if TYPE_CHECKING:` count as much as those at the top: a cycle that only a deferred import
keeps from failing at start-up is still a cycle."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "model_core", "training")
# What each package must not import (top-level names).
FORBIDDEN = {
    "model_core": {"app", "training", "fastapi", "starlette"},
    "training": {"app", "fastapi", "starlette"},
    "app": {"training"},
}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


@cache
def module_files() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def imported_modules(module: str, path: Path) -> set[str]:
    """What `module` imports anywhere in its body, relative imports resolved: project modules
    by full name, third-party ones by top-level name. `from X import Y` imports X.Y where that
    is a module of the project, else X (as import-linter's graph counts it)."""
    files = module_files()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                package = module.split(".")
                if path.name != "__init__.py":
                    package.pop()
                base = package[: len(package) - node.level + 1]
                source = ".".join([*base, source] if source else base)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in files else source)
    return {name if name in files else name.split(".")[0] for name in found}


@cache
def imports() -> dict[str, frozenset[str]]:
    """Each project module -> what it imports (see imported_modules)."""
    return {
        module: frozenset(imported_modules(module, path) - {module})
        for module, path in module_files().items()
    }


def find_cycle(graph: dict[str, frozenset[str]]) -> list[str] | None:
    """One cycle of `graph` as [a, b, ..., a], or None (a depth-first search that meets a
    module still on its own path)."""
    finished: set[str] = set()
    for start in sorted(graph):
        if start in finished:
            continue
        path = [start]
        successors = [iter(sorted(graph[start]))]
        while path:
            following = next(successors[-1], None)
            if following is None:
                finished.add(path.pop())
                successors.pop()
            elif following in path:
                return [*path[path.index(following) :], following]
            elif following not in finished:
                path.append(following)
                successors.append(iter(sorted(graph[following])))
    return None


def test_the_graph_sees_every_module_and_every_kind_of_import() -> None:
    graph = imports()
    assert len(graph) > 60 and set(PACKAGES) <= graph.keys()
    assert "model_core.runtime" in graph["app.engine.service"]
    for module, path in module_files().items():
        # An import of the project names one of its modules: a misspelt one would drop out of
        # the graph unseen.
        for name in imported_modules(module, path):
            if name.split(".")[0] in PACKAGES:
                assert name in graph, f"{module} imports {name}, which is no module"


def test_relative_deferred_and_type_checking_imports_count(tmp_path: Path) -> None:
    source = tmp_path / "probe.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import entries\n"
        "from ..inputs import localisation\n"
        "if TYPE_CHECKING:\n"
        "    from .. import runtime\n"
        "def later():\n"
        "    import app.core.settings\n"
    )
    assert imported_modules("model_core.store.probe", source) == {
        "typing",
        "model_core.store.entries",
        "model_core.inputs.localisation",
        "model_core.runtime",
        "app.core.settings",
    }


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_nothing_above_it(package: str) -> None:
    offenders = {
        module: sorted(name for name in names if name.split(".")[0] in FORBIDDEN[package])
        for module, names in imports().items()
        if module.split(".")[0] == package
    }
    offenders = {module: names for module, names in offenders.items() if names}
    assert offenders == {}, f"{package} must not import {sorted(FORBIDDEN[package])}"


def test_no_import_cycle() -> None:
    project = {
        module: frozenset(name for name in names if name in imports())
        for module, names in imports().items()
    }
    cycle = find_cycle(project)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset()}) is None
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"b"})}
    assert find_cycle(graph) == ["b", "c", "b"]


def test_training_and_core_load_no_web_stack() -> None:
    """Loaded for real in a fresh interpreter, every module of training and model_core leaves
    app, FastAPI and Starlette out of sys.modules: no third-party import brings them in."""
    modules = sorted(
        module
        for module, path in module_files().items()
        if module.split(".")[0] in ("training", "model_core") and path.stem != "__main__"
    )
    assert len(modules) > 15
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, check=True, capture_output=True, text=True
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    offenders = [name for name in loaded if name.split(".")[0] in FORBIDDEN["training"]]
    assert offenders == []
    # The core is what training runs instead.
    assert "model_core.runtime" in loaded
    assert "training.pipeline.calibration" in loaded
