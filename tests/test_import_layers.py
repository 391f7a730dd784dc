"""Layers import only downward, and no two modules import each other (directly or round a cycle).

Every import of every module of the package counts, function-level ones included, so a lazy import can
neither run up the layers nor hide a cycle. The layers, bottom to top (docs/architecture.md):

    base (errors, version, config loader, contract, model I/O, data sets) < devices < mapping < crossbar < programming
    < passes + compiler < runtime < evaluate < tools (placement, finetune, cost) < API + CLI

A module may import its own layer and any layer below it. The checker itself is tested on synthetic
module sets: it must fail on an upward import (a pass importing ``anacompile.evaluate``) and on a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

import anacompile

PACKAGE_DIR = Path(anacompile.__file__).resolve().parent

LAYERS = ("base", "devices", "mapping", "crossbar", "programming", "compiler", "runtime", "evaluate", "tools", "api")
RANK = {name: i for i, name in enumerate(LAYERS)}

# module prefix -> layer; the longest matching prefix wins
LAYER_OF_PREFIX = {
    "anacompile": "api",  # the package's __init__: the lazy public API
    "anacompile.cli": "api",
    "anacompile.cli_progress": "api",
    "anacompile.cli_options": "api",  # options several commands share (--execution-provider)
    "anacompile.deploy_commands": "api",  # Typer commands of the deployment tools
    "anacompile.tile_export": "tools",
    "anacompile.olive_pass": "tools",  # the Olive pass (extra olive)
    "anacompile._version": "base",
    "anacompile.errors": "base",
    "anacompile.config": "base",  # the one loader of presets, files and overrides
    "anacompile.contract": "base",
    "anacompile.ops": "base",  # compatibility alias of the contract
    "anacompile.model_io": "base",
    "anacompile.graph_walk": "base",
    "anacompile.cli_output": "base",  # --json PATH|- of every command (uses model_io only)
    "anacompile.model_validation": "base",
    "anacompile.limits": "base",
    "anacompile.datasets": "base",
    "anacompile.feeds": "base",
    "anacompile.schemas": "base",  # package data (JSON Schemas)
    "anacompile.data": "base",  # package data (vocabulary, the digits split)
    "anacompile.devices": "devices",
    "anacompile.mapping": "mapping",
    "anacompile.crossbar": "crossbar",
    "anacompile.programming": "programming",
    "anacompile.passes": "compiler",
    "anacompile.compiler": "compiler",
    "anacompile.runtime": "runtime",
    "anacompile.evaluate": "evaluate",
    "anacompile.placement": "tools",
    "anacompile.finetune": "tools",
    "anacompile.cost": "tools",
}
CLI_SUFFIX = ".cli_commands"
"""A sub-package's Typer commands (e.g. ``anacompile.programming.cli_commands``) belong to the CLI layer."""


def layer_of(module: str) -> str | None:
    """The layer of a module, or None when no prefix is assigned."""
    if module.endswith(CLI_SUFFIX):
        return "api"
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        layer = LAYER_OF_PREFIX.get(".".join(parts[:n]))
        if layer is not None and (n > 1 or module == "anacompile"):
            return layer
    return None


