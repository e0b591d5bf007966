"""Batch planning of a cohort on dask.distributed.

A manifest CSV (header row) names one study per row with columns named like ``plan``'s options:
``id``, ``ct`` and optional ``liver``, ``tumours``, ``portal``, ``hepatic``, ``segments``,
``totalsegmentator``, ``vessels`` (one combined vessel mask), ``resect`` (several specs separated by ``;``), ``margin_mm``,
``parenchyma``, ``threshold_percent``, ``height_cm``, ``weight_kg``. Relative paths are relative to
the manifest's folder; ``ct`` may also be a DICOMweb series URL (retrieved by the worker: a series
that cannot be retrieved is a failed study). Each study is planned into ``OUT/ID/``; a study is
complete when its ``report.json`` exists (``plan`` moves it in last, after every other output) and
its ``batch_row.json`` holds the fingerprint of the same manifest row and input files (written after
the plan): a complete study is skipped on a rerun unless ``overwrite``, a study whose row or input
files changed is planned again. A failing study writes ``OUT/ID/error.txt``, loses any earlier
``report.json``, and the others go on; ``OUT/cohort.csv`` gets one row per study.

The manifest is read as UTF-8 (a UTF-16 file with its byte-order mark is read too), and checked
whole before anything runs: a row longer than the header, an unknown or repeated column, an empty,
repeated (ignoring case) or unsafe id, the reserved id ``cohort.csv``, a number that is not one, an
invalid resection or option are each refused naming the line (exit status 2).
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io as _io
import json
import logging
import os
import re
import shutil
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from hepatoplan.errors import HepatoplanError, InputError

from . import dicomweb
from .outputs import output_folder, write_atomic
from .study import MaskPaths, PlanOptions

log = logging.getLogger(__name__)

PATH_COLUMNS = ("ct", "liver", "tumours", "portal", "hepatic", "segments", "totalsegmentator", "vessels")
NUMBER_COLUMNS = ("margin_mm", "threshold_percent", "height_cm", "weight_kg")
KNOWN_COLUMNS = ("id", *PATH_COLUMNS, "resect", *NUMBER_COLUMNS, "parenchyma")
COHORT_COLUMNS = (
    "id", "status", "liver_ml", "tumours_ml", "functional_liver_ml", "resected_ml", "remnant_ml",
    "flr_percent", "threshold_percent", "verdict", "shortfall_ml", "sflr_percent",
    "tumours_not_resected", "seconds", "cpu_seconds", "worker_pid", "error",
)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
#: Names in OUT that are not study folders.
RESERVED_IDS = ("cohort.csv",)
#: File in each study folder recording which manifest row (and input files) produced it.
ROW_FILE = "batch_row.json"
#: Largest manifest read (bytes): a cohort table, not a data file.
MAX_MANIFEST_BYTES = 50 * 2**20
#: How long to try reaching a ``--scheduler`` (s).
SCHEDULER_TIMEOUT_S = 10


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
        Missing or unreadable file, text that is not UTF-8 (or UTF-16 with a byte-order mark), a
        malformed CSV line, no ``id``/``ct`` column, unknown or repeated columns (the known ones
        are listed), a row longer than the header, empty, duplicate, reserved or unsafe ids,
        numbers that are not numbers, invalid resections or options; each names the line.
    """
    path = Path(path)
    lines = _manifest_lines(path)
    header = [c.strip() for c in lines[0][1]] if lines else []
    unknown = [c for c in header if c not in KNOWN_COLUMNS]
    if unknown:
        hint = " (is it separated by ';' or tabs? Use commas)" if any(";" in c or "\t" in c for c in unknown) else ""
        raise InputError(
            f"manifest {path}: unknown column(s) {', '.join(repr(c) if not c else c for c in unknown)}; known columns: "
            f"{', '.join(KNOWN_COLUMNS)}{hint}"
        )
    for required in ("id", "ct"):
        if required not in header:
            raise InputError(f"manifest {path}: needs a '{required}' column (header row first)")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise InputError(f"manifest {path}: column(s) {', '.join(repeated)} appear twice in the header; keep one of each")
    if len(lines) < 2:
        raise InputError(f"manifest {path}: no study rows under the header")
    jobs, seen = [], set()
    for line, cells in lines[1:]:
        where = f"manifest {path}, line {line}"
        if len(cells) > len(header):
            raise InputError(
                f"{where}: {len(cells)} cells but the header names {len(header)} columns; expected one cell per "
                "column (quote a cell that holds a comma)"
            )
        row = dict(zip(header, (c.strip() for c in cells)))
        sid = row.get("id", "")
        if not _ID.match(sid):
            raise InputError(f"{where}: id {sid!r} must be 1-100 letters, digits, '.', '_' or '-', starting with a "
                             "letter or digit (it names a folder)")
        if sid.lower() in RESERVED_IDS:
            raise InputError(f"{where}: id {sid!r} is reserved (OUT/{sid} is the cohort table); choose another id")
        if sid.lower() in seen:
            raise InputError(f"{where}: id {sid!r} appears twice (ids must differ, also in more than letter case)")
        seen.add(sid.lower())
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
        try:
            options.validate()
        except HepatoplanError as exc:
            raise InputError(f"{where}: {exc}") from None
        jobs.append(StudyJob(sid, options))
    return jobs


