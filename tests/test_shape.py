"""The code's shape, checked on the source: modules import each other without cycles (function-level
imports included), and functions stay short enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("advisor", "distill")
#: the longest a function may be, from its def line to its last line
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


def _imports(tree: ast.AST, mods: dict[str, Path]) -> set[str]:
    """The project modules a module imports anywhere in its body (``from pkg import sub`` is ``pkg.sub``)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
            found |= set(subs) if len(subs) == len(node.names) else {node.module, *subs}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m in mods}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_another_in_a_cycle() -> None:
    mods = _modules()
    edges = {m: _imports(ast.parse(p.read_text(encoding="utf-8")), mods) - {m} for m, p in mods.items()}
    assert _cycles(edges) == []


def test_no_package_of_advisor_imports_another_in_a_cycle() -> None:
    """The subpackages are layers (docs/architecture.md): a package imports only those below it."""
    mods = _modules()

    def package(module: str) -> str:  # advisor.climb.policy -> advisor.climb; advisor.types stays itself
        return ".".join(module.split(".")[:2])

    edges: dict[str, set[str]] = {}
    for m, p in mods.items():
        if m.startswith("advisor."):
            targets = {package(t) for t in _imports(ast.parse(p.read_text(encoding="utf-8")), mods)}
            edges.setdefault(package(m), set()).update(
                t for t in targets if t.startswith("advisor.") and t != package(m)
            )
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import() -> None:
    mods = {"a": Path("a.py"), "b": Path("b.py"), "c": Path("c.py")}
    a = ast.parse("import b\n")
    b = ast.parse("def f():\n    from c import x\n")
    c = ast.parse("import a\n")
    edges = {name: _imports(tree, mods) for name, tree in (("a", a), ("b", b), ("c", c))}
    assert _cycles(edges) == [["a", "b", "c"]]


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []


def test_no_product_code_parses_a_run_id() -> None:
    """Roles and numbers are read from a run's key; only RunKey.from_legacy_id reads an id (old records)."""
    parsing = re.compile(
        r"run_id\)?\.(endswith|startswith|split|rsplit|partition|rpartition|removesuffix|count)\(|run_id\["
    )
    found = []
    for name, path in _modules().items():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if parsing.search(line):
                found.append(f"{name}:{i}: {line.strip()}")
    assert found == []
    assert parsing.search("if r.run_id.startswith(f'{rung}-t'):") and parsing.search("name = run_id[:-3]")
