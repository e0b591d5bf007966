"""Label exports: the plan's colour table, Slicer ``.seg.nrrd`` and DICOM-SEG.

The plan's ``labels`` array (uint8 or wider, canonical RAS+) uses this scheme:

======  ==========================================================
value   meaning
======  ==========================================================
0       background
1–8     Couinaud segment *k* kept in the remnant
9       liver kept, without segment label
11–18   Couinaud segment *k* (= value − 10) resected
19      resected liver, without segment label
20 + i  tumour instance *i* (i ≥ 1)
======  ==========================================================

:data:`LABEL_TABLE` names and colours the fixed values; :func:`label_entry` covers tumours too.
The same colours are used by the meshes and previews (:func:`structure_colour`).

Coordinate conventions of the files written here:

* ``labels.ctbl`` — a 3D Slicer colour table (text: ``value name R G B A``, 0–255); load it with
  the label volume in Slicer (*Data → Colors*), or read it as text.
* ``.seg.nrrd`` — 3D Slicer segmentation, NRRD ``space: left-posterior-superior`` (LPS, as
  Slicer/ITK expect); the canonical RAS affine is converted, so the grid lies where the CT lies.
* DICOM-SEG — patient coordinates are DICOM's (LPS); frames are on the source series' own pixel
  grid, one frame per referenced source slice and segment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hepatoplan import __version__
from hepatoplan.errors import GeometryMismatchError, InputError, InputFileError, LabelError

log = logging.getLogger(__name__)

#: Converts canonical RAS world coordinates to LPS (and back): negate x and y.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: First tumour label: tumour instance ``i`` is ``TUMOUR_LABEL_OFFSET + i``.
TUMOUR_LABEL_OFFSET = 20
#: Offset between a kept segment's label and the same segment's resected label.
RESECTED_LABEL_OFFSET = 10
LIVER_KEPT_LABEL = 9
LIVER_RESECTED_LABEL = 19


@dataclass(frozen=True)
class LabelEntry:
    """Name, colour and SNOMED CT meaning of one label value.

    Attributes
    ----------
    value : int
        Label value in the plan's ``labels`` array.
    name : str
        Human-readable name (also the Slicer segment name).
    colour_rgb : tuple of int
        Display colour, 0–255 each.
    category : tuple of str
        SNOMED CT (code, meaning) of the segmented property category.
    property_type : tuple of str
        SNOMED CT (code, meaning) of the segmented property type.
    """

    value: int
    name: str
    colour_rgb: tuple[int, int, int]
    category: tuple[str, str]
    property_type: tuple[str, str]

    @property
    def colour_float(self) -> tuple[float, float, float]:
        """Colour as floats in [0, 1]."""
        return tuple(c / 255.0 for c in self.colour_rgb)  # type: ignore[return-value]


#: SNOMED CT codes (code, meaning) used for categories and types.
SCT_ANATOMICAL_STRUCTURE = ("123037004", "Anatomical Structure")
SCT_MORPHOLOGICALLY_ALTERED = ("49755003", "Morphologically Altered Structure")
SCT_LIVER = ("10200004", "Liver")
SCT_NEOPLASM = ("108369006", "Neoplasm")
SCT_PORTAL_VEIN = ("32764006", "Portal vein")
SCT_HEPATIC_VEIN = ("8993003", "Hepatic vein")
SCT_IVC = ("64131007", "Inferior vena cava")

#: Colours of Couinaud segments 1–8 (kept); the resected label uses a darker shade.
SEGMENT_COLOURS_RGB: dict[int, tuple[int, int, int]] = {
    1: (230, 159, 0),
    2: (120, 200, 90),
    3: (0, 158, 115),
    4: (204, 121, 167),
    5: (240, 180, 140),
    6: (213, 94, 0),
    7: (160, 120, 200),
    8: (190, 160, 90),
}
LIVER_COLOUR_RGB = (221, 130, 101)
REMNANT_COLOUR_RGB = (110, 190, 120)
RESECTED_COLOUR_RGB = (215, 60, 60)
TUMOUR_COLOUR_RGB = (255, 225, 0)
PORTAL_VEIN_COLOUR_RGB = (120, 70, 210)
HEPATIC_VEIN_COLOUR_RGB = (30, 110, 230)
IVC_COLOUR_RGB = (0, 60, 160)
_FALLBACK_COLOURS_RGB = ((140, 140, 140), (90, 200, 200), (200, 200, 90), (200, 90, 200))


def _darker(rgb: tuple[int, int, int], factor: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(round(c * factor)) for c in rgb)  # type: ignore[return-value]


def _build_label_table() -> dict[int, LabelEntry]:
    table = {}
    for k, rgb in SEGMENT_COLOURS_RGB.items():
        table[k] = LabelEntry(k, f"segment {k} kept", rgb, SCT_ANATOMICAL_STRUCTURE, SCT_LIVER)
        table[k + RESECTED_LABEL_OFFSET] = LabelEntry(
            k + RESECTED_LABEL_OFFSET, f"segment {k} resected", _darker(rgb),
            SCT_ANATOMICAL_STRUCTURE, SCT_LIVER)
    table[LIVER_KEPT_LABEL] = LabelEntry(
        LIVER_KEPT_LABEL, "liver kept", LIVER_COLOUR_RGB, SCT_ANATOMICAL_STRUCTURE, SCT_LIVER)
    table[LIVER_RESECTED_LABEL] = LabelEntry(
        LIVER_RESECTED_LABEL, "liver resected", _darker(LIVER_COLOUR_RGB),
        SCT_ANATOMICAL_STRUCTURE, SCT_LIVER)
    return dict(sorted(table.items()))


#: Fixed label values (1–9, 11–19) of the plan's ``labels`` array; tumours via :func:`label_entry`.
LABEL_TABLE: dict[int, LabelEntry] = _build_label_table()


def label_entry(value: int) -> LabelEntry:
    """Name, colour and codes of one label value, tumour instances included.

    Parameters
    ----------
    value : int
        A label value ≥ 1 of the scheme in this module's docstring.

    Returns
    -------
    LabelEntry

    Raises
    ------
    LabelError
        If ``value`` is 0, 10 or otherwise outside the scheme.
    """
    value = int(value)
    if value in LABEL_TABLE:
        return LABEL_TABLE[value]
    if value > TUMOUR_LABEL_OFFSET:
        i = value - TUMOUR_LABEL_OFFSET
        return LabelEntry(value, f"tumour {i}", TUMOUR_COLOUR_RGB, SCT_MORPHOLOGICALLY_ALTERED,
                          SCT_NEOPLASM)
    raise LabelError(
        f"label value {value} is not in the plan's label scheme (expected 1-9, 11-19 or "
        f"{TUMOUR_LABEL_OFFSET + 1}+ for tumours)")


def structure_entry(name: str, *, value: int = 1) -> LabelEntry:
    """Colour and codes of a named structure (mesh or extra segment), by its name.

    Known names: ``liver``, ``remnant``, ``resected``, ``segment K`` (optionally followed by
    ``kept``/``resected``), ``tumour I``, ``portal vein``, ``hepatic veins``/``hepatic vein``,
    ``ivc``/``inferior vena cava``; anything else gets a neutral colour and the *Liver* code is
    not claimed for it (it is coded as an anatomical structure of unknown type: Liver is used
    only for liver names).

    Parameters
    ----------
    name : str
        Structure name, case-insensitive.
    value : int, optional
        Label value to put in the entry (meaningful for extra segments only).

    Returns
    -------
    LabelEntry
    """
    key = " ".join(name.lower().replace("_", " ").split())
    words = key.split()
    if words and words[0] == "segment" and len(words) >= 2 and words[1].isdigit():
        k = int(words[1])
        rgb = SEGMENT_COLOURS_RGB.get(k, LIVER_COLOUR_RGB)
        if "resected" in words[2:]:
            rgb = _darker(rgb)
        return LabelEntry(value, name, rgb, SCT_ANATOMICAL_STRUCTURE, SCT_LIVER)
    if words and words[0] in ("tumour", "tumor", "tumours", "tumors", "lesion"):
        return LabelEntry(value, name, TUMOUR_COLOUR_RGB, SCT_MORPHOLOGICALLY_ALTERED, SCT_NEOPLASM)
    table = {
        "liver": (LIVER_COLOUR_RGB, SCT_LIVER),
        "functional liver": (LIVER_COLOUR_RGB, SCT_LIVER),
        "remnant": (REMNANT_COLOUR_RGB, SCT_LIVER),
        "liver remnant": (REMNANT_COLOUR_RGB, SCT_LIVER),
        "resected": (RESECTED_COLOUR_RGB, SCT_LIVER),
        "portal vein": (PORTAL_VEIN_COLOUR_RGB, SCT_PORTAL_VEIN),
        "portal veins": (PORTAL_VEIN_COLOUR_RGB, SCT_PORTAL_VEIN),
        "hepatic vein": (HEPATIC_VEIN_COLOUR_RGB, SCT_HEPATIC_VEIN),
        "hepatic veins": (HEPATIC_VEIN_COLOUR_RGB, SCT_HEPATIC_VEIN),
        "ivc": (IVC_COLOUR_RGB, SCT_IVC),
        "inferior vena cava": (IVC_COLOUR_RGB, SCT_IVC),
    }
    if key in table:
        rgb, prop = table[key]
        return LabelEntry(value, name, rgb, SCT_ANATOMICAL_STRUCTURE, prop)
    rgb = _FALLBACK_COLOURS_RGB[sum(map(ord, key)) % len(_FALLBACK_COLOURS_RGB)]
    return LabelEntry(value, name, rgb, SCT_ANATOMICAL_STRUCTURE, SCT_ANATOMICAL_STRUCTURE)


def structure_colour(name: str) -> tuple[float, float, float]:
    """Display colour (floats in [0, 1]) of a named structure; see :func:`structure_entry`."""
    return structure_entry(name).colour_float


def _present_labels(labels: np.ndarray) -> list[int]:
    return list(label_boxes(labels))


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of every label value present (:func:`hepatoplan.arrays.label_boxes`), after
    checking ``labels`` is an integer label map.

    Give the result to :func:`write_colour_table` and :func:`write_seg_nrrd` (``boxes=``) to
    search ``labels`` once for both.
    """
    from hepatoplan.arrays import label_boxes as boxes_of

    _check_labels(labels)
    return boxes_of(labels)


