"""Binary morphology in millimetres, built on exact Euclidean distance maps (``edt``) and ``cc3d``.

Distance-threshold morphology is exact for any ball radius and anisotropic spacing and is faster
than structuring-element morphology at the radii used here (GUIDE section 6).
"""

from __future__ import annotations

import functools
import math

import cc3d
import edt
import fill_voids
import numpy as np


def _box(mask: np.ndarray, pad_vox) -> tuple[slice, ...] | None:
    """The bounding box of ``mask``'s nonzero voxels widened by ``pad_vox`` per axis (clipped to the
    grid); None when the mask is empty or the box would hold most of the grid (cropping saves nothing)."""
    in_plane = mask.any(axis=2)
    if not in_plane.any():
        return None
    ranges = [np.flatnonzero(in_plane.any(axis=1)), np.flatnonzero(in_plane.any(axis=0)),
              np.flatnonzero(mask.any(axis=(0, 1)))]
    box = tuple(slice(max(int(r[0]) - p, 0), min(int(r[-1]) + p + 1, n)) for r, p, n in zip(ranges, pad_vox, mask.shape))
    return None if np.prod([b.stop - b.start for b in box]) > 0.6 * mask.size else box


def _dist_inside(mask: np.ndarray, spacing_mm) -> np.ndarray:
    """Distance (mm) of each nonzero voxel of ``mask`` to the nearest zero voxel; the grid's border
    counts as inside. Computed in the mask's box widened by one voxel: the nearest zero voxel of a
    voxel in the box always lies in the widened box (clamping any zero voxel outside onto it brings it
    nearer and keeps it zero), so the crop is exact."""
    m = np.asarray(mask)
    box = _box(m, (1, 1, 1)) if m.ndim == 3 else None
    if box is None:
        return edt.edt(np.ascontiguousarray(m, dtype=np.uint8), anisotropy=tuple(spacing_mm), black_border=False, parallel=2)
    out = np.zeros(m.shape, dtype=np.float32)
    out[box] = edt.edt(np.ascontiguousarray(m[box], dtype=np.uint8), anisotropy=tuple(spacing_mm), black_border=False,
                       parallel=2)
    return out


def surface_depth(mask: np.ndarray, spacing_mm) -> np.ndarray:
    """Depth (mm) of each voxel of ``mask`` below its surface, corrected for thick slices.

    The distance map measures to the nearest outside voxel *centre*. On an isotropic grid that
    overstates every depth by the same half voxel; along a coarser axis by half that axis' extra
    spacing more, so a voxel of the last 5 mm slice would look 5 mm deep although its centre lies
    2.5 mm from the surface. That excess is taken off: the depth is the smaller of the 3-D distance
    and, per axis, the distance along that axis less half its spacing beyond the finest one.
    """
    sp = np.asarray(spacing_mm, dtype=float)
    depth = _dist_inside(mask, sp)
    for ax in np.flatnonzero(sp > sp.min() * 1.01):
        along = np.full(3, 1e6)
        along[ax] = sp[ax]
        depth = np.minimum(depth, _dist_inside(mask, along) - 0.5 * (sp[ax] - sp.min()))
    return np.maximum(depth, 0.0)


#: A ball is applied as shifted ANDs (:func:`_ball_rows`) when that takes at most this many passes over
#: the box; larger balls by a distance map. A pass over a bool array costs ~0.2 ns a voxel here, ``edt``
#: ~25 ns: the 3 mm band of the liver's refinement (29 rows, 0.57 x 0.57 x 1.6 mm) takes 0.08 s instead
#: of 0.27 s (erosion) and 0.39 s (dilation) on its 11.5 M-voxel box.
BALL_MAX_PASSES = 64


def _ball_rows(radius_mm: float, spacing_mm) -> dict[tuple[int, int], int] | None:
    """The voxel offsets within ``radius_mm`` (mm, ``spacing_mm``) of the centre as rows along axis 0:
    ``{(d1, d2): a}``, the offsets ``(-a..a, d1, d2)``; None when the ball is too large for
    :data:`BALL_MAX_PASSES` or an offset lies within 1e-4 of the radius (there the distance map's
    float32 rounding decides, so the distance map is used)."""
    sp = tuple(float(s) for s in spacing_mm)
    if not radius_mm > 0 or len(sp) != 3:
        return None
    return _ball_rows_of(float(radius_mm), sp)