def package_sources(root: Path = PACKAGE_DIR, package: str = "anacompile") -> dict[str, str]:
    """Module name -> source of every module of the package."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join([package, *parts])] = path.read_text(encoding="utf-8")
    return out


def imports_of(module: str, source: str, modules: Iterable[str], is_package: bool = False) -> set[str]:
    """The package modules ``module`` imports anywhere in its source (module and function level)."""
    modules = set(modules)
    root = module.split(".")[0]
    pkg = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def add(name: str) -> None:
        while name and name not in modules:  # ``from a.b import c`` where c is a name in a.b
            name = name.rpartition(".")[0]
        if name:
            found.add(name)

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == root:
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] != root:
                continue
            for alias in node.names:
                full = f"{name}.{alias.name}"
                add(full if full in modules else name)
    found.discard(module)
    return found


def import_graph(sources: dict[str, str], packages: set[str] | None = None) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    packages = packages if packages is not None else _packages(sources)
    return {m: imports_of(m, src, sources, m in packages) for m, src in sources.items()}


def _packages(sources: dict[str, str]) -> set[str]:
    return {m for m in sources if any(other.startswith(m + ".") for other in sources)}


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a module from a higher layer, and every module without a layer."""
    problems = []
    for module, deps in sorted(graph.items()):
        layer = layer_of(module)
        if layer is None:
            problems.append(f"{module} has no layer: assign it one in tests/test_import_layers.py LAYER_OF_PREFIX")
            continue
        for dep in sorted(deps):
            dep_layer = layer_of(dep)
            if dep_layer is not None and RANK[dep_layer] > RANK[layer]:
                problems.append(f"{module} ({layer}) imports {dep} ({dep_layer}), a layer above it")
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


# -- the package -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def package_graph() -> dict[str, set[str]]:
    return import_graph(package_sources())


def test_the_package_imports_only_downward(package_graph) -> None:
    assert len(package_graph) > 50  # every module was found and parsed
    assert upward_imports(package_graph) == []


def test_the_package_has_no_import_cycle(package_graph) -> None:
    assert import_cycles(package_graph) == []


def test_function_level_imports_are_seen(package_graph) -> None:
    # the CLI imports the compiler inside its command functions only
    assert "anacompile.compiler" in package_graph["anacompile.cli"]


def test_the_contract_imports_nothing_above_errors(package_graph) -> None:
    for module, deps in package_graph.items():
        if module.startswith("anacompile.contract"):
            assert all(
                d.startswith(("anacompile.contract", "anacompile.errors", "anacompile._version")) for d in deps
            ), (module, deps)


# -- the checker on synthetic module sets -----------------------------------------------------------------
def _synthetic(**extra: str) -> dict[str, str]:
    sources = {
        "anacompile": "",
        "anacompile.errors": "",
        "anacompile.passes": "",
        "anacompile.passes.good": "from anacompile.errors import AnacompileError\n",
        "anacompile.evaluate": "",
        "anacompile.evaluate.monte_carlo": "from anacompile.passes import good\n",
    }
    sources.update(extra)
    return sources


def test_checker_accepts_a_clean_module_set() -> None:
    graph = import_graph(_synthetic())
    assert upward_imports(graph) == []
    assert import_cycles(graph) == []


@pytest.mark.parametrize(
    "source",
    [
        "import anacompile.evaluate\n",
        "from anacompile.evaluate import monte_carlo\n",
        "from anacompile.evaluate.monte_carlo import evaluate\n",
        "def f():\n    from anacompile.evaluate.monte_carlo import evaluate\n    return evaluate\n",  # function level
        "from ..evaluate import monte_carlo\n",  # relative
    ],
)
def test_checker_fails_on_a_pass_importing_evaluate(source: str) -> None:
    graph = import_graph(_synthetic(**{"anacompile.passes.bad": source}))
    problems = upward_imports(graph)
    assert len(problems) == 1 and problems[0].startswith("anacompile.passes.bad (compiler) imports anacompile.evaluate")


def test_checker_fails_on_a_cycle_within_a_layer() -> None:
    graph = import_graph(
        _synthetic(
            **{
                "anacompile.passes.a": "from anacompile.passes import b\n",
                "anacompile.passes.b": "def f():\n    import anacompile.passes.c\n",
                "anacompile.passes.c": "from anacompile.passes.a import x\n",
            }
        )
    )
    assert upward_imports(graph) == []
    assert import_cycles(graph) == [["anacompile.passes.a", "anacompile.passes.b", "anacompile.passes.c"]]


def test_checker_fails_on_a_module_without_a_layer() -> None:
    problems = upward_imports(import_graph(_synthetic(**{"anacompile.mystery": ""})))
    assert problems == ["anacompile.mystery has no layer: assign it one in tests/test_import_layers.py LAYER_OF_PREFIX"]
