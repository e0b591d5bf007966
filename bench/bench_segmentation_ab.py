"""Runtime A/B of the tumour search: another commit's ``segmentation`` package against this one's,
calls interleaved on the same arrays in one process (the fair comparison on a shared machine).

Usage::

    python bench/bench_segmentation_ab.py --base COMMIT [--case 01] [-n 3]

:func:`segment_tumours` on the IRCADb case's CT and its reference liver mask. The base commit's
``segmentation/`` folder is extracted with ``git archive`` into a temporary folder and imported as
``segmentation_base`` (the rest of hepatoplan is this checkout's). ``-n`` rounds of (base, this);
prints CPU and wall seconds per call and whether the lesion masks are identical.
"""

from __future__ import annotations

import argparse
import importlib
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

from bench_segmentation import DATA  # this folder is on sys.path when run as a script

from hepatoplan.pipeline import io as hio
from hepatoplan.segmentation import segment_tumours

ROOT = Path(__file__).resolve().parents[1]


def base_function(commit: str, folder: Path):
    tar = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "segmentation"], check=True,
                         capture_output=True).stdout
    tarfile.open(fileobj=io.BytesIO(tar)).extractall(folder, filter="data")
    (folder / "segmentation").rename(folder / "segmentation_base")
    sys.path.insert(0, str(folder))
    return importlib.import_module("segmentation_base.tumours").segment_tumours


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the commit to compare with (e.g. main)")
    ap.add_argument("--case", default="01")
    ap.add_argument("-n", type=int, default=3, help="rounds of (base, this)")
    args = ap.parse_args(argv)
    image = hio.read_image(DATA / "ircadb" / args.case / "ct.nii.gz")
    liver = hio.read_labels(DATA / "ircadb" / args.case / "liver.nii.gz").array > 0
    with tempfile.TemporaryDirectory() as tmp:
        base = base_function(args.base, Path(tmp))
        for rnd in range(args.n):
            masks = {}
            for name, fn in (("base", base), ("this", segment_tumours)):
                t, c = time.perf_counter(), time.process_time()
                labels, info = fn(image.array, liver, spacing_mm=image.spacing_mm)
                masks[name] = labels > 0
                print(f"{name} round {rnd}: CPU {time.process_time() - c:.2f} s, wall {time.perf_counter() - t:.2f} s, "
                      f"{info['n_lesions']} lesions, {int(masks[name].sum())} voxels", flush=True)
            print(f"round {rnd}: lesion masks identical: {bool(np.array_equal(masks['base'], masks['this']))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
