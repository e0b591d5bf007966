"""Array helpers every layer shares (no files, no orientation): bounding boxes of masks and labels.

Domain packages and ``pipeline`` crop to a structure's box before heavy work (the liver's box is a
few per cent of a CT); these are the one home of that arithmetic.
"""

from __future__ import annotations

import numpy as np


def bounding_box(mask: np.ndarray, *, pad=0) -> tuple[slice, ...]:
    """Slices of the smallest box holding the non-zero voxels of ``mask``.

    Parameters
    ----------
    mask : ndarray
        Any dtype; non-zero voxels count.
    pad : int or sequence of int
        Voxels added on each side (one number, or one per axis), clipped to the array.

    Returns
    -------
    tuple of slice
        Empty slices (``slice(0, 0)`` on every axis) when ``mask`` has no non-zero voxel.
    """
    pads = np.broadcast_to(np.asarray(pad, dtype=int), (mask.ndim,))
    box = []
    # the first axis' extent by reducing the others (in memory order: fast), then the mask within that
    # extent folded onto the remaining axes by one OR along it, and so on (a reduction over leading
    # axes of a C-ordered volume, as the axis-by-axis ``any`` did, costs ~10 × as much: bench/RESULTS.md,
    # thirteenth stop)
    rest = np.asarray(mask)
    for axis in range(mask.ndim):
        hit = np.flatnonzero(rest.any(axis=tuple(range(1, rest.ndim))) if rest.ndim > 1 else rest)
        if hit.size == 0:
            return tuple(slice(0, 0) for _ in range(mask.ndim))
        p = int(pads[axis])
        box.append(slice(max(int(hit[0]) - p, 0), min(int(hit[-1]) + 1 + p, mask.shape[axis])))
        if rest.ndim > 1:
            rest = np.logical_or.reduce(rest[hit[0]:hit[-1] + 1], axis=0)
    return tuple(box)


def voxel_indices(mask: np.ndarray) -> np.ndarray:
    """Indices ``(n, ndim)`` of the non-zero voxels in C order: ``np.argwhere(mask)``, about 5-7 × faster
    on a large, mostly empty mask (one flat scan, then only the hits are unravelled; ``argwhere``'s
    multi-dimensional ``nonzero`` costs 9 ms on the Couinaud division's pooled vessel grid of IRCADb 01,
    this 1.3 ms)."""
    return np.stack(np.unravel_index(np.flatnonzero(mask), mask.shape), axis=1)


def is_empty_box(box: tuple[slice, ...]) -> bool:
    """True for the box :func:`bounding_box` returns for an empty mask."""
    return any(s.stop <= s.start for s in box)


def padded_box(box: tuple[slice, ...], pad, shape) -> tuple[slice, ...]:
    """``box`` enlarged by ``pad`` voxels per axis (a sequence), clipped to ``shape``."""
    return tuple(slice(max(b.start - p, 0), min(b.stop + p, n)) for b, p, n in zip(box, pad, shape))


def joint_box(boxes) -> tuple[slice, ...]:
    """The smallest box holding every box of ``boxes`` (an iterable of slice tuples, e.g. the values of
    :func:`label_boxes`); ``()`` for none."""
    boxes = list(boxes)
    if not boxes:
        return ()
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(len(boxes[0])))


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    """Bounding box (slices) of every non-zero integer label value present.

    Searched inside the box of all labels (a plan's labels fill a small part of the CT grid), with
    one ``scipy.ndimage.find_objects`` pass.
    """
    from scipy import ndimage

    within = bounding_box(labels)
    crop = labels[within]
    if crop.size == 0:
        return {}
    if crop.dtype.itemsize > 4 or crop.dtype == np.uint32:
        crop = crop.astype(np.int64)
    return {i + 1: tuple(slice(int(w.start + b.start), int(w.start + b.stop)) for w, b in zip(within, box))
            for i, box in enumerate(ndimage.find_objects(crop)) if box is not None}
