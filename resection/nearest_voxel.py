"""The nearest voxel of a mask for chosen voxels: an exact Euclidean feature transform.

:func:`nearest_voxel` gives, for every voxel of ``at``, the voxel of ``mask`` nearest to it in mm
(anisotropic spacing), numbered as ``np.flatnonzero(mask)`` lists them, as scipy's ``ndimage.distance_transform_edt(~mask, sampling=spacing_mm,
return_indices=True)`` does, with the same choice among equidistant voxels (the tests compare
the two on real masks and random ones, voxel for voxel).

Why not scipy's: on IRCADb 01's liver box (342 × 272 × 98 voxels) scipy takes 1.6 s of CPU and
allocates three int32 index arrays of the whole box (110 MB), of which the vascular analysis
reads only the liver's voxels; this takes 0.27 s and allocates one int32 array of the box, and it
numbers the answers as the mask's voxels (no lookup table of the box). ``edt`` has no feature
transform; SimpleITK's Danielsson map is not exact.

Method: Maurer, Qi and Raghavan's separable transform (IEEE PAMI 25(2), 2003), one axis after
the other: the nearest mask voxel along axis 0 (two scans per plane), then along axis 1 in each
axis-0 plane, then along axis 2 over those, where the outputs are read at ``at`` only. Among
equidistant voxels the one found first along the axis wins (lower index), which is scipy's rule;
distances are computed in the same arithmetic order, so ties come out the same.

Compiled with numba (``cache=True``: once per installation, about 3 s; later runs load it) and
``nogil``: calls from several threads run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
    return _transform(mask, at, *(float(s) for s in spacing))


@njit(cache=True, nogil=True)
def _transform(mask, at, sx, sy, sz):  # pragma: no cover (compiled)
    nx, ny, nz = mask.shape
    n = max(nx, ny, nz)
    has = np.empty(n, np.bool_)
    other = np.zeros(n)  # squared distance (mm²) of each site off the line
    stack = np.empty(n, np.int64)
    site = np.empty(n, np.int64)
    line = np.empty(n, np.int64)
    # axis 0: in each x-line, the nearest mask voxel (lower x on a tie) as its rank in C order
    # (the mask's voxels are numbered as np.flatnonzero lists them), -1 if none
    ijk = np.empty((np.count_nonzero(mask), 2), np.int32)  # x and y of each rank
    work = np.empty((nx, ny, nz), np.int32)
    last = np.full((ny, nz), -1, np.int32)
    rank = 0
    for x in range(nx):
        for y in range(ny):
            for z in range(nz):
                if mask[x, y, z]:
                    last[y, z] = rank
                    ijk[rank, 0], ijk[rank, 1] = x, y
                    rank += 1
                work[x, y, z] = last[y, z]
    last[:] = -1
    for x in range(nx - 1, -1, -1):
        for y in range(ny):
            for z in range(nz):
                before = work[x, y, z]
                if mask[x, y, z]:
                    last[y, z] = before  # its own rank
                after = last[y, z]
                if after >= 0 and (before < 0 or ijk[after, 0] - x < x - ijk[before, 0]):
                    work[x, y, z] = after
    # axis 1, in each x-plane: the nearest mask voxel in the plane
    for x in range(nx):
        for z in range(nz):
            for y in range(ny):
                a = work[x, y, z]
                line[y] = a
                has[y] = a >= 0
                if a >= 0:
                    t = (ijk[a, 0] - x) * sx
                    other[y] = t * t
            _nearest_on_line(ny, has, other, sy, stack, site)
            for y in range(ny):
                q = site[y]
                work[x, y, z] = -1 if q < 0 else line[q]
    # axis 2, read at ``at`` only (in C order)
    out = np.empty(np.count_nonzero(at), np.int32)
    i = 0
    for x in range(nx):
        for y in range(ny):
            wanted = False
            for z in range(nz):
                if at[x, y, z]:
                    wanted = True
                    break
            if not wanted:
                continue
            for z in range(nz):
                a = work[x, y, z]
                line[z] = a
                has[z] = a >= 0
                if a >= 0:
                    t0 = (ijk[a, 0] - x) * sx
                    t1 = (ijk[a, 1] - y) * sy
                    other[z] = t0 * t0 + t1 * t1
            _nearest_on_line(nz, has, other, sz, stack, site)
            for z in range(nz):
                if at[x, y, z]:
                    q = site[z]
                    out[i] = -1 if q < 0 else line[q]
                    i += 1
    return out


@njit(cache=True, nogil=True)
def _nearest_on_line(n, has, other, s, stack, site):  # pragma: no cover (compiled)
    """One line of ``n`` voxels (spacing ``s``): the sites ``q`` (``has[q]``) lie ``other[q]``
    (squared mm) off the line; ``site[p]`` = the site nearest to voxel ``p`` (-1: none).

    The sites that are nearest somewhere form a stack (Maurer's lower envelope: a site is
    dropped when its two neighbours hide it); then each voxel walks the stack while the next
    site is strictly nearer, so the lower index wins a tie.
    """
    top = -1
    for q in range(n):
        if not has[q]:
            continue
        while top >= 1:
            v, u = stack[top], stack[top - 1]
            a = (v - u) * s
            b = (q - v) * s
            c = a + b
            if c * other[v] - b * other[u] - a * other[q] - a * b * c <= 0.0:
                break
            top -= 1
        top += 1
        stack[top] = q
    if top < 0:
        for p in range(n):
            site[p] = -1
        return
    k = 0
    for p in range(n):
        t = (stack[k] - p) * s
        d_here = other[stack[k]] + t * t
        while k < top:
            t = (stack[k + 1] - p) * s
            d_next = other[stack[k + 1]] + t * t
            if d_here <= d_next:
                break
            d_here = d_next
            k += 1
        site[p] = stack[k]
