"""Reading and writing images: the one place that knows file formats and orientation.

Every image is read with SimpleITK (NIfTI ``.nii``/``.nii.gz``, NRRD ``.nrrd``/``.seg.nrrd``,
MetaImage ``.mha``/``.mhd``, or a folder holding a DICOM series) and handed to the rest of
hepatoplan as a :class:`Volume`: a numpy array in **canonical RAS+** orientation plus the geometry
needed to go back to the file's own grid.

Canonical RAS+ (what ``nibabel.as_closest_canonical`` gives): array index axis 0 increases toward
the patient's **R**\\ ight, axis 1 toward **A**\\ nterior, axis 2 toward **S**\\ uperior.
``Volume.affine_ras`` maps a canonical index ``(i, j, k, 1)`` to RAS world millimetres. Domain
packages (``segmentation``, ``couinaud``, ``resection``, ``planning``) only ever see such arrays
and ``spacing_mm`` in the same axis order.

How the conversion works, once: SimpleITK returns arrays indexed ``[k, j, i]`` and geometry in
LPS (``world_lps = origin + direction @ diag(spacing) @ (i, j, k)``). We transpose to ``[i, j, k]``,
build the native RAS affine ``diag(-1, -1, 1) @ [direction·spacing | origin]``, and apply the
orientation transform (axis permutation and flips only, never interpolation) that makes it closest
to canonical, chosen as ``nibabel.orientations.io_orientation`` does (the same algorithm, in
:func:`_io_orientation`: importing nibabel costs ~0.2 s, so it is imported only to check float
NIfTI files for NaN). Writing inverts exactly those steps and copies the native geometry, so
outputs lie voxel-for-voxel on the input's grid.
"""

from __future__ import annotations

import contextlib
import hashlib
import locale
import logging
import math
import os
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hepatoplan.errors import (
    GeometryMismatchError,
    InputError,
    InputFileError,
    LabelError,
)

from hepatoplan.arrays import bounding_box

from . import io_dicom, io_nifti
from .outputs import atomic_file
from .timing import timed

log = logging.getLogger(__name__)

#: File endings read as single files (a folder is read as a DICOM series).
IMAGE_SUFFIXES = (".nii.gz", ".nii", ".seg.nrrd", ".nrrd", ".mha", ".mhd")
#: Two grids are "the same" when origins and spacings agree within this many mm ...
GRID_TOLERANCE_MM = 1e-2
#: ... and direction cosines within this.
DIRECTION_TOLERANCE = 1e-4

#: Voxel sizes of a body scan, mm: a header giving less than 0.05 mm or more than 30 mm (or 0, NaN,
#: 2.5 km) is broken or in another unit.
MIN_SPACING_MM, MAX_SPACING_MM = 0.05, 30.0
#: Longest field of view along any axis, mm (longer than any body).
MAX_EXTENT_MM = 3000.0
#: Largest label value read (labels are stored as uint8, uint16 or uint32).
MAX_LABEL = 2**32 - 1

#: LPS <-> RAS world coordinates (x and y negated): its own inverse, so it also maps RAS to LPS.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_LOCALE_LOCK = threading.RLock()
_NATIVE_LOCK = threading.RLock()
_COMPLEX_PIXELS = (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64)


