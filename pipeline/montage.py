"""``qc_montage.png``: the plan's outlines on the CT, at a glance and on paper.

About a dozen axial slices spread through the liver and one coronal slice through its centre,
each cropped to the liver with a margin and resampled to square pixels (drawn to scale), the CT
in a liver window with coloured outlines: the liver's border, the boundaries between Couinaud
segments (each side in its segment's colour), the cut (between kept and resected liver, in the
resected colour, the resected side lightly tinted) and every tumour (its own colour, two pixels
wide). Colours come from :mod:`hepatoplan.pipeline.labels`. Display convention as in the slice
viewer (radiological: the patient's right on the image's left, anterior up on axial panels,
superior up on the coronal one).

Arrays are canonical RAS+ (axis 0 → patient Right, 1 → Anterior, 2 → Superior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

from hepatoplan.arrays import joint_box, padded_box
from hepatoplan.errors import InputError

from .labels import (LIVER_COLOUR_RGB, RESECTED_COLOUR_RGB, RESECTED_LABEL_OFFSET, SEGMENT_COLOURS_RGB,
                     TUMOUR_LABEL_OFFSET, label_boxes, tumour_colour_rgb)
from .png import write_png


@dataclass(frozen=True)
class MontageParams:
    """Layout and display constants of the QC montage.

    Attributes
    ----------
    n_axial : int
        Axial panels, evenly spaced strictly inside the liver's cranio-caudal extent (the issue
        asks for about a dozen).
    columns : int
        Axial panels per row.
    panel_width_px : int
        Width of one axial panel; its height follows the liver box's aspect in mm.
    margin_mm : float
        Added around the box of the labelled voxels.
    window_hu : (float, float)
        CT window (level, width) in HU: the slice viewer's liver preset
        (:class:`hepatoplan.pipeline.slice_viewer.SliceViewerParams`).
    mr_percentiles : (float, float)
        For MR: the displayed intensity range, percentiles of the cropped image.
    resected_tint : float
        Weight of the resected colour blended into the resected part (0 = none).
    """

    n_axial: int = 12
    columns: int = 4
    panel_width_px: int = 240
    margin_mm: float = 10.0
    window_hu: tuple[float, float] = (90.0, 150.0)
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    resected_tint: float = 0.18


_GAP_PX = 6
_TEXT_RGB = (255, 255, 255)
_BACKGROUND_RGB = (24, 24, 24)


def _screen(plane: np.ndarray) -> np.ndarray:
    """An in-plane array indexed ``(u, v)`` as a screen image (rows = ``v`` reversed, columns =
    ``u`` reversed): radiological convention for axial ``(u, v) = (R, A)`` and coronal
    ``(R, S)`` planes of a canonical array."""
    return plane[::-1, ::-1].T


def _resample(plane: np.ndarray, spacing_uv, pixel_mm: float) -> np.ndarray:
    """Nearest-neighbour resampling of a screen image to square pixels of ``pixel_mm``."""
    spacing_col, spacing_row = spacing_uv
    rows = np.minimum(((np.arange(max(1, round(plane.shape[0] * spacing_row / pixel_mm))) + 0.5)
                       * pixel_mm / spacing_row).astype(int), plane.shape[0] - 1)
    cols = np.minimum(((np.arange(max(1, round(plane.shape[1] * spacing_col / pixel_mm))) + 0.5)
                       * pixel_mm / spacing_col).astype(int), plane.shape[1] - 1)
    return plane[np.ix_(rows, cols)]


def _grey(ct_plane: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    level, width = window
    return np.clip((ct_plane.astype(np.float32) - (level - width / 2)) * (255.0 / width), 0, 255).astype(np.uint8)


# the four 4-neighbour shifts: (pixel p, its neighbour q) as slices of a 2D image
_A, _B, _ALL = slice(None, -1), slice(1, None), slice(None)
_PAIRS = (((_A, _ALL), (_B, _ALL)), ((_B, _ALL), (_A, _ALL)), ((_ALL, _A), (_ALL, _B)), ((_ALL, _B), (_ALL, _A)))


def _differing_neighbours(labels: np.ndarray) -> list[tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]]:
    """Per 4-neighbour shift of :data:`_PAIRS`, the pixels p whose neighbour q has another label: ``((rows,
    cols), P, Q)``. Every outline is drawn where labels differ (a few % of a panel's pixels), so the
    outlines' tests run on these alone."""
    found = []
    for p, q in _PAIRS:
        P, Q = labels[p], labels[q]
        rows, cols = np.nonzero(P != Q)
        found.append(((rows + (p[0] == _B), cols + (p[1] == _B)), P[rows, cols], Q[rows, cols]))
    return found


def _paint_edges(rgb: np.ndarray, edges, test: Callable, colour: Callable) -> None:
    """Paint pixel p with ``colour(P, Q)`` wherever ``test(P, Q)`` holds for a 4-neighbour q with another
    label (``edges``: :func:`_differing_neighbours`)."""
    for (rows, cols), P, Q in edges:
        hit = test(P, Q)
        if hit.any():
            rgb[rows[hit], cols[hit]] = colour(P[hit], Q[hit])


def _colour_table(max_label: int) -> np.ndarray:
    """RGB by label value: segment colours for 1–8 and 11–18 (kept and resected alike), the
    liver's for 9 and 19, each tumour's own."""
    table = np.zeros((max_label + 1, 3), np.uint8)
    for value in range(1, min(max_label, TUMOUR_LABEL_OFFSET) + 1):
        table[value] = SEGMENT_COLOURS_RGB.get(value % RESECTED_LABEL_OFFSET, LIVER_COLOUR_RGB)
    for value in range(TUMOUR_LABEL_OFFSET + 1, max_label + 1):
        table[value] = tumour_colour_rgb(value - TUMOUR_LABEL_OFFSET)
    return table


def outlined_panel(grey: np.ndarray, labels: np.ndarray, *, resected_tint: float = 0.18) -> np.ndarray:
    """RGB image of a grey slice with the plan's outlines (see the module docstring).

    Parameters
    ----------
    grey : ndarray of uint8, shape (H, W)
    labels : ndarray of int, shape (H, W)
        The plan's label values (scheme of :mod:`hepatoplan.pipeline.labels`), same pixels.
    resected_tint : float
        Weight of the resected colour in the resected part.

    Returns
    -------
    ndarray of uint8, shape (H, W, 3)
    """
    labels = labels.astype(np.int32)  # (int64: ~7 % more of the montage's CPU, the same image)
    table = _colour_table(int(labels.max(initial=0)))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    liver = (labels > 0) & (labels < TUMOUR_LABEL_OFFSET)
    resected = liver & (labels > RESECTED_LABEL_OFFSET)
    if resected_tint > 0 and resected.any():
        rgb[resected] = ((1 - resected_tint) * rgb[resected] + resected_tint * np.array(RESECTED_COLOUR_RGB)).astype(np.uint8)

    def parenchyma(v):
        return (v > 0) & (v < TUMOUR_LABEL_OFFSET)

    edges = _differing_neighbours(labels)  # each test below holds only where P != Q
    _paint_edges(rgb, edges, lambda P, Q: (P > 0) & (Q == 0), lambda P, Q: LIVER_COLOUR_RGB)
    _paint_edges(rgb, edges, lambda P, Q: parenchyma(P) & parenchyma(Q)
                 & (P % RESECTED_LABEL_OFFSET != Q % RESECTED_LABEL_OFFSET), lambda P, Q: table[P])
    _paint_edges(rgb, edges, lambda P, Q: parenchyma(P) & parenchyma(Q)
                 & ((P > RESECTED_LABEL_OFFSET) != (Q > RESECTED_LABEL_OFFSET)), lambda P, Q: RESECTED_COLOUR_RGB)
    _paint_edges(rgb, edges, lambda P, Q: P > TUMOUR_LABEL_OFFSET, lambda P, Q: table[P])
    _paint_edges(rgb, edges, lambda P, Q: Q > TUMOUR_LABEL_OFFSET, lambda P, Q: table[Q])
    return rgb


def qc_montage(
    ct: np.ndarray,
    labels: np.ndarray,
    *,
    affine_ras: np.ndarray,
    modality: str = "CT",
    boxes: Mapping[int, tuple[slice, ...]] | None = None,
    params: MontageParams = MontageParams(),
) -> tuple[np.ndarray, list[dict]]:
    """The montage image and where each panel lies.

    Parameters
    ----------
    ct : ndarray, shape (X, Y, Z)
        CT in HU (or MR intensities), canonical RAS+.
    labels : ndarray of int, shape (X, Y, Z)
        The plan's label map on the same grid.
    affine_ras : ndarray, shape (4, 4)
        Canonical index → RAS world mm (spacing, and the slices' positions in the captions).
    modality : str
        ``CT`` (window ``params.window_hu``) or ``MR`` (percentile range).
    boxes : mapping of int to tuple of slice, optional
        :func:`hepatoplan.pipeline.labels.label_boxes` of ``labels`` when already computed.
    params : MontageParams

    Returns
    -------
    image : ndarray of uint8, shape (H, W, 3)
    panels : list of dict
        Per panel: ``plane`` (``axial``/``coronal``), ``index`` (the slice's canonical index along
        axis 2 or 1), ``position_mm`` (its S or A world coordinate at the crop's centre) and
        ``box_px`` (``left, top, width, height`` in the image).

    Raises
    ------
    InputError
        Different shapes, or no labelled voxel.
    """
    if ct.shape != labels.shape:
        raise InputError(f"the QC montage needs the CT and labels on one grid; found {ct.shape} and {labels.shape}")
    affine_ras = np.asarray(affine_ras, float)
    spacing = [float(s) for s in np.linalg.norm(affine_ras[:3, :3], axis=0)]
    boxes = label_boxes(labels) if boxes is None else boxes
    if not boxes:
        raise InputError("the QC montage needs a label map with labelled voxels (the liver); found none")
    labelled, present = joint_box(boxes.values()), np.array(sorted(boxes))
    box = padded_box(labelled, [int(math.ceil(params.margin_mm / s)) for s in spacing], labels.shape)
    ct_box, lab_box = ct[box], labels[box]
    if modality.upper() == "CT":
        window = params.window_hu
    else:
        lo, hi = np.percentile(ct_box, params.mr_percentiles)
        window = ((lo + hi) / 2, max(hi - lo, 1e-6))
    first_k, last_k = labelled[2].start - box[2].start, labelled[2].stop - 1 - box[2].start
    ks = np.unique(np.rint(np.linspace(first_k, last_k, params.n_axial + 2)[1:-1]).astype(int))
    width_mm = lab_box.shape[0] * spacing[0]
    pixel_mm = width_mm / params.panel_width_px
    cols = params.columns
    panels_img, panels = [], []
    for k in ks:
        lab = _resample(_screen(lab_box[:, :, k]), (spacing[0], spacing[1]), pixel_mm)
        grey = _resample(_screen(_grey(ct_box[:, :, k], window)), (spacing[0], spacing[1]), pixel_mm)
        panels_img.append(outlined_panel(grey, lab, resected_tint=params.resected_tint))
        panels.append({"plane": "axial", "index": int(k + box[2].start)})
    liver_per_j = np.count_nonzero((lab_box > 0) & (lab_box < TUMOUR_LABEL_OFFSET), axis=(0, 2))
    j = int(round(float(np.average(np.arange(len(liver_per_j)), weights=liver_per_j))))
    coronal_width = 2 * params.panel_width_px + _GAP_PX
    coronal_pixel_mm = width_mm / coronal_width
    lab_c = _resample(_screen(lab_box[:, j, :]), (spacing[0], spacing[2]), coronal_pixel_mm)
    grey_c = _resample(_screen(_grey(ct_box[:, j, :], window)), (spacing[0], spacing[2]), coronal_pixel_mm)
    coronal = outlined_panel(grey_c, lab_c, resected_tint=params.resected_tint)

    ph, pw = panels_img[0].shape[:2]
    rows = math.ceil(len(panels_img) / cols)
    title_h = 26
    width = cols * pw + (cols + 1) * _GAP_PX
    height = title_h + rows * (ph + _GAP_PX) + coronal.shape[0] + 2 * _GAP_PX
    image = np.empty((height, width, 3), np.uint8)
    image[:] = _BACKGROUND_RGB
    boxes = []
    for n, panel in enumerate(panels_img):
        top, left = title_h + (n // cols) * (ph + _GAP_PX), _GAP_PX + (n % cols) * (pw + _GAP_PX)
        image[top:top + ph, left:left + pw] = panel
        boxes.append((left, top, pw, ph))
    top = title_h + rows * (ph + _GAP_PX)
    image[top:top + coronal.shape[0], _GAP_PX:_GAP_PX + coronal.shape[1]] = coronal
    boxes.append((_GAP_PX, top, coronal.shape[1], coronal.shape[0]))
    panels.append({"plane": "coronal", "index": int(j + box[1].start)})
    centre = np.array([(b.start + b.stop - 1) / 2 for b in box])
    for panel, b in zip(panels, boxes):
        axis = 2 if panel["plane"] == "axial" else 1
        at = centre.copy()
        at[axis] = panel["index"]
        panel["position_mm"] = round(float((affine_ras @ [*at, 1.0])[axis]), 1)
        panel["box_px"] = [int(v) for v in b]
    image = _annotate(image, panels, values=present, legend_left=2 * _GAP_PX + coronal.shape[1], legend_top=top,
                      window=window, modality=modality)
    return image, panels


def _annotate(image, panels, *, values, legend_left, legend_top, window, modality) -> np.ndarray:
    """Title, each panel's position and orientation letters, and the legend (Pillow text)."""
    from PIL import Image, ImageDraw, ImageFont

    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    unit = "HU" if modality.upper() == "CT" else ""
    image_name = "CT" if modality.upper() == "CT" else modality.upper()
    draw.text((_GAP_PX, 5), f"QC montage: the plan's outlines on the {image_name} (window L {window[0]:.0f} "
              f"W {window[1]:.0f}{' ' + unit if unit else ''}); radiological view: the patient's right on the left",
              fill=_TEXT_RGB, font=font)
    for panel in panels:
        left, top, w, h = panel["box_px"]
        letters = ("R", "L", "A", "P") if panel["plane"] == "axial" else ("R", "L", "S", "I")
        caption = f"{panel['plane']} {'S' if panel['plane'] == 'axial' else 'A'} {panel['position_mm']:+.1f} mm"
        draw.text((left + 3, top + 2), caption, fill=_TEXT_RGB, font=small, stroke_width=2, stroke_fill=(0, 0, 0))
        for text, xy, anchor in zip(letters, ((left + 3, top + h / 2), (left + w - 3, top + h / 2),
                                              (left + w / 2, top + 3), (left + w / 2, top + h - 3)),
                                    ("lm", "rm", "mt", "mb")):
            draw.text(xy, text, fill=_TEXT_RGB, font=small, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))
    entries = [("liver border", LIVER_COLOUR_RGB)]
    entries += [(f"segment {k}", SEGMENT_COLOURS_RGB[k]) for k in SEGMENT_COLOURS_RGB
                if np.isin([k, k + RESECTED_LABEL_OFFSET], values).any()]
    if (values > RESECTED_LABEL_OFFSET).any() and (values < TUMOUR_LABEL_OFFSET).any():
        entries.append(("the cut (resected side tinted)", RESECTED_COLOUR_RGB))
    entries += [(f"tumour {v - TUMOUR_LABEL_OFFSET}", tumour_colour_rgb(v - TUMOUR_LABEL_OFFSET))
                for v in values[values > TUMOUR_LABEL_OFFSET][:12]]
    line_h = 16
    per_column = max(1, (pil.height - legend_top - _GAP_PX) // line_h)
    for n, (text, rgb) in enumerate(entries):
        x = legend_left + 6 + (n // per_column) * 150
        y = legend_top + (n % per_column) * line_h
        if x + 140 > pil.width:
            break
        draw.rectangle((x, y + 6, x + 16, y + 9), fill=tuple(int(c) for c in rgb))
        draw.text((x + 22, y), text, fill=_TEXT_RGB, font=small)
    return np.asarray(pil)


def write_qc_montage(
    path: str | Path,
    ct: np.ndarray,
    labels: np.ndarray,
    *,
    affine_ras: np.ndarray,
    modality: str = "CT",
    boxes: Mapping[int, tuple[slice, ...]] | None = None,
    params: MontageParams = MontageParams(),
) -> Path:
    """Write :func:`qc_montage` as a PNG (atomically, :func:`hepatoplan.pipeline.png.write_png`); return ``path``."""
    image, _ = qc_montage(ct, labels, affine_ras=affine_ras, modality=modality, boxes=boxes, params=params)
    return write_png(path, image, up_filter=False)
