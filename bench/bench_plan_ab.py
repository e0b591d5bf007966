"""The default plan of another revision against this checkout, in interleaved fresh processes.

    python bench/bench_plan_ab.py --rev fd9b8f9 [--this REV] [--runs 3] [--no-preview] [--ct-only]

IRCADb 01 with its four masks, Couinaud derived, ``--resect right-hepatectomy`` (bench_plan.py's
``default`` row; ``--no-preview`` its ``no-preview`` row; ``--ct-only``: the CT alone, every mask
segmented automatically, its ``CT -> plan`` row). ``--rev`` is exported with ``git archive``
into a temporary folder and imported through a copy of this venv's editable-install finder pointed
there (``--this REV``: this side too, instead of the checkout), so both sides run in this Python with the same packages (the other revision's compiled nearest-voxel
transform, numba's cache or the module built ahead of time, is made by one untimed ``load_compiled()`` first). Per run: wall seconds from start to the process's end (interpreter
exit included), CPU = user + system of the plan's process and every process it started (its
helpers, orphans reaped through this script as their subreaper), and the stage seconds of its report.json.
Compare the medians; on a shared machine only interleaved pairs compare.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_plan import IRCADB, ROOT, become_subreaper, reap_orphans

STAGES = ("read", "segmentation", "couinaud", "resection", "vascular", "previews", "report", "total")
MAIN = "\nfrom hepatoplan.pipeline.cli import main; import sys; sys.exit(main(sys.argv[1:]))"


def other_revision(rev: str, folder: Path) -> str:
    """Code that makes ``import hepatoplan`` load revision ``rev`` (exported into ``folder``)."""
    subprocess.run(f"git -C {ROOT} archive {rev} | tar -x -C {folder}", shell=True, check=True)
    finder = next(Path(p) for p in sys.path if p and list(Path(p).glob("__editable___hepatoplan*_finder.py")))
    source = next(finder.glob("__editable___hepatoplan*_finder.py")).read_text()
    (folder / "other_finder.py").write_text(re.sub(re.escape(str(ROOT)), str(folder), source))
    code = (f"import sys; sys.path.insert(0, {str(folder)!r}); "
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in getattr(f, '__module__', '')]; "
            "import other_finder; other_finder.install()")
    # the plan's own Python children (its helper process) load the revision too: their site module imports this
    (folder / "sitecustomize.py").write_text(code + "\n")
    return code + f"; import os; os.environ['PYTHONPATH'] = {str(folder)!r}"


def run(code: str, args: list[str]) -> dict:
    before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code + MAIN, *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    reap_orphans(3.0)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        raise SystemExit(proc.stderr)
    timing = json.loads((Path(args[args.index("--out") + 1]) / "report.json").read_text())["provenance"]["timing_s"]
    return {"wall": wall, "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
            **{s: timing.get(s, 0.0) for s in STAGES}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="the other revision (git), e.g. main")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-preview", action="store_true")
    parser.add_argument("--this", help="instead of this checkout, another revision (git) too")
    parser.add_argument("--ct-only", action="store_true", help="CT -> plan: no mask given")
    options = parser.parse_args()
    become_subreaper()
    with tempfile.TemporaryDirectory(prefix="plan-ab-") as tmp:
        sides = {}
        for name, rev in ((options.rev, options.rev), (options.this or "this", options.this)):
            if rev is None:
                sides[name] = "pass"
                continue
            folder = Path(tmp) / f"rev{len(sides)}"
            folder.mkdir()
            sides[name] = other_revision(rev, folder)
            subprocess.run([sys.executable, "-c", sides[name] + "\nimport numpy as np; "
                            "from hepatoplan.nearest_voxel import load_compiled; load_compiled()"], check=True)
        masks = [f"--{flag}={IRCADB / name}.nii.gz" for flag, name in
                 (("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins"))]
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for i in range(options.runs):
            for side, code in sides.items():
                args = ["plan", str(IRCADB / "ct.nii.gz"), *masks * (not options.ct_only), "--resect", "right-hepatectomy",
                        "--out", str(Path(tmp) / f"{i}-{side[:8]}")] + ["--no-preview"] * options.no_preview
                r = run(code, args)
                results[side].append(r)
                print(f"{side:>10} wall {r['wall']:6.2f} s  CPU {r['cpu']:6.2f} s  load {os.getloadavg()[0]:4.1f} | "
                      + " ".join(f"{s} {r[s]:.2f}" for s in STAGES), flush=True)
        for side, runs in results.items():
            print(f"{side:>10} median wall {statistics.median(r['wall'] for r in runs):.2f} s, "
                  f"CPU {statistics.median(r['cpu'] for r in runs):.2f} s")


if __name__ == "__main__":
    main()