def _manifest_lines(path: Path) -> list[tuple[int, list[str]]]:
    """The manifest's non-empty CSV rows with their line numbers."""
    if not path.is_file():
        raise InputError(f"manifest {path}: {'not a regular file' if path.exists() else 'no such file'}; expected a "
                         "CSV file")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise InputError(f"manifest {path}: {path.stat().st_size} bytes; expected a CSV table of studies "
                         f"(at most {MAX_MANIFEST_BYTES // 2**20} MB)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-16") if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) \
            else raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise InputError(
            f"manifest {path}, line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); expected a CSV file in "
            "UTF-8. Save it as 'CSV UTF-8' (or UTF-16 with a byte-order mark)."
        ) from None
    if "\0" in text:
        line = text[:text.index("\0")].count("\n") + 1
        raise InputError(f"manifest {path}, line {line}: holds a NUL character; expected CSV text (is it a "
                         "spreadsheet file? Save it as CSV)")
    reader = csv.reader(_io.StringIO(text, newline=""))
    lines = []
    try:
        for cells in reader:
            if any(c.strip() for c in cells):
                lines.append((reader.line_num, cells))
    except csv.Error as exc:
        raise InputError(f"manifest {path}, line {reader.line_num + 1}: {exc}; expected comma-separated text") from None
    return lines


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


def fingerprint(job: StudyJob) -> str:
    """SHA-256 of a study's options (its manifest row, paths made absolute) and of the size and
    modification time of each input file: a change to either makes the study incomplete."""
    options = json.loads(json.dumps(dataclasses.asdict(job.options), default=str))
    inputs = {}
    for column in PATH_COLUMNS:
        given = job.options.ct if column == "ct" else getattr(job.options.masks, column)
        if isinstance(given, dicomweb.SeriesURL):  # a series in a PACS: its address is all there is to compare
            inputs[column] = ["url", str(given)]
        elif given is not None:
            options.setdefault("absolute", {})[column] = os.path.abspath(given)
            inputs[column] = _stamps(Path(given))
    text = json.dumps({"options": options, "inputs": inputs}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _stamps(path: Path) -> list:
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    try:
        return [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    except OSError:
        return ["missing"]


def is_complete(job: StudyJob) -> bool:
    """The study's ``report.json`` exists and was made from this manifest row and these inputs."""
    try:
        recorded = json.loads((job.options.out / ROW_FILE).read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return (job.options.out / "report.json").is_file() and recorded == fingerprint(job)


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
        with output_folder(job.options.out) as folder:  # an earlier run's outputs are no longer this row's
            (folder / "error.txt").write_text(detail + "\n", encoding="utf-8")
        return {"id": job.id, "status": "failed", "error": " ".join(message.split()), **timing()}
    write_atomic(job.options.out / ROW_FILE, json.dumps({"id": job.id, "fingerprint": fingerprint(job)}) + "\n")
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
PREVIEW_MODULES = ("hepatoplan.pipeline.meshing", "hepatoplan.pipeline.mesh_files", "hepatoplan.pipeline.rendering", "fast_simplification")


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

    client = _connect(scheduler) if scheduler else None  # before anything is written
    cluster = None
    try:
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
            row = None if overwrite else _finished_row(job)
            if row is None:
                todo.append(job)
            else:
                rows[job.id] = row
        if len(todo) < len(jobs):
            log.warning("%d of %d studies already complete: skipped (use --overwrite to recompute)",
                        len(jobs) - len(todo), len(jobs))
        if todo:
            if client is None:
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
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    ordered = [rows[job.id] for job in jobs]
    write_cohort(out_dir, ordered)
    return ordered


def _finished_row(job: StudyJob) -> dict | None:
    """The cohort row of a study complete from an earlier run (None: plan it)."""
    if not is_complete(job):
        return None
    try:
        return cohort_row(job.id, json.loads((job.options.out / "report.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable: plan it again


def _connect(address: str):
    """A client of the dask scheduler at ``address``; InputError when it cannot be reached (a
    plain TCP connection is tried first, so a wrong address fails at once)."""
    from dask.distributed import Client
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location, default_port=8786)
    except (ValueError, TypeError) as exc:
        raise InputError(f"--scheduler {address!r}: not a scheduler address ({exc}); expected e.g. "
                         "tcp://host:8786") from None
    try:
        if scheme in ("tcp", "tls"):
            socket.create_connection((host, int(port)), timeout=SCHEDULER_TIMEOUT_S).close()
        return Client(address, timeout=f"{SCHEDULER_TIMEOUT_S}s")
    except (OSError, TimeoutError) as exc:
        raise InputError(
            f"--scheduler {address}: cannot connect ({getattr(exc, 'strerror', None) or exc}); expected a running "
            "dask scheduler there. Start one ('dask scheduler'), check the address, or drop --scheduler to use "
            "local workers."
        ) from None
