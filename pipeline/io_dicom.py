"""DICOM series intake for :mod:`hepatoplan.pipeline.io`: which files make the volume, and its grid.

GDCM (SimpleITK's DICOM reader) stacks whatever files share a SeriesInstanceUID: a truncated slice
is dropped without a word, a missing slice or uneven spacing is averaged into one slice spacing (a
liver of 721 mL measured as 1283 mL), a slice without ImagePositionPatient or PixelSpacing gets
defaults (1 mm pixels), a gantry-tilted stack is taken as orthogonal, and slices from different
frames of reference are mixed. hepatoplan therefore reads every file's header itself with pydicom
(:func:`scan_folder`) and builds the series' geometry from ImageOrientationPatient,
ImagePositionPatient and PixelSpacing, as dcm2niix does:

- files that are not images of this series are set aside with a note: non-DICOM files, DICOMDIR,
  non-image objects (SEG, RTSTRUCT, SR, ...), other series (the largest is read unless
  ``--series-uid`` names one), localizers (ImageType LOCALIZER) and slices in another plane (more
  than :data:`OTHER_PLANE_DEGREES` off: reformats);
- refused, naming the file and the problem: a damaged or truncated file, a multi-frame (enhanced)
  object, a slice without ImagePositionPatient, ImageOrientationPatient or PixelSpacing, a slice
  whose orientation differs by more than :data:`ORIENTATION_TOLERANCE_DEGREES` but is not another
  plane, other pixel sizes or image sizes, FrameOfReferenceUID differing between slices, two
  slices at one position;
- slice positions along the normal must be evenly spaced within :data:`SPACING_TOLERANCE` (the
  grid's step is then the mean spacing, which keeps the stack's length exact), and the slices must
  be stacked along their normal (no in-plane drift beyond :data:`DRIFT_TOLERANCE_PIXELS`: gantry
  tilt). Uneven spacing, a gap (missing slice), a truncated slice or gantry tilt is refused unless
  ``interpolate`` (``--interpolate-slices``) is given: then the slices are resampled onto a regular
  grid the way dcm2niix makes its ``_Eq`` and ``_Tilt`` images (step = the smallest slice distance;
  linear interpolation between the two nearest slices; tilted slices shifted in-plane, the grid
  enlarged to hold them, new pixels set to the darkest value), and the volume no longer matches
  the source slices one to one (no DICOM-SEG can reference them; a note says so).

Everything is in DICOM's LPS patient frame; :mod:`hepatoplan.pipeline.io` turns it into a grid.
"""

from __future__ import annotations

import math
import os
import stat
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.multival import MultiValue

from hepatoplan.errors import InputError, InputFileError

#: Slices whose direction cosines differ by less than this angle (degrees) share one orientation.
ORIENTATION_TOLERANCE_DEGREES = 0.05
#: Slices more than this far (degrees) from the stack's orientation are another plane (a reformat
#: or localizer) and are set aside; in between, the series is refused.
OTHER_PLANE_DEGREES = 30.0
#: Slice distances may differ from their median by this share (a 1 % wobble moves no slice by
#: more than a hundredth of its thickness; the grid takes the mean distance).
SPACING_TOLERANCE = 0.01
#: Two slices closer than this share of the median distance are at one position.
DUPLICATE_TOLERANCE = 0.1
#: In-plane drift of the slice positions (gantry tilt) tolerated, in pixels, over the whole stack.
DRIFT_TOLERANCE_PIXELS = 0.1
#: PixelSpacing values may differ between slices by this share.
PIXEL_SPACING_TOLERANCE = 1e-3
#: SOP classes and modalities that are not image slices.
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "SR", "PR", "KO", "DOC", "REG", "RWV"}
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
#: Geometry attributes every slice needs: tag and number of values.
_GEOMETRY_TAGS = {"ImageOrientationPatient": ("0020,0037", 6), "ImagePositionPatient": ("0020,0032", 3),
                  "PixelSpacing": ("0028,0030", 2)}


