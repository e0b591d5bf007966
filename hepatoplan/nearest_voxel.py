"""The nearest voxel of a mask for chosen voxels: an exact Euclidean feature transform.

:func:`nearest_voxel` gives, for every voxel of ``at``, the voxel of ``mask`` nearest to it in mm
(anisotropic spacing), numbered as ``np.flatnonzero(mask)`` lists them, as scipy's
``ndimage.distance_transform_edt(~mask, sampling=spacing_mm, return_indices=True)`` does, with the
same choice among equidistant voxels (the tests compare the two on real masks, the phantom's exact
ties and random masks, voxel for voxel).

Why not scipy's: on IRCADb 01's liver box (342 × 272 × 98 voxels) scipy takes 1.6 s of CPU and
allocates three int32 index arrays of the whole box (110 MB), of which the vascular analysis
reads only the liver's voxels. ``edt`` has no feature transform; SimpleITK's Danielsson map is not
exact. The transform is Maurer, Qi and Raghavan's, compiled with numba
(:mod:`hepatoplan.nearest_voxel_compiled`: 0.16 s per tree on IRCADb 01's box). Compiled just in time,
numba costs every process a one-off 0.3 s of CPU (its import and its CPU target's set-up, holding the GIL)
at the first call; so the same function is compiled once per installation ahead of time into an extension
module (numba's ``pycc``, generic x86-64/arm64 code, the GIL released as the JIT's ``nogil``; a subprocess,
~5 s of CPU, at the first call that needs the compiled route) that later processes load in ~1 ms without
numba (:func:`compiled_transform`). Where that cannot be built (no C compiler, numba without ``pycc``) the
just-in-time route answers, as before.

Two routes, one answer: arrays of at most :data:`SCIPY_MAX_VOXELS` voxels take scipy's transform itself
unless the compiled one is already loaded in this process or built ahead of time (Couinaud's vessel painting
on its ~1.2 mm grid: 0.6-2.7 M voxels: scipy 0.15-0.33 s of CPU on IRCADb 08, 09, 12 against 0.41-0.55 s
for the just-in-time route's first call in a process, most of it numba's import and cache load); larger
arrays (the vascular analysis's liver boxes) take the compiled one.

A k-d tree route for small queries (no numba) was tried in the seventh stop and removed: its rule
among equidistant voxels ranked them by their float distances, which differ by one ulp between
equidistant voxels; on the phantom's hepatic tree at 1.2 × 1.0 × 2.0 mm it took another voxel than
scipy (``bench/RESULTS.md``, "Nearest vessel voxel").
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

import edt
import numpy as np

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError

SCIPY_MAX_VOXELS = 4_000_000
"""Arrays up to this size take scipy's transform when the compiled route is not loaded yet: scipy costs
about 0.1 s of CPU per million voxels (and 12 bytes of indices per voxel), the compiled route's first call in
a process about 0.4-0.55 s (IRCADb 12's vessel box, 2.65 M voxels: scipy 0.18-0.26 s; bench/RESULTS.md,
"Couinaud segments from one combined vessel mask", eighth stop)."""


def nearest_voxel(mask: np.ndarray, *, spacing_mm, at: np.ndarray) -> np.ndarray:
    """The ``mask`` voxel nearest to each voxel of ``at``, as its number among the mask's voxels.

    Parameters
    ----------
    mask : ndarray of bool, shape (nx, ny, nz)
        The voxels to find (e.g. a vessel tree).
    spacing_mm : sequence of 3 float
        Voxel spacing along the array axes, mm.
    at : ndarray of bool, same shape
        The voxels asking (e.g. the liver).

    Returns
    -------
    ndarray of int32, shape (count of ``at``,)
        For the voxels of ``at`` in C order (``np.flatnonzero(at)``), their nearest ``mask`` voxel
        (Euclidean distance in mm; among equidistant ones, scipy's choice) as an index into
        ``np.flatnonzero(mask)``; -1 everywhere when ``mask`` is empty.

    Raises
    ------
    InputError
        Arrays that are not 3-D or differ in shape, or a bad spacing.
    """
    spacing = check_spacing_mm(spacing_mm)
    if np.ndim(mask) != 3 or np.shape(at) != np.shape(mask):
        raise InputError(f"nearest_voxel: expected two 3-D arrays of one shape, found {np.shape(mask)} and "
                         f"{np.shape(at)}")
    mask = np.ascontiguousarray(mask, dtype=bool)
    at = np.ascontiguousarray(at, dtype=bool)
    if mask.size <= SCIPY_MAX_VOXELS and _loaded is None and (
            "hepatoplan.nearest_voxel_compiled" not in sys.modules and _built_ahead() is None):
        return scipys(mask, spacing, at)
    return compiled_transform()(mask, at, *(float(s) for s in spacing))


def scipys(mask: np.ndarray, spacing_mm, at: np.ndarray) -> np.ndarray:
    """:func:`nearest_voxel` by ``scipy.ndimage.distance_transform_edt(~mask, return_indices=True)`` (the
    reference; C-contiguous bool arrays, no checks)."""
    from scipy import ndimage  # imported when used: ``plan`` imports this module before it reads its inputs

    if not mask.any():
        return np.full(np.count_nonzero(at), -1, np.int32)
    idx = ndimage.distance_transform_edt(~mask, sampling=spacing_mm, return_distances=False, return_indices=True)
    flat = np.ravel_multi_index(tuple(i[at] for i in idx), mask.shape)
    return np.searchsorted(np.flatnonzero(mask), flat).astype(np.int32)


def edt_mm(mask: np.ndarray, *, spacing_mm, black_border: bool = False) -> np.ndarray:
    """``edt.edt`` of a boolean mask (float32 mm: each true voxel's distance to the nearest false
    one), computed on the mask's uint8 view. ``edt`` 3.1 takes another path for numpy booleans that
    gives the same values bit for bit (300 random masks, both borders, anisotropic) and costs about
    3 × the CPU on sparse masks: a vessel tree's box of IRCADb 01, 0.15-0.2 → 0.05 s (bench/RESULTS.md,
    eleventh stop).

    2-D and 3-D masks call the C++ function ``edt.edt`` calls for uint8 labels (its squared transform) through
    ctypes, then take its square root as ``edt.edt`` does: the same values bit for bit, but ctypes releases the
    GIL for the call, which ``edt``'s wrapper holds while its worker thread computes (IRCADb 01's plan: 0.3-0.4 s
    of the division's window, the trees' and the division's threads waiting; bench/RESULTS.md, gil20). Where
    ``edt``'s build does not export that function (:func:`_edt_squared`), ``edt.edt`` answers."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    squared = _edt_squared(mask.ndim) if mask.size else None
    if squared is None:
        return edt.edt(mask.view(np.uint8), anisotropy=tuple(float(s) for s in spacing_mm), black_border=black_border)
    out = np.empty(mask.shape, np.float32)
    # edt's C++ takes the fastest axis first: a C-ordered array's last
    squared(mask.ctypes.data, *mask.shape[::-1], *(float(s) for s in spacing_mm[::-1]), bool(black_border), 1,
            out.ctypes.data)
    return np.sqrt(out, out=out)


