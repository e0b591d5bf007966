"""Code a reader can hold in their head: no function over 100 lines or 10 parameters (dataclasses aside)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("hepatoplan", "pipeline", "segmentation", "couinaud", "resection", "planning", "data_samples")
MAX_LINES, MAX_PARAMETERS = 100, 10


def _functions():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    yield path.relative_to(ROOT), node


def _parameters(node) -> int:
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)] + [p.arg for p in (a.vararg, a.kwarg) if p]
    return len([n for n in names if n not in ("self", "cls")])


def test_no_function_is_too_long_or_takes_too_many_parameters():
    found = list(_functions())
    assert len(found) > 300
    too_long = [f"{path}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1} lines)" for path, f in found
                if f.end_lineno - f.lineno + 1 > MAX_LINES]
    too_many = [f"{path}:{f.lineno} {f.name} ({_parameters(f)} parameters)" for path, f in found
                if _parameters(f) > MAX_PARAMETERS]
    assert not too_long and not too_many, "\n".join(too_long + too_many)


def test_every_slow_entry_names_a_test_that_exists():
    """A renamed test drops out of conftest's SLOW list silently: the quick loop grows unseen."""
    from conftest import SLOW

    tests_dir = Path(__file__).resolve().parent
    stale = []
    for entry in SLOW:
        file_name, _, function = entry.partition("::")
        path = tests_dir / file_name
        functions = {node.name for node in ast.walk(ast.parse(path.read_text()))
                     if isinstance(node, ast.FunctionDef)} if path.is_file() else set()
        if not path.is_file() or (function and function not in functions):
            stale.append(entry)
    assert not stale, f"conftest.SLOW names tests that do not exist: {stale}"
