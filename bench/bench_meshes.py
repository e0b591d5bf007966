"""The plan's meshes: their CPU against another revision, and how far a variant's meshes lie from today's.

    python bench/bench_meshes.py --rev REV [--runs 6] [--case 01]
    python bench/bench_meshes.py --blocks floor [--case 04]

Inputs: for a case with a CT (IRCADb 01, 07) the label map of its default plan (four masks, derived Couinaud,
``--resect right-hepatectomy``, made here with ``--no-preview`` by this checkout) and its portal and hepatic masks,
as ``plan`` meshes them (:func:`~hepatoplan.pipeline.meshing.structure_meshes` on
:func:`~hepatoplan.pipeline.labels.structures_from_labels`); for a case without one, its Couinaud reference
segments and liver mask.

``--rev``: each side meshes in a fresh process (``REV`` imported as in bench_plan_ab.py), interleaved, the
decimation in its helper process as in a plan; prints the CPU of the meshing call in the process and in the
helper, then compares the last run's meshes of the two sides. ``--blocks floor``: this checkout with the
parenchyma's blocks rounded down to whole voxels (the rule before output15; today's rounds to the nearest)
against today's, one fresh process each.

The comparison, per structure: triangles; distances (mm) from every vertex and triangle centre of each mesh to
the other surface (``vtkImplicitPolyDataDistance``, both ways): mean, 95th percentile, maximum; enclosed volume
against the voxel count (%); closed 2-manifold; pieces (connected components of the mesh).
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_plan import CASES
from bench_plan_ab import other_revision

BODY = r"""
import json, os, pickle, sys, time
import numpy as np
from hepatoplan.pipeline import meshing
from hepatoplan.pipeline.labels import structures_from_labels, label_boxes
inputs, out, blocks = sys.argv[1:4]
z = np.load(inputs)
if "labels" in z:
    structures = structures_from_labels(z["labels"], vessels={"portal vein": z["portal_vein"],
                                        "hepatic veins": z["hepatic_veins"]}, boxes=label_boxes(z["labels"]))
else:
    structures = {k.replace("_", " "): z[k] for k in z.files if k != "affine"}
if blocks == "floor":
    meshing.parenchyma_block_voxels = lambda spacing: tuple(
        max(1, int(max(spacing) / s + 1e-6)) for s in np.asarray(spacing, float))
