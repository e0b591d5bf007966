"""Batch planning of a cohort on dask.distributed.

A manifest CSV (header row) names one study per row with columns named like ``plan``'s options:
``id``, ``ct`` and optional ``liver``, ``tumours``, ``portal``, ``hepatic``, ``segments``,
``totalsegmentator``, ``resect`` (several specs separated by ``;``), ``margin_mm``,
``parenchyma``, ``threshold_percent``, ``height_cm``, ``weight_kg``. Relative paths are relative to
the manifest's folder; ``ct`` may also be a DICOMweb series URL (retrieved by the worker: a series
that cannot be retrieved is a failed study). Each study is planned into ``OUT/ID/``; a study whose ``report.json``
exists is complete (``plan`` moves it in last, after every other output) and is skipped on a rerun
unless ``overwrite``. A failing study writes ``OUT/ID/error.txt`` and the others go on;
``OUT/cohort.csv`` gets one row per study.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
import os
import re
import shutil
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from hepatoplan.errors import HepatoplanError, InputError

from . import dicomweb
from .outputs import write_atomic
from .study import MaskPaths, PlanOptions

log = logging.getLogger(__name__)

PATH_COLUMNS = ("ct", "liver", "tumours", "portal", "hepatic", "segments", "totalsegmentator")
NUMBER_COLUMNS = ("margin_mm", "threshold_percent", "height_cm", "weight_kg")
KNOWN_COLUMNS = ("id", *PATH_COLUMNS, "resect", *NUMBER_COLUMNS, "parenchyma")
COHORT_COLUMNS = (
    "id", "status", "liver_ml", "tumours_ml", "functional_liver_ml", "resected_ml", "remnant_ml",
    "flr_percent", "threshold_percent", "verdict", "shortfall_ml", "sflr_percent",
    "tumours_not_resected", "seconds", "cpu_seconds", "worker_pid", "error",
)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class StudyJob:
    """One manifest row, checked: what a worker needs to plan one study."""

    id: str
    options: PlanOptions


def read_manifest(path, *, out_dir, preview: bool = True, store: str | None = None) -> list[StudyJob]:
    """Parse and check a manifest; every problem is reported before any study runs.

    Raises
    ------
    InputError
        Missing file, no ``id``/``ct`` column, unknown columns (the known ones are listed),
        empty or duplicate or unsafe ids, numbers that are not numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest {path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        unknown = [c for c in columns if c not in KNOWN_COLUMNS]
        if unknown:
            raise InputError(
                f"manifest {path}: unknown column(s) {', '.join(unknown)}; known columns: "
                f"{', '.join(KNOWN_COLUMNS)}"
            )
        for required in ("id", "ct"):
            if required not in columns:
                raise InputError(f"manifest {path}: needs a '{required}' column (header row first)")
        rows = [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    if not rows:
        raise InputError(f"manifest {path}: no study rows under the header")
    jobs, seen = [], set()
    for line, row in enumerate(rows, start=2):
        where = f"manifest {path}, line {line}"
        sid = row["id"]
        if not _ID.match(sid):
            raise InputError(f"{where}: id {sid!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
        if sid in seen:
            raise InputError(f"{where}: id {sid!r} appears twice")
        seen.add(sid)
        if not row.get("ct"):
            raise InputError(f"{where}: the 'ct' cell is empty")
        paths = {c: (path.parent / row[c]) if row.get(c) else None for c in PATH_COLUMNS}
        if dicomweb.is_url(row["ct"]):
            paths["ct"] = dicomweb.parse_series_url(row["ct"], flag=f"{where}: ct")
        numbers = {}
        for c in NUMBER_COLUMNS:
            if row.get(c):
                try:
                    numbers[c] = float(row[c])
                except ValueError:
                    raise InputError(f"{where}: {c} {row[c]!r} is not a number") from None
        options = PlanOptions(
            ct=paths["ct"], out=Path(out_dir) / sid,
            masks=MaskPaths(**{c: paths[c] for c in PATH_COLUMNS if c != "ct"}),
            resect=tuple(s.strip() for s in row.get("resect", "").split(";") if s.strip()),
            margin_mm=numbers.get("margin_mm", 1.0), parenchyma=row.get("parenchyma") or "normal",
            threshold_percent=numbers.get("threshold_percent"), height_cm=numbers.get("height_cm"),
            weight_kg=numbers.get("weight_kg"), preview=preview, store=store,
        )
        jobs.append(StudyJob(sid, options))
    return jobs


def input_bytes(job: StudyJob) -> int:
    """Size of a study's input files (a proxy for its work; missing files count 0)."""
    paths = [job.options.ct, *(getattr(job.options.masks, c) for c in PATH_COLUMNS if c != "ct")]
    total = 0
    for path in paths:
        if path is None or dicomweb.is_url(path):  # retrieved by the worker: size unknown
            continue
        path = Path(path)
        files = path.rglob("*") if path.is_dir() else [path]
        total += sum(f.stat().st_size for f in files if f.is_file())
    return total


def is_complete(job: StudyJob) -> bool:
    return (job.options.out / "report.json").is_file()


def run_job(job: StudyJob) -> dict:
    """Plan one study (runs on a dask worker); never raises: failures become a row."""
    from .cmd_plan import plan

    start, cpu_start = time.perf_counter(), time.process_time()

    def timing() -> dict:
        # cpu_seconds: the whole worker process (all its threads: ITK, VTK, llvmpipe), so with
        # one study per worker at a time it is the study's CPU time; seconds is wall time
        return {"seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu_start, "worker_pid": os.getpid()}

    try:
        report = plan(job.options)
    except Exception as exc:  # isolate every failure to its study
        expected = isinstance(exc, HepatoplanError)
        message = str(exc) if expected else f"{type(exc).__name__}: {exc}"
        detail = message if expected else traceback.format_exc()
        job.options.out.mkdir(parents=True, exist_ok=True)
        write_atomic(job.options.out / "error.txt", detail + "\n")
        return {"id": job.id, "status": "failed", "error": message.splitlines()[0], **timing()}
    (job.options.out / "error.txt").unlink(missing_ok=True)
    return {**cohort_row(job.id, report), **timing()}


def cohort_row(study_id: str, report: dict) -> dict:
    v, r, a = report["volumes_ml"], report.get("resection") or {}, report.get("assessment") or {}
    left = [str(t["id"]) for t in r.get("tumours", []) if t["status"] not in ("resected", "ablated")]
    return {
        "id": study_id, "status": "ok", "liver_ml": v["liver"], "tumours_ml": v["tumours_total"],
        "functional_liver_ml": v["functional_liver"], "resected_ml": r.get("resected_ml"),
        "remnant_ml": r.get("remnant_ml"), "flr_percent": r.get("flr_percent"),
        "threshold_percent": a.get("threshold_percent"), "verdict": a.get("verdict"),
        "shortfall_ml": a.get("shortfall_ml"), "sflr_percent": a.get("sflr_percent"),
        "tumours_not_resected": " ".join(left), "error": "",
    }


def write_cohort(out_dir: Path, rows: list[dict]) -> Path:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COHORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COHORT_COLUMNS})
    path = out_dir / "cohort.csv"
    write_atomic(path, buffer.getvalue())
    return path


def _cell(value):
    if value is None:
        return ""
    return f"{value:.3f}" if isinstance(value, float) else value


#: Modules a worker needs to plan a study, imported once before local workers are forked ...
WORKER_MODULES = ("hepatoplan.pipeline.cmd_plan", "hepatoplan.pipeline.study", "hepatoplan.pipeline.report_html", "hepatoplan.pipeline.seg_nrrd")
#: ... and those it needs for meshes and previews.
PREVIEW_MODULES = ("hepatoplan.pipeline.meshing", "hepatoplan.pipeline.mesh_files", "hepatoplan.pipeline.rendering", "trimesh", "fast_simplification")


def _preload_for_fork(*, previews: bool) -> str:
    """Import what a worker needs, once, and return the start method for local workers.

    On Linux the local workers are forked from this process ("fork"), so they start with these
    modules (and vtk's) already imported: spawned workers (dask's default) each start a Python and
    import them again, which took about 1 s of wall time and 2 s of CPU per worker before the
    first study (2 workers: cluster ready and modules imported 4.5 s → 1.5 s, most of it the
    imports done once here). Elsewhere the default "spawn" is kept (no fork on Windows; macOS
    system libraries are not fork-safe). The workers' thread-count variables still apply to
    ITK, VTK's SMP tools and llvmpipe (read when first used, in the worker), not to a BLAS that
    numpy loaded here before the fork (BLAS does little in a plan).
    """
    import importlib
    import multiprocessing
    import sys

    if not sys.platform.startswith("linux") or "fork" not in multiprocessing.get_all_start_methods():
        return "spawn"
    for name in WORKER_MODULES + (PREVIEW_MODULES if previews else ()):
        importlib.import_module(name)
    if previews:
        from .rendering import vtk_classes

        vtk_classes()  # vtk's modules only: no render window (no OpenGL context) in the parent
    return "fork"


def run_batch(jobs: list[StudyJob], *, out_dir: Path, workers: int = 2, scheduler: str | None = None,
              overwrite: bool = False, progress: bool = True) -> list[dict]:
    """Plan every job on dask.distributed; return one cohort row per job, in manifest order."""
    import dask
    from dask.distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    out_dir.mkdir(parents=True, exist_ok=True)
    # temporary files of a killed run (plan writes into .ID.*/ and renames; cohort.csv likewise)
    for stale in [*(p for job in jobs for p in out_dir.glob(f".{job.id}.*")), *out_dir.glob(".cohort.csv.*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    rows: dict[str, dict] = {}
    todo = []
    for job in jobs:
        if is_complete(job) and not overwrite:
            report = json.loads((job.options.out / "report.json").read_text(encoding="utf-8"))
            rows[job.id] = cohort_row(job.id, report)
        else:
            todo.append(job)
    if len(todo) < len(jobs):
        log.warning("%d of %d studies already complete: skipped (use --overwrite to recompute)",
                    len(jobs) - len(todo), len(jobs))
    if todo:
        if scheduler:
            client, cluster = Client(scheduler), None
        else:
            if not log.isEnabledFor(logging.INFO):  # dask logs every worker start at INFO
                for name in ("distributed", "distributed.scheduler", "distributed.nanny",
                             "distributed.core", "distributed.http.proxy"):
                    logging.getLogger(name).setLevel(logging.WARNING)
            # each worker gets its share of the cores for its own threads (ITK filters, VTK's SMP
            # tools, Mesa's llvmpipe renderer, BLAS, OpenMP), so several workers do not
            # oversubscribe the machine
            threads = str(max(1, (os.cpu_count() or 1) // workers))
            env = {name: threads for name in ("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "VTK_SMP_MAX_THREADS",
                                              "LP_NUM_THREADS", "OMP_NUM_THREADS",
                                              "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
            method = _preload_for_fork(previews=any(job.options.preview for job in todo))
            with dask.config.set({"distributed.worker.multiprocessing-method": method}):
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", env=env)
            client = Client(cluster)
        try:
            # largest studies first (by input bytes): a big study started last would leave the
            # other workers idle at the end (longest-processing-time-first scheduling)
            futures = [client.submit(run_job, job, key=f"plan-{job.id}", pure=False,
                                     priority=rank)
                       for rank, job in enumerate(sorted(todo, key=input_bytes))]
            with tqdm(total=len(futures), desc="studies", unit="study", disable=not progress,
                      file=None) as bar:
                for future in as_completed(futures):
                    row = future.result()
                    rows[row["id"]] = row
                    bar.update(1)
                    write_cohort(out_dir, [rows[j.id] for j in jobs if j.id in rows])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    ordered = [rows[job.id] for job in jobs]
    write_cohort(out_dir, ordered)
    return ordered