@dataclass(frozen=True)
class SeriesPlan:
    """What to read from a DICOM folder and on which grid (LPS).

    Attributes
    ----------
    files : tuple of str
        The slices to read, in order of position along the slice normal.
    shape : tuple of int
        ``(columns, rows, slices)`` of the output grid (ITK's ``i, j, k``).
    origin_lps_mm, spacing_mm : tuple of float
        Grid origin (first voxel) and spacing along ``i, j, k``.
    direction : tuple of float
        Row-major 3×3 whose columns are the row direction, column direction and slice normal.
    resample : bool
        The slices must be resampled (uneven spacing, a gap, tilt): see :func:`resample_slices`.
    positions_mm : tuple of float
        With ``resample``: each file's distance along the normal from the first.
    offsets_pixels : tuple of (float, float)
        With ``resample``: each file's in-plane shift (columns, rows) onto the output grid.
    notes : tuple of str
        What was set aside or changed (for the report's warnings).
    """

    files: tuple[str, ...]
    shape: tuple[int, int, int]
    origin_lps_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    direction: tuple[float, ...]
    resample: bool = False
    positions_mm: tuple[float, ...] = ()
    offsets_pixels: tuple[tuple[float, float], ...] = ()
    notes: tuple[str, ...] = field(default=())


@dataclass
class _Slice:
    path: str
    ds: object  # pydicom Dataset (header and pixel data bytes, never decoded here)
    problem: str = ""  # why its pixel data cannot be used ("" when complete)

    def text(self, keyword: str) -> str:
        return str(self.ds.get(keyword, "") or "").strip()


def scan_folder(folder: Path, *, series_uid: str | None, name: str, interpolate: bool = False) -> SeriesPlan:
    """Read every file's header in ``folder`` (not its subfolders), choose the series and check
    its geometry (module docstring).

    Raises
    ------
    InputFileError
        No DICOM image in the folder; a damaged DICOM file.
    InputError
        A geometry problem (module docstring), with the file and how to fix it.
    """
    notes: list[str] = []
    images, other = _read_headers(folder, name, interpolate=interpolate, notes=notes)
    if not images:
        subfolders = sorted(p.name for p in folder.iterdir() if p.is_dir())[:3]
        hint = f"; it has subfolders ({', '.join(subfolders)}): give the folder of one series" if subfolders else ""
        raise InputFileError(
            f"{name} {folder}: the folder holds no DICOM series{hint}. Give an image file or a folder of "
            "DICOM slices."
        )
    by_series: dict[str, list[_Slice]] = {}
    for s in images:
        by_series.setdefault(s.text("SeriesInstanceUID"), []).append(s)
    if series_uid is not None:
        if series_uid not in by_series:
            raise InputError(
                f"--series-uid {series_uid}: not in {folder}; it holds "
                + ", ".join(f"{uid or '(empty UID)'} ({len(f)} files)" for uid, f in by_series.items())
            )
        chosen = series_uid
    else:
        chosen = max(by_series, key=lambda uid: len(by_series[uid]))
    if len(by_series) > 1:
        notes.append(f"{name} {folder}: {len(by_series)} DICOM series; read {chosen or '(empty UID)'} "
                     f"({len(by_series[chosen])} files), set the others aside (choose one with --series-uid)")
    slices = by_series[chosen]
    where = f"{name} {folder}"
    localizers = [s for s in slices if "LOCALIZER" in [str(v).upper() for v in (s.ds.get("ImageType") or [])]]
    if localizers:
        notes.append(f"{where}: {len(localizers)} localizer image(s) set aside")
        slices = [s for s in slices if s not in localizers]
    for s in slices:
        frames = int(s.ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise InputError(
                f"{where}: {Path(s.path).name} is a multi-frame (enhanced) object with {frames} frames; "
                "expected one slice per file. Convert the series to NIfTI with dcm2niix and give that file."
            )
        for keyword, (tag, length) in _GEOMETRY_TAGS.items():
            values = _floats(s.ds.get(keyword))
            if values is None or len(values) != length or (keyword == "PixelSpacing" and min(values) <= 0):
                raise InputError(
                    f"{where}: slice {Path(s.path).name} has no valid {keyword} ({tag}); expected it in every "
                    f"slice (without it the {'pixel size' if keyword == 'PixelSpacing' else 'slice geometry'} is "
                    "unknown). Export the series again with its geometry."
                )
    slices = _one_orientation(slices, where, notes)
    return _geometry(slices, where, interpolate=interpolate, notes=notes)


def resample_slices(slices: list[np.ndarray], plan: SeriesPlan) -> np.ndarray:
    """Resample 2D slices (``[row, column]``, in ``plan.files`` order) onto ``plan``'s regular grid.

    Each slice is shifted in-plane onto the output grid (gantry tilt; linear), then every output
    slice is the linear interpolation of the two input slices around its position (dcm2niix's
    ``nii_saveNII3Deq``); pixels that no slice covers take the darkest value. Returns ``[k, j, i]``
    in the slices' own data type (rounded when it is an integer type).
    """
    from scipy import ndimage

    dtype = slices[0].dtype
    fill = float(min(s.min() for s in slices))
    cols, rows, n = plan.shape
    shifted = []
    for image, (di, dj) in zip(slices, plan.offsets_pixels):
        image = image.astype(np.float32)
        if di or dj or image.shape != (rows, cols):  # output pixel (j, i) is input pixel (j - dj, i - di)
            image = ndimage.affine_transform(image, np.eye(2), offset=(-dj, -di), output_shape=(rows, cols),
                                             order=1, mode="constant", cval=fill, prefilter=False)
        shifted.append(image)
    positions = np.asarray(plan.positions_mm)
    out = np.empty((n, rows, cols), np.float32)
    for k in range(n):
        d = k * plan.spacing_mm[2]
        hi = int(np.clip(np.searchsorted(positions, d), 1, len(positions) - 1))
        lo = hi - 1
        w = float(np.clip((d - positions[lo]) / (positions[hi] - positions[lo]), 0.0, 1.0))
        out[k] = (1.0 - w) * shifted[lo] + w * shifted[hi]
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(out), info.min, info.max).astype(dtype)
    return out.astype(dtype, copy=False)


