"""Grid helpers shared by the segmentation modules: validation, block down-sampling, up-sampling.

All arrays are in canonical RAS+ index order (axis 0 -> patient Right, axis 1 -> Anterior,
axis 2 -> Superior). SimpleITK supplies fast filters; arrays are handed to it as they are (:func:`_itk`).
"""

from __future__ import annotations


import numpy as np
import SimpleITK as sitk

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError


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


def _blocks(image: np.ndarray, factors) -> np.ndarray:
    """``image`` as float32 blocks of ``factors`` voxels, shape (sx, fx, sy, fy, sz, fz); edges
    padded by replication."""
    img = np.asarray(image, dtype=np.float32)
    pads = [(0, (-n) % f) for n, f in zip(img.shape, factors)]
    if any(p[1] for p in pads):
        img = np.pad(img, pads, mode="edge")
    sx, sy, sz = (n // f for n, f in zip(img.shape, factors))
    fx, fy, fz = factors
    return img.reshape(sx, fx, sy, fy, sz, fz)


def block_mean(image: np.ndarray, factors) -> np.ndarray:
    """Average ``image`` over blocks of ``factors`` voxels (edges padded by replication); float32."""
    return _blocks(image, factors).mean(axis=(1, 3, 5), dtype=np.float32)


def block_mean_sd(image: np.ndarray, factors) -> tuple[np.ndarray, np.ndarray]:
    """Block mean and block standard deviation (float32), as :func:`block_mean`."""
    blocks = _blocks(image, factors)
    mean = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    sq = np.square(blocks).mean(axis=(1, 3, 5), dtype=np.float32)
    return mean, np.sqrt(np.maximum(sq - mean * mean, 0.0))


def _itk(array: np.ndarray, spacing_mm, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    """``array`` as an ITK image, axes as they are: ITK counts a NumPy array's axes from the last
    one (its x is the array's axis 2), so the spacing and origin are handed over reversed.

    No axis is transposed or flipped, and none needs to be: every filter used here (Gaussian,
    gradient magnitude, median, watersheds, index-space resampling) treats each axis alike given
    its spacing, so it gives the same result as on the axes in canonical order, up to float32
    rounding in the order of the separable passes and the visiting order of equal-valued voxels
    in the watersheds (``tests/test_segmentation.py::test_itk_filters_do_not_depend_on_axis_order``).
    """
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing([float(s) for s in reversed(tuple(spacing_mm))])
    img.SetOrigin([float(o) for o in reversed(tuple(origin))])
    return img


def upsample(small: np.ndarray, factors, full_shape, *, linear: bool = True) -> np.ndarray:
    """Resample a block-shrunk array back onto the full grid (index space, float32 or nearest).

    Block ``i`` has its centre at full-grid index ``i * f + (f - 1) / 2``. Nearest neighbour: full
    voxel ``j = q * f + r`` (``0 <= r < f``) lies ``(r - (f - 1) / 2) / f`` blocks from block ``q``'s
    centre, strictly less than half a block, so its value is block ``j // f``'s: the blocks repeated,
    the same voxels as ITK's nearest-neighbour resampling of that geometry, without its cost."""
    factors = tuple(int(f) for f in factors)
    if not linear:
        index = np.ix_(*(np.arange(n) // f for n, f in zip(full_shape, factors)))
        return np.ascontiguousarray(small[index])
    src = _itk(small.astype(np.float32), factors, origin=tuple((f - 1) / 2.0 for f in factors))
    ref = sitk.Image([int(n) for n in reversed(tuple(full_shape))], src.GetPixelID())
    return sitk.GetArrayFromImage(sitk.Resample(src, ref, sitk.Transform(), sitk.sitkLinear, 0.0, src.GetPixelID()))


def gaussian(image: np.ndarray, spacing_mm, sigma_mm: float) -> np.ndarray:
    """Recursive Gaussian smoothing (SimpleITK, multi-threaded), float32, sigma in millimetres."""
    img = _itk(np.asarray(image, dtype=np.float32), spacing_mm)
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(img, float(sigma_mm)))


def gradient_magnitude(image: np.ndarray, spacing_mm, sigma_mm: float) -> np.ndarray:
    """Gradient magnitude of Gaussian (SimpleITK, multi-threaded), float32, sigma in millimetres."""
    img = _itk(np.asarray(image, dtype=np.float32), spacing_mm)
    return sitk.GetArrayFromImage(sitk.GradientMagnitudeRecursiveGaussian(img, float(sigma_mm)))


def median(image: np.ndarray, radius_vox: int = 1) -> np.ndarray:
    """Median filter (SimpleITK) with a cubic radius in voxels; float32."""
    img = _itk(np.asarray(image, dtype=np.float32), (1.0, 1.0, 1.0))
    return sitk.GetArrayFromImage(sitk.Median(img, [int(radius_vox)] * 3))


def watershed(elevation: np.ndarray, spacing_mm, *, level: float) -> np.ndarray:
    """Basins of ``elevation`` (SimpleITK morphological watershed, face connectivity, no lines):
    labels 1..N, minima shallower than ``level`` (elevation units) merged."""
    img = _itk(elevation, spacing_mm)
    return sitk.GetArrayFromImage(
        sitk.MorphologicalWatershed(img, level=float(level), markWatershedLine=False, fullyConnected=False)
    )


def watershed_from_markers(elevation: np.ndarray, markers: np.ndarray, spacing_mm, *, fully_connected: bool) -> np.ndarray:
    """Every voxel labelled with the marker (non-zero ``markers``) whose flood over ``elevation``
    reaches it first (SimpleITK, no watershed lines); 26-connected floods with ``fully_connected``."""
    ws = sitk.MorphologicalWatershedFromMarkers(
        _itk(elevation, spacing_mm), _itk(markers, spacing_mm), markWatershedLine=False, fullyConnected=fully_connected
    )
    return sitk.GetArrayFromImage(ws)
