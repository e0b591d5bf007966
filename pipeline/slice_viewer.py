"""The slice viewer of ``report.html``: the CT with the plan's label map over it, in three planes.

:func:`slice_viewer_data` crops the CT, the label map and the vessel masks to the liver with a
margin, stores the CT as 8-bit grey levels (a fixed intensity range, linear; window presets
choose the displayed part of it) and the labels and vessels as integer arrays, each deflated and
base64-encoded. :func:`slice_viewer_html` wraps them with the viewer's script
(``pipeline/assets/slices.js``, a 2D-canvas viewer of hepatoplan's own, no library): axial,
coronal and sagittal views in radiological display convention (patient's right on the screen's
left on axial and coronal views, anterior up on axial, superior up on coronal and sagittal,
anterior on the left of sagittal views), each drawn to scale in millimetres.

Why not NiiVue: its browser bundle (``@niivue/niivue`` 0.69, ``dist/niivue.umd.js``) is 2.3 MB,
which every report would carry, and it needs WebGL2; the 2D canvas viewer is about 15 kB,
draws in any browser (also without a GPU) and reads the label scheme of
:mod:`hepatoplan.pipeline.labels` directly, with the toggles and tumour table the report needs.

Arrays are canonical RAS+ (axis 0 → patient Right, 1 → Anterior, 2 → Superior) on the CT's grid.
"""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Mapping

import numpy as np
from isal import isal_zlib

from hepatoplan.arrays import joint_box, padded_box
from hepatoplan.errors import InputError

from .labels import (HEPATIC_VEIN_COLOUR_RGB, PORTAL_VEIN_COLOUR_RGB, RESECTED_COLOUR_RGB, RESECTED_LABEL_OFFSET,
                     TUMOUR_LABEL_OFFSET, label_boxes, label_entry)

#: Bits of the stored vessel layer, by structure name.
VESSEL_BITS = {"portal vein": 1, "hepatic veins": 2}
_VESSEL_COLOURS_RGB = {"portal vein": PORTAL_VEIN_COLOUR_RGB, "hepatic veins": HEPATIC_VEIN_COLOUR_RGB}


@dataclass(frozen=True)
class SliceViewerParams:
    """Constants of the slice viewer's data.

    Attributes
    ----------
    margin_mm : float
        Added on every side of the box of the labelled voxels (liver and tumours) before cropping:
        enough to judge the liver's border against its neighbours (chosen by eye on IRCADb 01
        and the demo).
    ct_range_hu : (float, float)
        CT intensities stored as grey levels 0–255, linearly (1.57 HU per level); values outside
        are clipped. The soft-tissue window (W 400, L 40), which contains the liver window.
    windows_hu : dict of str to (level, width)
        CT window presets in HU. ``liver``: W 150 L 90, a narrow window centred on liver
        parenchyma in the portal-venous phase (about 100–110 HU; Radiopaedia's unenhanced liver
        window is W 150 L 30); ``soft tissue``: W 400 L 40 (Radiopaedia, "Windowing (CT)").
    mr_percentiles : (float, float)
        For MR (arbitrary units): the stored range is this pair of percentiles of the cropped
        image; the presets are ``full`` (the stored range) and ``contrast`` (its middle 60 %).
    max_voxels : int
        Budget of stored voxels: a larger crop is subsampled by an integer step in-plane (then
        along the slices) until it fits. 16 M voxels keep a report ≤ 25 MB: the CT deflates to
        about 0.6 byte per voxel (IRCADb 01), base64 adds a third, so about 13 MB.
    opacity_percent : float
        Initial opacity of the label overlay.
    """

    margin_mm: float = 10.0
    ct_range_hu: tuple[float, float] = (-160.0, 240.0)
    windows_hu: dict = field(default_factory=lambda: {"liver": (90.0, 150.0), "soft tissue": (40.0, 400.0)})
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    max_voxels: int = 16_000_000
    opacity_percent: float = 45.0


def _packed(array: np.ndarray) -> str:
    """zlib-format deflated (ISA-L level 1), base64-encoded bytes of ``array`` in C order (axis 2
    fastest).

    On IRCADb 01's crop (98 × 272 × 342) ISA-L's level 1 takes 0.03 s of CPU for the CT's plane
    differences (6.66 MB; zlib's ``Z_RLE`` level 1, used before, 0.11 s for 6.59 MB) and 0.002 s
    for the label layer (165 kB; zlib level 6 0.08 s for 113 kB): the page grows ~1 % and takes
    ~0.15 s less CPU to make. The viewer inflates any zlib stream (``DecompressionStream("deflate")``).
    """
    packer = isal_zlib.compressobj(1)
    return base64.b64encode(packer.compress(np.ascontiguousarray(array).data) + packer.flush()).decode("ascii")