def _check_labels(labels: np.ndarray) -> None:
    if labels.ndim != 3:
        raise LabelError(f"labels must be a 3D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (
            np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0):
        raise LabelError(f"labels must be a non-negative integer array, got dtype {labels.dtype}")


def _check_affine(affine_ras: np.ndarray) -> np.ndarray:
    affine = np.asarray(affine_ras, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) \
            or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"affine_ras must be a finite, invertible 4x4 matrix, got {affine!r}")
    return affine


def write_colour_table(labels: np.ndarray, *, path: str | Path,
                       boxes: Mapping[int, tuple] | None = None) -> Path:
    """Write the 3D Slicer colour table of the label values present in ``labels``.

    Format: one line per value, ``value name R G B A`` with 0–255 components (names use ``_``
    for spaces, as Slicer colour tables require), after ``#`` comment lines. Background 0 is
    written with alpha 0.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The plan's label array (any grid).
    path : str or Path
        Output file, conventionally ``labels.ctbl`` next to ``labels.nii.gz``.
    boxes : mapping, optional
        :func:`label_boxes` of ``labels``, when already computed.

    Returns
    -------
    Path
    """
    path = Path(path)
    values = list(label_boxes(np.asarray(labels)) if boxes is None else boxes)
    lines = ["# hepatoplan label colour table (3D Slicer format): value name R G B A",
             f"# {len(values) + 1} values"]
    lines.append("0 background 0 0 0 0")
    for v in values:
        e = label_entry(v)
        r, g, b = e.colour_rgb
        lines.append(f"{v} {e.name.replace(' ', '_')} {r} {g} {b} 255")
    _atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    return path


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _slicer_terminology(entry: LabelEntry) -> str:
    cat_code, cat_meaning = entry.category
    type_code, type_meaning = entry.property_type
    return ("Segmentation category and type - 3D Slicer General Anatomy list"
            f"~SCT^{cat_code}^{cat_meaning}~SCT^{type_code}^{type_meaning}~^^"
            "~Anatomic codes - DICOM master list~^^~^^")


