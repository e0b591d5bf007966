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
