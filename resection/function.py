"""Function-weighted future liver remnant: share of the liver's *function* that the remnant keeps.

Volume is a proxy for function; a function image (hepatobiliary scintigraphy such as
99mTc-mebrofenin SPECT, gadoxetic-acid MRI uptake, or any non-negative per-voxel function
estimate) on the CT grid measures it. The functional FLR is

    functional_flr_percent = 100 × Σ_remnant F·k / Σ_liver F

with ``F`` the function map, ``k`` the kept share of each voxel (``1 − resected_fraction``, or a
remnant mask) and both sums over functional liver (liver minus tumours). The volumetric FLR computed
the same way (``F ≡ 1``) is returned beside it.

Arrays are canonical RAS+ (index axis 0 → patient Right, 1 → Anterior, 2 → Superior) on one grid;
the function map must already be on the CT grid (resampling is the job of ``pipeline/io.py``).

References
----------
de Graaf W, et al. Assessment of future remnant liver function using hepatobiliary scintigraphy in
patients undergoing major liver resection. J Gastrointest Surg 2010;14:369-78.
"""

from __future__ import annotations

import numpy as np

from hepatoplan.errors import InputError

from hepatoplan.arrays import bounding_box


def function_weighted_flr(
    *,
    function_map: np.ndarray,
    liver: np.ndarray,
    remnant_fraction: np.ndarray | None = None,
    remnant: np.ndarray | None = None,
    tumours: np.ndarray | None = None,
) -> dict:
    """Functional and volumetric FLR % of a remnant, from a per-voxel function map.

    Parameters
    ----------
    function_map : ndarray of float, shape (nx, ny, nz)
        Non-negative, finite function per voxel (any unit: counts, uptake, SUV), canonical RAS+.
        Only its values inside the functional liver matter.
    liver : ndarray of bool, same shape
        Liver mask (tumours inside count as liver).
    remnant_fraction : ndarray of float, same shape, optional
        Kept share (0-1) of each voxel, e.g. ``1 − ResectionResult.resected_fraction`` (times
        ``~devascularised`` for the remnant that keeps its inflow).
    remnant : ndarray of bool, same shape, optional
        Kept voxels, instead of ``remnant_fraction`` (exactly one of the two).
    tumours : ndarray of int, optional
        Tumour labels (0 = none); tumour voxels are excluded from both sums.

    Returns
    -------
    dict
        ``functional_flr_percent`` (float), ``volumetric_flr_percent`` (float, same voxels and
        weights with a uniform function), ``function_remnant`` and ``function_liver`` (sums in the
        map's unit), ``remnant_mean_function`` and ``liver_mean_function`` (per voxel of
        functional liver; their ratio tells how much better or worse the remnant works than the
        average liver), ``voxels_liver`` (int).

    Raises
    ------
    InputError
        Shapes that differ, neither or both remnant arguments, a remnant fraction outside 0-1,
        negative or non-finite function values inside the liver, or no function in the liver.
    """
    liver = np.asarray(liver).astype(bool, copy=False)
    fmap = np.asarray(function_map)
    if (remnant_fraction is None) == (remnant is None):
        raise InputError("function_weighted_flr: give exactly one of remnant_fraction (0-1 per voxel) "
                         "or remnant (a boolean mask)")
    kept = remnant_fraction if remnant is None else remnant
    for name, arr in (("function_map", fmap), ("remnant_fraction" if remnant is None else "remnant", kept),
                      ("tumours", tumours)):
        if arr is not None and np.shape(arr) != liver.shape:
            raise InputError(
                f"{name}: shape {np.shape(arr)} differs from the liver's {liver.shape}; resample it to "
                "the CT grid first (--resample-masks)."
            )
    if not np.issubdtype(fmap.dtype, np.number) or np.issubdtype(fmap.dtype, np.complexfloating):
        raise InputError(f"function_map: expected real numbers, found dtype {fmap.dtype}")
    box = bounding_box(liver)
    functional = liver[box]
    if tumours is not None:
        functional = functional & ~(np.asarray(tumours)[box] > 0)
    if not functional.any():
        raise InputError("liver: no functional liver voxel (the liver mask is empty or all tumour)")
    values = fmap[box][functional].astype(np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(
            f"function_map: {int(bad.sum())} liver voxels are NaN or infinite; a function map must be "
            "finite inside the liver (fill or mask the missing values first)."
        )
    if (values < 0).any():
        raise InputError(
            f"function_map: negative values inside the liver (minimum {values.min():g}, "
            f"{int((values < 0).sum())} voxels); function must be >= 0 (subtract the background "
            "before, not after, or clip it)."
        )
    total = float(values.sum())
    if total <= 0:
        raise InputError("function_map: the function is zero everywhere in the liver; check that the map "
                         "lies on the CT grid and covers the liver")
    share = np.asarray(kept)[box][functional].astype(np.float64)
    if remnant is None:
        if not np.isfinite(share).all() or share.min() < 0 or share.max() > 1:
            raise InputError(
                f"remnant_fraction: values must lie in 0-1, found {np.nanmin(share):g} to "
                f"{np.nanmax(share):g}"
            )
    kept_function = float((values * share).sum())
    n = int(values.size)
    kept_voxels = float(share.sum())
    return {
        "functional_flr_percent": 100.0 * kept_function / total,
        "volumetric_flr_percent": 100.0 * kept_voxels / n,
        "function_remnant": kept_function,
        "function_liver": total,
        "remnant_mean_function": kept_function / kept_voxels if kept_voxels > 0 else None,
        "liver_mean_function": total / n,
        "voxels_liver": n,
    }
