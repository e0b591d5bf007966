"""Shared fixtures: where the real data lives, and a skip when it is absent; the ``real_data`` marker.

Markers (registered in pyproject.toml):

- ``slow``: set by hand on tests that take more than a few seconds on a quiet 2-core machine
  (``pytest -m "not slow"`` is the quick loop);
- ``real_data``: set here on every test that reads ../shared/data: its function or one of its
  fixtures (however deep) names a module-level path under ``DATA_DIR`` or asks for ``ircadb_dir``
  by name (``pytest -m "not real_data"`` runs without the data).
"""

import sys
import types
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IRCADB_DIR = DATA_DIR / "ircadb"


@pytest.fixture(scope="session")
def ircadb_dir() -> Path:
    if not IRCADB_DIR.is_dir():
        pytest.skip(f"real data not found at {IRCADB_DIR} (CI has it; see ../shared/data/README.md)")
    return IRCADB_DIR


def _data_names(module) -> frozenset[str]:
    """Names of ``module``'s globals that are paths to the shared data (or below it)."""
    return frozenset(name for name, value in vars(module).items()
                     if isinstance(value, Path) and (value == DATA_DIR or DATA_DIR in value.parents))


def _names(code: types.CodeType) -> set[str]:
    """Global names and string constants of a function's code (``request.getfixturevalue("x")``
    names fixture x), its nested functions and comprehensions included."""
    names = set(code.co_names) | {c for c in code.co_consts if isinstance(c, str)}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _reads_data(function) -> bool:
    function = getattr(function, "__wrapped__", function)
    code = getattr(function, "__code__", None)
    module = sys.modules.get(getattr(function, "__module__", ""), None)
    return code is not None and module is not None and bool(_names(code) & (_data_names(module) | {"ircadb_dir"}))


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if any(_reads_data(f) for f in [item.function, *fixtures]):
            item.add_marker(pytest.mark.real_data)
