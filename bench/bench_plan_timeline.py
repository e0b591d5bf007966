"""A timeline of one default plan: which thread and child process uses a core when, and where a core idles.

    python bench/bench_plan_timeline.py [--runs 2] [--bin-ms 100] [--no-preview | --ct-only] [--resect R] [--rev REV]

IRCADb 01 with its four masks, Couinaud derived, ``--resect right-hepatectomy`` (bench_plan.py's ``default``
row; ``--no-preview`` its ``no-preview`` row, ``--resect wedge:all --no-preview`` its ``wedge`` row, ``--ct-only`` the
CT alone, every mask segmented automatically: its ``CT -> plan`` row). The plan runs in a fresh process (``--rev``: another revision, imported as in bench_plan_ab.py) that
records events (stages, work items) with their time and thread; this script reads, every 10 ms, the CPU ticks of
each of its threads (``/proc/PID/task``) and of every descendant process (``/proc/PID/task/TID/children``,
recursively: the rendering probe, the decimation and report.pdf helpers), from outside (a sampler inside took the GIL and
slowed the plan 3x). Threads are named by the work item they run (every ``ThreadPoolExecutor`` item is
wrapped) and the main thread by its innermost stage (``hepatoplan.pipeline.timing``); children by their
command line (``probe``, ``plan helper``; older revisions' ``pdf helper``, ``decimation helper``). The main thread's ``schedstat`` splits its wall time per stage into
time on a core, time waiting for one (the machine's load) and time asleep (I/O, joins, and waiting for the GIL
while another thread holds it: what a GIL-holding library costs the plan's critical path, also on a loaded
machine). Prints, per run, the events (stages, work items, children), a table
of cores in use per bin, and the core-seconds left idle on the machine's 2 cores per main-thread stage.
CPU ticks are 10 ms: a bin's figures are good to ~0.1 core at 100 ms bins.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from bench_plan import IRCADB
from bench_plan_ab import other_revision

PROBE = r"""
import collections, json, os, sys, threading, time
from concurrent.futures import thread as _cft
T0 = time.perf_counter()  # CLOCK_MONOTONIC: the sampler outside reads the same clock
TICK = os.sysconf("SC_CLK_TCK")
events = []
_lock = threading.Lock()
def now():
    return time.perf_counter() - T0
def event(what):
    with _lock:
        events.append((now(), threading.get_native_id(), what))
_run_item = _cft._WorkItem.run
def _item(self):
    name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
    event("start " + name)
    try:
        _run_item(self)
    finally:
        event("end " + name)
_cft._WorkItem.run = _item
from hepatoplan.pipeline import timing as _timing
_stage = _timing.StageTimer.stage
def stage(self, name):
    import contextlib
    @contextlib.contextmanager
    def cm():
        event("enter " + name)
        try:
            with _stage(self, name):
                yield
        finally:
            event("exit " + name)
    return cm()
_timing.StageTimer.stage = stage
MAIN_TID = threading.get_native_id()
from hepatoplan.pipeline import cli
if hasattr(cli, "BLAS_THREADS"):  # as the CLI does first, before numpy's import (since start20)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", cli.BLAS_THREADS)
from hepatoplan.pipeline.cli import keep_freed_memory, main
keep_freed_memory()  # as the CLI does before its imports (malloc's settings before numpy's BLAS threads exist)
getattr(cli, "preload_libraries", lambda: None)()  # and its libraries mapped meanwhile (since nopreview14)
import hepatoplan.pipeline.cmd_plan
event("imported")
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    main(sys.argv[1:])
event("plan done")
with open(os.environ["TIMELINE_OUT"], "w") as f:
    json.dump({"tick": TICK, "main": MAIN_TID, "t0": T0, "events": events}, f)
