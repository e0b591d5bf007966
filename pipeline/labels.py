"""The plan's labels: the label-value scheme, names, colours and coded concepts, in one place.

Every output that names or colours a structure takes it from here: ``labels.nii.gz`` and its
colour table, the Slicer ``.seg.nrrd`` and the DICOM-SEG (:mod:`hepatoplan.pipeline.seg_nrrd`,
:mod:`hepatoplan.pipeline.dicom_seg`), the meshes and previews (:mod:`hepatoplan.pipeline.meshing`,
:mod:`hepatoplan.pipeline.mesh_files`, :mod:`hepatoplan.pipeline.rendering`) and the HTML report.

Label values
------------
The plan's ``labels`` array (uint8, uint16 beyond 235 tumours; canonical RAS+):

======  ==========================================================
value   meaning
======  ==========================================================
0       background
1–8     Couinaud segment *k* kept in the remnant
9       liver kept, without segment label
11–18   Couinaud segment *k* (= value − 10) resected
19      resected liver, without segment label
20 + i  tumour instance *i* (i ≥ 1), resected or not
======  ==========================================================

:func:`label_map` builds it; :func:`structures_from_labels` turns it back into named masks.

Coded concepts
--------------
Each label value and named structure carries a DICOM segmented property category and type
(:class:`Code`), from DICOM PS3.16: categories from CID 7150 *Segmentation Property Category*
(Anatomical Structure SCT 91723000, Morphologically Abnormal Structure SCT 49755003); Couinaud
segments I–VIII from CID 7170 *Couinaud Liver Segment* (SCT 71133005, 277956007 … 277962002;
kept and resected parts of a segment carry the segment's code, the label's name says which part);
Liver SCT 10200004, Neoplasm SCT 108369006, Portal vein SCT 32764006, Hepatic vein SCT 8993003,
Inferior vena cava SCT 64131007. The codes are written here as data (importing pydicom's code
dictionary takes about 1 s) and ``tests/test_labels.py`` checks each against pydicom's copy of
PS3.16. A structure with no standard code (an extra structure of an unknown name) gets a private
code, as DICOM PS3.3 §8.2 provides for concepts without one: coding scheme designator
:data:`PRIVATE_SCHEME` (a "99" prefix marks a private scheme), the name as meaning.

Colours
-------
sRGB, 0–255. Segments: :data:`SEGMENT_COLOURS_RGB` (a resected segment is drawn darker). Tumour
*i*: :func:`tumour_colour_rgb`, a deterministic palette whose colours all differ (fully saturated
hues stepped by the golden angle on an arc that leaves out the veins' blues and violets).
"""

from __future__ import annotations

import colorsys
import logging
import re
from dataclasses import dataclass
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from hepatoplan.arrays import bounding_box
from hepatoplan.arrays import label_boxes as _label_boxes
from hepatoplan.errors import GeometryMismatchError, InputError, LabelError

log = logging.getLogger(__name__)

#: Liver kept without a segment label.
LIVER_KEPT_LABEL = 9
#: Offset between a kept segment's label and the same segment's resected label.
RESECTED_LABEL_OFFSET = 10
#: Resected liver without a segment label.
LIVER_RESECTED_LABEL = LIVER_KEPT_LABEL + RESECTED_LABEL_OFFSET
#: First tumour label: tumour instance ``i`` is ``TUMOUR_LABEL_OFFSET + i``.
TUMOUR_LABEL_OFFSET = 20


class Code(NamedTuple):
    """A coded concept (DICOM Basic Code Sequence: value, coding scheme designator, meaning)."""

    value: str
    scheme: str
    meaning: str


#: Designator of hepatoplan's private codes, for concepts without a standard code (PS3.3 §8.2).
PRIVATE_SCHEME = "99HEPATOPLAN"

