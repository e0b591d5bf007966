"""Architecture: domain packages never import ``pipeline``; planning imports no arrays."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOMAIN = ("segmentation", "couinaud", "resection", "planning")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_do_not_import_pipeline(package):
    files = list((ROOT / package).glob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        for name in _imports(path):
            assert name.split(".")[0] != "pipeline", f"{path.relative_to(ROOT)} imports {name}"


def test_only_pipeline_io_uses_simpleitk_or_nibabel_for_files():
    """Orientation and file formats live in pipeline/io.py (data_samples writes its own phantoms)."""
    for package in DOMAIN:
        for path in (ROOT / package).glob("*.py"):
            for name in _imports(path):
                assert name.split(".")[0] != "nibabel", f"{path.relative_to(ROOT)} imports {name}"