@functools.lru_cache(maxsize=256)
def _ball_rows_of(radius_mm: float, sp: tuple[float, float, float]) -> dict[tuple[int, int], int] | None:
    n = [int(radius_mm // s) + 1 for s in sp]
    rows = {}
    for d2 in range(-n[2], n[2] + 1):
        for d1 in range(-n[1], n[1] + 1):
            a = -1
            for d0 in range(n[0] + 1):
                dist = math.sqrt((d0 * sp[0]) ** 2 + (d1 * sp[1]) ** 2 + (d2 * sp[2]) ** 2)
                if abs(dist - radius_mm) <= 1e-4 * radius_mm:
                    return None
                if dist <= radius_mm:
                    a = d0
            if a >= 0:
                rows[(d1, d2)] = a
    return rows if len(rows) + 2 * max(rows.values()) <= BALL_MAX_PASSES else None


def _shifted(n: int, d: int) -> tuple[slice, slice]:
    """Slices ``(to, from)`` along an axis of length ``n``: ``x[to]`` pairs with ``x[from]`` ``d`` further."""
    return (slice(0, n - d), slice(d, n)) if d >= 0 else (slice(-d, n), slice(0, n + d))


def _erode_ball(m: np.ndarray, rows: dict[tuple[int, int], int]) -> np.ndarray:
    """Voxels of bool ``m`` whose every offset of the ball ``rows`` (:func:`_ball_rows`) is in ``m``;
    offsets outside the array count as in ``m`` (the border counts as inside, as in :func:`erode`)."""
    runs = {}  # a -> m eroded along axis 0 by the run -a..a
    run = m.copy()
    for a in range(1, max(rows.values()) + 1):
        for d in (a, -a) if a < m.shape[0] else ():  # an offset past the array's end: all outside
            to, frm = _shifted(m.shape[0], d)
            run[to] &= m[frm]
        if a in rows.values():
            runs[a] = run.copy()
    runs[0] = m
    out = runs[rows[(0, 0)]].copy()
    for (d1, d2), a in rows.items():
        if (d1, d2) != (0, 0) and abs(d1) < m.shape[1] and abs(d2) < m.shape[2]:
            (to1, frm1), (to2, frm2) = _shifted(m.shape[1], d1), _shifted(m.shape[2], d2)
            out[:, to1, to2] &= runs[a][:, frm1, frm2]
    return out


def erode(mask: np.ndarray, radius_mm: float, spacing_mm) -> np.ndarray:
    """Voxels of ``mask`` farther than ``radius_mm`` from the background (border counts as inside).

    Small balls (:func:`_ball_rows`) by shifted ANDs in the mask's box widened by one voxel (a zero
    voxel outside it is farther than its clamp onto the widened layer, which is zero), the same voxels
    as thresholding the distance map, which larger balls use."""
    m = np.asarray(mask)
    rows = _ball_rows(radius_mm, spacing_mm) if m.ndim == 3 else None
    if rows is None:
        return _dist_inside(mask, spacing_mm) > radius_mm
    m = m.astype(bool, copy=False)
    box = _box(m, (1, 1, 1))
    if box is None:
        return _erode_ball(m, rows) if m.any() else np.zeros(m.shape, dtype=bool)
    out = np.zeros(m.shape, dtype=bool)
    out[box] = _erode_ball(np.ascontiguousarray(m[box]), rows)
    return out


def dilate(mask: np.ndarray, radius_mm: float, spacing_mm) -> np.ndarray:
    """Voxels within ``radius_mm`` of ``mask`` (small balls by shifted ANDs, as :func:`erode`)."""
    m = np.asarray(mask, dtype=bool)
    rows = _ball_rows(radius_mm, spacing_mm) if m.ndim == 3 else None
    box = _box(m, [int(radius_mm // s) + 1 for s in spacing_mm]) if m.ndim == 3 else None
    if box is None:  # empty, 2-D, or a box holding most of the grid
        if not m.any():
            return np.zeros(m.shape, dtype=bool)
        return ~_erode_ball(~m, rows) if rows is not None else _dist_inside(~m, spacing_mm) <= radius_mm
    out = np.zeros(m.shape, dtype=bool)
    # every voxel within the radius lies in the box
    out[box] = ~_erode_ball(~m[box], rows) if rows is not None else _dist_inside(~m[box], spacing_mm) <= radius_mm
    return out


def close(mask: np.ndarray, radius_mm: float, spacing_mm, *, pad_vox: int = 0) -> np.ndarray:
    """Morphological closing with a ball of ``radius_mm``."""
    m = mask.astype(bool)
    if pad_vox:
        m = np.pad(m, pad_vox)
    out = erode(dilate(m, radius_mm, spacing_mm), radius_mm, spacing_mm)
    if pad_vox:
        out = out[pad_vox:-pad_vox, pad_vox:-pad_vox, pad_vox:-pad_vox]
    return out | mask.astype(bool)


def open_(mask: np.ndarray, radius_mm: float, spacing_mm) -> np.ndarray:
    """Morphological opening with a ball of ``radius_mm``."""
    return dilate(erode(mask, radius_mm, spacing_mm), radius_mm, spacing_mm) & mask.astype(bool)


def touching(mask: np.ndarray) -> np.ndarray:
    """``mask`` and its face neighbours: ``scipy.ndimage.binary_dilation(mask)`` (one step of the
    6-neighbour cross, nothing outside the array) by six shifted ORs, several times faster."""
    m = np.asarray(mask, dtype=bool)
    out = m.copy()
    for ax in range(m.ndim):
        lo, hi = [slice(None)] * m.ndim, [slice(None)] * m.ndim
        lo[ax], hi[ax] = slice(None, -1), slice(1, None)
        out[tuple(lo)] |= m[tuple(hi)]
        out[tuple(hi)] |= m[tuple(lo)]
    return out


def fill_holes(mask: np.ndarray, *, per_slice: bool = False) -> np.ndarray:
    """Fill enclosed cavities (3-D); with ``per_slice`` also fill holes in every axial slice."""
    out = fill_voids.fill(np.ascontiguousarray(mask, dtype=bool), in_place=False)
    if per_slice:
        for z in range(out.shape[2]):
            if out[:, :, z].any():
                out[:, :, z] = fill_voids.fill(np.ascontiguousarray(out[:, :, z]), in_place=False)
    return out


def largest_component(mask: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """The largest connected component of ``mask`` (empty stays empty)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=bool)
    labels = cc3d.connected_components(np.ascontiguousarray(mask, dtype=np.uint8), connectivity=connectivity)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def components(mask: np.ndarray, connectivity: int = 6) -> tuple[np.ndarray, int]:
    """Connected-component labels (uint32) and their number."""
    labels, n = cc3d.connected_components(
        np.ascontiguousarray(mask, dtype=np.uint8), connectivity=connectivity, return_N=True
    )
    return labels, int(n)


def reconstruct(seed: np.ndarray, mask: np.ndarray, connectivity: int = 6) -> np.ndarray:
    """Components of ``mask`` that touch ``seed`` (binary reconstruction by dilation)."""
    labels, n = components(mask, connectivity)
    keep = np.zeros(n + 1, dtype=bool)  # a lookup table of the labels touched: np.isin's answer, cheaper
    keep[labels[np.asarray(seed, dtype=bool)]] = True
    keep[0] = False
    return keep[labels]


def label_max(values: np.ndarray, labels: np.ndarray, n: int) -> np.ndarray:
    """Maximum of ``values`` per label 0..n (0 where a label is absent); fast for sparse labels."""
    out = np.full(n + 1, -np.inf)
    sel = labels > 0
    np.maximum.at(out, labels[sel].astype(np.int64), values[sel].astype(np.float64))
    out[~np.isfinite(out)] = 0.0
    out[0] = 0.0
    return out
