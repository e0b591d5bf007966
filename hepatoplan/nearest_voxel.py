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
(:mod:`hepatoplan.nearest_voxel_compiled`: 0.27 s on IRCADb 01's box, plus numba's one-off 0.2 s
import and 0.4 s first call per process, paid at the first call, not at this module's import).

Two routes, one answer: arrays of at most :data:`SCIPY_MAX_VOXELS` voxels take scipy's transform itself
unless the compiled one is already loaded in this process (Couinaud's vessel painting on its ~1.2 mm grid:
0.6-2.7 M voxels: scipy 0.15-0.33 s of CPU on IRCADb 08, 09, 12 against 0.41-0.55 s for the compiled route's
first call in a process, most of it numba's import and cache load); larger arrays (the vascular analysis's liver
boxes) take the compiled one.

A k-d tree route for small queries (no numba) was tried in the seventh stop and removed: its rule
among equidistant voxels ranked them by their float distances, which differ by one ulp between
equidistant voxels; on the phantom's hepatic tree at 1.2 × 1.0 × 2.0 mm it took another voxel than
scipy (``bench/RESULTS.md``, "Nearest vessel voxel").
"""

from __future__ import annotations

import sys

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
    if mask.size <= SCIPY_MAX_VOXELS and "hepatoplan.nearest_voxel_compiled" not in sys.modules:
        return scipys(mask, spacing, at)
    from hepatoplan.nearest_voxel_compiled import transform  # numba's import, at the first call only
    return transform(mask, at, *(float(s) for s in spacing))


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
    eleventh stop)."""
    mask = np.ascontiguousarray(mask, dtype=bool)
    return edt.edt(mask.view(np.uint8), anisotropy=tuple(float(s) for s in spacing_mm), black_border=black_border)


def load_compiled() -> None:
    """Import the compiled transform and load its machine code from numba's cache now (0.2 s
    import + 0.3-0.4 s first call, CPU) rather than in the first :func:`nearest_voxel` call (benchmarks
    load it before they time; ``plan`` leaves it to the first call, in a vessel tree's thread since the
    eleventh stop). Loads the one signature every call uses (C-ordered bool arrays, float spacings).
    Once loaded, small arrays take it too (:data:`SCIPY_MAX_VOXELS`)."""
    from hepatoplan.nearest_voxel_compiled import transform

    one = np.ones((1, 1, 1), bool)
    transform(one, one, 1.0, 1.0, 1.0)
