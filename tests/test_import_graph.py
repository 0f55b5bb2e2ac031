"""hfvision's modules form no import circle, and each one imports on its own in a fresh interpreter.

Every ``import`` / ``from ... import`` of an hfvision module counts, at module level or inside a function (a lazy
import only hides a circle), and so does ``importlib.import_module("hfvision....")`` with a literal name. Imports under
``if TYPE_CHECKING:`` do not count. The lazy attribute tables of package ``__init__`` files (name -> submodule) are
not edges: they are resolved on attribute access, after both sides have loaded.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "hfvision"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """hfvision modules that ``module`` imports (the most specific existing module for each name)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    targets: set[str] = set()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        targets.add(resolve(alias.name))
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    name = ".".join(base + ([child.module] if child.module else []))
                else:
                    name = child.module or ""
                if name.split(".")[0] != PACKAGE:
                    continue
                for alias in child.names:  # `from pkg import submodule` imports the submodule
                    sub = f"{name}.{alias.name}"
                    targets.add(sub if sub in modules else resolve(name))
            elif (
                isinstance(child, ast.Call)
                and getattr(child.func, "attr", getattr(child.func, "id", None)) == "import_module"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and str(child.args[0].value).startswith(PACKAGE + ".")
            ):
                targets.add(resolve(child.args[0].value))
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    targets.discard(None)
    targets.discard(module)
    # a module inside a package always runs its package's __init__ first: that is not an edge of its own
    return {t for t in targets if not module.startswith(t + ".")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := dfs(nxt)):
                return found
        state[node], _ = 2, stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := dfs(node)):
            return found
    return None


def _dependency_order(graph: dict[str, set[str]]) -> list[str]:
    order, done = [], set()

    def place(node: str) -> None:
        if node in done:
            return
        done.add(node)
        for dep in sorted(graph[node]):
            place(dep)
        order.append(node)

    for node in sorted(graph):
        place(node)
    return order


def test_cycle_finder_reports_a_planted_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(graph) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_in_src():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.slow
def test_every_module_imports_on_its_own_in_dependency_order():
    """A fresh interpreter imports each module in dependency order (optional third-party packages may be absent)."""
    order = _dependency_order(_graph())
    script = f"""
import importlib, json, sys
failed = []
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] == {PACKAGE!r}:
            failed.append(f"{{name}}: {{err}}")
    except Exception as err:  # noqa: BLE001
        failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
print(json.dumps(failed))
"""
    out = subprocess.run([sys.executable, "-c", script, json.dumps(order)], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
