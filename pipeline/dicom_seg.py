"""DICOM Segmentation (DICOM-SEG) of the plan's labels, referencing the source CT series.

Patient coordinates are DICOM's (LPS); frames lie on the source series' own pixel grid, one
frame per referenced source slice (binary segmentation, highdicom). Segments are named, coloured
and coded by :mod:`hepatoplan.pipeline.labels` (DICOM PS3.16 codes; private codes, declared in
the Coding Scheme Identification Sequence, for structures without a standard one). The file is
written atomically (:mod:`hepatoplan.pipeline.outputs`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hepatoplan import __version__
from hepatoplan.arrays import bounding_box
from hepatoplan.checks import check_affine_ras
from hepatoplan.errors import GeometryMismatchError, InputError, InputFileError

from .io import LPS_TO_RAS
from .labels import PRIVATE_SCHEME, LabelEntry, check_extra_structures, label_boxes, label_entry, \
    structure_entry
from .outputs import atomic_file

log = logging.getLogger(__name__)


#: The UIDs a DICOM-SEG copies from (or references in) its source series; derived when empty.
SOURCE_UIDS = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")


def _read_source_series(source_dicom_files: Sequence[str | Path], *, warnings: list[str]):
    """The source slices' headers, in slice order, with every empty UID filled (in memory only).

    Anonymisers blank UIDs a DICOM-SEG must carry (highdicom refuses a source without a
    FrameOfReferenceUID; an empty Study/SeriesInstanceUID makes an invalid SEG). An empty
    SOP Class/Instance UID is first taken from the file meta; what is still empty is derived by
    :func:`_derived_uids`, and a sentence per derived UID is appended to ``warnings``. The
    files are never written to.
    """
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
            if not _text(ds, kw) and meta is not None and str(meta.get(meta_kw, "")):
                log.info("%s: empty %s taken from the file meta %s", f, kw, meta_kw)
                setattr(ds, kw, meta.get(meta_kw))
    series = {_text(ds, "SeriesInstanceUID") for ds in datasets}
    if len(series) != 1:
        raise InputError(f"source_dicom_files hold {len(series)} series ({sorted(series)}); "
                         "give the files of exactly one series")
    for ds, f in zip(datasets, files):
        for kw in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows",
                   "Columns"):
            if kw not in ds:
                raise InputError(f"DICOM file {f} lacks {kw}: cannot place the segmentation")
    iop = np.asarray(datasets[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    order = np.argsort([float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float)))
                        for ds in datasets], kind="stable")
    datasets = [datasets[i] for i in order]
    warnings.extend(_derived_uids(datasets, files[order[0]]))
    return datasets


def _text(ds, keyword: str) -> str:
    return str(ds.get(keyword, "") or "").strip()


def _derived_uids(datasets: list, example: Path) -> list[str]:
    """Fill the empty :data:`SOURCE_UIDS` (and SOP Instance UIDs) of ``datasets`` in place.

    A UID is derived with pydicom's ``generate_uid(entropy_srcs=...)`` (pydicom's root
    ``1.2.826.0.1.3680043.8.498.`` and a SHA-512 hash of the sources) from what identifies the
    series: its slices' SOP Instance UIDs (or, for a
    slice without one, its position and instance number) and, for the Study and Frame of
    Reference UIDs, the derived Series UID; so a rerun on the same series derives the same UIDs
    and every output of a plan (DICOM-SEG, SR) references the same ones. One sentence per UID
    derived.
    """
    from pydicom.uid import generate_uid

    def slice_key(ds) -> str:
        return _text(ds, "SOPInstanceUID") or f"{list(ds.ImagePositionPatient)}|{ds.get('InstanceNumber', '')}"

    content = sorted(slice_key(ds) for ds in datasets)
    derived = []
    for ds in datasets:
        if not _text(ds, "SOPInstanceUID"):
            ds.SOPInstanceUID = generate_uid(entropy_srcs=["SOPInstanceUID", slice_key(ds), *content])
            derived.append("SOPInstanceUID")
    for kw in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
        values = {_text(ds, kw) for ds in datasets}
        if values != {""}:
            continue
        uid = generate_uid(entropy_srcs=[kw, _text(datasets[0], "SeriesInstanceUID"), *content])
        for ds in datasets:
            setattr(ds, kw, uid)
        derived.append(kw)
    return [f"the source DICOM series has no {kw} (anonymised?; e.g. {example}): the DICOM outputs carry "
            "one derived from the series' content (the same on every run), which the source images do "
            "not carry" for kw in dict.fromkeys(derived)]


class _SliceSampler:
    """Samples a canonical volume on one source slice's pixel grid (rows, cols).

    The labels' grid must be the series' grid with axes permuted and/or flipped (as the
    canonical RAS grid of the series is); a plane is then a view of the volume.
    """

    def __init__(self, ds, inv_affine: np.ndarray, shape: tuple[int, int, int], affine_ras):
        iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
        ipp = np.asarray(ds.ImagePositionPatient, dtype=float)
        row_spacing_mm, col_spacing_mm = (float(v) for v in ds.PixelSpacing)
        flip = LPS_TO_RAS
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
    warnings: list[str] | None = None,
) -> Path:
    """Write the plan as a DICOM Segmentation (binary, highdicom) referencing the source series.

    One segment per label value present (named, coloured and coded by
    :func:`hepatoplan.pipeline.labels.label_entry`: Couinaud segments by DICOM CID 7170, liver
    parts as Liver, tumours as Neoplasm) plus one per extra structure (Portal vein, Hepatic vein,
    Inferior vena cava, ...). Frames are written for the source slices that contain any
    segment, on the source pixel grid.

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
    warnings : list of str, optional
        Receives one sentence per UID the source series lacks (empty Study, Series, Frame of
        Reference or SOP Instance UID, as some anonymisers leave them): the DICOM-SEG carries
        a UID derived from the series' content instead (the same on every run; see
        :func:`_derived_uids`), so it is valid DICOM. The source files are never modified.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        If the files are not one readable series with geometry, or nothing is labelled.
    GeometryMismatchError
        If ``labels`` are not on the series' grid.
    """
    labels = np.asarray(labels)
    affine = check_affine_ras(affine_ras)
    values = list(label_boxes(labels))
    extras = check_extra_structures(extra_structures, labels.shape)
    if not values and not extras:
        raise InputError("nothing to export: labels are all background and no extra structure")
    notes: list[str] = []
    datasets = _read_source_series(source_dicom_files, warnings=notes)
    inv = np.linalg.inv(affine)
    samplers = [_SliceSampler(ds, inv, labels.shape, affine) for ds in datasets]
    entries = [label_entry(v) for v in values] + [structure_entry(name, value=1) for name in extras]
    used, win, pixel_array = _frames(labels, values, list(extras.values()), samplers)
    sources = [datasets[i] for i in used]
    seg = _segmentation(sources, pixel_array, entries, plane_positions=[_window_position(ds, win) for ds in sources],
                        series_description=series_description, series_number=series_number)
    with atomic_file(path) as tmp:
        seg.save_as(tmp, enforce_file_format=True)
    for note in notes:
        log.warning("%s", note)
    if warnings is not None:
        warnings.extend(notes)
    log.info("wrote %s (%d segments, %d source slices of series %s)", path, len(entries),
             len(sources), sources[0].SeriesInstanceUID)
    return Path(path)


def _frames(labels: np.ndarray, values: list[int], masks: list[np.ndarray],
            samplers: list[_SliceSampler]) -> tuple[list[int], tuple[slice, slice], np.ndarray]:
    """The source slices that hold anything (their indices), the window (rows, columns of the
    source pixel grid) outside which no slice holds anything, and the frames: that window of each
    used slice. Without extra structures the segments do not overlap: one array of segment numbers
    (F, R, C); with them, one boolean plane per segment (F, R, C, S), as highdicom needs for
    overlapping segments. Work stays in the volumes' bounding boxes.
    """
    n_segments = len(values) + len(masks)
    lut = np.zeros(int(max(values, default=0)) + 1, np.uint16 if n_segments > 255 else np.uint8)
    for number, v in enumerate(values, start=1):
        lut[v] = number
    held = np.zeros(labels.shape, bool)  # where any volume has a voxel (looked for in its box)
    for volume in (labels, *masks):
        box = bounding_box(volume)
        held[box] |= volume[box] != 0
    used = [i for i, sample in enumerate(samplers) if sample(held).any()]
    if not used:
        raise InputError("nothing to export: no source slice intersects a labelled voxel")
    rows, cols = samplers[used[0]].rows, samplers[used[0]].cols
    # the frames' window: rows and columns where any used slice holds anything
    footprint = np.zeros((rows, cols), bool)
    for axis in {samplers[i].axis_slice for i in used}:
        across = np.broadcast_to(held.any(axis=axis, keepdims=True), held.shape)
        footprint |= samplers[next(i for i in used if samplers[i].axis_slice == axis)](across)
    win = bounding_box(footprint)
    if not masks:
        return used, win, np.stack([lut[samplers[i](labels)[win]] for i in used])
    # segment-major in memory (each segment's frames contiguous, as highdicom reads them), seen as
    # (F, R, C, S)
    planes = np.zeros((n_segments, len(used), win[0].stop - win[0].start, win[1].stop - win[1].start), bool)
    for f, i in enumerate(used):
        numbers = lut[samplers[i](labels)[win]]
        for n in range(1, len(values) + 1):
            planes[n - 1, f] = numbers == n
        for j, m in enumerate(masks):
            planes[len(values) + j, f] = samplers[i](m)[win]
    return used, win, np.moveaxis(planes, 0, -1)


def _window_position(ds, win: tuple[slice, slice]):
    """Plane position (LPS mm) of pixel (row, column) = (``win[0].start``, ``win[1].start``) of
    source slice ``ds``: the first pixel of a frame cropped to ``win``."""
    import highdicom as hd

    iop = np.asarray(ds.ImageOrientationPatient, dtype=float)
    row_spacing_mm, col_spacing_mm = (float(v) for v in ds.PixelSpacing)
    position = (np.asarray(ds.ImagePositionPatient, dtype=float) + win[1].start * col_spacing_mm * iop[:3]
                + win[0].start * row_spacing_mm * iop[3:])
    return hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, [float(v) for v in position])


def _segmentation(sources: list, pixel_array: np.ndarray, entries: list[LabelEntry], *, plane_positions: list,
                  series_description: str, series_number: int):
    """The highdicom Segmentation: one described segment per entry, frames at ``plane_positions``
    (the source slices' orientation and pixel spacing); private coding schemes declared when an
    entry uses one."""
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name="hepatoplan", family=codes.cid7162.MorphologicalOperations, version=__version__)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=s + 1,
        segment_label=e.name,
        segmented_property_category=hd.sr.CodedConcept(*e.category),
        segmented_property_type=hd.sr.CodedConcept(*e.property_type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*e.colour_rgb),
    ) for s, e in enumerate(entries)]
    first = sources[0]
    seg = hd.seg.Segmentation(
        source_images=sources,
        # as highdicom takes them from a single-frame source; given, because the frames are cropped
        pixel_measures=hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in first.PixelSpacing],
                                                slice_thickness=first.get("SliceThickness"),
                                                spacing_between_slices=first.get("SpacingBetweenSlices")),
        pixel_array=pixel_array,
        plane_positions=plane_positions,
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
    if any(PRIVATE_SCHEME in (e.category.scheme, e.property_type.scheme) for e in entries):
        scheme = Dataset()
        scheme.CodingSchemeDesignator = PRIVATE_SCHEME
        scheme.CodingSchemeName = "hepatoplan local codes for structures without a standard code"
        scheme.CodingSchemeResponsibleOrganization = "hepatoplan"
        seg.CodingSchemeIdentificationSequence = [*seg.get("CodingSchemeIdentificationSequence", []),
                                                  scheme]
    return seg