# DICOM PS3.16 CID 7150 (categories)
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
# types
LIVER = Code("10200004", "SCT", "Liver")
NEOPLASM = Code("108369006", "SCT", "Neoplasm")
PORTAL_VEIN = Code("32764006", "SCT", "Portal vein")
HEPATIC_VEIN = Code("8993003", "SCT", "Hepatic vein")
INFERIOR_VENA_CAVA = Code("64131007", "SCT", "Inferior vena cava")
#: DICOM PS3.16 CID 7170 "Couinaud Liver Segment": segment k -> its SNOMED CT code.
COUINAUD_SEGMENTS: dict[int, Code] = {
    k: Code(value, "SCT", f"Couinaud hepatic segment {roman}")
    for k, (value, roman) in enumerate([
        ("71133005", "I"), ("277956007", "II"), ("277957003", "III"), ("277958008", "IV"),
        ("277959000", "V"), ("277960005", "VI"), ("277961009", "VII"), ("277962002", "VIII"),
    ], start=1)
}

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
PORTAL_VEIN_COLOUR_RGB = (120, 70, 210)
HEPATIC_VEIN_COLOUR_RGB = (30, 110, 230)
IVC_COLOUR_RGB = (0, 60, 160)
_FALLBACK_COLOURS_RGB = ((140, 140, 140), (90, 200, 200), (200, 200, 90), (200, 90, 200))
#: Darkening factor of a resected part's colour.
RESECTED_SHADE = 0.55

#: Tumour palette: hue of tumour 1 in degrees (yellow, sRGB (255, 225, 0)) ...
TUMOUR_FIRST_HUE_DEG = 52.94
#: ... the arc of hues tumours take (start, length in degrees): from 285° through red, yellow and
#: green to 195°, leaving out the veins' blues and violets (hepatic 215°, IVC 218°, portal 260°) ...
TUMOUR_HUE_ARC_DEG = (285.0, 270.0)
#: ... and the step along the arc between consecutive tumours, as a fraction of it (1 − 1/φ:
#: the golden angle, so that consecutive tumours lie far apart and no two share a hue).
TUMOUR_HUE_STEP = 0.3819660112501051


def tumour_colour_rgb(instance: int) -> tuple[int, int, int]:
    """Display colour (sRGB, 0–255) of tumour ``instance`` (≥ 1): distinct for every instance.

    Hue ``start + length · frac(u1 + (i − 1) · step)`` on :data:`TUMOUR_HUE_ARC_DEG` (``u1`` puts
    tumour 1 at :data:`TUMOUR_FIRST_HUE_DEG`), full saturation and value.
    """
    start_deg, length_deg = TUMOUR_HUE_ARC_DEG
    first = ((TUMOUR_FIRST_HUE_DEG - start_deg) % 360.0) / length_deg
    hue_deg = start_deg + length_deg * ((first + (int(instance) - 1) * TUMOUR_HUE_STEP) % 1.0)
    rgb = colorsys.hsv_to_rgb((hue_deg % 360.0) / 360.0, 1.0, 1.0)
    return tuple(int(round(255 * c)) for c in rgb)  # type: ignore[return-value]


@dataclass(frozen=True)
class LabelEntry:
    """Name, colour and coded meaning of one label value or named structure.

    Attributes
    ----------
    value : int
        Label value (in the plan's ``labels`` array, or in a layer of its own).
    name : str
        Human-readable name (also the Slicer and DICOM segment label).
    colour_rgb : tuple of int
        Display colour, sRGB 0–255 each.
    category : Code
        Segmented property category (DICOM CID 7150).
    property_type : Code
        Segmented property type.
    """

    value: int
    name: str
    colour_rgb: tuple[int, int, int]
    category: Code
    property_type: Code

    @property
    def colour_float(self) -> tuple[float, float, float]:
        """Colour as floats in [0, 1]."""
        return tuple(c / 255.0 for c in self.colour_rgb)  # type: ignore[return-value]


