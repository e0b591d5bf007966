"""The vessel trees beside the Couinaud division, as ``plan`` runs them, in interleaved fresh processes.

    python bench/bench_trees_window.py --rev 6823315 [--this REV] [--runs 8] [--case 01] [--alone]

IRCADb ``--case``'s liver, portal and hepatic masks read as ``plan`` reads them (``read_labels(binary=True)``), the
modules and the compiled transform loaded first; then, timed from one instant: ``prepare_vessel_trees(nearest_nodes=True,
deferred=True)`` and its ``prepare`` in a thread (``plan`` submits it when the masks are read) while the main thread
divides the liver (``segment_couinaud``, as the plan's ``couinaud`` stage). Per run: when the division ends, when the
trees are done (s), the division's main-thread CPU and the process's CPU (s, every thread: the trees, the division
and its helpers). ``--alone``: the trees only (their process CPU). Both revisions are imported as in
bench_plan_ab.py (``--rev`` exported with ``git archive``; ``--this``: this side too, instead of the checkout).
Compare the medians; on a shared machine only interleaved pairs compare.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_plan import CASES
from bench_plan_ab import other_revision

RUN = """
import json, resource, sys, threading, time
import numpy as np
from hepatoplan.couinaud import segment_couinaud
from hepatoplan.nearest_voxel import load_compiled
from hepatoplan.pipeline.io import read_labels
from hepatoplan.resection.vascular import prepare_vessel_trees

folder, alone = sys.argv[1], sys.argv[2] == "alone"
load_compiled()
liver_vol = read_labels(f"{folder}/liver.nii.gz", binary=True)
liver, spacing = liver_vol.array, liver_vol.spacing_mm
portal = read_labels(f"{folder}/portal_vein.nii.gz", binary=True).array
hepatic = read_labels(f"{folder}/hepatic_veins.nii.gz", binary=True).array


def cpu_s():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


out = {}
start, cpu = time.perf_counter(), cpu_s()
trees = prepare_vessel_trees(liver=liver, spacing_mm=spacing, portal=portal, hepatic=hepatic, nearest_nodes=True,
                             deferred=True)


def prepare():
    trees.prepare()
    out["trees_done_s"] = time.perf_counter() - start


thread = threading.Thread(target=prepare)
thread.start()
if not alone:
    main_cpu = time.thread_time()
    segment_couinaud(liver, portal, hepatic, spacing_mm=spacing)
    out["division_done_s"] = time.perf_counter() - start
    out["division_main_cpu_s"] = time.thread_time() - main_cpu
thread.join()
out["process_cpu_s"] = cpu_s() - cpu
print(json.dumps(out))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="the other revision (git)")
    parser.add_argument("--this", help="instead of this checkout, another revision (git) too")
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--case", default="01")
    parser.add_argument("--alone", action="store_true", help="the trees only, no division beside them")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trees-window-") as tmp:
        sides = {}
        for name, rev in ((options.rev, options.rev), (options.this or "this", options.this)):
            folder = Path(tmp) / f"rev{len(sides)}"
            folder.mkdir()
            sides[name] = other_revision(rev, folder) if rev else ""
        results: dict[str, list[dict]] = {name: [] for name in sides}
        for i in range(options.runs):
            for name in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                proc = subprocess.run([sys.executable, "-c", sides[name] + "\n" + RUN, str(CASES / options.case),
                                       "alone" if options.alone else "window"], capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(proc.stderr)
                results[name].append(json.loads(proc.stdout.splitlines()[-1]))
                load = open("/proc/loadavg").read().split()[0]
                print(f"{name:>10} " + " ".join(f"{k} {v:.3f}" for k, v in results[name][-1].items()) + f"  load {load}",
                      flush=True)
        for name, runs in results.items():
            print(f"{name:>10} medians: " + " ".join(f"{k} {statistics.median(r[k] for r in runs):.3f}" for k in runs[0]))


if __name__ == "__main__":
    main()
