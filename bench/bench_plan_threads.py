"""CPU of the ``--no-preview`` plan per thread's work item: another revision against this checkout, interleaved.

    python bench/bench_plan_threads.py --rev 5c7cde0 [--runs 4] [--resect right-hepatectomy] [--preview | --ct-only]

IRCADb 01 with its four masks, Couinaud derived, ``--no-preview`` (bench_plan.py's ``no-preview`` row; ``--resect
wedge:all`` its ``wedge`` row; ``--ct-only``: the CT alone with default outputs, its ``CT -> plan`` row). Each run is a fresh process (``--rev`` imported as in bench_plan_ab.py) that times, with
``time.thread_time``, every work item of every ``ThreadPoolExecutor`` (named by its function) and every other thread,
the main thread's imports of the CLI and ``plan`` itself, and the process's CPU (``time.process_time``). Prints the
medians per item: where the CPU goes, and which thread carries it (the main thread is the plan's critical path).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from bench_plan import IRCADB
from bench_plan_ab import other_revision

PROBE = r"""
import collections, json, os, sys, threading, time
from concurrent.futures import thread as _cft
_items = collections.defaultdict(float)
_lock = threading.Lock()
_run_item, _run_thread = _cft._WorkItem.run, threading.Thread.run
def _item(self):
    t = time.thread_time()
    try:
        _run_item(self)
    finally:
        with _lock:
            _items[getattr(self.fn, "__qualname__", None) or type(self.fn).__name__] += time.thread_time() - t
def _thread(self):
    t = time.thread_time()
    try:
        _run_thread(self)
    finally:
        if not self.name.startswith("ThreadPool"):
            with _lock:
                _items["thread " + self.name.split("(")[-1].rstrip(")")] += time.thread_time() - t
_cft._WorkItem.run, threading.Thread.run = _item, _thread
_t0, _i0 = time.process_time(), time.thread_time()
from hepatoplan.pipeline import cli
if hasattr(cli, "BLAS_THREADS"):  # as the CLI does first, before numpy's import (since start20)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", cli.BLAS_THREADS)
from hepatoplan.pipeline.cli import keep_freed_memory, main
keep_freed_memory()  # as the CLI does before its imports (malloc's settings before numpy's BLAS threads exist)
getattr(cli, "preload_libraries", lambda: None)()  # and its libraries mapped meanwhile (since nopreview14)
import hepatoplan.pipeline.cmd_plan
_imports = time.thread_time() - _i0
_m0 = time.thread_time()
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    main(sys.argv[1:])
print(json.dumps({"main thread: imports": _imports, "main thread: plan": time.thread_time() - _m0,
                  "process": time.process_time() - _t0, **_items}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", required=True, help="the other revision (git), e.g. main")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--resect", default="right-hepatectomy")
    parser.add_argument("--preview", action="store_true", help="the default outputs (bench_plan.py's default row)")
    parser.add_argument("--ct-only", action="store_true",
                        help="CT -> plan: the CT alone (every mask segmented automatically), default outputs")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plan-threads-") as tmp:
        folder = Path(tmp) / "rev"
        folder.mkdir()
        sides = {options.rev: other_revision(options.rev, folder), "this": "pass"}
        masks = [f"--{flag}={IRCADB / name}.nii.gz" for flag, name in
                 (("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins"))]
        cpu: dict[str, dict[str, list[float]]] = {side: defaultdict(list) for side in sides}
        for i in range(options.runs + 1):  # the first round fills the other revision's numba cache: not counted
            for side, code in sides.items():
                args = ["plan", str(IRCADB / "ct.nii.gz"), *masks * (not options.ct_only), "--resect", options.resect,
                        *["--no-preview"] * (not options.ct_only and not options.preview), "--out", str(Path(tmp) / f"{i}-{side[:8]}")]
                proc = subprocess.run([sys.executable, "-c", code + "\n" + PROBE, *args], capture_output=True, text=True)
                if proc.returncode:
                    raise SystemExit(proc.stderr)
                if i:
                    for item, seconds in json.loads(proc.stdout.splitlines()[-1]).items():
                        cpu[side][item].append(seconds)
                    print(f"run {i} {side}: process CPU {cpu[side]['process'][-1]:.2f} s, load "
                          f"{Path('/proc/loadavg').read_text().split()[0]}", flush=True)
    items = sorted({k for side in cpu.values() for k in side}, key=lambda k: -statistics.median(cpu["this"].get(k, [0])))
    print(f"\n| work item (CPU s, median of {options.runs}) | {options.rev} | this |\n|---|---|---|")
    for item in items:
        print(f"| {item} | " + " | ".join(f"{statistics.median(cpu[s][item]):.3f}" if cpu[s].get(item) else "-"
                                           for s in sides) + " |")


if __name__ == "__main__":
    main()
