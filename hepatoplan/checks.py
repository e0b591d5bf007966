"""Input checks shared by every package (no arrays beyond numpy, no files)."""

import math

from .errors import InputError


def check_spacing_mm(spacing_mm) -> tuple[float, float, float]:
    """Validate a voxel spacing: three finite positive numbers in mm; return them as floats."""
    try:
        sp = tuple(float(v) for v in spacing_mm)
    except (TypeError, ValueError):
        raise InputError(f"spacing_mm must be 3 positive numbers (mm), found {spacing_mm!r}") from None
    if len(sp) != 3 or not all(math.isfinite(v) and v > 0 for v in sp):
        raise InputError(f"spacing_mm must be 3 positive numbers (mm), found {spacing_mm!r}")
    return sp


def check_affine_ras(affine_ras):
    """Validate a voxel index -> world mm affine: a finite, invertible 4x4 matrix; return it as floats.

    Returns
    -------
    ndarray of float, shape (4, 4)
    """
    import numpy as np

    affine = np.asarray(affine_ras, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) \
            or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"affine_ras must be a finite, invertible 4x4 matrix, found {affine!r}")
    return affine
