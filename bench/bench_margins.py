"""Accuracy of wedge volumes (partial voxels along the constructed margin) on analytic spheres.

    python bench/bench_margins.py [--offsets 8] [--write] [--clearance]

For tumour radii 10 and 20 mm and margins 1 and 5 mm at 0.75×0.75×2.0 mm, the sphere centre is
placed at random sub-voxel offsets (seeded) and the resected volume compared with
4/3·π·(r + m)³. ``--write`` replaces the "## wedge margin volumes" section of bench/RESULTS.md.
``--clearance`` also prints, for 1 and 5 mm wedges of every lesion of ircadb 01 (../shared/data),
the smallest clearance between each lesion's voxels and the kept liver of the label map (voxels
with a resected share < 0.5), surface to surface, as the plan reports it for anatomical resections.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_plan import write_section  # noqa: E402

from hepatoplan.resection.procedures import parse_resection  # noqa: E402
from hepatoplan.resection.virtual import plan_resection  # noqa: E402

SPACING_MM = (0.75, 0.75, 2.0)


def error_percent(radius_mm: float, margin_mm: float, offset_mm) -> float:
    n = [int(2 * (radius_mm + margin_mm + 15) / s) for s in SPACING_MM]
    axes = [np.arange(k) * s - (k - 1) / 2 * s + o for k, s, o in zip(n, SPACING_MM, offset_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    rho = np.sqrt(x * x + y * y + z * z)
    res = plan_resection(liver=rho < radius_mm + margin_mm + 12, tumours=(rho < radius_mm).astype(np.uint8),
                         segments=None, resections=[parse_resection(f"wedge:1@{margin_mm:g}")],
                         spacing_mm=SPACING_MM)
    return 100.0 * (res.resected_ml / (4 / 3 * np.pi * (radius_mm + margin_mm) ** 3 / 1000) - 1)


def ircadb_clearances(margin_mm: float) -> list[float]:
    """Per-lesion clearance (mm) of ``wedge:all@margin_mm`` on ircadb 01's label map."""
    import cc3d
    from bench_plan import IRCADB

    from hepatoplan.pipeline.io import read_labels
    from hepatoplan.resection.virtual import _clearance_mm
    from hepatoplan.resection.volumetry import VoxelSet, boundary_voxels, voxel_indices

    liver_vol = read_labels(IRCADB / "liver.nii.gz")
    liver, spacing = liver_vol.array > 0, liver_vol.spacing_mm
    lesions = cc3d.connected_components(read_labels(IRCADB / "tumours.nii.gz").array > 0)
    res = plan_resection(liver=liver, tumours=lesions, segments=None,
                         resections=[parse_resection(f"wedge:all@{margin_mm:g}")], spacing_mm=spacing)
    kept = VoxelSet(voxel_indices(boundary_voxels(liver & (res.resected_fraction < 0.5))), spacing_mm=spacing)
    return [_clearance_mm(voxel_indices(boundary_voxels(lesions == i)), kept, spacing)
            for i in range(1, int(lesions.max()) + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--offsets", type=int, default=8)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--clearance", action="store_true", help="label-map clearances on ircadb 01")
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-0.5, 0.5, (opts.offsets, 3)) * np.asarray(SPACING_MM)
    lines = ["| radius (mm) | margin (mm) | error min (%) | error mean (%) | error max (%) |", "|---|---|---|---|---|"]
    for radius in (10.0, 20.0):
        for margin in (1.0, 5.0):
            errors = [error_percent(radius, margin, o) for o in offsets]
            lines.append(f"| {radius:g} | {margin:g} | {min(errors):+.2f} | {np.mean(errors):+.2f} | {max(errors):+.2f} |")
    table = "\n".join(lines)
    print(table)
    if opts.clearance:
        for margin in (1.0, 5.0):
            print(f"ircadb 01, {margin:g} mm wedges: clearance per lesion (mm) "
                  + " ".join(f"{c:.2f}" for c in ircadb_clearances(margin)))
    if opts.write:
        write_section("wedge margin volumes", f"`python bench/bench_margins.py --offsets {opts.offsets} --write` "
                      f"({time.strftime('%Y-%m-%d')}; spacing 0.75×0.75×2.0 mm, random sub-voxel centres)\n\n"
                      f"{table}\n\nDistances to the tumour's smooth surface come from the nearest surface sample's osculating sphere "
                      "(resection/surface.py), with the surface calibrated to enclose the mask's volume and the "
                      "partial-voxel ramp corrected for curvature. Before (second-order fast marching): "
                      "−1.6 … +1.1 % at r = 10 mm.\n")


if __name__ == "__main__":
    main()