_EDT_SQUARED = {2: "_ZN5pyedt8_edt2dsqIhEEPfPT_llffbiS1_",  # float* _edt2dsq<uint8_t>(uint8_t*, size_t sx, ...,
                3: "_ZN5pyedt8_edt3dsqIhEEPfPT_lllfffbiS1_"}  # float wx, ..., bool black_border, int parallel,
# float* out): the mangled name spells the parameters' types, so a changed signature is not found


@functools.cache
def _edt_squared(ndim: int):
    """``edt``'s C++ squared transform of uint8 labels in ``ndim`` dimensions as a ctypes function (which
    releases the GIL while it runs), or None where ``edt``'s extension does not export it."""
    if ndim not in _EDT_SQUARED:
        return None
    try:
        function = getattr(ctypes.CDLL(edt.__file__), _EDT_SQUARED[ndim])
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_void_p
    function.argtypes = ([ctypes.c_void_p] + [ctypes.c_size_t] * ndim + [ctypes.c_float] * ndim
                         + [ctypes.c_bool, ctypes.c_int, ctypes.c_void_p])
    # an internal function: checked once against ``edt.edt`` on an anisotropic probe (both borders), so that an
    # ``edt`` whose function kept its name but changed its meaning answers through ``edt.edt``, never wrongly
    probe = np.random.default_rng(0).random((9, 7, 5)[:ndim]) > 0.3
    spacing_mm = (2.5, 0.7, 1.1)[:ndim]
    for border in (False, True):
        out = np.empty(probe.shape, np.float32)
        function(probe.ctypes.data, *probe.shape[::-1], *spacing_mm[::-1], border, 1, out.ctypes.data)
        if not np.array_equal(np.sqrt(out), edt.edt(probe.view(np.uint8), anisotropy=spacing_mm, black_border=border)):
            return None
    return function