meshing.structure_meshes({"start": np.pad(np.ones((12, 12, 12), bool), 2)}, affine_ras=z["affine"])  # helper, imports
def helper_s():
    f = open(f"/proc/{meshing._simplifier.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
h, t = helper_s(), time.process_time()
meshes = meshing.structure_meshes(structures, affine_ras=z["affine"])
print(json.dumps({"cpu": time.process_time() - t, "helper": helper_s() - h}))
pickle.dump(meshes, open(out, "wb"))
"""


def make_inputs(case: str, folder: Path) -> Path:
    """The structures' masks of ``case`` as an .npz (see the module's docstring)."""
    from hepatoplan.pipeline import io

    d = CASES / case
    out = folder / f"inputs{case}.npz"
    read = lambda path, name: io.read_image(path, name=name, check_voxels=False)  # noqa: E731
    if (d / "ct.nii.gz").exists():
        plan = folder / f"plan{case}"
        masks = [f"--{flag}={d / f'{name}.nii.gz'}" for flag, name in
                 (("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins"))]
        subprocess.run([sys.executable, "-m", "hepatoplan.pipeline.cli", "plan", str(d / "ct.nii.gz"), *masks,
                        "--resect", "right-hepatectomy", "--no-preview", "--out", str(plan)],
                       check=True, capture_output=True)
        labels = read(plan / "labels.nii.gz", "labels")
        vessels = {name: np.asarray(read(d / f"{name}.nii.gz", name).array) > 0 for name in ("portal_vein", "hepatic_veins")}
        np.savez(out, labels=np.asarray(labels.array).astype(np.int16), affine=labels.affine_ras, **vessels)
    else:
        liver = read(d / "liver.nii.gz", "liver")
        inside = np.asarray(liver.array) > 0
        reference = np.asarray(read(d / "couinaud_reference.nii.gz", "reference").array)
        segments = {f"segment_{k}": (reference == k) & inside for k in range(1, 9) if ((reference == k) & inside).any()}
        np.savez(out, affine=liver.affine_ras, liver=inside, **segments)
    return out


def mesh(code: str, inputs: Path, out: Path, blocks: str = "today") -> dict:
    proc = subprocess.run([sys.executable, "-c", code + BODY, str(inputs), str(out), blocks],
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _distances(source, target) -> np.ndarray:
    from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    from vtkmodules.vtkFiltersCore import vtkImplicitPolyDataDistance

    from hepatoplan.pipeline.meshing import arrays_polydata

    distance = vtkImplicitPolyDataDistance()
    distance.SetInput(arrays_polydata(target.vertices_mm, target.faces))
    points = np.r_[source.vertices_mm, source.vertices_mm[source.faces].mean(axis=1)].astype(np.float64)
    values = vtkDoubleArray()
    distance.FunctionValue(numpy_to_vtk(points, deep=True), values)
    return np.abs(vtk_to_numpy(values))


def _pieces(mesh) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    f, n = mesh.faces, len(mesh.vertices_mm)
    graph = coo_matrix((np.ones(2 * len(f)), (np.r_[f[:, 0], f[:, 1]], np.r_[f[:, 1], f[:, 2]])), shape=(n, n))
    return connected_components(graph, directed=False)[0]


def compare(a: dict, b: dict, inputs: Path) -> None:
    """Print the per-structure table of ``b``'s meshes against ``a``'s."""
    from hepatoplan.pipeline.labels import label_boxes, structures_from_labels
    from hepatoplan.pipeline.meshing import is_closed_manifold, mesh_volume_mm3

    z = np.load(inputs)
    if "labels" in z:
        masks = structures_from_labels(z["labels"], vessels={"portal vein": z["portal_vein"],
                                       "hepatic veins": z["hepatic_veins"]}, boxes=label_boxes(z["labels"]))
    else:
        masks = {k.replace("_", " "): z[k] for k in z.files if k != "affine"}
    voxel_mm3 = abs(np.linalg.det(z["affine"][:3, :3]))
    print("| structure | triangles | mean mm | HD95 mm | HD max mm | volume vs voxels % | closed manifold | pieces |")
    print("|---|---|---|---|---|---|---|---|")
    worst = {"mean": 0.0, "hd95": 0.0}
    for name, old in a.items():
        new = b[name]
        d = np.r_[_distances(old, new), _distances(new, old)]
        voxels_mm3 = np.count_nonzero(masks[name]) * voxel_mm3
        volume = " → ".join(f"{100 * (mesh_volume_mm3(m) / voxels_mm3 - 1):+.2f}" for m in (old, new))
        worst = {"mean": max(worst["mean"], d.mean()), "hd95": max(worst["hd95"], np.percentile(d, 95))}
        print(f"| {name} | {len(old.faces)} → {len(new.faces)} | {d.mean():.3f} | {np.percentile(d, 95):.3f} "
              f"| {d.max():.2f} | {volume} | {is_closed_manifold(new.faces)} | {_pieces(old)} → {_pieces(new)} |")
    print(f"\nworst mean {worst['mean']:.3f} mm, worst HD95 {worst['hd95']:.3f} mm; triangles "
          f"{sum(len(m.faces) for m in a.values())} → {sum(len(m.faces) for m in b.values())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="the other revision (git): CPU A/B and comparison against it")
    parser.add_argument("--blocks", choices=["floor"], help="this checkout's variant against today's")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--case", default="01")
    options = parser.parse_args()
    if bool(options.rev) == bool(options.blocks):
        parser.error("give --rev or --blocks")
    with tempfile.TemporaryDirectory(prefix="bench-meshes-") as tmp:
        tmp = Path(tmp)
        inputs = make_inputs(options.case, tmp)
        if options.blocks:
            sides = {"today": ("", "today"), options.blocks: ("", options.blocks)}
            runs = 1
        else:
            (tmp / "rev").mkdir()
            sides = {options.rev: (other_revision(options.rev, tmp / "rev") + "\n", "today"), "this": ("", "today")}
            runs = options.runs
        results = {name: [] for name in sides}
        for i in range(runs):
            for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                code, blocks = sides[name]
                results[name].append(mesh(code, inputs, tmp / f"{name}.pkl", blocks))
        load = " ".join(open("/proc/loadavg").read().split()[:3])
        for name, rows in results.items():
            cpu = ", ".join(f"{r['cpu']:.3f}" for r in rows)
            print(f"{name:>10}: meshing CPU in the process {cpu} s "
                  f"(median {statistics.median(r['cpu'] for r in rows):.3f}), in the decimation helper median "
                  f"{statistics.median(r['helper'] for r in rows):.3f} s")
        print(f"load at the end (1, 5, 15 min): {load}\n")
        a, b = (pickle.load(open(tmp / f"{name}.pkl", "rb")) for name in sides)
        compare(a, b, inputs)


if __name__ == "__main__":
    main()
