"""Run reference plans and compare their outputs with another run: a refactoring check.

    python bench/compare_outputs.py run DIR            # run the reference plans into DIR
    python bench/compare_outputs.py diff DIR_A DIR_B   # compare two such folders

The plans (each in a fresh process of this Python, ``python -m hepatoplan.pipeline.cli``, as a user runs it):

* ``demo``: ``hepatoplan demo``;
* ``ircadb01_masks``: IRCADb 01 with its liver, tumour, portal and hepatic masks (Couinaud derived),
  a right hepatectomy plus ``wedge:all``, default outputs;
* ``ircadb01_auto``: IRCADb 01 from the CT alone (automatic masks), right hepatectomy.

``diff`` compares ``report.json`` numbers exactly (paths, timestamps, provenance and the
``outputs`` list ignored), every label map voxel for voxel (NIfTI, NRRD arrays), mesh vertex and
face arrays, and lists files present in one folder only. Exit 0 when identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IRCADB = ROOT.parent / "shared" / "data" / "ircadb" / "01"
PLANS = {
    "demo": ["demo"],
    "ircadb01_masks": ["plan", str(IRCADB / "ct.nii.gz"), "--liver", str(IRCADB / "liver.nii.gz"),
                       "--tumours", str(IRCADB / "tumours.nii.gz"), "--portal", str(IRCADB / "portal_vein.nii.gz"),
                       "--hepatic", str(IRCADB / "hepatic_veins.nii.gz"), "--resect", "right-hepatectomy",
                       "--resect", "wedge:all"],
    "ircadb01_auto": ["plan", str(IRCADB / "ct.nii.gz"), "--resect", "right-hepatectomy"],
}
IGNORED_KEYS = {"provenance", "outputs", "path", "created_utc", "timing_s", "seconds"}


def run(folder: Path) -> None:
    for name, args in PLANS.items():
        out = folder / name
        proc = subprocess.run([sys.executable, "-m", "hepatoplan.pipeline.cli", *args, "--out", str(out)],
                              capture_output=True, text=True)
        print(f"{name}: exit {proc.returncode}")
        if proc.returncode:
            print(proc.stderr)


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in IGNORED_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if isinstance(value, str) and ("/" in value):
        return Path(value).name  # paths differ between checkouts
    return value


def _json_diff(a, b, where="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in {'A' if k in a else 'B'}" for k in set(a) ^ set(b)]
        for k in sorted(set(a) & set(b)):
            out += _json_diff(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} vs {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _json_diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def _arrays(path: Path) -> dict[str, np.ndarray]:
    name = path.name
    if name.endswith((".nii.gz", ".nii")):
        import SimpleITK as sitk

        image = sitk.ReadImage(str(path))
        return {"voxels": sitk.GetArrayFromImage(image), "spacing": np.array(image.GetSpacing()),
                "origin": np.array(image.GetOrigin()), "direction": np.array(image.GetDirection())}
    if name.endswith(".nrrd"):
        import nrrd

        data, header = nrrd.read(str(path))
        return {"voxels": data, "space_origin": np.asarray(header.get("space origin", [0, 0, 0]), float)}
    if name.endswith((".stl", ".obj", ".glb")):
        import trimesh

        mesh = trimesh.load(str(path), force="mesh")
        return {"vertices": np.asarray(mesh.vertices), "faces": np.asarray(mesh.faces)}
    if name.endswith(".dcm"):
        import pydicom

        return {"pixels": pydicom.dcmread(str(path)).pixel_array}
    return {}


def diff(a: Path, b: Path) -> int:
    problems = []
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file()}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file()}
    problems += [f"{f}: only in {a}" for f in sorted(files_a - files_b)]
    problems += [f"{f}: only in {b}" for f in sorted(files_b - files_a)]
    for rel in sorted(files_a & files_b):
        if rel.name == "report.json":
            ja, jb = (_strip(json.loads((d / rel).read_text())) for d in (a, b))
            problems += [f"{rel}{d}" for d in _json_diff(ja, jb)]
            continue
        xa, xb = _arrays(a / rel), _arrays(b / rel)
        for key in xa:
            if xa[key].shape != xb[key].shape or not np.array_equal(xa[key], xb[key]):
                problems.append(f"{rel}: {key} differs")
    print("\n".join(problems) or "identical")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("folder", type=Path)
    d = sub.add_parser("diff")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    opts = parser.parse_args()
    if opts.cmd == "run":
        run(opts.folder)
        return 0
    return diff(opts.a, opts.b)


if __name__ == "__main__":
    sys.exit(main())
