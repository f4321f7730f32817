"""House rule: no function in the library is longer than 80 lines (nested functions count
toward the function that holds them), so each one can be read whole."""

from __future__ import annotations

import ast
from pathlib import Path

import routelmt

LIMIT = 80


def test_no_function_over_80_lines():
    root = Path(routelmt.__file__).resolve().parent
    long = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > LIMIT:
                    long.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length})")
    assert not long, "functions over 80 lines: " + ", ".join(long)