@dataclass(frozen=True)
class Grid:
    """The native grid of a file, in SimpleITK's terms (index order ``i, j, k``; LPS world).

    Attributes
    ----------
    size : tuple of int
        ``(ni, nj, nk)`` voxels.
    spacing_mm : tuple of float
        Spacing along ``i, j, k`` in mm.
    origin_lps_mm : tuple of float
        World position of voxel ``(0, 0, 0)`` in LPS mm.
    direction : tuple of float
        Row-major 3×3 direction cosines (LPS).
    """

    size: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_lps_mm: tuple[float, float, float]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> "Grid":
        return cls(
            tuple(int(n) for n in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def affine_ras(self) -> np.ndarray:
        """4×4 map from native index ``(i, j, k, 1)`` to RAS world mm."""
        linear = np.asarray(self.direction).reshape(3, 3) * np.asarray(self.spacing_mm)
        affine = np.eye(4)
        affine[:3, :3] = LPS_TO_RAS @ linear
        affine[:3, 3] = LPS_TO_RAS @ np.asarray(self.origin_lps_mm)
        return affine

    def orientation(self) -> np.ndarray:
        """Orientation (axis permutation + flips) taking the native array to canonical RAS, as
        nibabel writes it: row ``n`` is ``(canonical axis of native axis n, +1 or -1 if flipped)``."""
        return _io_orientation(self.affine_ras())

    def empty_image(self, pixel_id: int = sitk.sitkUInt8) -> sitk.Image:
        image = sitk.Image([int(n) for n in self.size], pixel_id)
        self.stamp(image)
        return image

    def stamp(self, image: sitk.Image) -> None:
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_lps_mm)
        image.SetDirection(self.direction)

    def describe(self) -> str:
        d = np.asarray(self.direction).reshape(3, 3)
        codes = "".join(("RAS" if flip > 0 else "LPI")[int(axis)] for axis, flip in self.orientation())
        return (
            f"size {self.size}, spacing {_fmt(self.spacing_mm)} mm, origin (LPS) "
            f"{_fmt(self.origin_lps_mm)} mm, axes {codes}, direction {_fmt(d.ravel())}"
        )


@dataclass(frozen=True, eq=False)
class Volume:
    """An image in canonical RAS+ orientation with the geometry to go back to its file.

    Attributes
    ----------
    array : ndarray, shape (nx, ny, nz), or None
        Voxel values; axis 0 → Right, 1 → Anterior, 2 → Superior. ``None`` when only the
        geometry was read (``read_image(..., header_only=True)``).
    affine_ras : ndarray, shape (4, 4)
        Canonical index → RAS world mm.
    grid : Grid
        The file's native grid (for writing outputs on it).
    path : Path
        The file or DICOM folder read.
    dicom_files : tuple of str
        For a DICOM series, its files in slice order (empty otherwise, and for a series resampled
        onto a regular grid).
    notes : tuple of str
        What the intake set aside, assumed or changed (for the report's warnings).
    """

    array: np.ndarray | None
    affine_ras: np.ndarray
    grid: Grid
    path: Path
    dicom_files: tuple[str, ...] = field(default=())
    notes: tuple[str, ...] = field(default=())

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine_ras[:3, :3], axis=0))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine_ras[:3, :3])))

    @property
    def shape(self) -> tuple[int, int, int]:
        return _canonical_shape(self.grid)


# --------------------------------------------------------------------------- reading


@timed("read")
def read_image(
    path, *, series_uid: str | None = None, name: str = "image", header_only: bool = False,
    reference: Volume | None = None, resample: bool = False, interpolate_slices: bool = False,
    check_voxels: bool = True,
) -> Volume:
    """Read a CT/MR (or any scalar image) as a canonical :class:`Volume`.

    Every input passes the intake checks first (README, "What hepatoplan refuses"): a regular
    file or a folder (never a pipe or device), the whole voxel payload decoded once and its size
    checked, a NIfTI header that is consistent (:mod:`hepatoplan.pipeline.io_nifti`), a DICOM
    series with one geometry (:mod:`hepatoplan.pipeline.io_dicom`), and voxel sizes plausible
    for a body scan (:data:`MIN_SPACING_MM` to :data:`MAX_SPACING_MM`, at most
    :data:`MAX_EXTENT_MM` along an axis).

    Parameters
    ----------
    path : str or Path
        A NIfTI, NRRD, MetaImage file, or a folder with a DICOM series.
    series_uid : str, optional
        For a DICOM folder holding several series, the SeriesInstanceUID to read (default: the
        series with the most files, with a note).
    name : str
        How the CLI calls this input (a flag such as ``--liver``), used in error messages.
    header_only : bool
        The voxels are not kept (``array`` is ``None``), only checked: the CT serves as the
        reference grid when every mask is given.
    reference, resample : Volume, bool
        A scalar map that must lie on ``reference``'s grid (a function map on the CT): a
        different grid is an error naming both, or with ``resample`` is resampled linearly in
        physical space.
    interpolate_slices : bool
        A DICOM series with uneven spacing, a gap, a damaged slice or gantry tilt is resampled
        onto a regular grid instead of being refused.
    check_voxels : bool
        False (with ``header_only``, NIfTI only): the header alone, its voxels not even decoded —
        the grid to check masks against while the same file is read and checked in full elsewhere.

    Raises
    ------
    InputFileError
        The path does not exist, is not a regular file or folder, or is not a complete image.
    InputError
        The image is not 3D, not scalar, holds NaN/inf values, or its geometry is refused.
    """
    raw = _read(Path(path), series_uid=series_uid, name=name, header_only=header_only,
                interpolate=interpolate_slices, check_voxels=check_voxels)
    for note in raw.notes:
        log.warning("%s", note)
    if raw.array is None:
        return Volume(None, _canonical_affine(raw.grid), raw.grid, raw.path, notes=raw.notes)
    array, grid = raw.array, raw.grid
    if reference is not None and _grid_difference(grid, reference.grid):
        if not resample:
            raise GeometryMismatchError(
                f"{name} {raw.path} does not lie on the CT's grid ({_grid_difference(grid, reference.grid)}): "
                f"{name}: {grid.describe()}; CT ({reference.path}): {reference.grid.describe()}. "
                "Pass --resample-masks to resample it (linearly, in physical space) onto the CT grid."
            )
        image = sitk.GetImageFromArray(np.asarray(array, np.float32))
        grid.stamp(image)
        array = sitk.GetArrayFromImage(sitk.Resample(image, reference.grid.empty_image(sitk.sitkFloat32),
                                                     sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32))
        grid = reference.grid
        log.warning("%s %s resampled linearly onto the CT grid", name, raw.path)
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise InputError(
            f"{name} {raw.path}: {int((~np.isfinite(array)).sum())} voxels are NaN or infinite; "
            "expected finite intensities. Fix or mask those voxels before running hepatoplan."
        )
    return _to_canonical(array, grid, raw.path, raw.files, raw.notes)


