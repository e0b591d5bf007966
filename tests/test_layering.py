"""Architecture: one import name; domain packages never import ``pipeline``."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ("pipeline", "segmentation", "couinaud", "resection", "planning", "data_samples")
DOMAIN = ("segmentation", "couinaud", "resection", "planning")


def _imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def _python_files():
    for folder in (*GENERIC, "hepatoplan", "tests", "bench"):
        yield from (ROOT / folder).rglob("*.py")


def test_no_bare_import_of_a_generic_name():
    """``import pipeline`` would load a second copy from the working directory (or a foreign
    distribution of that name): everything is imported as ``hepatoplan.<package>``."""
    files = list(_python_files())
    assert len(files) > 50
    for path in files:
        for name in _imports(path):
            assert name.split(".")[0] not in GENERIC, f"{path.relative_to(ROOT)} imports {name}"


@pytest.mark.parametrize("package", DOMAIN)
def test_domain_packages_do_not_import_pipeline(package):
    files = list((ROOT / package).glob("*.py"))
    assert files, f"{package}/ has no modules"
    for path in files:
        for name in _imports(path):
            assert not name.startswith("hepatoplan.pipeline"), f"{path.relative_to(ROOT)} imports {name}"


def test_only_pipeline_io_uses_simpleitk_or_nibabel_for_files():
    """Orientation and file formats live in pipeline/io.py (data_samples writes its own phantoms)."""
    for package in DOMAIN:
        for path in (ROOT / package).glob("*.py"):
            for name in _imports(path):
                assert name.split(".")[0] != "nibabel", f"{path.relative_to(ROOT)} imports {name}"
