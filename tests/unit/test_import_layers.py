"""House rule: the library's modules import one another without a circle.

Every import counts, including those inside functions (a lazy import still ties two modules
together: a change to either can break the other). A package's ``__init__`` re-exporting its
own submodules is not a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import routelmt

ROOT = Path(routelmt.__file__).resolve().parent


def _modules(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    targets = {m for m in found if m in modules and m != name}
    if path.name == "__init__.py":
        targets = {m for m in targets if not m.startswith(name + ".")}
    return targets


def import_circles(root: Path) -> list[list[str]]:
    """Strongly connected groups of more than one module in the import graph under ``root``."""
    modules = _modules(root)
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return circles


def test_no_import_circle_in_the_library():
    assert import_circles(ROOT) == []


def test_the_check_finds_a_circle(tmp_path: Path):
    pkg = tmp_path / "routelmt"
    (pkg / "pipeline").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "pipeline" / "__init__.py").write_text("from routelmt.pipeline.a import x\n")
    (pkg / "pipeline" / "a.py").write_text("from routelmt.pipeline.b import y\nx = 1\n")
    (pkg / "pipeline" / "b.py").write_text("def y():\n    from routelmt.pipeline.a import x\n")
    assert import_circles(pkg) == [["routelmt.pipeline.a", "routelmt.pipeline.b"]]