def read_labels(
    path,
    *,
    name: str = "mask",
    reference: Volume | None = None,
    resample: bool = False,
    binary: bool = False,
) -> Volume:
    """Read an integer label map (0 = background) as a canonical :class:`Volume`.

    Labels may be stored in any integer or float type, as long as every value is an integer
    from 0 to :data:`MAX_LABEL` that the type holds exactly.

    Parameters
    ----------
    path : str or Path
        Label file (NIfTI, NRRD, MetaImage) or DICOM folder.
    name : str
        The flag this file came from (``--liver``), named in every error.
    reference : Volume, optional
        The image the labels must share a grid with (the CT). When the canonical grids differ
        (shape, spacing, origin or direction beyond :data:`GRID_TOLERANCE_MM` /
        :data:`DIRECTION_TOLERANCE`) a :class:`GeometryMismatchError` names both geometries,
        unless ``resample`` is true.
    resample : bool
        Resample nearest-neighbour, in physical space, onto ``reference``'s grid.
    binary : bool
        Only whether a voxel is labelled is wanted (a liver or vessel mask): ``array`` is boolean
        (label > 0), made in the one reorienting copy (the labels are checked all the same).

    Returns
    -------
    Volume
        ``array`` of an unsigned integer dtype (the smallest that holds the labels), or bool.

    Raises
    ------
    LabelError
        Non-integer, negative, non-finite or too large values.
    GeometryMismatchError
        Grid differs from ``reference`` and ``resample`` is false.
    """
    raw = _read(Path(path), series_uid=None, name=name)
    for note in raw.notes:
        log.warning("%s", note)
    array, high = _integer_labels(raw.array, name=name, source=raw.path)
    if reference is not None:
        problem = _grid_difference(raw.grid, reference.grid)
        if problem:
            if not resample:
                raise GeometryMismatchError(
                    f"{name} {raw.path} does not lie on the CT's grid ({problem}): {name}: {raw.grid.describe()}; "
                    f"CT ({reference.path}): {reference.grid.describe()}. If both describe the same patient "
                    "space, pass --resample-masks to resample the mask nearest-neighbour onto the CT grid; "
                    "otherwise give the mask made on this CT."
                )
            array = _resample_labels(array, raw.grid, reference.grid, name=name, source=raw.path)
            log.warning("%s %s resampled nearest-neighbour onto the CT grid", name, raw.path)
            return _to_canonical(array, reference.grid, raw.path, raw.files, raw.notes, binary=binary, labels=True)
    if binary and high <= 1 and array.dtype == np.uint8:  # 0 / 1: its boolean view, copied without a comparison
        return _to_canonical(array.view(bool), raw.grid, raw.path, raw.files, raw.notes, labels=True)
    return _to_canonical(array, raw.grid, raw.path, raw.files, raw.notes, binary=binary, labels=True)


