"""A per-thread timeline of one ``--no-preview`` plan: which thread does what, when, and where a core idles.

    python bench/bench_plan_items.py [--rev REV] [--resect right-hepatectomy] [--bin-ms 50] [--runs 1]

IRCADb 01 with its four masks, Couinaud derived (bench_plan.py's ``no-preview`` row). The plan runs in a fresh
process; inside it every ``ThreadPoolExecutor`` work item and every other thread is stamped (wall start and end
from the process's start, CPU by ``time.thread_time``, the thread's native id), and so are the main thread's
stages (``timing.stage``) and its imports. Meanwhile this script reads ``/proc/PID/task/*/stat`` every
few milliseconds (outside the plan's process, so the sampling takes none of its GIL): each thread's CPU per bin
(``#`` ≥ 75 % of a core, ``+`` ≥ 40 %, ``.`` > 5 %) and the cores busy per bin. ``--rev`` runs another
revision instead of this checkout (as bench_plan_ab.py does). Print order: the timeline, the items, the stages.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_plan import IRCADB
from bench_plan_ab import other_revision

PROBE = r"""
import json, sys, threading, time
_T0 = time.perf_counter()
from concurrent.futures import thread as _cft
_events = []
_run_item, _run_thread = _cft._WorkItem.run, threading.Thread.run
def _stamp(name, fn):
    s, c = time.perf_counter() - _T0, time.thread_time()
    try:
        return fn()
    finally:
        _events.append((threading.get_native_id(), name, s, time.perf_counter() - _T0, time.thread_time() - c))
def _item(self):
    _stamp(getattr(self.fn, "__qualname__", None) or type(self.fn).__name__, lambda: _run_item(self))
def _thread(self):
    if self.name.startswith("ThreadPool"):
        return _run_thread(self)
    _stamp("thread " + self.name, lambda: _run_thread(self))
_cft._WorkItem.run, threading.Thread.run = _item, _thread
from hepatoplan.pipeline.cli import keep_freed_memory
keep_freed_memory()  # as the CLI does before its imports (malloc's settings before numpy's BLAS threads exist)
_stamp("main: imports", lambda: __import__("hepatoplan.pipeline.cmd_plan"))
from hepatoplan.pipeline import timing as _timing
_stage = _timing.StageTimer.stage
from contextlib import contextmanager
@contextmanager
def _staged(self, name):
    s, c = time.perf_counter() - _T0, time.thread_time()
    try:
        with _stage(self, name):
            yield
    finally:
        _events.append((threading.get_native_id(), "stage " + name, s, time.perf_counter() - _T0,
                        time.thread_time() - c))
_timing.StageTimer.stage = _staged
from hepatoplan.pipeline.cli import main
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    _stamp("main: plan", lambda: main(sys.argv[1:]))
print(json.dumps({"main": threading.get_native_id(), "events": _events, "end": time.perf_counter() - _T0}))
"""


def cpu_ticks(pid: int) -> dict[int, int]:
    """utime + stime (clock ticks) of every thread of ``pid``."""
    out = {}
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{task}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[int(task)] = int(fields[11]) + int(fields[12])
    return out


def run_once(code: str, args: list[str], period_s: float) -> tuple[dict, list]:
    """One plan with its samples: (the probe's report, [(seconds since start, {tid: ticks})])."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code + "\n" + PROBE, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    samples = []
    while proc.poll() is None:
        try:
            samples.append((time.perf_counter() - start, cpu_ticks(proc.pid)))
        except (FileNotFoundError, ProcessLookupError):
            break
        time.sleep(period_s)
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(err)
    return json.loads(out.splitlines()[-1]), samples


def show(report: dict, samples: list, bin_s: float) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    # the probe's clock starts ~when the interpreter is up; the samples' when the process is spawned
    events, main_tid = report["events"], report["main"]
    offset = samples[-1][0] - report["end"] if samples else 0.0  # exit: close enough for 50 ms bins
    n_bins = int(samples[-1][0] / bin_s) + 1
    per_tid: dict[int, list[float]] = defaultdict(lambda: [0.0] * n_bins)
    for (t0, a), (t1, b) in zip(samples, samples[1:]):
        for tid, ticks in b.items():
            d = (ticks - a.get(tid, 0)) / hz
            if d:
                per_tid[tid][min(int(t1 / bin_s), n_bins - 1)] += d
    names: dict[int, list[str]] = defaultdict(list)
    for tid, name, *_ in events:
        if not name.startswith("stage") and name not in names[tid]:
            names[tid].append(name)
    print(f"timeline, {bin_s * 1000:.0f} ms bins from the process's start (probe clock = sample clock - "
          f"{offset:.2f} s); '#' >= 75 % of a core, '+' >= 40 %, '.' > 5 %")
    marks = lambda xs: "".join("#" if x >= 0.75 * bin_s else "+" if x >= 0.4 * bin_s else "." if x > 0.05 * bin_s
                               else " " for x in xs)
    order = sorted(per_tid, key=lambda t: (t != main_tid, -sum(per_tid[t])))
    for tid in order:
        cpu = per_tid[tid]
        if sum(cpu) < 0.02:
            continue
        label = "main" if tid == main_tid else ", ".join(names.get(tid, ["?"]))[:60]
        print(f"{tid:>7} {sum(cpu):5.2f} s |{marks(cpu)}| {label}")
    busy = [sum(per_tid[t][i] for t in per_tid) / bin_s for i in range(n_bins)]
    print(f"{'cores':>15} |{''.join(str(min(9, round(b))) for b in busy)}|")
    idle = sum(max(0.0, 2.0 - b) * bin_s for b in busy)
    print(f"process CPU {sum(map(sum, per_tid.values())):.2f} s over {samples[-1][0]:.2f} s; idle core-seconds "
          f"(2 cores) {idle:.2f}\n")
    print("| thread | item | start s | end s | wall s | CPU s |\n|---|---|---|---|---|---|")
    for tid, name, s, e, c in sorted(events, key=lambda ev: ev[2]):
        who = "main" if tid == main_tid else str(tid)
        print(f"| {who} | {name} | {s + offset:.3f} | {e + offset:.3f} | {e - s:.3f} | {c:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", help="another revision (git) instead of this checkout")
    parser.add_argument("--resect", default="right-hepatectomy")
    parser.add_argument("--bin-ms", type=float, default=50.0)
    parser.add_argument("--runs", type=int, default=1, help="runs shown (after one untimed warm-up)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="plan-timeline-") as tmp:
        code = "pass"
        if options.rev:
            (Path(tmp) / "rev").mkdir()
            code = other_revision(options.rev, Path(tmp) / "rev")
        masks = [f"--{flag}={IRCADB / name}.nii.gz" for flag, name in
                 (("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins"))]
        for i in range(options.runs + 1):
            args = ["plan", str(IRCADB / "ct.nii.gz"), *masks, "--resect", options.resect, "--no-preview",
                    "--out", str(Path(tmp) / f"out{i}")]
            report, samples = run_once(code, args, 0.005)
            if i:
                print(f"run {i}, load {Path('/proc/loadavg').read_text().split()[0]}")
                show(report, samples, options.bin_ms / 1000)


if __name__ == "__main__":
    main()