def _scaled_shift(step, offset) -> np.ndarray:
    """Stored index → full-grid index (every ``step``-th voxel from ``offset``), homogeneous."""
    matrix = np.diag([*map(float, step), 1.0])
    matrix[:3, 3] = offset
    return matrix


def _delta(levels: np.ndarray) -> np.ndarray:
    """Differences of consecutive planes along axis 0, modulo 256 (the first plane as it is): the
    CT's neighbouring voxels are alike, so these deflate smaller (IRCADb 01's crop: 0.61 byte per
    voxel instead of 0.77); the viewer adds them back up."""
    return np.diff(levels, axis=0, prepend=np.zeros((1, *levels.shape[1:]), np.uint8))


def _crop(boxes: Mapping[int, tuple[slice, ...]], shape, spacing_mm, params: SliceViewerParams
          ) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """The crop box (all labels + margin) and the subsampling step per axis that fits the budget."""
    if not boxes:
        raise InputError("the slice viewer needs a label map with labelled voxels (the liver); found none")
    pad = [int(math.ceil(params.margin_mm / s)) for s in spacing_mm]
    box = padded_box(joint_box(boxes.values()), pad, shape)
    size = [b.stop - b.start for b in box]
    step = [1, 1, 1]
    while math.prod(math.ceil(n / s) for n, s in zip(size, step)) > params.max_voxels:
        axis = 2 if step[0] > step[2] * 2 else None  # in-plane first, the slices only when in-plane is 2× coarser
        for a in ((0, 1) if axis is None else (axis,)):
            step[a] += 1
    return tuple(slice(b.start, b.stop, s) for b, s in zip(box, step)), tuple(step)


