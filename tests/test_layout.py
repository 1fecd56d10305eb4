"""The house's sizes (issue 28): no module of namesmith/ over MAX_MODULE_LINES lines, no function over
MAX_FUNCTION_LINES. A reader should find one concept per module and read a function on one screen.

What is still over is listed below at its size today, so the lists can only shrink: a listed module or function
that grows fails, as does one that fits again and is still listed (take it off the list).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "namesmith"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80  # from its `def` line to its last line

# Still over, at their size today: each is to be split (issue 28), never to grow.
MODULES_OVER = {
}
FUNCTIONS_OVER = {
}


@functools.cache  # the package as it is for this run: read once (parsing it all takes half a second)
def module_lines() -> dict[str, int]:
    return {path.relative_to(ROOT).as_posix(): len(path.read_text(encoding="utf-8").splitlines())
            for path in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def function_lines() -> dict[str, int]:
    """'path:Class.function' → lines, for every function of the package (nested ones too, by their own length)."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str, path: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    key = f"{path}:{name}"
                    found[key] = max(found.get(key, 0), child.end_lineno - child.lineno + 1)
                visit(child, f"{name}.", path)
            else:
                visit(child, prefix, path)

    for path in sorted(PACKAGE.rglob("*.py")):
        visit(ast.parse(path.read_text(encoding="utf-8")), "", path.relative_to(ROOT).as_posix())
    return found


def over(sizes: dict[str, int], bound: int, allowed: dict[str, int]) -> list[str]:
    return [f"{name}: {size} lines (at most {allowed.get(name, bound)})"
            for name, size in sizes.items() if size > allowed.get(name, bound)]


def still_listed(sizes: dict[str, int], bound: int, allowed: dict[str, int]) -> list[str]:
    return [f"{name}: {sizes.get(name, 'gone')} (fits in {bound} now, or is gone: take it off the list)"
            for name in allowed if sizes.get(name, 0) <= bound]


def test_no_module_is_longer_than_its_bound():
    assert over(module_lines(), MAX_MODULE_LINES, MODULES_OVER) == []


def test_no_function_is_longer_than_its_bound():
    assert over(function_lines(), MAX_FUNCTION_LINES, FUNCTIONS_OVER) == []


def test_the_lists_of_what_is_still_over_only_shrink():
    assert still_listed(module_lines(), MAX_MODULE_LINES, MODULES_OVER) == []
    assert still_listed(function_lines(), MAX_FUNCTION_LINES, FUNCTIONS_OVER) == []


def test_the_checks_find_what_is_too_long():
    """The checks themselves, on sizes made up: a long module, a long method, one that shrank off its list."""
    sizes = {"namesmith/a.py": 501, "namesmith/b.py": 500, "namesmith/c.py": 600}
    assert over(sizes, 500, {"namesmith/c.py": 600}) == ["namesmith/a.py: 501 lines (at most 500)"]
    assert still_listed(sizes, 500, {"namesmith/b.py": 510}) == [
        "namesmith/b.py: 500 (fits in 500 now, or is gone: take it off the list)"]
    assert function_lines()["namesmith/training/train.py:train"] <= MAX_FUNCTION_LINES
