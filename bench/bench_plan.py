"""Benchmark ``hepatoplan plan`` as users run it: wall time, CPU, peak memory, seconds per stage.

    python bench/bench_plan.py [--runs 3] [--cases 01,07] [--no-ct] [--dicom] [--stage-clock cpu] [--write]
    python bench/bench_plan.py --floor-ab 4 [--cases 01]

For each IRCADb case with a CT in ../shared/data (01 and 07; 07 is held out: nothing was tuned on
it), in fresh processes (interpreter start and imports included, as a user sees them):

- ``default``: the CT with its liver, tumours, portal and hepatic masks, Couinaud segments derived
  from the veins, ``--resect right-hepatectomy``, default outputs (label maps, exports, meshes,
  PNG previews, report.html);
- ``no-preview``: the same with ``--no-preview``;
- ``wedge``: the same masks, ``--resect wedge:all``, ``--no-preview`` (wedges cut vessels: the
  transected-stretch path of the vascular analysis);
- ``default, DICOM`` (``--dicom``): the default plan from the CT written as a DICOM series
  (SimpleITK, as bench_dicomweb.py does): the DICOM-SEG and the SR come on top;
- ``CT -> plan``: the CT alone (every mask segmented automatically), right hepatectomy, default
  outputs (``--no-ct`` skips it);
- ``naive floor``: python, nibabel reading the CT as float64 and one
  ``scipy.ndimage.distance_transform_edt`` of the liver mask: the least any such tool does. It runs
  with numpy's transparent huge pages off (``NUMPY_MADVISE_HUGEPAGE=0``), as ``hepatoplan``'s CLI
  runs itself (``pipeline/cli.py`` ``keep_freed_memory``; with ``NUMPY_MADVISE_HUGEPAGE`` set, both
  follow it): on a VM that grants huge pages on request
  with compaction in the page fault, numpy's default (on) makes the floor slower for a reason the
  plan does not share, which would flatter ``plan / floor``.

``--floor-ab N`` measures only the floor's parts (imports, the CT read as float64, the mask, the
distance transform; user and system CPU of each) in N interleaved pairs of fresh processes with
numpy's huge pages off and on.

Runs are interleaved (run 1 of every row, then run 2, ...) so that the machine's load moves all
rows alike; the tables give medians, and ``plan / floor`` is the default plan's median over the
floor's. Peak memory is the process's ``VmHWM``; CPU is user + system of the process; "CPU s with
children" adds every process it started (the plan's helper: the mesh decimations and report.pdf; the rendering
probe; orphans reaped by this script as their subreaper). Stage
seconds come from each run's ``report.json`` (``provenance.timing_s``, see
``hepatoplan.pipeline.timing``); with ``--stage-clock cpu`` the stage timer runs on the process's
CPU clock instead (user + system of all its threads): on a shared machine wall seconds per stage
move with the others' load, CPU seconds much less. ``--write`` replaces the "## plan" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT.parent / "shared" / "data" / "ircadb"
IRCADB = CASES / "01"  # case 01 (bench_batch.py and bench_margins.py read it)
# Peak memory is the child's VmHWM: its ru_maxrss would include this script's own peak, which
# Linux carries across fork and exec.
USAGE = ("u = resource.getrusage(resource.RUSAGE_SELF); "
         "hwm_kb = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')); "
         "print('USAGE', hwm_kb, u.ru_utime + u.ru_stime, file=sys.stderr)")
PLAN = ("import resource, sys; from hepatoplan.pipeline.cli import main; rc = main(sys.argv[1:]); "
        + USAGE + "; sys.exit(rc)")
#: The same with the stage timer on the process's CPU clock (``--stage-clock cpu``).
PLAN_CPU_STAGES = "import time; from hepatoplan.pipeline import timing; timing.perf_counter = time.process_time; " + PLAN
#: The naive floor; it prints the user and system CPU seconds of its parts after ``PARTS``.
NAIVE = ("import resource, sys, json; parts = {}; last = [0.0, 0.0]\n"
         "def part(name):\n"
         "    u = resource.getrusage(resource.RUSAGE_SELF); parts[name] = [u.ru_utime - last[0], u.ru_stime - last[1]]\n"
         "    last[:] = u.ru_utime, u.ru_stime\n"
         "import nibabel as nib, numpy as np; from scipy import ndimage; part('imports')\n"
         "ct = nib.load(sys.argv[1]).get_fdata(); part('read CT float64')\n"
         "img = nib.load(sys.argv[2]); liver = np.asanyarray(img.dataobj) > 0; part('read mask')\n"
         "ndimage.distance_transform_edt(liver, sampling=img.header.get_zooms()[:3]); part('EDT')\n"
         "print('PARTS', json.dumps(parts), file=sys.stderr); " + USAGE)
#: numpy's huge-page switch of the floor's process: the plan's (hepatoplan's CLI turns huge pages off
#: unless ``NUMPY_MADVISE_HUGEPAGE`` is set, which numpy then follows in both processes).
FLOOR_ENV = {"NUMPY_MADVISE_HUGEPAGE": os.environ.get("NUMPY_MADVISE_HUGEPAGE", "0")}
#: The plan's processes use and write bytecode (``__pycache__``), as a user's install does: pip compiles a wheel's
#: modules when it installs them, and Python writes an editable install's at its first import. A machine that sets
#: ``PYTHONDONTWRITEBYTECODE`` (these sessions' did) would otherwise compile hepatoplan's sources in every run
#: (~0.05-0.1 s of CPU before the read; numpy's and scipy's, in site-packages, are compiled either way).
#: ``HEPATOPLAN_BENCH_NO_BYTECODE=1`` keeps the variable (the figures before the eighteenth stop).
if os.environ.get("HEPATOPLAN_BENCH_NO_BYTECODE") != "1":
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
STAGES = ("read", "checks", "segmentation", "couinaud", "volumetry", "resection", "vascular", "assessment",
          "writing", "dicom_seg", "previews", "report", "other")


def become_subreaper() -> None:
    """Make this process the reaper of its descendants' orphans (Linux ``PR_SET_CHILD_SUBREAPER``):
    a child process of ``plan`` that outlives its parent (before report.pdf's helper, Chromium's) is
    reparented here instead of to init, so their CPU enters this process's ``RUSAGE_CHILDREN``."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def reap_orphans(timeout_s: float = 5.0) -> None:
    """Wait for the orphans reparented here (at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                time.sleep(0.02)
        except ChildProcessError:
            return


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(code: str, args: list[str], env: dict[str, str] | None = None) -> dict:
    """Wall and CPU seconds and peak RSS (GB) of one fresh process running ``code`` with ``args``
    (``env``: variables set on top of this process's environment); the floor's ``parts`` too.
    ``cpu`` is the process's own; ``cpu_all`` adds every process it started (its helpers)."""
    start, children_before = time.perf_counter(), _children_cpu_s()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                          env=None if env is None else {**os.environ, **env})
    seconds = time.perf_counter() - start
    reap_orphans()
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(args)}\n{proc.stderr}")
    rss_kb, cpu_s = proc.stderr.rsplit("USAGE", 1)[1].split()[:2]
    out = {"wall": seconds, "cpu": float(cpu_s), "cpu_all": _children_cpu_s() - children_before,
           "peak_gb": float(rss_kb) / 1024**2}
    if "PARTS" in proc.stderr:
        out["parts"] = json.loads(proc.stderr.rsplit("PARTS", 1)[1].split("\n", 1)[0])
    return out


