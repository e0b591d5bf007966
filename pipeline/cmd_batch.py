"""``hepatoplan batch MANIFEST.csv --out DIR``: plan a cohort on dask.distributed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hepatoplan.errors import InputError

from . import batch, dicomweb
from .cmd_plan import plan_inputs
from .outputs import check_output_folder, out_argument


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch", help="plan every study of a manifest CSV (dask.distributed)",
        description=batch.__doc__.split("\n\n")[0],
    )
    p.add_argument("manifest", type=Path, help="CSV with a header row: id, ct, liver, ..., resect, ...")
    p.add_argument("--out", type=out_argument, required=True,
                   help="output folder: one subfolder per study + cohort.csv (must not hold an input)")
    p.add_argument("--workers", type=int, default=2, help="local worker processes (default %(default)s)")
    p.add_argument("--scheduler", help="address of an existing dask scheduler (instead of local workers)")
    p.add_argument("--overwrite", action="store_true",
                   help="recompute studies whose outputs are complete (and replace study folders hepatoplan did "
                        "not write)")
    p.add_argument("--no-preview", dest="preview", action="store_false", help="skip 3D previews")
    p.add_argument("--store", metavar="URL", help="DICOMweb root URL: store each study's DICOM-SEG and SR "
                                                  "into its source study (see 'plan --store')")
    p.set_defaults(func=run)


def check_batch_out(out: Path, jobs: list, *, manifest: Path, overwrite: bool) -> None:
    """``--out`` of a batch, before any work: the rules of
    :func:`~hepatoplan.pipeline.outputs.check_output_folder` for every study folder ``OUT/ID``
    (each replaced as a whole by its plan); ``OUT`` itself is kept between runs (complete
    studies are reused), so it must hold nothing but ``cohort.csv``, the manifest's study
    folders and hidden temporary entries, and no input."""
    inputs = [manifest, *(p for job in jobs for p in plan_inputs(job.options))]
    check_output_folder(out, inputs=inputs, overwrite=True)
    ours = {"cohort.csv", *(job.id for job in jobs)}
    other = sorted(p.name for p in out.iterdir() if p.name not in ours and not p.name.startswith(".")) \
        if out.is_dir() else []
    if other:
        raise InputError(f"--out {out}: holds {other[0]!r}{f' and {len(other) - 1} more' if len(other) > 1 else ''}, "
                         "which is neither cohort.csv nor a study of this manifest; choose a new folder for the "
                         "batch (or remove them)")
    for job in jobs:
        check_output_folder(job.options.out, inputs=plan_inputs(job.options), overwrite=overwrite,
                            flag=f"--out (study {job.id})")


def run(args) -> int:
    most = 4 * (os.cpu_count() or 1)
    if not 1 <= args.workers <= most:
        raise InputError(f"--workers: expected 1 to {most} processes (4 per core at most), got {args.workers}")
    store = args.store and dicomweb.parse_base_url(args.store)
    jobs = batch.read_manifest(args.manifest, out_dir=args.out, preview=args.preview, store=store)
    check_batch_out(args.out, jobs, manifest=args.manifest, overwrite=args.overwrite)
    if store:
        dicomweb.check_server(store)  # a PACS that is down or refuses us fails the batch before any work
    rows = batch.run_batch(jobs, out_dir=args.out, workers=args.workers, scheduler=args.scheduler,
                           overwrite=args.overwrite, progress=sys.stderr.isatty())
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"{len(rows) - len(failed)} of {len(rows)} studies planned; cohort table: {args.out / 'cohort.csv'}")
    for r in failed:
        print(f"  {r['id']}: FAILED: {r['error']} (see {args.out / r['id'] / 'error.txt'})")
    return 1 if failed else 0
