"""The wheel installs one top-level name, ``hepatoplan``, with the shipped data inside it."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_only_the_hepatoplan_name(tmp_path):
    source = tmp_path / "src"  # a copy: building writes build/ and *.egg-info beside the sources
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", "demo_out"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("hepatoplan-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"hepatoplan"}
    for required in ("hepatoplan/pipeline/cli.py", "hepatoplan/couinaud/segment.py", "hepatoplan/planning/growth.py",
                     "hepatoplan/data_samples/demo/ct.nii.gz", "hepatoplan/pipeline/assets/"):
        assert any(n.startswith(required) for n in names), required
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hepatoplan = hepatoplan.pipeline.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