def _darker(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return tuple(int(round(c * RESECTED_SHADE)) for c in rgb)  # type: ignore[return-value]


def _segment_entry(value: int, name: str, k: int, *, resected: bool) -> LabelEntry:
    rgb = SEGMENT_COLOURS_RGB.get(k, LIVER_COLOUR_RGB)
    return LabelEntry(value, name, _darker(rgb) if resected else rgb, ANATOMICAL_STRUCTURE,
                      COUINAUD_SEGMENTS.get(k, LIVER))


def _tumour_entry(value: int, name: str, instance: int) -> LabelEntry:
    return LabelEntry(value, name, tumour_colour_rgb(instance), MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
                      NEOPLASM)


def _build_label_table() -> dict[int, LabelEntry]:
    table = {LIVER_KEPT_LABEL: LabelEntry(LIVER_KEPT_LABEL, "liver kept", LIVER_COLOUR_RGB,
                                          ANATOMICAL_STRUCTURE, LIVER),
             LIVER_RESECTED_LABEL: LabelEntry(LIVER_RESECTED_LABEL, "liver resected",
                                              _darker(LIVER_COLOUR_RGB), ANATOMICAL_STRUCTURE, LIVER)}
    for k in SEGMENT_COLOURS_RGB:
        table[k] = _segment_entry(k, f"segment {k} kept", k, resected=False)
        resected = k + RESECTED_LABEL_OFFSET
        table[resected] = _segment_entry(resected, f"segment {k} resected", k, resected=True)
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
        return _tumour_entry(value, f"tumour {i}", i)
    raise LabelError(
        f"label value {value} is not in the plan's label scheme (expected 1-9, 11-19 or "
        f"{TUMOUR_LABEL_OFFSET + 1}+ for tumours)")


#: Named structures that are not label values: colour and property type.
_NAMED = {
    "liver": (LIVER_COLOUR_RGB, LIVER),
    "functional liver": (LIVER_COLOUR_RGB, LIVER),
    "remnant": (REMNANT_COLOUR_RGB, LIVER),
    "liver remnant": (REMNANT_COLOUR_RGB, LIVER),
    "resected": (RESECTED_COLOUR_RGB, LIVER),
    "portal vein": (PORTAL_VEIN_COLOUR_RGB, PORTAL_VEIN),
    "portal veins": (PORTAL_VEIN_COLOUR_RGB, PORTAL_VEIN),
    "hepatic vein": (HEPATIC_VEIN_COLOUR_RGB, HEPATIC_VEIN),
    "hepatic veins": (HEPATIC_VEIN_COLOUR_RGB, HEPATIC_VEIN),
    "ivc": (IVC_COLOUR_RGB, INFERIOR_VENA_CAVA),
    "inferior vena cava": (IVC_COLOUR_RGB, INFERIOR_VENA_CAVA),
}
_TUMOUR_WORDS = ("tumour", "tumor", "tumours", "tumors", "lesion")


def private_code(name: str) -> Code:
    """hepatoplan's private code of a concept without a standard code: value from the name (16
    characters at most, as DICOM's SH), scheme :data:`PRIVATE_SCHEME`, the name as meaning."""
    value = re.sub(r"[^A-Z0-9]+", "_", name.upper()).strip("_")[:16] or "STRUCTURE"
    return Code(value, PRIVATE_SCHEME, name[:64])


def structure_entry(name: str, *, value: int = 1) -> LabelEntry:
    """Colour and codes of a named structure (mesh or extra segment), by its name.

    Known names (case-insensitive): ``liver``, ``remnant``, ``resected``, ``segment K``
    (optionally followed by ``kept``/``resected``), ``tumour I``, ``portal vein``,
    ``hepatic veins``/``hepatic vein``, ``ivc``/``inferior vena cava``. Anything else gets a
    neutral colour and a private code (:func:`private_code`): no standard concept is claimed
    for it.

    Parameters
    ----------
    name : str
        Structure name.
    value : int, optional
        Label value to put in the entry (meaningful for extra segments only).

    Returns
    -------
    LabelEntry
    """
    key = " ".join(name.lower().replace("_", " ").split())
    words = key.split()
    if len(words) >= 2 and words[0] == "segment" and words[1].isdigit():
        return _segment_entry(value, name, int(words[1]), resected="resected" in words[2:])
    if words and words[0] in _TUMOUR_WORDS:
        instance = int(words[1]) if len(words) >= 2 and words[1].isdigit() else 1
        return _tumour_entry(value, name, instance)
    if key in _NAMED:
        rgb, prop = _NAMED[key]
        return LabelEntry(value, name, rgb, ANATOMICAL_STRUCTURE, prop)
    rgb = _FALLBACK_COLOURS_RGB[sum(map(ord, key)) % len(_FALLBACK_COLOURS_RGB)]
    return LabelEntry(value, name, rgb, ANATOMICAL_STRUCTURE, private_code(name))


def structure_colour(name: str) -> tuple[float, float, float]:
    """Display colour (floats in [0, 1]) of a named structure; see :func:`structure_entry`."""
    return structure_entry(name).colour_float


def default_colours(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Display colours (floats in [0, 1]) by structure name (:func:`structure_colour`)."""
    return {name: structure_colour(name) for name in names}


#: Structure kinds (:func:`structure_kind`) that are liver parenchyma.
PARENCHYMA_KINDS = ("segment", "remnant", "resected", "liver")


def structure_kind(name: str) -> str:
    """Role of a structure by its name: segment, tumour, remnant, resected, liver or other."""
    key = name.lower()
    if key.startswith("segment"):
        return "segment"
    if key.startswith(("tumour", "tumor", "lesion")):
        return "tumour"
    if key in ("remnant", "liver remnant"):
        return "remnant"
    if key.startswith("resected"):
        return "resected"
    if key in ("liver", "functional liver"):
        return "liver"
    return "other"  # vessels and anything else


# ---- the label map -----------------------------------------------------------------------------

def label_map(*, liver: np.ndarray, segments: np.ndarray | None, tumours: np.ndarray | None,
              resected: np.ndarray | None) -> np.ndarray:
    """Combine segments, resection and tumours into the plan's label map (scheme above).

    Parameters
    ----------
    liver : ndarray of bool, shape (X, Y, Z)
    segments : ndarray of int, optional
        Couinaud labels 1–8 (0 = none) on the same grid.
    tumours : ndarray of int, optional
        Tumour instances 1..n (0 = none); labelled wherever given, also outside ``liver``.
    resected : ndarray of bool, optional
        The removed part.

    Returns
    -------
    ndarray of uint8 (uint16 beyond 235 tumours)
    """
    n_tumours = 0 if tumours is None else int(tumours.max(initial=0))
    dtype = np.uint8 if n_tumours + TUMOUR_LABEL_OFFSET < 256 else np.uint16
    labels = np.zeros(liver.shape, dtype)
    box = bounding_box(liver)  # nothing but tumours lies outside it: written box by box
    within, in_liver = labels[box], liver[box]
    kept = LIVER_KEPT_LABEL if segments is None else np.where(segments[box] > 0, segments[box], LIVER_KEPT_LABEL)
    np.copyto(within, kept, where=in_liver, casting="unsafe")
    if resected is not None:
        np.add(within, RESECTED_LABEL_OFFSET, out=within, where=resected[box] & in_liver)
    if tumours is not None and n_tumours:
        box = bounding_box(tumours)
        np.add(tumours[box], TUMOUR_LABEL_OFFSET, out=labels[box], where=tumours[box] > 0, dtype=dtype,
               casting="unsafe")
    return labels


def check_labels(labels: np.ndarray) -> None:
    """Raise :class:`LabelError` unless ``labels`` is a 3D non-negative integer array."""
    if labels.ndim != 3:
        raise LabelError(f"labels must be a 3D array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or (
            np.issubdtype(labels.dtype, np.signedinteger) and labels.size and labels.min() < 0):
        raise LabelError(f"labels must be a non-negative integer array, got dtype {labels.dtype}")


def label_boxes(labels: np.ndarray) -> dict[int, tuple[slice, slice, slice]]:
    """Bounding box of every label value present (:func:`hepatoplan.arrays.label_boxes`), after
    checking ``labels`` is an integer label map (:func:`check_labels`).

    Computed once per plan and handed to the colour table, the ``.seg.nrrd`` writer and
    :func:`structures_from_labels` (``boxes=``), so ``labels`` is searched once for all.
    """
    check_labels(labels)
    return _label_boxes(labels)


def check_extra_structures(extra_structures: Mapping[str, np.ndarray] | None,
                           shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Named masks exported beside the labels (e.g. vessels), as bool arrays; empty ones dropped.

    Raises
    ------
    GeometryMismatchError
        If a mask's shape is not the labels' ``shape``.
    """
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


# ---- label map -> named masks ------------------------------------------------------------------

class LabelStructures(Mapping):
    """Read-only mapping name -> boolean mask, computed from a label array on each access.

    Holds no mask: meshing structure after structure then needs one mask at a time (a
    512×512×300 grid makes each mask 79 MB; the ~16 structures of a plan would need 1.3 GB).
    """

    def __init__(self, labels: np.ndarray, selectors: dict[str, tuple[int, ...]],
                 vessels: Mapping[str, np.ndarray], boxes: Mapping):
        self._labels = labels
        self._selectors = selectors
        self._boxes = boxes  # label value -> its bounding box (slices)
        self._vessels = dict(vessels)
        self._names = list(selectors) + list(self._vessels)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._vessels:
            return self._vessels[name]
        return _select(self._labels, self._selectors[name])  # KeyError for unknown names

    def crop(self, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The mask inside the bounding box of its label values, and the box's first voxel."""
        if name in self._vessels:
            mask = self[name]
            box = bounding_box(mask)
            return mask[box], tuple(sl.start for sl in box)
        box = self._box(name)
        return _select(self._labels[box], self._selectors[name]), tuple(sl.start for sl in box)

    def box_voxels(self, name: str) -> int:
        """Voxels in the box :meth:`crop` cuts (a vessel: the whole grid): a measure of the work of meshing it."""
        if name in self._vessels:
            return self._labels.size
        return int(np.prod([sl.stop - sl.start for sl in self._box(name)]))

    def _box(self, name: str) -> tuple[slice, slice, slice]:
        parts = [self._boxes[v] for v in self._selectors[name] if v in self._boxes]
        return tuple(slice(min(p[a].start for p in parts), max(p[a].stop for p in parts)) for a in range(3))

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _select(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """Mask of the voxels of ``labels`` holding any of ``values`` (a run of values: two comparisons)."""
    if len(values) > 2 and values == tuple(range(values[0], values[-1] + 1)):
        return (labels >= values[0]) & (labels <= values[-1])
    mask = labels == values[0]
    for v in values[1:]:
        mask |= labels == v
    return mask


def _selectors(present: set[int], *, segments: bool) -> dict[str, tuple[int, ...]]:
    """Structure name -> the label values it is made of (see :func:`structures_from_labels`)."""
    selectors: dict[str, tuple[int, ...]] = {}
    if segments:
        for k in range(1, 9):
            values = tuple(v for v in (k, k + RESECTED_LABEL_OFFSET) if v in present)
            if values:
                selectors[f"segment {k}"] = values
    kept_values = tuple(range(1, LIVER_KEPT_LABEL + 1))
    resected_values = tuple(v + RESECTED_LABEL_OFFSET for v in kept_values)
    resected = any(v in present for v in resected_values)
    if any(v in present for v in kept_values):  # without a resection the kept liver is the whole liver
        selectors["remnant" if resected else "liver"] = kept_values
    if resected:
        selectors["resected"] = resected_values
    for value in sorted(v for v in present if v > TUMOUR_LABEL_OFFSET):
        selectors[f"tumour {value - TUMOUR_LABEL_OFFSET}"] = (value,)
    return selectors


def structures_from_labels(
    labels: np.ndarray,
    *,
    vessels: Mapping[str, np.ndarray] | None = None,
    segments: bool = True,
    boxes: Mapping[int, tuple[slice, slice, slice]] | None = None,
) -> LabelStructures:
    """Named boolean masks of the plan's label array (scheme in this module's docstring).

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The plan's labels.
    vessels : mapping of str to bool ndarray, optional
        Extra structures to add as they are (e.g. ``{"portal vein": ..., "hepatic veins": ...}``).
    segments : bool
        Add ``segment k`` masks (kept and resected parts of Couinaud segment k together).
    boxes : mapping of int to 3 slices, optional
        Bounding box of every label value present (:func:`label_boxes`), to search ``labels``
        once; found here when not given.

    Returns
    -------
    LabelStructures
        A mapping (masks computed when accessed) with keys ``segment 1``…``segment 8`` (those
        present), ``remnant`` (1–9; ``liver`` when nothing is resected), ``resected`` (11–19),
        ``tumour i`` (each present instance), then the non-empty vessels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a 3D integer array, got {labels.dtype} {labels.shape}")
    if boxes is None:
        boxes = _label_boxes(labels)
    checked = {}
    for name, mask in (vessels or {}).items():
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise InputError(f"vessel mask {name!r} has shape {mask.shape}, labels {labels.shape}")
        mask = mask.astype(bool, copy=False)
        if mask.any():
            checked[name] = mask
    return LabelStructures(labels, _selectors(set(boxes), segments=segments), checked, boxes)
