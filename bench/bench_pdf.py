"""report.pdf's CPU and wall, part by part, in fresh processes: fpdf2's import, the layout, the write.

    python bench/bench_pdf.py PLAN_OUT [--runs 5]

``PLAN_OUT`` is the output folder of a default ``plan`` (its report.json, previews and QC montage: the
pages ``plan`` writes). Each run is a fresh interpreter (as in a plan, fpdf2 and the fonts are loaded
once per process) that times, with ``time.thread_time`` (CPU of the thread) and ``time.perf_counter``:

* ``import``: ``import fpdf`` (fontTools, its SVG and signing modules come with it);
* ``layout``: :class:`hepatoplan.pipeline.report_pdf.PdfLayout` of the report, the QC montage and the
  preview slots (in ``plan``: by its helper process while the previews render), the two DejaVu fonts
  parsed and, since one17, the pages serialised with a stand-in in each slot (fpdf2's font subsetting) included;
* ``layout, no montage``: the same without the QC montage (its PNG decoded and deflated again);
* ``write``: the previews' JPEGs put into their slots (since one17: appended as an incremental update) and the
  file written (in ``plan``: the only part after the last preview); the JPEGs are made beforehand, as the PNG
  thread makes them.

Prints each run and the medians, with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys, tempfile, time
from pathlib import Path
plan_out = Path(sys.argv[1])
t, c = time.perf_counter(), time.thread_time()
import fpdf
parts = {"import": (time.perf_counter() - t, time.thread_time() - c)}
from hepatoplan.pipeline import report_html
from hepatoplan.pipeline.report_pdf import PdfLayout
report = json.loads((plan_out / "report.json").read_text())
report["provenance"].pop("timing_s", None)  # what the plan lays out: the report before these two
report.pop("outputs", None)
previews = [plan_out / f"preview_{s}_{v}.png" for s in ("before", "after") for v in report_html.PREVIEW_VIEWS]
jpegs = {p: report_html._jpeg_bytes(p) for p in previews}
growth = plan_out / "growth_outlook.png"
for name, montage in (("layout, no montage", None), ("layout", plan_out / "qc_montage.png")):
    t, c = time.perf_counter(), time.thread_time()
    layout = PdfLayout(report, montage_png=montage, previews=previews, preview_size_px=report_html.PREVIEW_SIZE_PX,
                       growth_plot_png=growth if growth.is_file() else None)
    parts[name] = (time.perf_counter() - t, time.thread_time() - c)
with tempfile.TemporaryDirectory() as folder:
    t, c = time.perf_counter(), time.thread_time()
    pdf = layout.write(Path(folder) / "report.pdf", jpegs)
    parts["write"] = (time.perf_counter() - t, time.thread_time() - c)
    parts["pages"] = (layout.pdf.pages_count, pdf.stat().st_size / 1e6)
print(json.dumps(parts))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan_out", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()
    runs = []
    for _ in range(options.runs):
        out = subprocess.run([sys.executable, "-c", CHILD, str(options.plan_out)], check=True, capture_output=True,
                             text=True).stdout
        runs.append(json.loads(out))
        print("  ".join(f"{k} {w:.3f}/{c:.3f}" for k, (w, c) in runs[-1].items() if k != "pages")
              + f"  (wall/CPU s; load {os.getloadavg()[0]:.1f})", flush=True)
    pages, megabytes = runs[-1]["pages"]
    print("median: " + ", ".join(f"{k} wall {statistics.median(r[k][0] for r in runs):.3f} s, CPU "
                                 f"{statistics.median(r[k][1] for r in runs):.3f} s" for k in runs[0] if k != "pages")
          + f"; {pages} pages, {megabytes:.2f} MB")


if __name__ == "__main__":
    main()
