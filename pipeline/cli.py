"""``hepatoplan`` command line: ``hepatoplan SUBCOMMAND ...``.

Each subcommand lives in its own module of ``pipeline/`` exposing ``register(subparsers)``, which
adds its parser and sets ``func=run`` with ``run(args) -> int``. :func:`main` is testable
in-process: ``main(["plan", ...])`` returns the exit status.

Exit status: 0 success, 1 a batch with failed studies, 2 bad input or an unusable environment (one
clear line on stderr, no traceback, nothing written), 3 an internal error (a bug, or memory
exhausted: one line on stderr; ``-v`` adds the traceback). Warnings are held back until the command
succeeds, so a refusal is exactly one line; with ``-v`` every log line streams as it comes.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import gc
import importlib
import logging
import os
import sys

from hepatoplan import __version__
from hepatoplan.errors import HepatoplanError

#: Subcommand → the ``pipeline`` module registering it, in the order ``--help`` lists them.
SUBCOMMANDS = {
    "plan": "hepatoplan.pipeline.cmd_plan",
    "demo": "hepatoplan.pipeline.cmd_plan",
    "couinaud": "hepatoplan.pipeline.cmd_couinaud",
    "segment": "hepatoplan.pipeline.cmd_segment",
    "growth": "hepatoplan.pipeline.cmd_staging",
    "stage": "hepatoplan.pipeline.cmd_staging",
    "batch": "hepatoplan.pipeline.cmd_batch",
}

log = logging.getLogger(__name__)


class _StderrLog(logging.Handler):
    """Log records as ``LEVEL name: message`` lines on the current ``sys.stderr``; with ``hold``
    they are kept until :meth:`show_held` (a refusal then prints only its one line)."""

    def __init__(self, level: int, *, hold: bool):
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.hold, self.held = hold, []

    def emit(self, record: logging.LogRecord) -> None:
        if self.hold:
            self.held.append(record)
        else:
            print(self.format(record), file=sys.stderr)

    def show_held(self) -> None:
        for record in self.held:
            print(self.format(record), file=sys.stderr)
        self.held.clear()


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so errors follow the one-line, exit-2 rule.

    Abbreviated long options are refused: ``--margin`` must not silently mean ``--margin-mm``.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message):  # noqa: D102
        raise HepatoplanError(f"{self.prog}: {message} (see '{self.prog} --help')")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a subcommand, only that subcommand's module is imported
    (each pulls in its own heavy libraries, which would slow every command down)."""
    parser = _Parser(prog="hepatoplan", description="Liver-surgery planning from CT and MR studies.")
    parser.add_argument("--version", action="version", version=f"hepatoplan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = parser.add_subparsers(dest="command", metavar="SUBCOMMAND", parser_class=_Parser)
    chosen = next((a for a in argv or () if not a.startswith("-")), None)
    modules = [SUBCOMMANDS[chosen]] if chosen in SUBCOMMANDS else list(dict.fromkeys(SUBCOMMANDS.values()))
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


#: glibc ``mallopt`` settings (M_TRIM_THRESHOLD, M_TOP_PAD, M_ARENA_MAX, M_MMAP_THRESHOLD): keep up to
#: 2 GiB of freed heap in the process and grow it 256 MiB at a time, in one arena for every thread, and
#: take blocks up to 64 MiB (a 512×512×129 mask, a liver box's int32 map) from that heap, not from
#: fresh mappings. A plan allocates and frees many volume-sized temporaries; returned to the kernel,
#: each is page-faulted in again on its next use: on the 2-core VM of bench/RESULTS.md that system
#: time was 7-10 s of a 14 s ``--no-preview`` plan (3-5 s with the first two settings: "Performance of
#: the plan path"). Setting the trim threshold freezes glibc's mmap threshold at 128 KiB, so the
#: volumes were still mapped afresh each time until the last two settings (twelfth stop: minor faults
#: 0.42 → 0.23 M, system time 1.06 → 0.61 s; one arena, because with one heap per thread the freed
#: blocks of one thread are not reused by another and the peak grows). Peak memory is unchanged.
MALLOC_SETTINGS = ((-1, 2**31 - 1), (-2, 256 * 1024**2), (-8, 1), (-3, 64 * 1024**2))


def keep_freed_memory() -> None:
    """Apply :data:`MALLOC_SETTINGS` when the C library is glibc (elsewhere, nothing), and turn
    off numpy's transparent huge pages unless ``NUMPY_MADVISE_HUGEPAGE`` says otherwise.

    numpy asks Linux for huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MB or more;
    where huge pages are granted on request (``transparent_hugepage/defrag = madvise``, as on the
    2-core VM of bench/RESULTS.md), each first touch of such an array may compact memory to find a
    2 MB page. On IRCADb 01's default plan that cost ~1.9 s more CPU (median user + system, mostly
    system time) than 4 kB pages ("Performance of the plan path", interleaved A/B). numpy's switch
    for it is ``_set_madvise_hugepage`` (numpy's "Global state" page).
    """
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy 1.x
            from numpy.core import multiarray
        multiarray._set_madvise_hugepage(False)
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    for option, value in MALLOC_SETTINGS:
        mallopt(ctypes.c_int(option), ctypes.c_int(value))


#: OpenBLAS's threads when the environment does not say (``OPENBLAS_NUM_THREADS``, set by :func:`main` before numpy's
#: import): one. A command's arrays go through BLAS only in small products (affines on point lists, 3 × 3 covariances,
#: plane fits), while its own threads and helper processes fill the cores; numpy's and scipy's OpenBLAS each started
#: a worker per core that spun after such a call: 0.04-0.16 core-s per default plan of IRCADb 01 (bench/RESULTS.md,
#: start20). The helper processes already ran with one (``meshing._helper_environment``).
BLAS_THREADS = "1"

#: Extension libraries mapped ahead of their import (:func:`preload_libraries`): (package, file pattern).
PRELOADED = (("SimpleITK", "_SimpleITK*.so"),)


def preload_libraries():
    """Map the :data:`PRELOADED` libraries in a daemon thread while the main thread imports the
    subcommand's modules; their imports then find them loaded. Once per process: returns the thread.

    SimpleITK's extension is a 270 MB library: relocating it is ~0.03 s of CPU, over half of
    ``import SimpleITK``, which every subcommand pays on its main thread (``pipeline/io.py``).
    ``ctypes``' ``dlopen`` releases the GIL, so the imports go on meanwhile. Called after
    :func:`keep_freed_memory` (a thread started before the malloc settings would keep an arena of its
    own). A library not found or not loadable is left to its import. A fork (``batch``'s local
    workers) waits for the thread first: a child forked while ``dlopen`` holds the loader's lock
    could hang in its next import."""
    global _PRELOAD_THREAD
    if _PRELOAD_THREAD is not None:
        return _PRELOAD_THREAD
    import threading
    from importlib.util import find_spec
    from pathlib import Path

    def load() -> None:
        for package, pattern in PRELOADED:
            try:
                spec = find_spec(package)
                for folder in (spec.submodule_search_locations or []) if spec else []:
                    for path in Path(folder).glob(pattern):
                        ctypes.CDLL(str(path), mode=os.RTLD_NOW)
            except (ImportError, OSError, ValueError):
                pass

    _PRELOAD_THREAD = threading.Thread(target=load, name="hepatoplan-preload", daemon=True)
    _PRELOAD_THREAD.start()
    os.register_at_fork(before=_PRELOAD_THREAD.join)
    return _PRELOAD_THREAD


_PRELOAD_THREAD = None

#: numpy's submodules that scipy's array-API layer (``scipy._lib.array_api_compat.numpy``, imported with
#: scipy.ndimage) imports only to copy numpy's namespace, and that no subcommand uses: ~0.055 s of CPU on the main
#: thread (numpy.f2py pulls importlib.metadata, email, zipfile; numpy.testing unittest, difflib), in the plan just
#: before the vessel trees can start.
DEFERRED_MODULES = ("numpy.f2py", "numpy.testing")


def defer_unused_modules() -> None:
    """Give each of :data:`DEFERRED_MODULES` not imported yet a lazy module (the standard library's
    ``importlib.util.LazyLoader``), also as numpy's attribute, as its import would: the module runs on its first
    attribute access (``numpy.testing.assert_equal`` works as always), not when scipy merely copies numpy's
    namespace. A module that cannot be found (another numpy) is left alone. Python 3.11's lazy modules are not
    safe to touch first from two threads at once: these two are used by no thread of a subcommand."""
    import importlib.util

    import numpy

    for name in DEFERRED_MODULES:
        if name in sys.modules:
            continue
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is None or not hasattr(spec.loader, "exec_module"):
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        setattr(numpy, name.rpartition(".")[2], module)


def freeze_objects_at_exit() -> None:
    """At interpreter exit, move every object still alive out of the cyclic garbage collector's
    reach (``gc.freeze``), once per process.

    Python's finalization runs full collections over whatever the imports left (scipy's, numba's
    and vtk's ~200 k objects after a plan): on the 2-core VM of bench/RESULTS.md that was ~0.4 s
    of CPU and ~1 s of wall time after the last output was written ("eighth stop"). Objects are
    still released as the modules are torn down, atexit handlers and ``weakref.finalize`` still
    run; only the collector's last passes over them are skipped, as when a process is killed.
    Registered as an atexit handler (not called here): ``main`` run in-process, as the tests do,
    keeps collecting normally.
    """
    global _FREEZE_REGISTERED
    if not _FREEZE_REGISTERED:
        atexit.register(gc.freeze)
        _FREEZE_REGISTERED = True


_FREEZE_REGISTERED = False


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", BLAS_THREADS)  # before numpy's import
    keep_freed_memory()
    preload_libraries()
    defer_unused_modules()
    freeze_objects_at_exit()
    root, handler, verbose = logging.getLogger(), None, False
    saved_level = root.level
    freezes = not gc.get_freeze_count()  # a caller's own freeze is left as it is
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(argv)
        if freezes:  # the subcommand's modules: out of every collection of the command (unfrozen at its end)
            gc.freeze()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        verbose = args.verbose
        handler = _StderrLog(logging.INFO if verbose else logging.WARNING, hold=not verbose)
        root.addHandler(handler)
        root.setLevel(handler.level)
        status = int(args.func(args) or 0)
        handler.show_held()
        return status
    except HepatoplanError as exc:
        return _fail(f"hepatoplan: error: {exc}", 2)
    except KeyboardInterrupt:
        return _fail("hepatoplan: interrupted", 130)
    except OSError as exc:  # the environment: a full or read-only disk, a vanished file
        where = f"{exc.filename}: " if exc.filename else ""
        return _fail(f"hepatoplan: error: {where}{exc.strerror or exc}; check the path, its permissions and the "
                     "free space", 2, verbose=verbose)
    except MemoryError:
        return _fail("hepatoplan: error: out of memory; close other programs, or crop or downsample the scan",
                     3, verbose=verbose)
    except Exception as exc:  # a bug: one line, the traceback with -v
        return _fail(f"hepatoplan: internal error: {type(exc).__name__}: {exc} (please report it with the command "
                     "line; -v shows the traceback)", 3, verbose=verbose)
    finally:
        if freezes:
            gc.unfreeze()
        if handler is not None:
            root.removeHandler(handler)
            root.setLevel(saved_level)


def _fail(message: str, status: int, *, verbose: bool = False) -> int:
    """Print ``message`` as one line on stderr (with the traceback first when ``verbose``)."""
    if verbose:
        log.exception("traceback")
    print(" ".join(message.split()), file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
