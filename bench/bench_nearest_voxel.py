"""The nearest vessel voxel of every liver voxel: ``hepatoplan.nearest_voxel`` against scipy.

    python bench/bench_nearest_voxel.py [--cases 01,02] [--runs 2]

For each IRCADb case in ../shared/data and each tree (portal, hepatic): the liver's box grown by 3
voxels (what ``resection.vascular`` transforms), scipy's ``distance_transform_edt(~vessel,
sampling=spacing, return_indices=True)`` read at the liver's voxels, and
:func:`hepatoplan.nearest_voxel.nearest_voxel` on the same box; whether the two name the
same vessel voxel for every liver voxel, and the CPU seconds of each (``time.process_time``, the
best of ``--runs``; runs interleaved). nearest_voxel is a compiled transform;
its one-off cost (numba's import and first call, in a fresh process) is printed beside.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from hepatoplan.arrays import bounding_box, padded_box
from hepatoplan.pipeline.io import read_labels
from hepatoplan.nearest_voxel import nearest_voxel
from hepatoplan.nearest_voxel_compiled import transform

IRCADB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ircadb"
ONE_OFF = ("import time, numpy as np; t = time.process_time(); "
           "from hepatoplan.nearest_voxel_compiled import transform; t1 = time.process_time(); "
           "transform(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), 1.0, 1.0, 1.0); "
           "print(t1 - t, time.process_time() - t1)")


def cpu(function):
    start = time.process_time()
    out = function()
    return out, time.process_time() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(f"{i:02d}" for i in range(1, 13)))
    parser.add_argument("--runs", type=int, default=2)
    opts = parser.parse_args()
    import_s, first_call_s = map(float, subprocess.run([sys.executable, "-c", ONE_OFF], check=True, capture_output=True,
                                                       text=True).stdout.split())
    print(f"one-off per process: numba import {import_s:.2f} s, first call {first_call_s:.2f} s (CPU)\n")
    transform(np.ones((2, 2, 2), bool), np.ones((2, 2, 2), bool), 1.0, 1.0, 1.0)  # that one-off here
    print("| case | tree | box voxels (M) | liver voxels (M) | identical | scipy CPU s | nearest_voxel CPU s |")
    print("|---|---|---|---|---|---|---|")
    all_identical = True
    for case in [c for c in opts.cases.split(",") if (IRCADB / c).is_dir()]:
        vol = read_labels(IRCADB / case / "liver.nii.gz", binary=True)
        box = padded_box(bounding_box(vol.array), [3, 3, 3], vol.array.shape)
        liver, spacing = vol.array[box], vol.spacing_mm
        for tree, file in (("portal", "portal_vein.nii.gz"), ("hepatic", "hepatic_veins.nii.gz")):
            vessel = read_labels(IRCADB / case / file, binary=True).array[box]
            seconds = {"scipy": [], "nearest_voxel": []}
            for _ in range(opts.runs):
                idx, s = cpu(lambda: ndimage.distance_transform_edt(~vessel, sampling=spacing, return_distances=False,
                                                                    return_indices=True))
                expected = np.searchsorted(np.flatnonzero(vessel), np.ravel_multi_index(tuple(i[liver] for i in idx),
                                                                                         liver.shape))
                del idx
                seconds["scipy"].append(s)
                got, s = cpu(lambda: nearest_voxel(vessel, spacing_mm=spacing, at=liver))
                seconds["nearest_voxel"].append(s)
            same = bool(np.array_equal(got, expected))
            all_identical &= same
            print(f"| {case} | {tree} | {liver.size / 1e6:.1f} | {np.count_nonzero(liver) / 1e6:.2f} | "
                  f"{'yes' if same else 'NO'} | {min(seconds['scipy']):.2f} | {min(seconds['nearest_voxel']):.2f} |",
                  flush=True)
    print(f"\nall identical: {'yes' if all_identical else 'NO'}; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores")
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
