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

A k-d tree route for small queries (no numba) was tried in the seventh stop and removed: its rule
among equidistant voxels ranked them by their float distances, which differ by one ulp between
equidistant voxels; on the phantom's hepatic tree at 1.2 × 1.0 × 2.0 mm it took another voxel than
scipy (``bench/RESULTS.md``, "Nearest vessel voxel").
"""

from __future__ import annotations

import numpy as np

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError


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
    from hepatoplan.nearest_voxel_compiled import transform  # numba's import, at the first call only
    return transform(mask, at, *(float(s) for s in spacing))


def load_compiled() -> None:
    """Import the compiled transform and load its machine code from numba's cache now (0.2 s
    import + 0.3-0.4 s first call, CPU) rather than in the first :func:`nearest_voxel` call: ``plan``
    calls it in a thread once the masks are read, beside the Couinaud segments, so the vascular
    analysis does not wait for it. Loads the one signature every call uses (C-ordered bool arrays,
    float spacings)."""
    one = np.ones((1, 1, 1), bool)
    nearest_voxel(one, spacing_mm=(1.0, 1.0, 1.0), at=one)