def floor_ab(case: str, pairs: int) -> str:
    """The naive floor's parts with numpy's huge pages off and on, ``pairs`` interleaved pairs of
    fresh processes: a table of median user and system CPU seconds per part."""
    d = CASES / case
    runs: dict[str, list[dict]] = {"0": [], "1": []}
    for i in range(pairs):
        for setting in runs:
            runs[setting].append(run_once(NAIVE, [str(d / "ct.nii.gz"), str(d / "liver.nii.gz")],
                                          env={"NUMPY_MADVISE_HUGEPAGE": setting}))
        print(f"pair {i + 1}/{pairs} done, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    names = list(runs["0"][0]["parts"])
    lines = ["| NUMPY_MADVISE_HUGEPAGE | " + " | ".join(f"{n} user / sys s" for n in names)
             + " | CPU s (each run) | CPU s median | wall s median | peak GB |",
             "|---|" + "---|" * (len(names) + 4)]
    for setting, measured in runs.items():
        cells = [f"{statistics.median(r['parts'][n][0] for r in measured):.2f} / "
                 f"{statistics.median(r['parts'][n][1] for r in measured):.2f}" for n in names]
        lines.append(f"| {setting} | " + " | ".join(cells) + " | " + ", ".join(f"{r['cpu']:.1f}" for r in measured)
                     + f" | {statistics.median(r['cpu'] for r in measured):.2f}"
                     f" | {statistics.median(r['wall'] for r in measured):.2f}"
                     f" | {max(r['peak_gb'] for r in measured):.2f} |")
    load = os.getloadavg()
    return "\n".join(lines) + f"\n\nload average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f}"


def rows_for(case: str, out: Path, with_ct: bool, dicom: Path | None) -> list[tuple[str, str, list[str]]]:
    d = CASES / case
    masks = ["--liver", str(d / "liver.nii.gz"), "--tumours", str(d / "tumours.nii.gz"),
             "--portal", str(d / "portal_vein.nii.gz"), "--hepatic", str(d / "hepatic_veins.nii.gz")]
    plan = ["plan", str(d / "ct.nii.gz"), "--out", str(out)]
    rows = [(case, "default", plan + masks + ["--resect", "right-hepatectomy"]),
            (case, "no-preview", plan + masks + ["--resect", "right-hepatectomy", "--no-preview"])]
    if np.asarray(nib.load(d / "tumours.nii.gz").dataobj).any():  # 3D-IRCADb 07 has no tumour: no wedge row
        rows.append((case, "wedge", plan + masks + ["--resect", "wedge:all", "--no-preview"]))
    if dicom is not None:  # the same plan from the CT as a DICOM series: + DICOM-SEG and SR
        rows.append((case, "default, DICOM", ["plan", str(dicom), "--out", str(out)] + masks
                     + ["--resect", "right-hepatectomy"]))
    if with_ct:
        rows.append((case, "CT -> plan", plan + ["--resect", "right-hepatectomy"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cases", default="01,07")
    parser.add_argument("--no-ct", dest="ct", action="store_false", help="skip the CT -> plan rows")
    parser.add_argument("--dicom", action="store_true",
                        help="also the default plan from each CT written as a DICOM series (DICOM-SEG, SR)")
    parser.add_argument("--stage-clock", choices=("wall", "cpu"), default="wall",
                        help="clock of the seconds per stage (cpu: user + system of the plan's threads)")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    parser.add_argument("--floor-ab", type=int, metavar="PAIRS",
                        help="only the naive floor's parts, huge pages off / on, in PAIRS interleaved pairs")
    opts = parser.parse_args()
    become_subreaper()
    if opts.floor_ab:
        print(floor_ab(opts.cases.split(",")[0], opts.floor_ab))
        return
    plan_code = PLAN_CPU_STAGES if opts.stage_clock == "cpu" else PLAN
    cases = [c for c in opts.cases.split(",") if (CASES / c / "ct.nii.gz").is_file()]
    if not cases:
        raise SystemExit(f"no IRCADb CT found under {CASES}")
    results: dict[tuple[str, str], list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        series = {}
        if opts.dicom:
            from bench_dicomweb import write_dicom_series

            for case in cases:
                write_dicom_series(CASES / case / "ct.nii.gz", Path(tmp) / f"series-{case}")
                series[case] = Path(tmp) / f"series-{case}"
        rows = [r for case in cases for r in rows_for(case, out, opts.ct, series.get(case))]
        # the compiled nearest-voxel transform made first, untimed (a fresh checkout builds it once)
        subprocess.run([sys.executable, "-c", "from hepatoplan.nearest_voxel import load_compiled; load_compiled()"],
                       check=True)
        for run in range(opts.runs):
            for case, name, args in rows:
                measured = run_once(plan_code, args)
                measured["stages"] = json.loads((out / "report.json").read_text())["provenance"]["timing_s"]
                results.setdefault((case, name), []).append(measured)
            for case in cases:
                d = CASES / case
                results.setdefault((case, "naive floor"), []).append(
                    run_once(NAIVE, [str(d / "ct.nii.gz"), str(d / "liver.nii.gz")], env=FLOOR_ENV))
            print(f"run {run + 1}/{opts.runs} done, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    load = os.getloadavg()
    table = tables(results, cases, stage_clock=opts.stage_clock)
    table += (f"\n\nload average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on "
              f"{os.cpu_count()} cores")
    print(table)
    if opts.write:
        write_section("plan", f"`python bench/bench_plan.py --runs {opts.runs} --cases {','.join(cases)}"
                      f"{'' if opts.ct else ' --no-ct'}{' --dicom' if opts.dicom else ''}"
                      f"{' --stage-clock cpu' if opts.stage_clock == 'cpu' else ''} --write` ({time.strftime('%Y-%m-%d %H:%M')} UTC, "
                      "fresh process per run, imports included, runs interleaved)\n\n" + table + "\n")


def tables(results: dict, cases: list[str], *, stage_clock: str = "wall") -> str:
    def med(values):
        return statistics.median(values)

    lines = ["| study | plan | wall s | CPU s | CPU s with children | peak GB | naive floor s | plan / floor | "
             "CPU / floor's CPU |", "|---|---|---|---|---|---|---|---|---|"]
    for (case, name), runs in results.items():
        if name == "naive floor":
            continue
        floor = results[(case, "naive floor")]
        floor_wall, floor_cpu = med(r["wall"] for r in floor), med(r["cpu"] for r in floor)
        wall, cpu = med(r["wall"] for r in runs), med(r["cpu"] for r in runs)
        cpu_all = med(r["cpu_all"] for r in runs)
        lines.append(f"| ircadb {case} | {name} | {wall:.2f} | {cpu:.2f} | {cpu_all:.2f} | "
                     f"{max(r['peak_gb'] for r in runs):.2f} | {floor_wall:.2f} | {wall / floor_wall:.2f} | "
                     f"{cpu / floor_cpu:.2f} |")
    for case in cases:
        runs = results[(case, "naive floor")]
        parts = ", ".join(f"{n} {med(sum(r['parts'][n]) for r in runs):.2f}" for n in runs[0]["parts"])
        pages = "off" if FLOOR_ENV["NUMPY_MADVISE_HUGEPAGE"] == "0" else "on"
        lines.append(f"| ircadb {case} | naive floor, huge pages {pages} (CPU s: {parts}) | {med(r['wall'] for r in runs):.2f} | "
                     f"{med(r['cpu'] for r in runs):.2f} | {med(r['cpu_all'] for r in runs):.2f} | "
                     f"{max(r['peak_gb'] for r in runs):.2f} | | | |")
    stages = [s for s in STAGES if any(s in r["stages"] for (_, n), runs in results.items()
                                       if n != "naive floor" for r in runs)]
    lines += ["", f"{'CPU' if stage_clock == 'cpu' else 'Wall'} seconds per stage (median; `total` is inside `plan()`, "
              f"the {'CPU' if stage_clock == 'cpu' else 'wall'} time above adds the interpreter and imports):", "",
              "| study | plan | " + " | ".join(stages) + " | total |", "|---|---|" + "---|" * (len(stages) + 1)]
    for (case, name), runs in results.items():
        if name == "naive floor":
            continue
        cells = [f"{med(r['stages'].get(s, 0.0) for r in runs):.2f}" for s in stages + ["total"]]
        lines.append(f"| ircadb {case} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_section(title: str, body: str) -> None:
    """Replace the ``## title`` section of bench/RESULTS.md with ``body`` (appended when absent)."""
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    head = f"## {title}\n"
    if head in text:
        start = text.index(head)
        end = text.find("\n## ", start + len(head))
        text = text[:start] + head + "\n" + body + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + head + "\n" + body
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
