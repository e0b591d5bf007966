"""Shared fixtures: where the real data lives, and a skip when it is absent."""

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IRCADB_DIR = DATA_DIR / "ircadb"


@pytest.fixture(scope="session")
def ircadb_dir() -> Path:
    if not IRCADB_DIR.is_dir():
        pytest.skip(f"real data not found at {IRCADB_DIR} (CI has it; see ../shared/data/README.md)")
    return IRCADB_DIR
