"""The placement package sits on top: nothing below it (compiler, passes, runtime, evaluate...) imports it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "anacompile"
ABOVE = {
    "placement",
    "cli.py",
    "__init__.py",
    "olive_pass.py",
}  # placement itself, the API + CLI, the Olive entry point


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__" and node.args:
            if isinstance(node.args[0], ast.Constant):
                names.add(str(node.args[0].value))
    return names


def test_no_module_below_placement_imports_it():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ABOVE:
            continue
        if any(name == "anacompile.placement" or name.startswith("anacompile.placement.") for name in _imports(path)):
            offenders.append(str(rel))
    assert offenders == []
    assert "anacompile.placement" in " ".join(_imports(PACKAGE / "cli.py"))  # the check sees real imports