# --------------------------------------------------------------------------- headers


def _read_headers(folder: Path, name: str, *, interpolate: bool, notes: list[str]):
    """Every regular file's header; returns (image slices, count of other files)."""
    images: list[_Slice] = []
    skipped = Counter()
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        try:
            mode = entry.stat().st_mode
        except OSError:
            skipped["unreadable"] += 1
            continue
        if stat.S_ISDIR(mode):
            continue
        if not stat.S_ISREG(mode):
            skipped["special files (pipes, devices)"] += 1  # never opened: a named pipe would hang
            continue
        path = entry.path
        with open(path, "rb") as fh:
            head = fh.read(132)
        if head[128:132] != b"DICM":
            skipped["non-DICOM files"] += 1
            continue
        try:
            ds, problem = _dataset(path)
            meta = getattr(ds, "file_meta", None)
            if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS:
                skipped["DICOMDIR index files"] += 1
                continue
            modality = str(ds.get("Modality", "") or "").upper()
            if modality in NON_IMAGE_MODALITIES:
                skipped[f"non-image objects ({modality})"] += 1
                continue
            if not modality or "Rows" not in ds or "Columns" not in ds:  # pydicom stops quietly where a file ends
                raise EOFError("it ends within its header (no Modality, Rows or Columns)")
        except Exception as exc:  # pydicom raises many types on a damaged file
            if interpolate:
                notes.append(f"{name} {folder}: {entry.name} is a damaged DICOM file ({str(exc)[:120]}); set aside")
                continue
            raise InputFileError(
                f"{name} {folder}: {entry.name} is a damaged DICOM file ({str(exc)[:120]}); expected a complete "
                "file. Copy the series again (or pass --interpolate-slices to set it aside and interpolate "
                "what it held)."
            ) from None
        images.append(_Slice(path, ds, problem))
    if skipped:
        notes.append(f"{name} {folder}: set aside " + ", ".join(f"{n} {what}" for what, n in skipped.items()))
    return images, skipped