def worker_threads() -> int:
    """Threads for reading or writing several images at once: ITK's share of the cores (all of
    them, or what a batch worker was given through ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``)."""
    return sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()


def same_grid(a: Volume, b: Volume) -> bool:
    """True when two volumes share one grid in canonical space (within the tolerances)."""
    return not _grid_difference(a.grid, b.grid)


@dataclass(frozen=True, eq=False)
class _Raw:
    """An image as read, before reorientation: ``array`` in ITK's ``[k, j, i]`` order (None when
    only checked), the native grid, the DICOM files, notes, and the ITK image the array may view."""

    array: np.ndarray | None
    grid: Grid
    path: Path
    files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    owner: object = None


def _read(path: Path, *, series_uid: str | None, name: str, header_only: bool = False,
          interpolate: bool = False, check_voxels: bool = True) -> _Raw:
    """Read and check one input (see :func:`read_image`)."""
    if _check_path(path, name):
        plan = io_dicom.scan_folder(path, series_uid=series_uid, name=name, interpolate=interpolate)
        grid = Grid(plan.shape, plan.spacing_mm, plan.origin_lps_mm, plan.direction)
        _check_grid(grid, path, name)
        array, owner = _read_dicom_pixels(plan, path, name)
        return _Raw(array, grid, path, () if plan.resample else plan.files, plan.notes, owner)
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        raise InputFileError(
            f"{name} {path}: unsupported file type; expected one of "
            f"{', '.join(IMAGE_SUFFIXES)} or a folder holding a DICOM series."
        )
    if is_nifti_file(path):
        header = io_nifti.read_header(path, name)
        grid = _itk_header(path, name)
        io_nifti.check_itk_grid(header, grid.affine_ras(), path, name)
        _check_grid(grid, path, name)
        if header_only and not check_voxels:
            return _Raw(None, grid, path)
        return _Raw(io_nifti.read_voxels(path, header, name, keep=not header_only), grid, path)
    grid = _itk_header(path, name)
    _check_grid(grid, path, name)
    image = _itk_execute(sitk.ImageFileReader, [str(path)], path, name, "an image")
    if image.GetDimension() == 4:
        image = image[:, :, :, 0]
    return _Raw(None if header_only else sitk.GetArrayViewFromImage(image), grid, path, owner=image)


