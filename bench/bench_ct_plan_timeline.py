"""Timeline of one CT -> plan (or any ``plan``) run: what each thread does when, and where a core idles.

    python bench/bench_ct_plan_timeline.py [--case 01] [--bin-s 0.5] [-- PLAN ARGS...]

Runs ``hepatoplan plan CT --resect right-hepatectomy --out TMP`` (IRCADb ``--case``, every mask segmented
automatically; other plan arguments after ``--``) in this process, with
- every stage of the stage timer (``pipeline/timing.py``), every ``ThreadPoolExecutor`` work item and the
  automatic segmentation's parts (``segment_liver``, ``segment_tumours``, ``segment_vessels``, ``self_check``)
  logged with their thread, start and end (wall seconds from the start);
- a sampler reading the process's CPU (``/proc/self/stat``, user + system of all its threads) every 20 ms.
Prints the events, then per ``--bin-s`` bin the cores busy (0-2 on this machine: the process's CPU per wall
second) and the events open in it, and the idle core-seconds (2 cores minus the process's CPU) per stage of the
main thread. Chromium's processes are not counted (they are other processes). The load of the machine is
printed: on a shared machine a busy neighbour shows as idle here.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io as _io
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ircadb"
TICK = os.sysconf("SC_CLK_TCK")
T0 = time.perf_counter()
EVENTS: list[tuple[str, str, float, float]] = []  # thread, name, start, end
_lock = threading.Lock()


def now() -> float:
    return time.perf_counter() - T0


def log_event(name: str, start: float) -> None:
    with _lock:
        EVENTS.append((threading.current_thread().name, name, start, now()))


def wrap(fn, name):
    @functools.wraps(fn)
    def inner(*a, **k):
        t = now()
        try:
            return fn(*a, **k)
        finally:
            log_event(name, t)
    return inner


def sampler(samples: list, stop: threading.Event) -> None:
    while not stop.is_set():
        with open("/proc/self/stat") as f:  # the process: threads that ended still count
            fields = f.read().rsplit(")", 1)[1].split()
        total = int(fields[11]) + int(fields[12])
        samples.append((now(), total / TICK))
        stop.wait(0.02)


def instrument() -> None:
    from concurrent.futures import thread as cft

    from hepatoplan.pipeline import timing
    from hepatoplan.segmentation import study as sstudy

    run_item = cft._WorkItem.run

    def item(self):
        t = now()
        try:
            run_item(self)
        finally:
            log_event(getattr(self.fn, "__qualname__", None) or type(self.fn).__name__, t)
    cft._WorkItem.run = item
    stage = timing.StageTimer.stage

    @contextlib.contextmanager
    def logged_stage(self, name):
        t = now()
        try:
            with stage(self, name):
                yield
        finally:
            log_event("stage " + name, t)
    timing.StageTimer.stage = logged_stage
    for name in ("segment_liver", "segment_tumours", "segment_vessels", "self_check"):
        setattr(sstudy, name, wrap(getattr(sstudy, name), name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", default="01")
    parser.add_argument("--bin-s", type=float, default=0.5)
    parser.add_argument("rest", nargs="*", help="other plan arguments (after --)")
    options = parser.parse_args()
    load = os.getloadavg()
    samples: list = []
    stop = threading.Event()
    threading.Thread(target=sampler, args=(samples, stop), name="sampler", daemon=True).start()
    t = now()
    from hepatoplan.pipeline.cli import main as cli
    import hepatoplan.pipeline.cmd_plan  # noqa: F401
    log_event("imports", t)
    instrument()
    with tempfile.TemporaryDirectory(prefix="timeline-") as tmp:
        t = now()
        with contextlib.redirect_stdout(_io.StringIO()):
            rc = cli(["plan", str(DATA / options.case / "ct.nii.gz"), "--resect", "right-hepatectomy",
                      "--out", str(Path(tmp) / "out"), *options.rest])
        log_event("plan", t)
    stop.set()
    end = now()
    print(f"rc {rc}, wall {end:.2f} s, CPU {time.process_time():.2f} s, load before {load[0]:.2f} after "
          f"{os.getloadavg()[0]:.2f}")
    for thread, name, start, stop_s in sorted(EVENTS, key=lambda e: e[2]):
        if stop_s - start >= 0.05:
            print(f"{start:7.2f} {stop_s:7.2f} {stop_s - start:6.2f}  {thread[:24]:24} {name}")
    cores = os.cpu_count()
    print(f"\nbins of {options.bin_s} s: cores busy (of {cores}) and the events open")
    b = 0.0
    i = 0
    while b < end:
        j = i
        while j + 1 < len(samples) and samples[j + 1][0] <= b + options.bin_s:
            j += 1
        busy = (samples[j][1] - samples[i][1]) / max(samples[j][0] - samples[i][0], 1e-9) if j > i else 0.0
        open_ = sorted({n for _, n, s, e in EVENTS if s < b + options.bin_s and e > b and n not in ("plan",)
                        and not n.startswith("stage segmentation")})
        print(f"{b:6.1f} {busy:4.2f} {'#' * round(busy * 10):20} {', '.join(open_)[:150]}")
        b += options.bin_s
        i = j
    # idle core-seconds per main-thread stage (the stage's own wall time: exclusive of nested ones is not
    # needed here, stages of plan do not nest in a CT -> plan run but segmentation's parts)
    print("\nidle core-seconds (cores minus the process's CPU rate, summed) per event of the main thread:")
    for thread, name, start, stop_s in sorted(EVENTS, key=lambda e: e[2]):
        if thread != "MainThread" or stop_s - start < 0.2:
            continue
        idle = 0.0
        for (t1, c1), (t2, c2) in zip(samples, samples[1:]):
            lo, hi = max(t1, start), min(t2, stop_s)
            if hi > lo:
                idle += (hi - lo) * (cores - (c2 - c1) / (t2 - t1))
        print(f"{name:30} {stop_s - start:6.2f} s wall, idle {idle:5.2f} core-s")


if __name__ == "__main__":
    main()
