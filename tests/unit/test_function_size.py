"""No function in crisper/ runs over 50 lines, and no module over 500 (CONVENTIONS: small
functions and modules), read by AST and by line count.

Migrations are left out: each is a frozen record of a schema step already applied in the
field, not code to reshape (0001's and 0003's `upgrade` are longer).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "crisper"
LIMIT = 50


def long_functions(root: Path, limit: int = LIMIT) -> list[str]:
    """`path:line name (n lines)` for each function (nested ones too) longer than `limit`."""
    found = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.relative_to(root).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} "
                                 f"({length} lines)")
    return found


def test_no_function_over_fifty_lines() -> None:
    assert long_functions(ROOT) == []


def test_the_reader_finds_a_long_function(tmp_path: Path) -> None:
    """A long function made on purpose is found, so an empty answer above is not a blind one."""
    body = "\n".join(f"    x{i} = {i}" for i in range(LIMIT))
    (tmp_path / "long.py").write_text(f"def long() -> None:\n{body}\n\n\ndef short() -> None:\n"
                                      "    pass\n")
    assert long_functions(tmp_path) == [f"{tmp_path.name}/long.py:1 long ({LIMIT + 1} lines)"]


MODULE_LIMIT = 500


def long_modules(root: Path, limit: int = MODULE_LIMIT) -> list[str]:
    """`path (n lines)` for each module of `root` longer than `limit` lines (issue #12)."""
    return [f"{path.relative_to(root.parent)} ({n} lines)" for path in sorted(root.rglob("*.py"))
            if (n := len(path.read_text().splitlines())) > limit]


def test_no_module_over_five_hundred_lines() -> None:
    assert long_modules(ROOT) == []


def test_the_reader_finds_a_long_module(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("x = 1\n" * (MODULE_LIMIT + 1))
    (tmp_path / "small.py").write_text("x = 1\n")
    assert long_modules(tmp_path) == [f"{tmp_path.name}/big.py ({MODULE_LIMIT + 1} lines)"]
