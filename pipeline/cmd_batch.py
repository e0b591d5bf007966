"""``hepatoplan batch MANIFEST.csv --out DIR``: plan a cohort on dask.distributed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hepatoplan.errors import InputError

from . import batch, dicomweb


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="plan every study of a manifest CSV (dask.distributed)",
        description=batch.__doc__.split("\n\n")[0],
    )
    p.add_argument("manifest", type=Path, help="CSV with a header row: id, ct, liver, ..., resect, ...")
    p.add_argument("--out", type=Path, required=True, help="output folder: one subfolder per study + cohort.csv")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default %(default)s)")
    p.add_argument("--scheduler", help="address of an existing dask scheduler (instead of local workers)")
    p.add_argument("--overwrite", action="store_true", help="recompute studies whose outputs are complete")
    p.add_argument("--no-preview", dest="preview", action="store_false", help="skip 3D previews")
    p.add_argument("--store", metavar="URL", help="DICOMweb root URL: store each study's DICOM-SEG and SR "
                                                  "into its source study (see 'plan --store')")
    p.set_defaults(func=run)


def run(args) -> int:
    most = 4 * (os.cpu_count() or 1)
    if not 1 <= args.workers <= most:
        raise InputError(f"--workers: expected 1 to {most} processes (4 per core at most), got {args.workers}")
    store = args.store and dicomweb.parse_base_url(args.store)
    jobs = batch.read_manifest(args.manifest, out_dir=args.out, preview=args.preview, store=store)
    if store:
        dicomweb.check_server(store)  # a PACS that is down or refuses us fails the batch before any work
    rows = batch.run_batch(jobs, out_dir=args.out, workers=args.workers, scheduler=args.scheduler,
                           overwrite=args.overwrite, progress=sys.stderr.isatty())
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} studies planned; cohort table: {args.out / 'cohort.csv'}")
    for r in failed:
        print(f"  {r['id']}: FAILED: {r['error']} (see {args.out / r['id'] / 'error.txt'})")
    return 1 if failed else 0