def write_seg_nrrd(
    labels: np.ndarray,
    *,
    affine_ras: np.ndarray,
    path: str | Path,
    extra_structures: Mapping[str, np.ndarray] | None = None,
    crop: bool = True,
    boxes: Mapping[int, tuple] | None = None,
) -> Path:
    """Write a 3D Slicer segmentation (``.seg.nrrd``) with named, coloured segments.

    Layer 0 holds the plan's labels (one segment per present label value, named and coloured
    from :func:`label_entry`). Each of ``extra_structures`` (e.g. vessels, which overlap the
    liver labels) gets its own layer with label value 1; with extras the file is 4D
    (``list domain domain domain``), as Slicer writes overlapping segments.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        Label array on the grid described by ``affine_ras``.
    affine_ras : ndarray, shape (4, 4)
        Voxel index -> RAS world mm. Converted to NRRD LPS ``space directions``/``space origin``.
    path : str or Path
        Output path; should end in ``.seg.nrrd``. Written atomically (gzip encoded).
    extra_structures : mapping of str to bool ndarray, optional
        Named masks on the same grid; empty masks are skipped with a log message.
    crop : bool
        Store only the box that holds every segment, as Slicer does (its ``space origin`` is
        the box's first voxel, ``Segmentation_ReferenceImageExtentOffset`` its index in the
        given grid); the voxels keep their world positions. False stores the whole grid.
    boxes : mapping, optional
        :func:`label_boxes` of ``labels``, when already computed.

    Returns
    -------
    Path

    Raises
    ------
    LabelError
        If ``labels`` is not a 3D non-negative integer array or has values outside the scheme.
    GeometryMismatchError
        If an extra structure is not on the labels' grid.
    """
    import nrrd

    labels = np.asarray(labels)
    affine = _check_affine(affine_ras)
    boxes = label_boxes(labels) if boxes is None else boxes
    values = list(boxes)
    extras = _checked_extras(extra_structures, labels.shape)

    segments: list[tuple[LabelEntry, int, int, tuple]] = []  # entry, layer, value, bounding box
    for v in values:
        segments.append((label_entry(v), 0, v, boxes[v]))
    for j, (name, mask) in enumerate(extras.items()):
        box = label_boxes(mask.view(np.uint8))[1]
        segments.append((structure_entry(name, value=1), j + 1, 1, box))

    # as Slicer saves segmentations: cropped to the segments' joint extent, with its offset in
    # the reference grid (Segmentation_ReferenceImageExtentOffset) and the origin moved there
    if crop and segments:
        start = np.min([[sl.start for sl in box] for *_, box in segments], axis=0)
        stop = np.max([[sl.stop for sl in box] for *_, box in segments], axis=0)
    else:
        start, stop = np.zeros(3, int), np.asarray(labels.shape)
    window = tuple(slice(int(a), int(b)) for a, b in zip(start, stop))
    dtype = np.uint8 if (not values or max(values) < 256) else np.uint16
    layers = [labels[window].astype(dtype, copy=False)]
    layers += [mask[window].astype(dtype) for mask in extras.values()]

    affine_lps = RAS_TO_LPS @ affine
    origin_lps = affine_lps[:3, :3] @ start + affine_lps[:3, 3]
    header: dict = {
        "type": "unsigned char" if dtype == np.uint8 else "unsigned short",
        "space": "left-posterior-superior",
        "space origin": origin_lps,
        "encoding": "gzip",
    }
    if len(layers) == 1:
        data = layers[0]
        header["space directions"] = affine_lps[:3, :3].T.copy()
        header["kinds"] = ["domain", "domain", "domain"]
    else:
        data = np.stack(layers, axis=0)
        directions = np.full((4, 3), np.nan)
        directions[1:] = affine_lps[:3, :3].T
        header["space directions"] = directions
        header["kinds"] = ["list", "domain", "domain", "domain"]

    header["Segmentation_MasterRepresentation"] = "Binary labelmap"
    header["Segmentation_ContainedRepresentationNames"] = "Binary labelmap|"
    header["Segmentation_ReferenceImageExtentOffset"] = " ".join(str(int(a)) for a in start)
    for i, (entry, layer, value, box) in enumerate(segments):
        r, g, b = entry.colour_float
        extent = " ".join(f"{sl.start - a} {sl.stop - 1 - a}" for sl, a in zip(box, start))
        p = f"Segment{i}_"
        header[p + "ID"] = f"Segment_{i + 1}"
        header[p + "Name"] = entry.name
        header[p + "NameAutoGenerated"] = "0"
        header[p + "Color"] = f"{r:.6f} {g:.6f} {b:.6f}"
        header[p + "ColorAutoGenerated"] = "0"
        header[p + "Layer"] = str(layer)
        header[p + "LabelValue"] = str(value)
        header[p + "Extent"] = extent
        header[p + "Tags"] = f"Segmentation.Status:inprogress|TerminologyEntry:{_slicer_terminology(entry)}|"

    path = Path(path)
    tmp = path.with_name(path.name + ".part.nrrd")
    # index_order "F": array axis 0 is NRRD's fastest axis (the layer axis when 4D).
    nrrd.write(str(tmp), data, header, index_order="F", compression_level=1)
    tmp.replace(path)
    log.info("wrote %s (%d segments, %d layers)", path, len(segments), len(layers))
    return path