def is_nifti_file(path) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` / ``.nii.gz``), read with nibabel's header
    checks, whose voxels can be decoded apart from its header (``read_image(check_voxels=False)``)."""
    path = Path(path)
    return path.name.lower().endswith((".nii", ".nii.gz")) and not path.is_dir()


def _check_path(path: Path, name: str) -> bool:
    """True for a folder, False for a regular file; refuse anything else before it is opened (a
    named pipe would block the read forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise InputFileError(f"{name} {path}: no such file or folder. Check the path.") from None
    except OSError as exc:
        raise InputFileError(f"{name} {path}: cannot be opened ({exc.strerror}). Check the path and its permissions.") from None
    if stat.S_ISDIR(mode):
        return True
    if not stat.S_ISREG(mode):
        kind = ("a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file")
        raise InputFileError(
            f"{name} {path}: is {kind}; expected a regular image file or a DICOM folder. Save the image to a file first."
        )
    if not os.access(path, os.R_OK):
        raise InputFileError(f"{name} {path}: permission denied; expected a readable file. Check its permissions.")
    if os.stat(path).st_size == 0:
        raise InputFileError(f"{name} {path}: is empty (0 bytes); expected an image file. Copy or export it again.")
    return False


def _check_grid(grid: Grid, path: Path, name: str) -> None:
    """Voxel sizes, origin and directions of a body scan (module constants)."""
    spacing = np.asarray(grid.spacing_mm)
    extent = spacing * np.asarray(grid.size)
    if not (np.isfinite(spacing).all() and (spacing >= MIN_SPACING_MM).all() and (spacing <= MAX_SPACING_MM).all()):
        raise InputError(
            f"{name} {path}: voxel size {_fmt(spacing)} mm; expected {MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm "
            "for a body scan (is the header's voxel size or unit wrong?). Fix the header or convert the scan again."
        )
    if extent.max() > MAX_EXTENT_MM:
        raise InputError(
            f"{name} {path}: spans {_fmt(extent)} mm ({grid.size} voxels of {_fmt(spacing)} mm); expected at most "
            f"{MAX_EXTENT_MM:g} mm along an axis for a body scan. Check the header's dimensions and voxel size."
        )
    direction = np.asarray(grid.direction).reshape(3, 3)
    if not (np.isfinite(grid.origin_lps_mm).all() and np.isfinite(direction).all()
            and np.allclose(direction.T @ direction, np.eye(3), atol=1e-3)):
        raise InputError(
            f"{name} {path}: origin {_fmt(grid.origin_lps_mm)} and direction {_fmt(direction.ravel())} are not "
            "a valid grid (finite origin, perpendicular unit axes); the header is damaged. Convert the scan again."
        )
    if min(grid.size) < 2:
        raise InputError(
            f"{name} {path}: size {grid.size} is a single slice; expected a 3D volume with at least 2 voxels "
            "along each axis."
        )


def _itk_header(path: Path, name: str) -> Grid:
    """The grid ITK reads from a file's header (voxels not read)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with _native_output() as native:
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise InputFileError(
                f"{name} {path}: cannot be read as an image ({_itk_message(exc, native)}). "
                "Is the file complete and in a supported format?"
            ) from None
    size = list(reader.GetSize())
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    if reader.GetNumberOfComponents() != 1 or reader.GetPixelIDValue() in _COMPLEX_PIXELS:
        raise InputError(
            f"{name} {path}: has {reader.GetNumberOfComponents()} component(s) per voxel of type "
            f"{sitk.GetPixelIDValueAsString(reader.GetPixelIDValue())}; expected a scalar image (one real value "
            "per voxel). Save the magnitude or grey-level image."
        )
    if len(size) != 3:
        raise InputError(
            f"{name} {path}: is {len(size)}D with size {tuple(reader.GetSize())}; expected a 3D volume. Split "
            "4D series into 3D volumes; stack 2D slices into one 3D file."
        )
    ndim = reader.GetDimension()
    direction = np.asarray(reader.GetDirection()).reshape(ndim, ndim)[:3, :3]
    grid = Grid(tuple(int(n) for n in size), tuple(float(s) for s in reader.GetSpacing()[:3]),
                tuple(float(o) for o in reader.GetOrigin()[:3]),
                tuple(float(d) + 0.0 for d in direction.ravel()))  # + 0.0: no -0 (as the image itself has)
    io_nifti.check_memory(math.prod(grid.size), path, name)
    return grid


def _read_dicom_pixels(plan: io_dicom.SeriesPlan, folder: Path, name: str):
    """Decode the plan's slices with GDCM; ``(array [k, j, i], owner)`` on the plan's grid."""
    io_nifti.check_memory(math.prod(plan.shape) * 4, folder, name)
    if not plan.resample:
        image = _itk_execute(sitk.ImageSeriesReader, list(plan.files), folder, name, "a DICOM series")
        if tuple(image.GetSize()) != plan.shape:
            raise InputFileError(f"{name} {folder}: GDCM decoded {image.GetSize()} voxels where the headers "
                                 f"describe {plan.shape}; the series is damaged. Export it again.")
        return sitk.GetArrayViewFromImage(image), image
    slices = [sitk.GetArrayFromImage(_itk_execute(sitk.ImageFileReader, [f], folder, name, "a DICOM slice"))[0]
              for f in plan.files]
    return io_dicom.resample_slices(slices, plan), None


def _itk_execute(reader_class, files: list[str], path: Path, name: str, what: str) -> sitk.Image:
    """Run an ITK reader on ``files``, its native messages captured (they join the error)."""
    reader = reader_class()
    if reader_class is sitk.ImageSeriesReader:
        reader.SetFileNames(files)
    else:
        reader.SetFileName(files[0])
    with _native_output() as native, keep_locale():
        try:
            return reader.Execute()
        except RuntimeError as exc:
            raise InputFileError(
                f"{name} {path}: cannot be read as {what} ({_itk_message(exc, native)}). "
                "Is the file complete (not truncated) and in a supported format?"
            ) from None


@contextlib.contextmanager
def _native_output():
    """Capture what ITK, GDCM, niftilib and MetaIO print on the process's stdout and stderr (file
    descriptors 1 and 2) while a file is read: a refusal is one line, and accepted files raise no
    stray warnings (hepatoplan makes its own checks). Yields a function returning the captured text.

    Reads take turns (the descriptors belong to the process).
    """
    with _NATIVE_LOCK, tempfile.TemporaryFile() as sink:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = [os.dup(1), os.dup(2)]
        warn = sitk.ProcessObject.GetGlobalWarningDisplay()
        try:
            sitk.ProcessObject.SetGlobalWarningDisplay(False)
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield lambda: (sink.seek(0), sink.read().decode("utf-8", "replace"))[1]
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sitk.ProcessObject.SetGlobalWarningDisplay(warn)


@contextlib.contextmanager
def keep_locale():
    """Restore the process locale afterwards: GDCM (DICOM in SimpleITK) switches it to "C",
    which would make Python's default text encoding ASCII for the rest of the process.

    The locale belongs to the process, so threads take turns (one would otherwise save the
    "C" of another's DICOM read and restore that).
    """
    with _LOCALE_LOCK:
        saved = locale.setlocale(locale.LC_ALL)
        try:
            yield
        finally:
            locale.setlocale(locale.LC_ALL, saved)


def _itk_message(exc: Exception, native=None) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if ln.lower().startswith(("description", "itk::error"))]
    text = (useful or lines or ["unknown error"])[-1].removeprefix("Description:").strip()
    extra = " ".join(ln.strip() for ln in (native() if native else "").splitlines() if ln.strip())
    return (text + (f"; {extra}" if extra else ""))[:300]


def _integer_labels(array: np.ndarray, *, name: str, source: Path) -> tuple[np.ndarray, float]:
    """The labels as the smallest unsigned integer type holding them, after checking them; and the
    largest label."""
    floating = np.issubdtype(array.dtype, np.floating)
    if floating:
        if not np.isfinite(array).all():
            raise LabelError(f"{name} {source}: label map holds NaN or infinite values; expected integers.")
        if not np.array_equal(array, np.round(array)):
            raise LabelError(
                f"{name} {source}: label map holds non-integer values (e.g. "
                f"{array[array != np.round(array)].flat[0]:g}); expected integer labels. Was it "
                "resampled with linear interpolation? Resample label maps nearest-neighbour."
            )
    elif not np.issubdtype(array.dtype, np.integer) and array.dtype != bool:
        raise LabelError(f"{name} {source}: voxel type {array.dtype} is not a label type; expected integer labels.")
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if low < 0:
        raise LabelError(
            f"{name} {source}: label map holds negative values (minimum {low:g}); expected labels >= 0."
        )
    exact = min(MAX_LABEL, 2 ** (np.finfo(array.dtype).nmant + 1) if floating else MAX_LABEL)
    if high > exact:
        raise LabelError(
            f"{name} {source}: label value {high:.10g} is above {exact}, the largest label a {array.dtype} map holds "
            "exactly here; expected small integer labels (0 = background). Renumber the labels."
        )
    dtype = np.uint8 if high < 2**8 else np.uint16 if high < 2**16 else np.uint32
    return array.astype(dtype, copy=False), high


def _resample_labels(array_kji, grid: Grid, target: Grid, *, name: str, source: Path) -> np.ndarray:
    moving = sitk.GetImageFromArray(array_kji)
    grid.stamp(moving)
    out = sitk.Resample(moving, target.empty_image(moving.GetPixelID()), sitk.Transform(),
                        sitk.sitkNearestNeighbor, 0, moving.GetPixelID())
    resampled = sitk.GetArrayFromImage(out)
    before, after = int(np.count_nonzero(array_kji)), int(np.count_nonzero(resampled))
    voxel_ratio = np.prod(grid.spacing_mm) / np.prod(target.spacing_mm)
    if before and after < 0.9 * before * voxel_ratio:
        log.warning(
            "%s %s: after resampling only %.0f %% of the labelled volume lies inside the CT grid",
            name, source, 100.0 * after / (before * voxel_ratio),
        )
    if before and not after:
        raise GeometryMismatchError(
            f"{name} {source}: after resampling onto the CT grid no labelled voxel remains; the mask "
            "does not overlap the CT in physical space. Give the mask made on this CT."
        )
    return resampled


def _grid_difference(a: Grid, b: Grid) -> str:
    """'' when the canonical grids match, else which part differs."""
    aff_a, aff_b = _canonical_affine(a), _canonical_affine(b)
    shape_a = _canonical_shape(a)
    shape_b = _canonical_shape(b)
    if shape_a != shape_b:
        return f"shape {shape_a} vs {shape_b}"
    sp_a, sp_b = np.linalg.norm(aff_a[:3, :3], axis=0), np.linalg.norm(aff_b[:3, :3], axis=0)
    if not np.allclose(sp_a, sp_b, rtol=0, atol=GRID_TOLERANCE_MM):
        return f"spacing {_fmt(sp_a)} vs {_fmt(sp_b)} mm"
    if not np.allclose(aff_a[:3, :3] / sp_a, aff_b[:3, :3] / sp_b, rtol=0, atol=DIRECTION_TOLERANCE):
        return "direction differs"
    if not np.allclose(aff_a[:3, 3], aff_b[:3, 3], rtol=0, atol=GRID_TOLERANCE_MM):
        return f"origin {_fmt(aff_a[:3, 3])} vs {_fmt(aff_b[:3, 3])} mm (RAS)"
    return ""


def _io_orientation(affine: np.ndarray) -> np.ndarray:
    """``nibabel.orientations.io_orientation`` of a 3D affine (its algorithm, step by step).

    The rotation closest to the direction cosines (polar decomposition) is read axis by axis,
    the most clearly aligned native axis first; each takes the RAS axis it points along most,
    which is then no longer available.
    """
    linear = affine[:3, :3]
    zooms = np.sqrt(np.sum(linear * linear, axis=0))
    zooms[zooms == 0] = 1
    p, s, qs = np.linalg.svd(linear / zooms, full_matrices=False)
    keep = s > s.max() * 3 * np.finfo(s.dtype).eps
    rotation = np.dot(p[:, keep], qs[keep])
    ornt = np.full((3, 2), np.nan)
    for native in np.argsort(np.min(-(rotation**2), axis=0), kind="stable"):
        column = rotation[:, native]
        if not np.allclose(column, 0):
            ras = np.argmax(np.abs(column))
            ornt[native] = ras, 1 if column[ras] > 0 else -1
            rotation[ras, :] = 0
    if np.isnan(ornt).any():
        raise InputError(f"degenerate image directions (an axis points nowhere): {_fmt(linear.ravel())}")
    return ornt


def _canonical_affine(grid: Grid) -> np.ndarray:
    """Canonical index → RAS mm: the native affine after undoing the orientation's permutation
    and flips (``nibabel.orientations.inv_ornt_aff``)."""
    ornt = grid.orientation()
    flips = ornt[:, 1]
    centre = (np.asarray(grid.size) - 1) / 2.0
    undo_flip = np.diag([*flips, 1.0])
    undo_flip[:3, 3] = centre - flips * centre
    undo_reorder = np.eye(4)[[*ornt[:, 0].astype(int), 3]]
    return grid.affine_ras() @ (undo_flip @ undo_reorder)


def _canonical_shape(grid: Grid) -> tuple[int, ...]:
    ornt = grid.orientation()
    shape = [0, 0, 0]
    for native_axis, (target_axis, _) in enumerate(ornt):
        shape[int(target_axis)] = grid.size[native_axis]
    return tuple(shape)


def _to_canonical(array_kji: np.ndarray, grid: Grid, source: Path, files, notes=(), *, binary=False,
                  labels=False) -> Volume:
    """The volume in canonical order (a C-ordered copy); ``labels``: a label map, mostly background,
    of which only the labelled voxels' box is copied (into zeros; IRCADb 01's liver mask: a quarter
    of the grid, its vessel masks a third)."""
    ornt = grid.orientation()
    flipped = tuple(np.flatnonzero(ornt[:, 1] < 0))
    order = np.argsort(ornt[:, 0])
    canonical = np.flip(array_kji.T, flipped).transpose(order)
    if labels:
        native_box = [slice(n - b.stop, n - b.start) if axis in flipped else b  # [i, j, k], flipped as the view
                      for axis, (b, n) in enumerate(zip(bounding_box(array_kji)[::-1], array_kji.shape[::-1]))]
        box = tuple(native_box[axis] for axis in order)
        copy = np.zeros(canonical.shape, bool if binary else canonical.dtype)
        c_order_copy(canonical[box], binary=binary, out=copy[box])
    else:
        copy = c_order_copy(canonical, binary=binary)
    return Volume(
        array=copy,
        affine_ras=_canonical_affine(grid),
        grid=grid,
        path=source,
        dicom_files=tuple(files),
        notes=tuple(notes),
    )


def c_order_copy(view: np.ndarray, tile=(512, 8, 8), *, binary: bool = False,
                 out: np.ndarray | None = None) -> np.ndarray:
    """C-ordered copy of a transposed/flipped 3D view, copied tile by tile (a new array, or into
    ``out``: any array of the view's shape, e.g. one channel of an interleaved one); with
    ``binary``, a boolean ``view != 0`` made in the same copy.

    A plain ``np.ascontiguousarray`` of a full 3D transpose thrashes the cache: on a 512×512×129
    LPS scan it takes ~280 ms, 64×64×8 tiles ~45 ms and 512×8×8 tiles ~35 ms (reading or writing).
    """
    if out is None and view.flags.c_contiguous:
        return view.astype(bool) if binary else view.copy()
    if out is None:
        out = np.empty(view.shape, bool if binary else view.dtype)
    ni, nj, nk = view.shape
    ti, tj, tk = tile
    for i in range(0, ni, ti):
        for j in range(0, nj, tj):
            for k in range(0, nk, tk):
                block = (slice(i, i + ti), slice(j, j + tj), slice(k, k + tk))
                if binary:
                    np.not_equal(view[block], 0, out=out[block])
                else:
                    out[block] = view[block]
    return out


# --------------------------------------------------------------------------- writing


def native_array(array: np.ndarray, *, reference: Volume) -> np.ndarray:
    """The canonical ``array`` back in the reference file's native ``[i, j, k]`` order."""
    if array.shape != reference.shape:
        raise GeometryMismatchError(
            f"array shape {array.shape} does not match the reference image {reference.shape}"
        )
    ornt = reference.grid.orientation()
    native = array.transpose(ornt[:, 0].astype(int))
    return np.flip(native, tuple(np.flatnonzero(ornt[:, 1] < 0)))


def _native_kji(array: np.ndarray, *, reference: Volume) -> np.ndarray:
    """The canonical ``array`` as SimpleITK's C-ordered ``[k, j, i]`` array on the reference's native grid
    (booleans as uint8). A label map is mostly background: only its non-zero voxels' box is copied
    (tile by tile, :func:`c_order_copy`), into zeros (IRCADb 01's label map: the liver's box, a quarter
    of the grid)."""
    view = native_array(array, reference=reference).T
    ornt = reference.grid.orientation()
    box = bounding_box(array)  # canonical axes; the view's axis v is native axis 2 - v, canonical ornt[2 - v, 0]
    view_box = []
    for v, n in enumerate(view.shape):
        b = box[int(ornt[2 - v, 0])]
        view_box.append(slice(n - b.stop, n - b.start) if ornt[2 - v, 1] < 0 else b)
    out = np.zeros(view.shape, np.uint8 if array.dtype == bool else array.dtype)
    c_order_copy(view[tuple(view_box)], out=out[tuple(view_box)])
    return out


def write_labels(array: np.ndarray, *, reference: Volume, path) -> Path:
    """Write a canonical label (or scalar) array on ``reference``'s native grid.

    The format follows the file ending (``.nii.gz``, ``.nrrd``, ``.mha`` ...). Integer arrays are
    written as given; the write is atomic (temporary folder beside the target, then renamed), so a
    killed run never leaves a torn file.
    """
    path = Path(path)
    image = sitk.GetImageFromArray(_native_kji(np.asarray(array), reference=reference))
    reference.grid.stamp(image)
    # MetaImage .mhd writes a second data file that its header names: atomic_file writes the whole
    # set under its final name in a temporary folder beside the target, then renames
    with atomic_file(path) as tmp:
        sitk.WriteImage(image, str(tmp), True)
    return path


def sha256_of(path) -> str:
    """SHA-256 of a file, or of a folder's regular files (sorted names and contents) for a DICOM
    series. A named pipe or device is never opened (it would block): InputFileError."""
    path = Path(path)
    digest = hashlib.sha256()
    _check_path(path, "input")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