def _ct_levels(ct: np.ndarray, modality: str, params: SliceViewerParams
               ) -> tuple[np.ndarray, tuple[float, float], str, dict[str, tuple[float, float]], str]:
    """Grey levels 0–255, the stored range, its unit, the window presets and the initial one."""
    if modality.upper() == "CT":
        lo, hi = params.ct_range_hu
        unit, windows, initial = "HU", dict(params.windows_hu), next(iter(params.windows_hu))
    else:
        lo, hi = (float(v) for v in np.percentile(ct, params.mr_percentiles))
        hi = hi if hi > lo else lo + 1.0
        unit, initial = "arbitrary units", "full"
        windows = {"full": ((lo + hi) / 2, hi - lo), "contrast": ((lo + hi) / 2, 0.6 * (hi - lo))}

    def level(values):
        return np.clip(np.rint((values - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)

    if ct.dtype == np.int16:  # one table look-up per voxel: the table's index is the int16's bit pattern
        levels = level(np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.float32))[ct.view(np.uint16)]
    else:
        levels = level(ct.astype(np.float32))
    return levels, (float(lo), float(hi)), unit, windows, initial


def _classes(values: np.ndarray) -> list[dict]:
    """Name, colour and group of every label value present (the scheme of :mod:`.labels`)."""
    out = []
    for value in values.tolist():
        entry = label_entry(value)
        group = ("tumours" if value > TUMOUR_LABEL_OFFSET else
                 "resected" if value > RESECTED_LABEL_OFFSET else "segments")
        out.append({"value": int(value), "name": entry.name, "rgb": list(entry.colour_rgb), "group": group})
    return out


def _tumour_rows(labels: np.ndarray, boxes: Mapping[int, tuple[slice, ...]],
                 report: Mapping[str, Any] | None) -> list[dict]:
    """One row per tumour: where to go (the tumour voxel nearest its centroid, full-grid index),
    its colour and what the report says of it."""
    records = {}
    resection = (report or {}).get("resection") or {}
    for t in resection.get("tumours") or []:
        if isinstance(t, Mapping) and "id" in t:
            records[int(t["id"])] = t
    volumes = ((report or {}).get("volumes_ml") or {}).get("tumours") or {}
    rows = []
    for value in sorted(v for v in boxes if v > TUMOUR_LABEL_OFFSET):
        tumour_id = value - TUMOUR_LABEL_OFFSET
        sub = boxes[value]
        voxels = np.argwhere(labels[sub] == value) + [s.start for s in sub]
        centre = voxels.mean(axis=0)
        at = voxels[np.argmin(((voxels - centre) ** 2).sum(axis=1))]
        record = records.get(tumour_id, {})
        rows.append({
            "id": tumour_id, "value": value, "rgb": list(label_entry(value).colour_rgb),
            "at": [int(v) for v in at],
            "volume_ml": record.get("volume_ml", volumes.get(str(tumour_id))),
            "status": record.get("status"), "min_margin_mm": record.get("min_margin_mm"),
        })
    return rows


def slice_viewer_data(
    ct: np.ndarray,
    labels: np.ndarray,
    *,
    affine_ras: np.ndarray,
    vessels: Mapping[str, np.ndarray] | None = None,
    report: Mapping[str, Any] | None = None,
    modality: str = "CT",
    boxes: Mapping[int, tuple[slice, ...]] | None = None,
    params: SliceViewerParams = SliceViewerParams(),
) -> dict:
    """The JSON-able data of the slice viewer.

    Parameters
    ----------
    ct : ndarray, shape (X, Y, Z)
        CT in HU (or MR intensities), canonical RAS+.
    labels : ndarray of int, shape (X, Y, Z)
        The plan's label map on the same grid (scheme of :mod:`hepatoplan.pipeline.labels`).
    affine_ras : ndarray, shape (4, 4)
        Canonical index → RAS world mm.
    vessels : mapping of str to bool ndarray, optional
        ``portal vein`` and/or ``hepatic veins`` on the same grid.
    report : mapping, optional
        ``report.json``: the tumour table takes each tumour's volume, status and margin from it.
    modality : str
        ``CT`` (HU, presets of ``params.windows_hu``) or ``MR``.
    boxes : mapping of int to tuple of slice, optional
        :func:`hepatoplan.pipeline.labels.label_boxes` of ``labels`` when already computed.
    params : SliceViewerParams

    Returns
    -------
    dict
        ``shape``, ``step``, ``offset`` (the stored grid: every ``step``-th voxel from ``offset``
        of the full grid), ``full_shape``, ``spacing_mm`` and ``affine_ras`` (of the stored grid:
        stored index → RAS world mm), ``ct`` / ``labels`` / ``vessels`` (``b64``: zlib
        deflate of the array in C order, axis 2 fastest; ``dtype``; the CT's grey levels are
        stored as differences along ``delta_axis`` 0, modulo 256), ``ct_range``, ``ct_unit``,
        ``modality``, ``windows`` (name → [level, width]), ``classes``, ``vessel_layers``, ``tumours``,
        ``start`` (stored index the views open on), ``opacity_percent``.

    Raises
    ------
    InputError
        Arrays of different shapes, or no labelled voxel.
    """
    vessels = {k: v for k, v in (vessels or {}).items() if v is not None}
    shapes = {tuple(ct.shape), tuple(labels.shape), *(tuple(v.shape) for v in vessels.values())}
    if len(shapes) != 1:
        raise InputError(f"the slice viewer needs the CT, labels and vessels on one grid; found shapes {shapes}")
    unknown = set(vessels) - set(VESSEL_BITS)
    if unknown:
        raise InputError(f"unknown vessel layers {sorted(unknown)}; expected {sorted(VESSEL_BITS)}")
    affine_ras = np.asarray(affine_ras, float)
    spacing = np.linalg.norm(affine_ras[:3, :3], axis=0)
    boxes = label_boxes(labels) if boxes is None else boxes
    box, step = _crop(boxes, labels.shape, spacing, params)
    lab = labels[box]
    levels, ct_range, unit, windows, initial = _ct_levels(ct[box], modality, params)
    vessel_layer = np.zeros(lab.shape, np.uint8)
    for name, mask in vessels.items():
        vessel_layer |= (mask[box] > 0).astype(np.uint8) * VESSEL_BITS[name]
    label_dtype = np.dtype("u1") if lab.max(initial=0) < 256 else np.dtype("<u2")
    offset = np.array([b.start for b in box])
    tumours = _tumour_rows(labels, boxes, report)
    for t in tumours:  # full-grid index -> stored index
        t["at"] = [min(int(round((a - o) / s)), n - 1) for a, o, s, n in zip(t["at"], offset, step, lab.shape)]
    start = tumours[0]["at"] if tumours else [n // 2 for n in lab.shape]  # tumour 1, or the box's centre
    return {
        "coordinates": "canonical RAS+ voxel indices (axis 0 Right, 1 Anterior, 2 Superior)",
        "modality": "CT" if modality.upper() == "CT" else modality.upper(),
        "shape": list(lab.shape), "step": list(step), "offset": offset.tolist(),
        "full_shape": list(labels.shape),
        "spacing_mm": [round(float(s) * k, 5) for s, k in zip(spacing, step)],
        "affine_ras": np.round(affine_ras @ _scaled_shift(step, offset), 6).tolist(),
        "ct": {"b64": _packed(_delta(levels)), "dtype": "uint8", "delta_axis": 0},
        "ct_range": list(ct_range), "ct_unit": unit,
        "windows": {k: [float(v[0]), float(v[1])] for k, v in windows.items()}, "initial_window": initial,
        "labels": {"b64": _packed(lab.astype(label_dtype, copy=False)),  # little-endian
                   "dtype": "uint8" if label_dtype.itemsize == 1 else "uint16"},
        "vessels": {"b64": _packed(vessel_layer), "dtype": "uint8"} if vessels else None,
        "classes": _classes(np.array(sorted(boxes))),
        "vessel_layers": [{"name": n, "bit": VESSEL_BITS[n], "rgb": list(_VESSEL_COLOURS_RGB[n])}
                          for n in vessels],
        "resected_rgb": list(RESECTED_COLOUR_RGB), "tumour_label_offset": TUMOUR_LABEL_OFFSET,
        "tumours": tumours,
        "start": [int(v) for v in start],
        "opacity_percent": float(params.opacity_percent),
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath("assets", name).read_text(encoding="utf-8")


def script_json(data: Any) -> str:
    """``data`` as compact JSON for a ``<script type='application/json'>`` element (``</`` escaped): the text of
    ``json.dumps(data, separators=(",", ":")).replace("</", "<\\/")``, with its base64 strings (values of keys
    ending in ``b64``: megabytes of the CT, labels and meshes) spliced in as they are instead of encoded and
    scanned (~30 ms of CPU for the slice viewer's 11 MB on IRCADb 01; bench/RESULTS.md, mesh17): base64 holds
    no character that JSON or HTML would escape."""
    blobs: list[str] = []

    def hollow(value):  # each base64 string replaced by a NUL and its number
        if isinstance(value, Mapping):
            out = {}
            for key, item in value.items():
                if str(key).endswith("b64") and isinstance(item, str):
                    out[key] = f"\0{len(blobs)}"
                    blobs.append(item)
                else:
                    out[key] = hollow(item)
            return out
        return [hollow(item) for item in value] if isinstance(value, (list, tuple)) else value

    parts = json.dumps(hollow(data), separators=(",", ":")).replace("</", "<\\/").split('"\\u0000')
    if len(parts) != len(blobs) + 1:  # another string starts with a NUL: encode it all
        return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    text = [parts[0]]
    for blob, part in zip(blobs, parts[1:]):  # part: the number, the closing quote, the rest
        text += ['"', blob, part[part.index('"'):]]
    return "".join(text)


def slice_viewer_html(data: Mapping[str, Any]) -> str:
    """The report section of the slice viewer (its data as JSON and its script inlined).

    The root element carries ``data-testid="slice-viewer"`` and, once drawn,
    ``data-status="ready"``; each view's canvas carries ``data-rect`` (its page rectangle, CSS
    px) and ``data-map`` (``x0,ax,y0,ay``: the page position of a voxel centre is
    ``x0 + ax·u``, ``y0 + ay·v`` for the view's in-plane full-grid indices ``(u, v)``: axial
    ``(i, j)``, coronal ``(i, k)``, sagittal ``(j, k)``). A link can open a given state:
    ``report.html#sv-goto=tumour-2&sv-window=soft tissue&sv-opacity=100&sv-hide=segments``.
    Only the structure groups present get a toggle.
    """
    payload = script_json(data)
    windows = "".join(f"<button type='button' data-window='{w}'>{w}</button>" for w in data["windows"])
    present = {c["group"] for c in data["classes"]}
    groups = [(g, text) for g, text in (("segments", "segments"), ("resected", "resected part"), ("tumours", "tumours"))
              if g in present]
    groups += [(v["name"], v["name"]) for v in data["vessel_layers"]]
    toggles = "".join(f"<label><input type='checkbox' data-group='{g}' checked> {text}</label>"
                      for g, text in groups)
    views = "".join(
        f"<figure class='sv-view' data-view='{v}'><canvas class='sv-canvas'></canvas>"
        f"<figcaption><span class='sv-name'>{v}</span> <span class='sv-pos'></span>"
        f"<input type='range' class='sv-slider' min='0' value='0' aria-label='{v} slice'></figcaption></figure>"
        for v in ("axial", "coronal", "sagittal"))
    return (
        f"<section id='slices'><h2>Segmentation on the {html.escape(data['modality'])}</h2>"
        "<div id='hp-slices' data-testid='slice-viewer' data-status='loading'>"
        f"<div class='sv-views'>{views}</div>"
        "<div class='sv-controls'>"
        f"<div class='sv-buttons'><span>window</span>{windows}</div>"
        "<label class='sv-opacity'>overlay opacity <input type='range' min='0' max='100'></label>"
        f"<div class='sv-toggles'>{toggles}</div></div>"
        "<table class='records sv-tumours'></table>"
        "<p class='sv-message'></p>"
        "<p class='hint'>Wheel or slider: move through the slices; click: move the other views to that "
        "point; click a tumour row: go to the tumour. Radiological convention: the patient's right on "
        "the left of axial and coronal views, anterior up (axial), superior up (coronal, sagittal), "
        "anterior on the left (sagittal); drawn to scale.</p></div>"
        f"<script type='application/json' id='hp-slice-data'>{payload}</script>"
        f"<script>{_asset('slices.js')}</script></section>")