def _checked_extras(extra_structures, shape) -> dict[str, np.ndarray]:
    extras = {}
    for name, mask in (extra_structures or {}).items():
        mask = np.asarray(mask)
        if mask.shape != tuple(shape):
            raise GeometryMismatchError(
                f"extra structure {name!r} has shape {mask.shape}, labels have {tuple(shape)}: "
                "pass masks on the labels' grid")
        mask = mask.astype(bool, copy=False)
        if not mask.any():
            log.info("extra structure %r is empty: not exported", name)
            continue
        extras[name] = mask
    return extras


class UnreferenceableSeriesError(InputError):
    """The source series lacks the UIDs a DICOM-SEG must reference (e.g. stripped by an
    anonymiser): no DICOM-SEG can be written for it."""


def _read_source_series(source_dicom_files: Sequence[str | Path], *, missing_uids: str = "error"):
    import pydicom

    files = [Path(f) for f in source_dicom_files]
    if not files:
        raise InputError("source_dicom_files is empty: give the files of the CT series the "
                         "labels were computed on")
    datasets = []
    for f in files:
        if not f.is_file():
            raise InputFileError(f"DICOM source file not found: {f}")
        try:
            datasets.append(pydicom.dcmread(f, stop_before_pixels=True))
        except Exception as exc:  # pydicom raises several types for a bad file
            raise InputFileError(f"cannot read DICOM file {f}: {exc}") from exc
    for ds, f in zip(datasets, files):
        # anonymisers sometimes blank these in the data set but keep them in the file meta
        meta = getattr(ds, "file_meta", None)
        for kw, meta_kw in (("SOPClassUID", "MediaStorageSOPClassUID"),
                            ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            if not str(ds.get(kw, "")) and meta is not None and str(meta.get(meta_kw, "")):
                log.info("%s: empty %s taken from the file meta %s", f, kw, meta_kw)
                setattr(ds, kw, meta.get(meta_kw))
    series = {str(ds.get("SeriesInstanceUID", "")) for ds in datasets}
    if len(series) != 1:
        raise InputError(f"source_dicom_files hold {len(series)} series ({sorted(series)}); "
                         "give the files of exactly one series")
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        if not str(datasets[0].get(kw, "")).strip():
            message = (f"the source DICOM series has an empty {kw} (anonymised?), so a DICOM-SEG "
                       f"cannot reference it fully (e.g. {files[0]})")
            if missing_uids == "error":
                raise UnreferenceableSeriesError(message)
            log.warning("%s: writing it anyway, referencing the source instances by SOP "
                        "Instance UID", message)
    for ds, f in zip(datasets, files):
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                   "Columns"):
            if kw not in ds:
                raise InputError(f"DICOM file {f} lacks {kw}: cannot place the segmentation")
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float)))
                        for ds in datasets])
    return [datasets[i] for i in order]


