"""Benchmark the intake (issue 14): time to read and check the inputs of a plan, this checkout
against another one (A/B, interleaved, each run a fresh process).

    python bench/bench_intake.py [--baseline DIR] [--runs 5]

Reads, as ``plan`` does them: IRCADb 01's CT header-only (the reference grid when every mask is
given: since issue 14 its whole gzip stream is decoded and checked), the CT in full (automatic
segmentation), its liver mask, and the TotalSegmentator DICOM series (20 JPEG 2000 slices: headers
read with pydicom, pixels decoded by GDCM). ``--baseline`` is another checkout of hepatoplan (e.g.
``git worktree add /tmp/base <commit>``), imported from its folders; runs alternate between the
two so that load on the machine hits both alike. Prints medians (and min) in seconds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PACKAGES = [("hepatoplan", "hepatoplan"), ("hepatoplan.pipeline", "pipeline"),
            ("hepatoplan.segmentation", "segmentation"), ("hepatoplan.couinaud", "couinaud"),
            ("hepatoplan.resection", "resection"), ("hepatoplan.planning", "planning"),
            ("hepatoplan.data_samples", "data_samples")]
CHILD = """
import importlib.util, json, sys, time
root = sys.argv[1]
for name, folder in {packages!r}:
    spec = importlib.util.spec_from_file_location(name, f"{{root}}/{{folder}}/__init__.py",
                                                  submodule_search_locations=[f"{{root}}/{{folder}}"])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
from hepatoplan.pipeline import io
data = sys.argv[2]
reads = {{
    "CT header-only": lambda: io.read_image(f"{{data}}/ircadb/01/ct.nii.gz", name="CT", header_only=True),
    "CT full": lambda: io.read_image(f"{{data}}/ircadb/01/ct.nii.gz", name="CT"),
    "liver mask": lambda: io.read_labels(f"{{data}}/ircadb/01/liver.nii.gz", name="--liver"),
    "DICOM series (20 slices)": lambda: io.read_image(f"{{data}}/totalsegmentator/ct_contrast_dicom", name="CT"),
}}
io.read_labels(f"{{data}}/ircadb/01/liver.nii.gz")  # imports (nibabel, pydicom) out of the timings
out = {{}}
for what, read in reads.items():
    start = time.perf_counter()
    read()
    out[what] = time.perf_counter() - start
print(json.dumps(out))
""".format(packages=PACKAGES)


def run(root: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), str(DATA)], capture_output=True, text=True,
                          check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another hepatoplan checkout to compare with")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    sides = {"this checkout": ROOT, **({f"baseline ({args.baseline})": args.baseline} if args.baseline else {})}
    times: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
    for _ in range(args.runs):
        for side, root in sides.items():  # interleaved
            for what, seconds in run(root).items():
                times[side].setdefault(what, []).append(seconds)
    names = list(next(iter(times.values())))
    print("| read | " + " | ".join(f"{side}: median (min) s" for side in sides) + " |")
    print("|---|" + "---|" * len(sides))
    for what in names:
        cells = [f"{statistics.median(times[s][what]):.2f} ({min(times[s][what]):.2f})" for s in sides]
        print(f"| {what} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