"""


def _ticks(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return None


def _descendants(pid: int, out: list[int]) -> None:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            continue
        for kid in kids:
            out.append(kid)
            _descendants(kid, out)


def _kind(pid: int) -> str:
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "child"
    for marker, kind in (("vtkRenderingOpenGL2", "probe"), ("helper_process", "plan helper"), ("pdf_process", "pdf helper"),
                         ("fast_simplification", "decimation helper"), ("chrom", "chromium")):
        if marker in cmd:
            return kind
    return cmd[:30]


def sample(proc: subprocess.Popen, period_s: float = 0.01) -> tuple[list, dict]:
    """Every ``period_s`` until ``proc`` ends: (time, {"tTID" | "pPID": ticks}) of its threads and descendants
    (descendants looked for every 5th sample)."""
    samples, kinds, kids = [], {}, []
    n = 0
    while proc.poll() is None:
        t = time.perf_counter()
        row = {}
        try:
            tids = os.listdir(f"/proc/{proc.pid}/task")
        except OSError:
            break
        for tid in tids:
            v = _ticks(f"/proc/{proc.pid}/task/{tid}/stat")
            if v is not None:
                row[f"t{tid}"] = v
        try:  # the main thread's ns on a core and waiting for one (the rest of its time it sleeps: I/O, joins, the GIL)
            with open(f"/proc/{proc.pid}/task/{proc.pid}/schedstat") as f:
                row["sched"] = [int(x) for x in f.read().split()[:2]]
        except OSError:
            pass
        if n % 5 == 0:
            kids = []
            _descendants(proc.pid, kids)
        for pid in kids:
            v = _ticks(f"/proc/{pid}/stat")
            if v is not None:
                row[f"p{pid}"] = v
                if pid not in kinds:
                    kinds[pid] = _kind(pid)
        samples.append((t, row))
        n += 1
        time.sleep(max(0.0, period_s - (time.perf_counter() - t)))
    return samples, kinds


def analyse(data: dict, samples: list, kinds: dict, bin_s: float, cores: int = 2) -> dict:
    """Per-bin core use by actor (the main thread by its innermost stage, pool threads by their work
    item, children by kind), and idle core-seconds per main-thread stage."""
    tick = 1.0 / data["tick"]
    t0 = data["t0"]
    main = f"t{data['main']}"
    # what each thread runs over time, from the events
    spans: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    open_: dict[tuple[int, str], float] = {}
    stack: list[tuple[str, float]] = []
    main_spans: list[tuple[float, float, str]] = []
    last, last_t = "-", 0.0
    for t, tid, what in data["events"]:
        verb, name = what.split(" ", 1) if " " in what else (what, "")
        if tid == data["main"] and verb in ("enter", "exit"):
            main_spans.append((last_t, t, last))
            if verb == "enter":
                stack.append(name)
            else:
                stack.pop()
            last, last_t = (stack[-1] if stack else "-"), t
        elif verb == "start":
            open_[(tid, name)] = t
        elif verb == "end":
            spans[f"t{tid}"].append((open_.pop((tid, name), t), t, name))
    main_spans.append((last_t, 1e9, last))

    def label(key: str, t: float) -> str:
        if key == main:
            return "main:" + next((n for a, b, n in main_spans if a <= t < b), "-")
        if key.startswith("p"):
            return kinds.get(int(key[1:]), "child")
        return "thread:" + next((n for a, b, n in spans.get(key, ()) if a <= t < b + 0.011), "other")

    bins: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, float] = defaultdict(float)
    sched: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])  # main stage: wall, on a core, waiting
    for (ta, row0), (tb, row1) in zip(samples, samples[1:]):
        t = (ta + tb) / 2 - t0
        if t < 0:
            continue
        b = int(t / bin_s)
        if "sched" in row0 and "sched" in row1:
            acc = sched[label(main, t)[5:]]
            acc[0] += tb - ta
            acc[1] += (row1["sched"][0] - row0["sched"][0]) / 1e9
            acc[2] += (row1["sched"][1] - row0["sched"][1]) / 1e9
        for key, v in row1.items():
            if key == "sched":
                continue
            d = (v - row0.get(key, 0)) * tick
            if d > 0:
                actor = label(key, t)
                bins[b][actor] += d
                totals[actor] += d
    end = max(t for t, _, _ in data["events"])
    stage_of_bin = {b: label(main, (b + 0.5) * bin_s)[5:] for b in range(int(end / bin_s) + 1)}
    idle_by_stage: dict[str, float] = defaultdict(float)
    for b, stage in stage_of_bin.items():
        idle_by_stage[stage] += max(0.0, cores * bin_s - sum(bins[b].values()))
    return {"bins": bins, "stage_of_bin": stage_of_bin, "totals": totals, "idle": idle_by_stage, "span": end,
            "sched": sched}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--bin-ms", type=float, default=100.0)
    parser.add_argument("--no-preview", action="store_true")
    parser.add_argument("--ct-only", action="store_true", help="the CT alone (every mask segmented automatically)")
    parser.add_argument("--resect", default="right-hepatectomy")
    parser.add_argument("--rev", help="another revision instead of this checkout")
    parser.add_argument("--quiet", action="store_true", help="only the summaries")
    options = parser.parse_args()
    bin_s = options.bin_ms / 1000
    masks = [f"--{flag}={IRCADB / name}.nii.gz" for flag, name in
             (("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins"))]
    summaries = []
    with tempfile.TemporaryDirectory(prefix="plan-timeline-") as tmp:
        code = "pass"
        if options.rev:
            (Path(tmp) / "rev").mkdir()
            code = other_revision(options.rev, Path(tmp) / "rev")
        for i in range(options.runs + 1):  # the first run warms caches (numba's, the page cache): not shown
            out = Path(tmp) / f"{i}.json"
            args = ["plan", str(IRCADB / "ct.nii.gz"), *masks * (not options.ct_only), "--resect", options.resect,
                    "--out", str(Path(tmp) / f"out{i}")] + (["--no-preview"] if options.no_preview else [])
            load = Path("/proc/loadavg").read_text().split()[0]
            proc = subprocess.Popen([sys.executable, "-c", code + "\n" + PROBE, *args], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True, env={**os.environ, "TIMELINE_OUT": str(out)})
            samples, kinds = sample(proc)
            if proc.wait():
                raise SystemExit(proc.stderr.read())
            if not i:
                continue
            data = json.loads(out.read_text())
            a = analyse(data, samples, kinds, bin_s)
            summaries.append(a)
            print(f"\n## run {i} (load {load}): plan to done {a['span']:.2f} s, CPU "
                  f"{sum(a['totals'].values()):.2f} core-s, idle {sum(a['idle'].values()):.2f} core-s of 2 cores")
            if not options.quiet:
                print("\nevents (s since start; thread id):")
                for t, tid, what in data["events"]:
                    print(f"  {t:6.2f} {'main' if tid == data['main'] else tid:>7} {what}")
                print(f"\n| bin start s | main stage | cores used | actors (core-s in the {options.bin_ms:.0f} ms bin) |"
                      "\n|---|---|---|---|")
                for b in sorted(a["bins"]):
                    acts = sorted(a["bins"][b].items(), key=lambda kv: -kv[1])
                    print(f"| {b * bin_s:.1f} | {a['stage_of_bin'].get(b, '-')} | {sum(v for _, v in acts) / bin_s:.2f} | "
                          + ", ".join(f"{k} {v:.2f}" for k, v in acts if v >= 0.005) + " |")
            print("\nCPU per actor (core-s): " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(a["totals"].items(), key=lambda kv: -kv[1])))
            print("main thread per stage (wall = on a core + waiting for one + asleep: I/O, joins, the GIL), s: " + ", ".join(
                f"{k} {w:.2f} = {r:.2f} + {q:.2f} + {w - r - q:.2f}" for k, (w, r, q) in
                sorted(a["sched"].items(), key=lambda kv: -kv[1][0])))
            print("idle core-s per main stage: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(a["idle"].items(), key=lambda kv: -kv[1])))
    if summaries:
        stages = sorted({k for s in summaries for k in s["sched"]}, key=lambda k: -summaries[0]["sched"].get(k, [0])[0])
        print(f"\nmain thread asleep per stage (s; median of {len(summaries)} runs): " + ", ".join(
            f"{k} {statistics.median(s['sched'][k][0] - s['sched'][k][1] - s['sched'][k][2] for s in summaries if k in s['sched']):.2f}"
            for k in stages))
    if len(summaries) > 1:
        print(f"\nmedian over {len(summaries)} runs: span {statistics.median(s['span'] for s in summaries):.2f} s, "
              f"idle {statistics.median(sum(s['idle'].values()) for s in summaries):.2f} core-s")


if __name__ == "__main__":
    main()