class _SliceSampler:
    """Samples a canonical volume on one source slice's pixel grid (rows, cols).

    The labels' grid must be the series' grid with axes permuted and/or flipped (as the
    canonical RAS grid of the series is); a plane is then a view of the volume.
    """

    def __init__(self, ds, inv_affine: np.ndarray, shape: tuple[int, int, int], affine_ras):
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        row_spacing_mm, col_spacing_mm = (float(v) for v in ds.PixelSpacing)
        flip = RAS_TO_LPS[:3, :3]  # its own inverse: LPS <-> RAS
        origin = inv_affine[:3, :3] @ (flip @ ipp) + inv_affine[:3, 3]
        step_col = inv_affine[:3, :3] @ (flip @ (iop[:3] * col_spacing_mm))
        step_row = inv_affine[:3, :3] @ (flip @ (iop[3:] * row_spacing_mm))
        parts = np.stack([origin, step_col, step_row])
        if np.max(np.abs(parts - np.round(parts))) > 1e-2:
            raise GeometryMismatchError(
                "the labels' grid is not the source DICOM series' grid: source slice "
                f"{ds.SOPInstanceUID} at IPP {ipp.tolist()} (IOP {iop.tolist()}, spacing "
                f"{[row_spacing_mm, col_spacing_mm]} mm) maps to canonical voxel "
                f"{origin.round(3).tolist()} with steps col {step_col.round(3).tolist()} row "
                f"{step_row.round(3).tolist()}; affine_ras is\n{affine_ras}. Resample the "
                "labels onto the series grid first")
        self.origin, self.step_col, self.step_row = (np.round(p).astype(np.int64) for p in parts)
        self.rows, self.cols = int(ds.Rows), int(ds.Columns)
        last = self.origin + (self.rows - 1) * self.step_row + (self.cols - 1) * self.step_col
        corners = np.stack([self.origin, last, self.origin + (self.rows - 1) * self.step_row,
                            self.origin + (self.cols - 1) * self.step_col])
        if corners.min() < 0 or np.any(corners.max(axis=0) >= np.asarray(shape)):
            raise GeometryMismatchError(
                f"source slice {ds.SOPInstanceUID} (IPP {ipp.tolist()}) lies outside the "
                f"labels' grid of shape {shape}: the labels do not cover the source series")
        unit = lambda v: np.count_nonzero(v) == 1 and np.abs(v).sum() == 1  # noqa: E731
        if not (unit(self.step_col) and unit(self.step_row)):
            raise GeometryMismatchError(
                f"source slice {ds.SOPInstanceUID}: its pixel grid is not the labels' grid up to "
                f"axis order and flips (column step {self.step_col.tolist()}, row step "
                f"{self.step_row.tolist()} in label voxels); resample the labels onto the series")
        self.axis_col = int(np.flatnonzero(self.step_col)[0])
        self.axis_row = int(np.flatnonzero(self.step_row)[0])
        self.axis_slice = 3 - self.axis_col - self.axis_row
        index: list = [None, None, None]
        index[self.axis_slice] = int(self.origin[self.axis_slice])
        index[self.axis_col] = self._axis_slice(self.axis_col, self.step_col, self.cols)
        index[self.axis_row] = self._axis_slice(self.axis_row, self.step_row, self.rows)
        self.index = tuple(index)

    def _axis_slice(self, axis: int, step: np.ndarray, n: int) -> slice:
        start, sign = int(self.origin[axis]), int(step[axis])
        stop = start + sign * n
        return slice(start, stop if stop >= 0 else None, sign)

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        plane = volume[self.index]
        return plane if self.axis_row < self.axis_col else plane.T