def load_compiled() -> None:
    """Load the compiled transform now rather than in the first :func:`nearest_voxel` call (benchmarks
    load it before they time; ``plan`` leaves it to the first call, in a vessel tree's thread since the
    eleventh stop): the module built ahead of time (~1 ms), else numba's machine code from its cache
    (0.2 s import + 0.3-0.4 s first call, CPU). Loads the one signature every call uses (C-ordered bool
    arrays, float spacings). Once loaded, small arrays take it too (:data:`SCIPY_MAX_VOXELS`)."""
    one = np.ones((1, 1, 1), bool)
    compiled_transform()(one, one, 1.0, 1.0, 1.0)


_loaded = None  # the compiled transform, once loaded
_loading = threading.Lock()


def compiled_transform():
    """The compiled transform (:func:`hepatoplan.nearest_voxel_compiled.transform`'s arguments): the
    module built ahead of time, built now (once per installation) when it is not yet, else numba's
    just-in-time route. Thread-safe: the first caller loads it, others wait."""
    global _loaded
    with _loading:
        if _loaded is None:
            module = _built_ahead() or _build_ahead()
            if module is None:
                from hepatoplan.nearest_voxel_compiled import transform  # numba's import, here only

                _loaded = transform
            else:
                _loaded = module.transform
        return _loaded


def compiled(name: str):
    """The function ``name`` of :mod:`hepatoplan.nearest_voxel_compiled` (``subtree_sums``, ``neighbours``,
    ``reached``) from where :func:`compiled_transform` comes: the module built ahead of time, else numba's
    just-in-time route."""
    compiled_transform()
    module = _built_ahead()
    if module is None:
        import hepatoplan.nearest_voxel_compiled as module
    return getattr(module, name)


@functools.cache
def _aot_name() -> str:
    """The built module's name: a hash of the kernel's source, the installed numba (its ``__init__.py``'s
    path, size and time: a reinstall changes them) and the platform (a changed kernel or numba builds anew)."""
    source = Path(__file__).with_name("nearest_voxel_compiled.py").read_bytes()
    spec = importlib.util.find_spec("numba")  # found, not imported
    numba = os.stat(spec.origin) if spec is not None and spec.origin else None
    key = b"\0".join([source, repr((spec and spec.origin, numba and (numba.st_size, numba.st_mtime_ns))).encode(),
                      sys.implementation.cache_tag.encode(), platform.machine().encode()])
    return "_nearest_voxel_aot_" + hashlib.sha256(key).hexdigest()[:16]


def _aot_folders() -> list[Path]:
    """Where the built module is kept: beside numba's own cache (the package's ``__pycache__``), else in
    the user's cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``)."""
    folders = [Path(__file__).with_name("__pycache__")]
    try:
        folders.append(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hepatoplan")
    except RuntimeError:  # no home folder
        pass
    return folders


def _built_ahead():
    """The module built ahead of time, loaded (None when it is not built, or cannot be loaded: a damaged
    or foreign file is then built again over)."""
    name = _aot_name()
    if name in sys.modules:
        return sys.modules[name]
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for folder in _aot_folders():
        path = folder / (name + suffix)
        if path.is_file():
            try:
                spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
            except (ImportError, OSError):
                continue
            sys.modules[name] = module
            return module
    return None


def _build_ahead():
    """Build the module ahead of time in a subprocess (numba's ``pycc``, ~5 s of CPU, once per installation)
    into the first writable cache folder and load it; None when that fails, which a ``.failed`` file beside
    it records (with the error; delete it to try again) so that later processes go straight to numba's
    just-in-time route."""
    name = _aot_name()
    for folder in _aot_folders():
        if (folder / f"{name}.failed").is_file():
            return None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if not os.access(folder, os.W_OK):
            continue
        # the kernel's file run as a script: this very source is built (not another checkout's module)
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).with_name("nearest_voxel_compiled.py")),
                                   str(folder), name], capture_output=True, text=True, timeout=600)
            error = proc.stderr[-4000:] if proc.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as exc:
            error = str(exc)
        if not error and _built_ahead() is not None:
            return sys.modules[name]
        try:  # delete the file to try again
            (folder / f"{name}.failed").write_text((error or "built, but not loadable") + "\n")
        except OSError:
            pass
        return None
    return None
