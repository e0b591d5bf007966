"""Benchmark ``hepatoplan plan`` from masks: wall time and peak memory per study (median of runs).

    python bench/bench_plan.py [--runs 3] [--write]

Studies: ircadb 01 with its reference masks (../shared/data), and a 512×512×300 phantom at
0.75×0.75×2.0 mm generated into a temporary folder. Each run is a fresh process (imports
included, as a user would see it); peak memory is that process's maximum resident set size.
``--write`` replaces the "## plan from masks" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IRCADB = ROOT.parent / "shared" / "data" / "ircadb" / "01"
# Peak memory is the child's VmHWM: its ru_maxrss would include this script's own peak (the
# phantom's ~1 GB), which Linux carries across fork and exec.
RUNNER = (
    "import resource, sys; from hepatoplan.pipeline.cli import main; rc = main(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_SELF); "
    "hwm_kb = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM')); "
    "print('USAGE', hwm_kb, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(rc)"
)


def run_once(args: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS in GB of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", RUNNER, *args], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"plan failed: {proc.stderr}")
    rss_kb, cpu_s = proc.stderr.rsplit("USAGE", 1)[1].split()[:2]
    return seconds, float(cpu_s), float(rss_kb) / 1024**2


def phantom_study(folder: Path) -> Path:
    from hepatoplan.data_samples.phantom import make_phantom
    from hepatoplan.data_samples.write import write_study

    ph = make_phantom(spacing_mm=(0.75, 0.75, 2.0), shape=(512, 512, 300), seed=0)
    write_study(ph, folder, axcodes="LPS")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        studies = {}
        if IRCADB.is_dir():
            studies["ircadb 01 (512×512×129)"] = (IRCADB / "ct.nii.gz", IRCADB / "liver.nii.gz",
                                                  IRCADB / "tumours.nii.gz", IRCADB / "couinaud_reference.nii.gz")
        ph = phantom_study(tmp / "phantom")
        studies["phantom 512×512×300"] = (ph / "ct.nii.gz", ph / "liver.nii.gz", ph / "tumours.nii.gz",
                                           ph / "segments.nii.gz")
        for name, (ct, liver, tumours, segments) in studies.items():
            for resect in (["right-hepatectomy"], ["wedge:all"]):
                args = ["plan", str(ct), "--out", str(tmp / "out"), "--liver", str(liver), "--tumours",
                        str(tumours), "--segments", str(segments), "--no-preview"]
                for r in resect:
                    args += ["--resect", r]
                runs = [run_once(args) for _ in range(opts.runs)]
                rows.append((name, " ".join(resect), statistics.median(r[0] for r in runs),
                             statistics.median(r[1] for r in runs), max(r[2] for r in runs)))
    load = os.getloadavg()[0]
    header = ("| study | resection | wall time (s, median) | CPU time (s, median) | peak memory (GB) |\n"
              "|---|---|---|---|---|")
    table = "\n".join([header] + [f"| {n} | {r} | {s:.2f} | {c:.2f} | {m:.2f} |" for n, r, s, c, m in rows])
    table += f"\n\nload average at the end: {load:.1f} on {os.cpu_count()} cores"
    print(table)
    if opts.write:
        write_section("plan from masks", f"`python bench/bench_plan.py --runs {opts.runs} --write` "
                      f"({time.strftime('%Y-%m-%d')}, 2 cores, fresh process per run, imports included)\n\n{table}\n")


def write_section(title: str, body: str) -> None:
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
