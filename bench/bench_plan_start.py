"""When the plan's first steps happen, for revisions side by side: interleaved fresh processes, medians.

    python bench/bench_plan_start.py 6823315 this [REV ...] [--runs 6] [--no-preview]

IRCADb 01 with its four masks, ``--resect right-hepatectomy`` (bench_plan_ab.py's plan), each revision run through
bench_plan_timeline.py's probe (its events: stages and work items, seconds since the interpreter's start) and
imported as bench_plan_ab.py imports another revision (``this``: this checkout). Per run: the main thread's imports
done (``imported``), the masks' reads begun and ended, the CT's read (``partial``) ended, the checks ended, the vessel
trees' start (``VesselTrees.prepare``) and end, the Couinaud division's start and end, the plan done, the process's
wall and CPU seconds (with its children). One warm-up round first, not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_plan import IRCADB
from bench_plan_ab import other_revision
from bench_plan_timeline import PROBE

#: Column → the first (``first``) or last event of that text.
MILESTONES = {"imported": "imported", "masks_begin": "start load_masks.<locals>.read",
              "masks_end": "end load_masks.<locals>.read", "ct_end": "end partial", "checks_end": "exit checks",
              "trees_start": "start VesselTrees.prepare", "division_start": "enter couinaud",
              "division_end": "exit couinaud", "trees_end": "end VesselTrees.prepare", "done": "plan done"}
FIRST = {"masks_begin", "trees_start", "division_start"}


def milestones(events: list) -> dict[str, float]:
    found: dict[str, float] = {}
    for t, _, what in events:
        for name, text in MILESTONES.items():
            if what == text and not (name in FIRST and name in found):
                found[name] = t
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs="+", help="git revisions, or 'this' for this checkout")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--no-preview", action="store_true")
    options = parser.parse_args()
    masks = [f"--{flag}={IRCADB / name}.nii.gz" for flag, name in
             (("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins"))]
    columns = [*MILESTONES, "wall", "cpu"]
    with tempfile.TemporaryDirectory(prefix="plan-start-") as tmp:
        codes = {}
        for rev in options.revisions:
            folder = Path(tmp) / f"rev{len(codes)}"
            folder.mkdir()
            codes[rev] = "pass" if rev == "this" else other_revision(rev, folder)
        results: dict[str, list[dict]] = {rev: [] for rev in codes}
        for i in range(options.runs + 1):
            for rev, code in codes.items():
                out = Path(tmp) / "events.json"
                args = ["plan", str(IRCADB / "ct.nii.gz"), *masks, "--resect", "right-hepatectomy",
                        "--out", str(Path(tmp) / f"out{i}")] + ["--no-preview"] * options.no_preview
                before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                proc = subprocess.run([sys.executable, "-c", code + "\n" + PROBE, *args], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, env={**os.environ, "TIMELINE_OUT": str(out)})
                wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
                if proc.returncode:
                    raise SystemExit(proc.stderr)
                row = milestones(json.loads(out.read_text())["events"])
                row.update(wall=wall, cpu=after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
                if i:
                    results[rev].append(row)
                    print(f"{rev[:10]:>10} load {os.getloadavg()[0]:4.1f} "
                          + " ".join(f"{c} {row.get(c, float('nan')):.2f}" for c in columns), flush=True)
        print("\n| revision | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns))
        for rev, rows in results.items():
            print(f"| {rev} | " + " | ".join(
                f"{statistics.median(r.get(c, float('nan')) for r in rows):.2f}" for c in columns) + " |")


if __name__ == "__main__":
    main()
