"""Volumes of label maps, tumour instances, and completing a segment partition.

All arrays are canonical RAS+ (axis 0 → patient Right, 1 → Anterior, 2 → Superior) with
``spacing_mm`` in the same axis order; the orientation does not change any volume but is kept for
uniformity with the other domain packages.
"""

from __future__ import annotations

import cc3d
import numpy as np

from hepatoplan.arrays import bounding_box, voxel_indices
from hepatoplan.units import voxel_volume_ml


def mask_volume_ml(mask: np.ndarray, *, spacing_mm) -> float:
    """Volume of a boolean mask (or sum of voxel fractions in 0-1) in mL."""
    if mask.dtype == bool:
        return int(np.count_nonzero(mask)) * voxel_volume_ml(spacing_mm)
    return float(mask.sum(dtype=np.float64)) * voxel_volume_ml(spacing_mm)


def label_volumes_ml(labels: np.ndarray, *, spacing_mm, within: np.ndarray | None = None) -> dict[int, float]:
    """Volume in mL of every non-zero label (optionally only voxels inside ``within``).

    Returns
    -------
    dict
        label → volume in mL, for labels present (count > 0), sorted by label.
    """
    values = labels[within] if within is not None else labels.ravel()
    counts = np.bincount(values.astype(np.int64, copy=False), minlength=1)
    unit = voxel_volume_ml(spacing_mm)
    return {int(k): float(n) * unit for k, n in enumerate(counts) if k > 0 and n > 0}


def label_in(labels: np.ndarray, values) -> np.ndarray:
    """``np.isin(labels, values)``: for 8- and 16-bit unsigned labels by a lookup table (no
    integer copy of the array; ~4.5× faster on a 512×512×129 uint8 map)."""
    if labels.dtype in (np.uint8, np.uint16):
        table = np.zeros(np.iinfo(labels.dtype).max + 1, bool)
        table[[int(v) for v in values]] = True
        return table[labels]
    return np.isin(labels, values)


def tumour_instances(tumours: np.ndarray) -> np.ndarray:
    """Instance labels for a tumour mask.

    A binary mask (values 0/1) is split into 26-connected components numbered 1..n by decreasing
    size (then by position, so the numbering is reproducible). An already instance-labelled map
    (any label > 1) is kept as given: one id per lesion or per lesion group, as its author chose.
    """
    if tumours.max(initial=0) > 1:
        return tumours
    components, n = cc3d.connected_components(tumours.astype(np.uint8), connectivity=26, return_N=True)
    if n == 0:
        return components.astype(np.uint8)
    sizes = np.bincount(components.ravel())[1:]
    order = np.argsort(-sizes, kind="stable") + 1
    relabel = np.zeros(n + 1, dtype=np.uint16 if n >= 255 else np.uint8)
    relabel[order] = np.arange(1, n + 1)
    return relabel[components]


def boundary_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one 26-neighbour outside it (the image edge counts as outside).

    The interior is the erosion by a 3×3×3 cube, done as one 3-voxel erosion per axis (the cube is
    their product) inside the mask's bounding box (whose edge voxels are boundary voxels anyway).
    """
    mask = mask.astype(bool, copy=False)
    boundary = np.zeros(mask.shape, bool)
    box = bounding_box(mask)
    crop = mask[box]
    interior = crop.copy()
    for axis in range(interior.ndim):
        along = np.moveaxis(interior, axis, 0)  # a view: writes go to ``interior``
        along[1:-1] = along[:-2] & along[1:-1] & along[2:]
        along[:1] = along[-1:] = False
    boundary[box] = crop & ~interior
    return boundary


class VoxelSet:
    """Voxel indices ``(m, 3)`` with a KD-tree in mm, for repeated nearest-member queries."""

    def __init__(self, voxels: np.ndarray, *, spacing_mm):
        from scipy.spatial import cKDTree

        self.voxels = np.asarray(voxels)
        self._scale = np.asarray(spacing_mm, dtype=float)
        self._tree = cKDTree(self.voxels * self._scale)

    def __len__(self) -> int:
        return len(self.voxels)

    def nearest(self, points: np.ndarray):
        """``(distance_mm, index into voxels)`` of the member nearest each voxel index in ``points``."""
        return self._tree.query(np.asarray(points) * self._scale, workers=-1)


def nearest_in_set(points: np.ndarray, candidates: np.ndarray, *, spacing_mm):
    """For voxel indices ``points`` (n, 3), the nearest of ``candidates`` (m, 3) in mm.

    Returns ``(distance_mm, index into candidates)``.
    """
    return VoxelSet(candidates, spacing_mm=spacing_mm).nearest(points)


def fill_partition(segments: np.ndarray, liver: np.ndarray, *, spacing_mm) -> tuple[np.ndarray, int]:
    """Give every liver voxel a segment: unlabelled liver voxels take the nearest segment label.

    Segment maps from other tools rarely cover a liver mask exactly (IRCADb's reference leaves ~2 %
    of the liver unlabelled along its surface and around tumours). A resection of a segment removes
    the whole territory, so each unlabelled liver voxel joins the segment whose labelled voxel is
    nearest in physical distance (``spacing_mm``-aware Euclidean); labels outside the liver are
    dropped. The nearest labelled voxel always lies on the labelled region's boundary (its
    neighbour toward the query point is closer, hence unlabelled), so only boundary voxels are
    searched.

    Returns
    -------
    filled : ndarray of uint8
        Segments restricted to the liver, every liver voxel labelled (if any segment exists): ``segments``
        itself when it already is that (uint8, no label outside the liver, none missing in it; e.g. the
        segments the plan derives), else a new array.
    n_filled : int
        Number of liver voxels that had no label.
    """
    box = bounding_box(liver, pad=1)  # all work happens in the liver's box
    liver_c = liver[box]
    crop = np.where(liver_c, segments[box], 0).astype(np.uint8, copy=False)
    holes = voxel_indices(liver_c & (crop == 0))
    if not len(holes) and segments.dtype == np.uint8 and np.count_nonzero(segments) == np.count_nonzero(crop):
        return segments, 0  # every label lies in the liver (and is kept in ``crop``): nothing would change
    if len(holes) and crop.any():
        sources = voxel_indices(boundary_voxels(crop > 0))
        _, nearest = nearest_in_set(holes, sources, spacing_mm=spacing_mm)
        crop[tuple(holes.T)] = crop[tuple(sources[nearest].T)]
    filled = np.zeros(liver.shape, np.uint8)
    filled[box] = crop
    return filled, len(holes)
