"""Grid helpers shared by the segmentation modules: validation, block down-sampling, up-sampling.

All arrays are in canonical RAS+ index order (axis 0 -> patient Right, axis 1 -> Anterior,
axis 2 -> Superior). SimpleITK is used only as a fast resampler on index grids; its reversed
``[k, j, i]`` axis order is handled inside :func:`_to_sitk` / :func:`_from_sitk` and nowhere else.
"""

from __future__ import annotations

import logging

import numpy as np
import SimpleITK as sitk

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError

log = logging.getLogger(__name__)

#: Smallest physical extent (mm) per axis below which no organ segmentation is attempted.
MIN_EXTENT_MM = (60.0, 60.0, 15.0)


def check_volume(image: np.ndarray, spacing_mm, *, name: str = "image") -> tuple[float, float, float]:
    """Validate a 3-D image and its spacing; return the spacing as a float tuple.

    Raises
    ------
    InputError
        If the image is not 3-D, the spacing is not three positive numbers, or the volume is too
        small (in millimetres) to hold a liver.
    """
    image = np.asanyarray(image)
    if image.ndim != 3:
        raise InputError(f"{name}: expected a 3-D array, found shape {image.shape}; pass one volume")
    sp = check_spacing_mm(spacing_mm)
    extent = tuple(n * s for n, s in zip(image.shape, sp))
    if any(e < m for e, m in zip(extent, MIN_EXTENT_MM)):
        raise InputError(
            f"{name}: field of view {tuple(round(e, 1) for e in extent)} mm is too small for a liver "
            f"segmentation (need at least {MIN_EXTENT_MM} mm along R, A, S); pass the whole abdominal scan"
        )
    return sp


def shrink_factors(spacing_mm, target_mm: float) -> tuple[int, int, int]:
    """Integer block factors bringing ``spacing_mm`` close to ``target_mm`` (never below 1)."""
    return tuple(max(1, int(round(target_mm / s))) for s in spacing_mm)


def block_mean(image: np.ndarray, factors) -> np.ndarray:
    """Average ``image`` over blocks of ``factors`` voxels (edges padded by replication); float32."""
    img = np.asarray(image, dtype=np.float32)
    pads = [(0, (-n) % f) for n, f in zip(img.shape, factors)]
    if any(p[1] for p in pads):
        img = np.pad(img, pads, mode="edge")
    sx, sy, sz = (n // f for n, f in zip(img.shape, factors))
    fx, fy, fz = factors
    return img.reshape(sx, fx, sy, fy, sz, fz).mean(axis=(1, 3, 5), dtype=np.float32)


def block_mean_sd(image: np.ndarray, factors) -> tuple[np.ndarray, np.ndarray]:
    """Block mean and block standard deviation (float32), as :func:`block_mean`."""
    img = np.asarray(image, dtype=np.float32)
    pads = [(0, (-n) % f) for n, f in zip(img.shape, factors)]
    if any(p[1] for p in pads):
        img = np.pad(img, pads, mode="edge")
    sx, sy, sz = (n // f for n, f in zip(img.shape, factors))
    fx, fy, fz = factors
    blocks = img.reshape(sx, fx, sy, fy, sz, fz)
    mean = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    sq = np.square(blocks).mean(axis=(1, 3, 5), dtype=np.float32)
    return mean, np.sqrt(np.maximum(sq - mean * mean, 0.0))


def _to_sitk(array: np.ndarray, spacing, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    return img


def _from_sitk(img: sitk.Image) -> np.ndarray:
    return np.transpose(sitk.GetArrayFromImage(img), (2, 1, 0))


def upsample(small: np.ndarray, factors, full_shape, *, linear: bool = True) -> np.ndarray:
    """Resample a block-shrunk array back onto the full grid (index space, float32 or nearest)."""
    factors = tuple(int(f) for f in factors)
    src = _to_sitk(
        small.astype(np.float32) if linear else small,
        spacing=factors,
        origin=tuple((f - 1) / 2.0 for f in factors),
    )
    ref = sitk.Image([int(n) for n in full_shape], src.GetPixelID())
    ref.SetSpacing((1.0, 1.0, 1.0))
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(src, ref, sitk.Transform(), interp, 0.0, src.GetPixelID())
    return _from_sitk(out)


def gaussian(image: np.ndarray, spacing_mm, sigma_mm: float) -> np.ndarray:
    """Recursive Gaussian smoothing (SimpleITK, multi-threaded), float32, sigma in millimetres."""
    img = _to_sitk(np.asarray(image, dtype=np.float32), spacing_mm)
    return _from_sitk(sitk.SmoothingRecursiveGaussian(img, float(sigma_mm)))


def gradient_magnitude(image: np.ndarray, spacing_mm, sigma_mm: float) -> np.ndarray:
    """Gradient magnitude of Gaussian (SimpleITK, multi-threaded), float32, sigma in millimetres."""
    img = _to_sitk(np.asarray(image, dtype=np.float32), spacing_mm)
    return _from_sitk(sitk.GradientMagnitudeRecursiveGaussian(img, float(sigma_mm)))


def median(image: np.ndarray, radius_vox: int = 1) -> np.ndarray:
    """Median filter (SimpleITK) with a cubic radius in voxels; float32."""
    img = _to_sitk(np.asarray(image, dtype=np.float32), (1.0, 1.0, 1.0))
    return _from_sitk(sitk.Median(img, [int(radius_vox)] * 3))


def bbox(mask: np.ndarray, margin=(0, 0, 0)):
    """Slices of the bounding box of ``mask`` grown by ``margin`` voxels per axis (None if empty)."""
    idx = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    if any(len(i) == 0 for i in idx):
        return None
    return tuple(
        slice(max(0, int(i[0]) - m), min(n, int(i[-1]) + m + 1)) for i, m, n in zip(idx, margin, mask.shape)
    )