def write_dicom_seg(
    labels: np.ndarray,
    *,
    affine_ras: np.ndarray,
    source_dicom_files: Sequence[str | Path],
    path: str | Path,
    extra_structures: Mapping[str, np.ndarray] | None = None,
    series_description: str = "hepatoplan resection plan",
    series_number: int = 901,
    missing_uids: str = "error",
) -> Path:
    """Write the plan as a DICOM Segmentation (binary, highdicom) referencing the source series.

    One segment per label value present (named from :func:`label_entry`, SNOMED CT coded:
    Liver 10200004 for segments/liver parts, Neoplasm 108369006 for tumours) plus one per extra
    structure (Portal vein 32764006, Hepatic vein 8993003, Inferior vena cava 64131007, ...).
    Frames are written for the source slices that contain any segment, on the source pixel grid.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The plan's labels on a grid that is the source series' grid up to axis order and flips
        (e.g. canonical RAS of the series).
    affine_ras : ndarray, shape (4, 4)
        Voxel index of ``labels`` -> RAS world mm.
    source_dicom_files : sequence of path
        The files of the single CT series the plan was computed from (any order).
    path : str or Path
        Output ``.dcm`` file, written atomically.
    extra_structures : mapping of str to bool ndarray, optional
        Named masks on the labels' grid (e.g. ``{"portal vein": ..., "hepatic veins": ...}``);
        they may overlap the labels.
    series_description : str, optional
        SeriesDescription of the new series.
    series_number : int, optional
        SeriesNumber of the new series.
    missing_uids : {"error", "allow"}
        What to do when the source series has an empty Study, Series or Frame of Reference UID
        (some anonymisers blank them): raise :class:`UnreferenceableSeriesError`, or write the
        DICOM-SEG anyway (it then references the source images by SOP Instance UID, and copies
        the empty UIDs).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        If the files are not one readable series with geometry, or nothing is labelled.
    UnreferenceableSeriesError
        If the series has no Study/Series/FrameOfReference UID and ``missing_uids="error"``.
    GeometryMismatchError
        If ``labels`` are not on the series' grid.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    labels = np.asarray(labels)
    affine = _check_affine(affine_ras)
    values = _present_labels(labels)
    extras = _checked_extras(extra_structures, labels.shape)
    if not values and not extras:
        raise InputError("nothing to export: labels are all background and no extra structure")
    if missing_uids not in ("error", "allow"):
        raise InputError(f"missing_uids must be 'error' or 'allow', got {missing_uids!r}")
    datasets = _read_source_series(source_dicom_files, missing_uids=missing_uids)
    inv = np.linalg.inv(affine)
    samplers = [_SliceSampler(ds, inv, labels.shape, affine) for ds in datasets]

    entries = [label_entry(v) for v in values] + \
        [structure_entry(name, value=1) for name in extras]
    # Frames of the source slices that hold anything, on the source pixel grid. Without extra
    # structures the segments do not overlap: one array of segment numbers (F, R, C); with them,
    # one boolean plane per segment (F, R, C, S) as highdicom needs for overlapping segments.
    lut = np.zeros(int(max(values, default=0)) + 1, np.uint16 if len(entries) > 255 else np.uint8)
    for number, v in enumerate(values, start=1):
        lut[v] = number
    masks = list(extras.values())
    used = [i for i, sample in enumerate(samplers)
            if sample(labels).any() or any(sample(m).any() for m in masks)]
    if not used:
        raise InputError("nothing to export: no source slice intersects a labelled voxel")
    rows, cols = samplers[used[0]].rows, samplers[used[0]].cols
    if extras:
        pixel_array = np.zeros((len(used), rows, cols, len(entries)), bool)
    else:
        pixel_array = np.zeros((len(used), rows, cols), lut.dtype)
    for f, i in enumerate(used):
        numbers = lut[samplers[i](labels)]
        if extras:
            for n in range(1, len(values) + 1):
                pixel_array[f, ..., n - 1] = numbers == n
            for j, m in enumerate(masks):
                pixel_array[f, ..., len(values) + j] = samplers[i](m)
        else:
            pixel_array[f] = numbers
    used = [datasets[i] for i in used]

    algorithm = hd.AlgorithmIdentificationSequence(
        name="hepatoplan", family=codes.cid7162.MorphologicalOperations, version=__version__)
    descriptions = []
    for s, e in enumerate(entries):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=s + 1,
            segment_label=e.name,
            segmented_property_category=hd.sr.CodedConcept(e.category[0], "SCT", e.category[1]),
            segmented_property_type=hd.sr.CodedConcept(
                e.property_type[0], "SCT", e.property_type[1]),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*e.colour_rgb),
        ))
    seg = hd.seg.Segmentation(
        source_images=used,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="hepatoplan",
        manufacturer_model_name="hepatoplan",
        software_versions=__version__,
        device_serial_number="none",
        content_description=series_description[:64],
        content_label="HEPATOPLAN",
        series_description=series_description[:64],
    )
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    seg.save_as(tmp, enforce_file_format=True)
    tmp.replace(path)
    log.info("wrote %s (%d segments, %d source slices of series %s)", path, len(entries),
             len(used), used[0].SeriesInstanceUID)
    return path
