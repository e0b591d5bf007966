"""The default plan's memory and kernel time, another revision against this checkout, in interleaved fresh processes.

    python bench/bench_plan_memory.py --rev 697e872 [--runs 6] [--case 07] [--no-preview]

IRCADb ``--case`` (default 01) with its four masks, Couinaud derived, ``--resect right-hepatectomy`` (bench_plan.py's
``default`` row; ``--no-preview`` its ``no-preview`` row); ``--rev`` is imported as bench_plan_ab.py does. Each run is
timed by ``/usr/bin/time`` (GNU time): wall, user and system seconds and minor page faults of the plan's process and
the children it waited for (its helper), and the largest resident set among them (the plan's own: its high-water
mark). The plan keeps freed memory in one heap (``pipeline/cli.py``, ``MALLOC_SETTINGS``), so its minor faults are
that heap's high-water mark in 4 kB pages, each zeroed by the kernel (system time), and freed again at the exit.
Compare the medians: fault counts and peaks barely move with the load, seconds do.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_plan import rows_for
from bench_plan_ab import MAIN, other_revision

FIELDS = ("wall_s", "user_s", "system_s", "minor_faults", "max_rss_gb")


def run(code: str, args: list[str]) -> dict:
    proc = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %R %M", sys.executable, "-c", code + MAIN, *args],
                          capture_output=True, text=True)
    line = [text for text in proc.stderr.splitlines() if text.startswith("TIME ")]
    if proc.returncode or not line:
        raise SystemExit(proc.stderr)
    wall, user, system, faults, rss_kb = map(float, line[-1].split()[1:])
    return dict(zip(FIELDS, (wall, user, system, faults, rss_kb / 1e6)))


def _line(row: dict) -> str:
    return "  ".join(f"{k} {v / 1e3:.0f}k" if k == "minor_faults" else f"{k} {v:.3f}" for k, v in row.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--case", default="01")
    parser.add_argument("--no-preview", action="store_true")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "rev"
        folder.mkdir()
        codes = {opts.rev: other_revision(opts.rev, folder), "this": "import sys"}
        # the other revision's compiled transform made once, untimed (as bench_plan_ab.py does)
        subprocess.run([sys.executable, "-c", codes[opts.rev] + "; from hepatoplan.nearest_voxel import load_compiled; "
                        "load_compiled()"], check=True)
        # bench_plan.py's own row: the same command
        args = {row: args for _, row, args in rows_for(opts.case, Path(tmp) / "out", False, None)}[
            "no-preview" if opts.no_preview else "default"]
        results: dict[str, list[dict]] = {side: [] for side in codes}
        for i in range(opts.runs):
            for side in (list(codes) if i % 2 == 0 else list(codes)[::-1]):
                shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
                load = os.getloadavg()[0]
                row = run(codes[side], args)
                results[side].append(row)
                print(f"{side:>10} {_line(row)}  load {load:.1f}", flush=True)
    for side, rows in results.items():
        medians = {k: statistics.median(r[k] for r in rows) for k in FIELDS}
        print(f"{side:>10} median {_line(medians)}")


if __name__ == "__main__":
    main()