def _dataset(path: str):
    """``(dataset, problem)``: the whole file read (pixel data kept as bytes, never decoded), or
    for a file cut short within its pixel data its header and why its pixels cannot be used."""
    import pydicom

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except (EOFError, OSError, ValueError):
            ds = None
    if ds is None or len(ds) == 0 or any("End of file" in str(w.message) for w in caught):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, stop_before_pixels=True)
        return header, "its pixel data is cut short (truncated file)"
    if "PixelData" not in ds:
        return ds, "it has no pixel data"
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and not syntax.is_compressed:
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1) \
            * math.ceil(int(ds.get("BitsAllocated", 16) or 16) / 8)
        if len(ds.PixelData) < expected:
            return ds, f"its pixel data holds {len(ds.PixelData)} of {expected} bytes (truncated file)"
    return ds, ""


def _floats(value) -> list[float] | None:
    """A DICOM number or list of numbers as finite floats (None when absent or not numbers)."""
    if value is None or value == "":
        return None
    try:
        values = [float(v) for v in (value if isinstance(value, (list, tuple, MultiValue)) else [value])]
    except (TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


# --------------------------------------------------------------------------- geometry


def _axes(s: _Slice) -> np.ndarray:
    """3×3 whose columns are the row direction, the column direction and the normal (unit)."""
    iop = np.asarray(_floats(s.ds.ImageOrientationPatient))
    r, c = iop[:3], iop[3:]
    r, c = r / np.linalg.norm(r), c / np.linalg.norm(c)
    n = np.cross(r, c)
    return np.column_stack([r, c, n / np.linalg.norm(n)])


def _one_orientation(slices: list[_Slice], where: str, notes: list[str]) -> list[_Slice]:
    axes = np.array([_axes(s) for s in slices])
    if np.any(np.abs(np.sum(axes[:, :, 0] * axes[:, :, 1], axis=1)) > 1e-3):
        raise InputError(f"{where}: ImageOrientationPatient rows and columns are not perpendicular; the "
                         "header is damaged. Export the series again.")
    # the orientation most slices share (to 3 decimals) is the stack's
    common = Counter(tuple(np.round(a[:, :2].ravel(), 3)) for a in axes).most_common(1)[0][0]
    reference = axes[[tuple(np.round(a[:, :2].ravel(), 3)) for a in axes].index(common)]
    cos = np.clip(np.sum(axes[:, :, :2] * reference[:, :2], axis=1), -1.0, 1.0)  # per slice: row, column
    angles = np.degrees(np.arccos(cos)).max(axis=1)
    odd = np.flatnonzero((angles > ORIENTATION_TOLERANCE_DEGREES) & (angles <= OTHER_PLANE_DEGREES))
    if odd.size:
        raise InputError(
            f"{where}: slice {Path(slices[odd[0]].path).name} is tilted by {angles[odd[0]]:.2f} degrees against the "
            f"other slices' orientation; expected one orientation (within {ORIENTATION_TOLERANCE_DEGREES:g} "
            "degrees). Remove that slice or export the series again."
        )
    other = int(np.count_nonzero(angles > OTHER_PLANE_DEGREES))
    if other:
        notes.append(f"{where}: {other} image(s) in another plane (reformats) set aside")
    return [s for s, angle in zip(slices, angles) if angle <= ORIENTATION_TOLERANCE_DEGREES]


def _check_alike(slices: list[_Slice], where: str, notes: list[str]) -> tuple[int, int, np.ndarray]:
    """One image size, pixel size, greyscale and frame of reference across ``slices``; returns
    ``(rows, columns, PixelSpacing)``."""
    first = slices[0]
    sizes = Counter((int(s.ds.Rows), int(s.ds.Columns)) for s in slices)
    (rows, cols), _ = sizes.most_common(1)[0]
    spacing = np.asarray(_floats(first.ds.PixelSpacing))  # (between rows, between columns)
    frames = {s.text("FrameOfReferenceUID") for s in slices}
    for s in slices:
        if (int(s.ds.Rows), int(s.ds.Columns)) != (rows, cols):
            raise InputError(f"{where}: slice {Path(s.path).name} is {s.ds.Columns}×{s.ds.Rows} pixels, the others "
                             f"{cols}×{rows}; expected one image size. Remove that slice or export the series again.")
        other = np.asarray(_floats(s.ds.PixelSpacing))
        if np.any(np.abs(other - spacing) > PIXEL_SPACING_TOLERANCE * spacing):
            raise InputError(f"{where}: slice {Path(s.path).name} has PixelSpacing {_fmt(other)} mm, slice "
                             f"{Path(first.path).name} {_fmt(spacing)} mm; expected one positive pixel size. "
                             "Export the series again.")
        if int(s.ds.get("SamplesPerPixel", 1) or 1) != 1:
            raise InputError(f"{where}: slice {Path(s.path).name} has {s.ds.SamplesPerPixel} samples per pixel "
                             "(colour); expected a greyscale CT or MR series.")
    if len(frames) > 1:
        named = sorted(frames)
        raise InputError(
            f"{where}: its slices lie in {len(frames)} frames of reference (FrameOfReferenceUID "
            f"{' vs '.join(u or '(none)' for u in named[:2])}); expected one, or the slices' positions cannot be "
            "compared. Give a folder holding one acquisition."
        )
    if frames == {""}:
        notes.append(f"{where}: the series has no FrameOfReferenceUID")
    return rows, cols, spacing


def _stack(slices: list[_Slice], where: str, normal: np.ndarray) -> tuple[list[_Slice], np.ndarray]:
    """``slices`` sorted along ``normal`` with their positions (mm); refuses a single slice, one
    position for all and duplicates."""
    positions = np.array([float(np.dot(_floats(s.ds.ImagePositionPatient), normal)) for s in slices])
    order = np.argsort(positions, kind="stable")
    slices = [slices[i] for i in order]
    positions = positions[order]
    if len(slices) < 2:
        raise InputError(f"{where}: holds a single slice; expected a 3D series of at least 2 slices.")
    steps = np.diff(positions)
    median = float(np.median(steps))
    if median <= 0 or positions[-1] - positions[0] <= 0:
        raise InputError(
            f"{where}: all {len(slices)} slices are at one position ({positions[0]:.2f} mm along the normal); "
            "expected a stack of slices. Export the series again."
        )
    same = np.flatnonzero(steps < DUPLICATE_TOLERANCE * median)
    if same.size:
        a, b = slices[same[0]], slices[same[0] + 1]
        raise InputError(
            f"{where}: slices {Path(a.path).name} and {Path(b.path).name} are at one position ({positions[same[0]]:.2f} "
            "mm along the normal): a duplicate, or two acquisitions in one series; expected one slice per "
            "position. Remove the duplicate (or give the acquisition's own folder)."
        )
    return slices, positions


def _spacing_problem(steps_ok: np.ndarray, ok: list[_Slice]) -> str:
    """Missing slices (gaps of whole steps) or uneven spacing, described for the user."""
    ratios = steps_ok / np.min(steps_ok)
    gaps = np.flatnonzero(ratios > 1.5)
    k = int(np.argmax(ratios))
    between = f"{steps_ok[k]:.3g} mm between {Path(ok[k].path).name} and {Path(ok[k + 1].path).name}"
    if gaps.size <= max(1, len(steps_ok) // 4) and np.allclose(ratios[gaps], np.round(ratios[gaps]), atol=0.05) \
            and np.allclose(np.delete(ratios, gaps), 1.0, atol=SPACING_TOLERANCE):
        return (f"{int(np.sum(np.round(ratios[gaps]) - 1))} slice(s) missing: slices {np.min(steps_ok):.3g} "
                f"mm apart but {between}")
    return f"uneven slice spacing: {np.min(steps_ok):.3g} to {np.max(steps_ok):.3g} mm ({between})"


def _geometry(slices: list[_Slice], where: str, *, interpolate: bool, notes: list[str]) -> SeriesPlan:
    axes = _axes(slices[0])
    first = slices[0]
    rows, cols, spacing = _check_alike(slices, where, notes)
    damaged = [s for s in slices if s.problem]
    if damaged and not interpolate:
        s = damaged[0]
        raise InputFileError(
            f"{where}: slice {Path(s.path).name}: {s.problem}; expected complete slices. Copy the series "
            "again (or pass --interpolate-slices to interpolate over it)."
        )
    slices, positions = _stack(slices, where, axes[:, 2])
    ok = [s for s in slices if not s.problem]
    pos_ok = np.array([p for p, s in zip(positions, slices) if not s.problem])
    if len(ok) < 2:
        raise InputError(f"{where}: fewer than 2 complete slices; expected a 3D series. Copy the series again.")
    # in-plane drift of each slice's position against the first (gantry tilt)
    ipp = np.array([_floats(s.ds.ImagePositionPatient) for s in ok])
    drift = (ipp - ipp[0]) @ axes[:, :2]  # mm along rows' direction (columns i) and columns' direction (rows j)
    drift_pixels = drift / spacing[::-1]
    tilted = float(np.max(np.abs(drift_pixels))) > DRIFT_TOLERANCE_PIXELS
    steps_ok = np.diff(pos_ok)
    uneven = bool(np.any(np.abs(steps_ok - np.median(steps_ok)) > SPACING_TOLERANCE * np.median(steps_ok)))
    problems = []
    if damaged:
        problems.append(f"{len(damaged)} damaged slice(s) ({Path(damaged[0].path).name}: {damaged[0].problem})")
    if uneven:
        problems.append(_spacing_problem(steps_ok, ok))
    if tilted:
        tilt = str(first.ds.get("GantryDetectorTilt", "") or "").strip()
        extent = pos_ok[-1] - pos_ok[0]
        angle = math.degrees(math.atan2(float(np.max(np.linalg.norm(drift, axis=1))), extent))
        problems.append(f"the slices drift sideways by {float(np.max(np.linalg.norm(drift, axis=1))):.3g} mm over "
                        f"the stack: gantry tilt of {angle:.2f} degrees" + (f" (GantryDetectorTilt {tilt})" if tilt else ""))
    if problems and not interpolate:
        raise InputError(
            f"{where}: {'; '.join(problems)}; expected evenly spaced slices stacked along their normal "
            f"(within {100 * SPACING_TOLERANCE:g} %). Pass --interpolate-slices to resample the slices onto a "
            "regular grid (as dcm2niix does), or give the complete series."
        )
    if not problems:
        step = (positions[-1] - positions[0]) / (len(slices) - 1)
        origin = _floats(slices[0].ds.ImagePositionPatient)
        return SeriesPlan(
            files=tuple(s.path for s in slices), shape=(cols, rows, len(slices)),
            origin_lps_mm=tuple(origin), spacing_mm=(float(spacing[1]), float(spacing[0]), float(step)),
            direction=tuple(axes.ravel()), notes=tuple(notes),
        )
    # resample: step = smallest slice distance (dcm2niix), extent kept exact; grid enlarged to hold
    # every tilted slice
    extent = float(pos_ok[-1] - pos_ok[0])
    n = int(round(extent / float(np.min(steps_ok)))) + 1
    low = np.floor(np.min(drift_pixels, axis=0) + 1e-6)
    high = np.ceil(np.max(drift_pixels, axis=0) - 1e-6)
    origin = ipp[0] + axes[:, :2] @ (low * spacing[::-1])
    shape = (cols + int(high[0] - low[0]), rows + int(high[1] - low[1]), n)
    notes.append(
        f"{where}: {'; '.join(problems)}: resampled onto a regular grid of {n} slices {extent / (n - 1):.3g} mm "
        "apart (--interpolate-slices); no DICOM-SEG is written for a resampled series")
    return SeriesPlan(
        files=tuple(s.path for s in ok), shape=shape, origin_lps_mm=tuple(float(v) for v in origin),
        spacing_mm=(float(spacing[1]), float(spacing[0]), extent / (n - 1)), direction=tuple(axes.ravel()),
        resample=True, positions_mm=tuple(float(p - pos_ok[0]) for p in pos_ok),
        offsets_pixels=tuple((float(di), float(dj)) for di, dj in drift_pixels - low), notes=tuple(notes),
    )


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
