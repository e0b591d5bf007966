"""Chromium's CPU for report.pdf: start a browser, print a plan's print page, close it; interleaved variants.

    python bench/bench_pdf.py PLAN_OUT [--runs 5]

``PLAN_OUT`` is the output folder of a default ``plan`` (its report.json, previews and QC montage make
the print page, as ``report_html._start_pdf`` does). Variants, each run in turn:

* ``5c7cde0``: the flags before the eleventh stop, PNG previews on the page, the profile in the system's
  temporary folder;
* ``jpeg``: the same with the previews as JPEG (``report_html.PRINT_JPEG_QUALITY``);
* ``chromium``: :data:`hepatoplan.pipeline.report_pdf.CHROMIUM_FLAGS`, JPEG previews, the profile in
  :func:`~hepatoplan.pipeline.report_pdf.scratch_folder` (the eleventh stop's ``now``);
* ``shell``: the same in ``chromium-headless-shell`` (Chromium's old headless mode, Debian
  ``chromium-headless-shell``: no browser UI).

``--variants chromium,shell`` runs only those.

Per run: CPU of Chromium and its helpers (user + system, reaped through this script as their subreaper),
wall from the start to the PDF, and the wall of ``Browser.close`` (killing the helpers, removing the profile).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench_plan import become_subreaper, reap_orphans
from hepatoplan.pipeline import report_html, report_pdf

NEW_FLAGS = ("--renderer-process-limit=1", "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup")
VARIANTS = {  # name: (flags, JPEG previews, profile in the scratch folder, executable)
    "5c7cde0": (tuple(f for f in report_pdf.CHROMIUM_FLAGS if f not in NEW_FLAGS), False, False, "chromium"),
    "jpeg": (tuple(f for f in report_pdf.CHROMIUM_FLAGS if f not in NEW_FLAGS), True, False, "chromium"),
    "chromium": (report_pdf.CHROMIUM_FLAGS, True, True, "chromium"),
    "shell": (report_pdf.CHROMIUM_FLAGS, True, True, "chromium-headless-shell"),
}


def print_page(plan_out: Path, folder: Path, *, jpeg: bool) -> Path:
    report = json.loads((plan_out / "report.json").read_text())
    views = report_html._ReportViews.of(previews=sorted(plan_out.glob("preview_*.png")),
                                        montage_png=plan_out / "qc_montage.png")
    figures = report_html._figures_html(sorted(plan_out.glob("preview_*.png")), None, jpeg_previews=jpeg)
    return report_html._write_page(report, folder / f"print-{'jpeg' if jpeg else 'png'}.html",
                                   replace(views, figures=figures), title=report_html.REPORT_TITLE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan_out", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names of VARIANTS")
    options = parser.parse_args()
    become_subreaper()
    scratch = report_pdf.SCRATCH_PARENT
    with tempfile.TemporaryDirectory(prefix="bench-pdf-") as tmp:
        pages = {jpeg: print_page(options.plan_out, Path(tmp), jpeg=jpeg) for jpeg in (False, True)}
        results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in VARIANTS}
        for _ in range(options.runs):
            for name, (flags, jpeg, in_scratch, executable) in VARIANTS.items():
                if name not in options.variants.split(","):
                    continue
                report_pdf.SCRATCH_PARENT = scratch if in_scratch else ""  # "": the system's tmp
                before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
                browser = report_pdf.Browser(shutil.which(executable), flags=flags)
                browser.print_page(pages[jpeg], Path(tmp) / f"{name}.pdf")
                printed = time.perf_counter()
                browser.close()
                closed = time.perf_counter()
                reap_orphans(3.0)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                results[name].append((cpu, printed - start, closed - printed))
                print(f"{name:>8} CPU {cpu:5.2f} s  start to PDF {printed - start:5.2f} s  close {closed - printed:5.3f} s  "
                      f"load {os.getloadavg()[0]:4.1f}", flush=True)
        report_pdf.SCRATCH_PARENT = scratch
        for name, runs in results.items():
            if not runs:
                continue
            size = (Path(tmp) / f"{name}.pdf").stat().st_size / 1e6
            print(f"{name:>8} median CPU {statistics.median(r[0] for r in runs):.2f} s, start to PDF "
                  f"{statistics.median(r[1] for r in runs):.2f} s, close {statistics.median(r[2] for r in runs):.3f} s, "
                  f"PDF {size:.2f} MB")


if __name__ == "__main__":
    main()
