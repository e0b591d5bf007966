"""Benchmark ``hepatoplan batch``: throughput with 1 and 2 dask workers on the same cohort.

    python bench/bench_batch.py [--studies 6] [--write]

The cohort is phantom studies (full size, 1.5×1.5×2.5 mm, generated into a temporary folder) plus
ircadb 01 and 07 when ../shared/data is present, planned with ``--overwrite`` so each
run recomputes everything (with previews unless ``--no-preview``). Throughput = studies per minute of wall time,
scheduler start-up included. Also printed: CPU seconds of the batch process and its workers, the load
average before and after, and each study's wall and CPU seconds from cohort.csv (a study whose wall
time is well above its CPU time was waiting for a core: other jobs on the machine). ``--write`` replaces the "## batch throughput" section of
bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_plan import IRCADB, ROOT, write_section  # noqa: E402


def _children_cpu_s() -> float:
    """User + system CPU seconds of the finished child processes (the batch run and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def build_cohort(folder: Path, n_studies: int) -> Path:
    from hepatoplan.data_samples.phantom import make_phantom
    from hepatoplan.data_samples.write import write_study

    lines = ["id,ct,liver,tumours,segments,resect"]
    real = [IRCADB.parent / c for c in ("01", "07") if (IRCADB.parent / c / "ct.nii.gz").is_file()]
    for case in real[:n_studies]:
        lines.append(f"ircadb{case.name},{case}/ct.nii.gz,{case}/liver.nii.gz,{case}/tumours.nii.gz,"
                     f"{case}/couinaud_reference.nii.gz,right-hepatectomy")
    for i in range(n_studies - len(lines) + 1):
        d = folder / f"ph{i}"
        write_study(make_phantom(spacing_mm=(1.5, 1.5, 2.5), seed=i), d, axcodes="LPS")
        lines.append(f"ph{i},{d}/ct.nii.gz,{d}/liver.nii.gz,{d}/tumours.nii.gz,{d}/segments.nii.gz,"
                     "right-hepatectomy;wedge:3")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=6)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--no-preview", action="store_true", help="skip meshes and PNG previews")
    opts = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = build_cohort(tmp, opts.studies)
        for workers in (1, 2):
            load_before = os.getloadavg()[0]
            cpu_before = _children_cpu_s()
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "hepatoplan.pipeline.cli", "batch", str(manifest), "--out",
                                   str(tmp / "out"), "--workers", str(workers), "--overwrite"]
                                  + (["--no-preview"] if opts.no_preview else []),
                                  capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(proc.stdout + proc.stderr)
            with open(tmp / "out" / "cohort.csv", newline="", encoding="utf-8") as fh:
                per_study = {r["id"]: (float(r["seconds"]), float(r.get("cpu_seconds") or "nan")) for r in csv.DictReader(fh)}
            rows.append((workers, seconds, 60.0 * opts.studies / seconds, _children_cpu_s() - cpu_before,
                         load_before, os.getloadavg()[0], per_study))
    speedup = rows[0][1] / rows[1][1]
    table = "\n".join(["| workers | wall time (s) | studies per minute | CPU s (all processes) | load average before / after |"
                       " per study (cohort.csv): wall s / CPU s |", "|---|---|---|---|---|---|"]
                      + [f"| {w} | {s:.1f} | {t:.1f} | {c:.1f} | {l0:.1f} / {l1:.1f} | "
                         + ", ".join(f"{k} {w_:.1f}/{c_:.1f}" for k, (w_, c_) in per.items()) + " |"
                         for w, s, t, c, l0, l1, per in rows]) + f"\n\nspeed-up with 2 workers: {speedup:.2f}×"
    print(table)
    if opts.write:
        flag = " --no-preview" if opts.no_preview else ""
        write_section(f"batch throughput{flag}", f"`python bench/bench_batch.py --studies {opts.studies}{flag} --write` "
                      f"({time.strftime('%Y-%m-%d')}, 2 cores, {opts.studies} studies, load average "
                      f"{os.getloadavg()[0]:.1f} at the end)\n\n{table}\n")


if __name__ == "__main__":
    main()
