"""Automatic liver segmentation from CT (and MR) by classical image analysis.

Arrays are canonical RAS+: index axis 0 increases toward the patient's Right, axis 1 toward
Anterior, axis 2 toward Superior. Nothing here reads files.

Method (thresholds are learned from the scan, in HU or in units of the scan's own noise; every
value is a field of :class:`~hepatoplan.segmentation.params.LiverParams`, named below):

1. Block-average to about 2 mm voxels (block SD kept as a texture measure), median-filter, crop to
   the body (air threshold, largest component, holes filled per slice).
2. Candidate liver intensities are the peaks of the soft-tissue histogram of the deep, right-sided
   body. For each peak a +-25 HU window is eroded by 6 mm and its blobs scored by volume times
   right-sidedness (axis 0 grows toward the patient's right); the best blob is the liver core and
   its median / MAD define the window ``median +- (window_k_sd * sd + window_margin_hu)``.
3. Organ competition: inside the window, every blob that survives a ``competitor_radius_mm``
   erosion is a marker (the liver core, the spleen, heart, kidney ...), the outside of the window
   is another; a marker-controlled watershed on the gradient magnitude splits touching organs along
   their faint edges. It runs first on homogeneous-texture voxels only (the liver is smoother than
   bowel and pancreas), then again in the plain window within ``regrow_mm`` of that result. Run again
   with only the window's outside as background, it gives the liver pieces that the texture limit
   alone kept out (a lobe beyond a lesion); those facing the liver over ``piece_min_contact_fraction``
   of their boundary join.
4. Closing (``closing_mm``) and hole filling bring back vessels and tumours enclosed by parenchyma.
   Dark tissue next to the liver is split into convex blobs (watershed of its distance map); blobs
   that face the liver over at least a quarter of their boundary, are compact, thick and not bowel
   (no gas next to the blob once opened, little air along its free boundary — read in-plane on
   slices thicker than the coarse grid) are tumours bulging out of the liver and join it (opened by
   ``lesion_open_mm`` to shed attached muscle).
5. The coarse mask is up-sampled (linear, partial-volume aware) and its boundary snapped to the
   full-resolution smoothed intensities within ``band_mm``.

When the organ grown from the best-scoring core fails the quality checks, up to
``max_core_candidates - 1`` runner-up organs are tried.

MR has its own method (:mod:`hepatoplan.segmentation.mr_liver`): ``segment_liver(modality="MR")``
hands the volume to :func:`~hepatoplan.segmentation.mr_liver.segment_liver_mr`.

Known limits: the thresholds were developed on two IRCADb portal-venous CTs, a contrast and a plain
CT and one MR; large isodense tumours at the liver surface, a liver touching the spleen over a
wide flat contact, or unusual anatomy can still be mis-segmented: check the QC flags.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from hepatoplan.arrays import bounding_box, is_empty_box
from hepatoplan.errors import InputError
from hepatoplan.units import voxel_volume_ml

from . import _grid
from . import _morph as morph
from .params import LiverParams
from .selfcheck import liver_plausibility

log = logging.getLogger(__name__)

#: Robust SD of a normal distribution from its median absolute deviation (1 / Phi^-1(3/4)).
MAD_TO_SD = 1.4826


@dataclass(frozen=True)
class _CoarseScan:
    """The scan at the coarse stage's resolution, cropped to the body (canonical RAS+ axes).

    ``image`` is the median-filtered block mean (HU), ``texture`` its local SD, ``gas`` the
    blocks holding bowel gas and ``air`` the full-resolution air voxels under the crop (both None
    when lesions are not searched), ``box`` the crop inside the
    block grid of shape ``shape``, ``factors`` the block size (voxels) and ``body_centre_x`` the
    body's centre along axis 0 in full-resolution voxel index.
    """

    image: np.ndarray
    texture: np.ndarray
    body: np.ndarray
    gas: np.ndarray | None
    air: np.ndarray | None
    spacing_mm: tuple
    factors: tuple
    box: tuple
    shape: tuple
    body_centre_x: float

    @property
    def voxel_ml(self) -> float:
        return voxel_volume_ml(self.spacing_mm)

    def uncrop(self, mask: np.ndarray) -> np.ndarray:
        """``mask`` (on the crop) placed in the whole block grid."""
        out = np.zeros(self.shape, bool)
        out[self.box] = mask
        return out


@dataclass(frozen=True)
class _CoarseLiver:
    """A liver grown at the coarse resolution: mask and joined bulging lesions on the whole block
    grid, the intensity window (HU) and the statistics for the report."""

    mask: np.ndarray
    lesions: np.ndarray
    window_hu: tuple[float, float]
    stats: dict


def segment_liver(
    image: np.ndarray,
    *,
    spacing_mm,
    modality: str = "CT",
    params: LiverParams = LiverParams(),
) -> tuple[np.ndarray, dict]:
    """Segment the liver in a CT (portal-venous or plain) or MR volume.

    Parameters
    ----------
    image : (X, Y, Z) array
        Canonical RAS+ volume (axis 0 -> Right, 1 -> Anterior, 2 -> Superior); CT in HU.
    spacing_mm : 3-tuple of float
        Voxel size along the three axes (mm).
    modality : {"CT", "MR"}
        Imaging modality; MR is segmented by :func:`~hepatoplan.segmentation.mr_liver.segment_liver_mr`
        (with its own :class:`~hepatoplan.segmentation.mr_liver.MRLiverParams`).
    params : LiverParams, keyword-only
        The algorithm's tuned values (defaults: the documented ones); CT only.

    Returns
    -------
    liver : (X, Y, Z) uint8 array
        1 inside the liver (tumours and intrahepatic vessels included), 0 elsewhere.
    info : dict
        JSON-ready: liver volume (mL), intensity statistics, contrast phase guess, QC flags.

    Raises
    ------
    InputError
        Bad shape or spacing, a field of view too small for a liver, or CT intensities that are not HU.
    """
    t0 = time.perf_counter()
    spacing = _grid.check_volume(image, spacing_mm)
    modality = str(modality).upper()
    if modality not in ("CT", "MR"):
        raise InputError(f"modality: expected 'CT' or 'MR', found {modality!r}")
    if modality == "MR":
        from .mr_liver import segment_liver_mr

        return segment_liver_mr(image, spacing_mm=spacing)
    image = np.asanyarray(image)
    base: dict = {"modality": modality}
    _check_ct_range(image, params)
    scan = _coarse_scan(image, spacing, params, lesions=True)
    # the organs' gradient (ITK, outside the GIL) beside the search for the core, once for every candidate
    with ThreadPoolExecutor(1) as ahead:
        grad = ahead.submit(_grid.gradient_magnitude, scan.image, scan.spacing_mm, params.gradient_sigma_mm)
        cands = _liver_core_candidates(scan, params, base)
        grad = grad.result()
    # the best-scoring candidate organ is the liver unless it fails the quality checks (e.g. a
    # large right renal mass outscoring the lower part of a liver whose top is cut off): then the
    # runner-up, a different organ, is tried
    tried = []
    for rank, core in enumerate(cands, start=1):
        info = {**base, "qc_flags": [], "qc_passed": True, "candidate_rank": rank}
        coarse = _grow_liver(scan, core, grad, params, info)
        liver = _refine_full(image, coarse, scan.factors, spacing, params)
        info.update(coarse.stats)
        info["liver_volume_ml"] = round(float(liver.sum()) * voxel_volume_ml(spacing), 1)
        _qc(liver, info, spacing, scan.body_centre_x, params)
        tried.append((liver, info))
        if info["qc_passed"]:
            break
    liver, info = tried[-1] if tried[-1][1]["qc_passed"] else tried[0]
    if info["qc_passed"] and len(tried) > 1:
        info["qc_flags"].append(
            f"the best-scoring liver candidate failed the quality checks ({'; '.join(tried[0][1]['qc_flags'])}); "
            f"candidate {len(tried)} was taken: check the liver mask"
        )
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return liver.astype(np.uint8), info


def _check_ct_range(image: np.ndarray, p: LiverParams) -> None:
    sample = image[::4, ::4, ::2]
    lo, hi = (float(v) for v in np.percentile(sample, [1, 99.5]))
    air = float(np.mean(sample < p.ct_check_air_hu))
    if lo > p.ct_check_air_hu or air < p.ct_check_min_air_fraction:
        raise InputError(
            f"CT intensities do not look like Hounsfield units: 1st percentile {lo:.0f}, "
            f"{100 * air:.1f} % of voxels below {p.ct_check_air_hu:.0f} (expected air near -1000 HU around the body); "
            "rescale with RescaleSlope/Intercept, or pass --modality mr for an MR scan"
        )
    if hi > p.ct_check_max_hu:
        raise InputError(
            f"CT intensities do not look like Hounsfield units: 99.5th percentile {hi:.0f} (> {p.ct_check_max_hu:.0f}); "
            "rescale with RescaleSlope/Intercept"
        )


def _coarse_scan(image: np.ndarray, spacing, p: LiverParams, *, lesions: bool) -> _CoarseScan:
    """Block-average to about ``coarse_spacing_mm``, crop to the body, median-filter; texture, body, gas."""
    factors = _grid.shrink_factors(spacing, p.coarse_spacing_mm)
    sp = tuple(s * f for s, f in zip(spacing, factors))
    small_full, bsd_full = _grid.block_mean_sd(image, factors)
    # crop to the body (arms, table and air cost time, not information)
    cb = bounding_box(morph.largest_component(small_full > p.air_max_hu), pad=2)
    if is_empty_box(cb):
        cb = tuple(slice(0, n) for n in small_full.shape)
    small, bsd = small_full[cb], bsd_full[cb]
    s = _grid.median(small, p.median_radius_vox)
    tex = np.sqrt(np.maximum(
        _grid.gaussian(np.square(bsd), sp, p.texture_sigma_mm) + _grid.gaussian(np.square(small - s), sp, p.texture_sigma_mm),
        0.0,
    ))
    body = morph.fill_holes(morph.largest_component(s > p.air_max_hu), per_slice=True)
    # gas: any block holding a few voxels of air (bowel bubbles vanish in the block mean)
    gas = air = None
    if lesions:
        air = image < p.air_max_hu
        gas = (_grid.block_mean(air.astype(np.float32), factors)[cb] > p.gas_block_min_fraction) & body
        air = air[tuple(slice(c.start * f, min(c.stop * f, n)) for c, f, n in zip(cb, factors, image.shape))]
    return _CoarseScan(s, tex, body, gas, air, sp, factors, cb, small_full.shape, _body_centre_x(body, factors, cb[0].start))


def _body_centre_x(body, factors, offset) -> float:
    """Centre of the body along axis 0 (Right), in full-resolution voxel index."""
    w = body.sum(axis=(1, 2)).astype(float)
    cx = float(np.average(np.arange(body.shape[0]), weights=w)) if w.sum() else body.shape[0] / 2.0
    return (cx + offset + 0.5) * factors[0] - 0.5


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * MAD_TO_SD
    return med, max(mad, 1e-3)


def _contrast_phase(liver_median_hu: float, p: LiverParams) -> str:
    """Rough phase from the liver's density (non-contrast liver ~55 HU, portal-venous ~100-130 HU)."""
    if liver_median_hu < p.non_contrast_max_hu:
        return "non-contrast"
    if liver_median_hu < p.arterial_max_hu:
        return "arterial or early portal-venous"
    return "portal-venous"


def _histogram_peaks(values: np.ndarray, p: LiverParams) -> list[float]:
    """The ``histogram_peaks`` highest peaks (HU) of the smoothed histogram of ``values``."""
    lo, hi = p.histogram_range_hu
    bins = np.arange(lo, hi + p.histogram_bin_hu, p.histogram_bin_hu)
    hist, edges = np.histogram(values, bins=bins)
    hist = ndi.gaussian_filter1d(hist.astype(float), p.histogram_smoothing_bins)
    centres = 0.5 * (edges[:-1] + edges[1:])
    peaks = [i for i in range(1, len(hist) - 1) if hist[i] >= hist[i - 1] and hist[i] > hist[i + 1]]
    peaks.sort(key=lambda i: -hist[i])
    return [float(centres[i]) for i in peaks[: p.histogram_peaks]]


def _liver_core_candidates(scan: _CoarseScan, p: LiverParams, info: dict) -> list[np.ndarray]:
    """Candidate liver cores, best first: the best-scoring blob over the candidate intensity peaks,
    then the best blobs not overlapping the earlier ones, up to ``max_core_candidates``.

    A blob's score is its volume times a logistic of its offset to the patient's right (axis 0).
    """
    s, body, sp = scan.image, scan.body, scan.spacing_mm
    lo, hi = p.histogram_range_hu
    deep = morph.erode(body, p.histogram_min_depth_mm, sp)
    right = np.zeros_like(body)
    right[int(np.argwhere(body).mean(axis=0)[0]):] = True
    peaks = _histogram_peaks(s[deep & right & (s > lo) & (s < hi)], p)
    info["histogram_peaks_hu"] = [round(c, 1) for c in peaks]
    mid = body[:, :, body.shape[2] // 2]
    body_centre = np.argwhere(mid).mean(axis=0) if mid.any() else np.array(body.shape[:2]) / 2
    blobs = []
    for c in peaks:
        win = body & (s > c - p.core_window_halfwidth_hu) & (s < c + p.core_window_halfwidth_hu)
        labels, n = morph.components(morph.erode(win, p.core_erosion_mm, sp))
        if n == 0:
            continue
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        for lab in np.argsort(counts)[::-1][: p.core_blobs_per_peak]:
            if counts[lab] == 0:
                break
            blob = labels == lab
            right_mm = (np.argwhere(blob).mean(axis=0)[0] - body_centre[0]) * sp[0]
            score = float(blob.sum() * scan.voxel_ml * (1.0 / (1.0 + np.exp(-right_mm / p.right_side_scale_mm))))
            log.debug("peak %.0f blob %d vol %.0f mL score %.0f", c, lab, counts[lab] * scan.voxel_ml, score)
            blobs.append((score, blob))
    if not blobs:
        raise InputError("no liver-like soft tissue found in the CT; is this an abdominal scan?")
    chosen: list = []
    taken = np.zeros(s.shape, bool)
    for _, blob in sorted(blobs, key=lambda b: -b[0]):
        if len(chosen) == p.max_core_candidates:
            break
        if not np.any(blob & taken):
            chosen.append(blob)
            taken |= blob
    return chosen


def _grow_liver(scan: _CoarseScan, core: np.ndarray, grad: np.ndarray, p: LiverParams, info: dict) -> _CoarseLiver:
    """The liver grown from ``core`` at the coarse resolution: intensity window, organ
    competition (texture-limited first) over ``grad`` (the gradient magnitude of ``scan.image``
    at ``gradient_sigma_mm``), closing, bulging lesions, opening."""
    s, sp = scan.image, scan.spacing_mm
    med, sd = _robust_stats(s[core])
    stats = {"liver_median_hu": round(med, 1), "liver_sd_hu": round(sd, 1), "contrast_phase_guess": _contrast_phase(med, p)}
    lo = med - p.window_k_sd * sd - p.window_margin_hu
    hi = med + p.window_k_sd * sd + p.window_margin_hu
    win = scan.body & (s > lo) & (s < hi)
    liver = _compete_rounds(scan, win, core, grad, p, info, texture_background=True)
    if p.texture_percentile and p.piece_min_contact_fraction < 1.0:
        # coarse texture limits the liver's window but is no evidence against it: the pieces the
        # texture's background alone kept out join when they face the liver widely (a lobe cut
        # off by a lesion), not when they touch it at a notch (bowel, pancreas)
        free = _compete_rounds(scan, win, core, grad, p, {}, texture_background=False) & ~liver
        liver |= _adjoining(free, liver, p.piece_min_contact_fraction, p.min_competitor_ml / scan.voxel_ml, info)
    # enclose vessels and tumours
    liver = (morph.close(liver, p.closing_mm, sp, pad_vox=6) & (s > p.soft_tissue_min_hu)) | liver
    liver = morph.fill_holes(liver, per_slice=True)
    # hypodense lesions rooted in the liver belong to it, also where they bulge out of it
    hypo = np.zeros_like(liver)
    if scan.gas is not None:
        hypo, stats["bulging_blobs"] = _bulging_lesions(scan, liver, hi, p)
    liver = morph.fill_holes(liver | hypo, per_slice=True)
    liver = morph.largest_component(morph.open_(liver, p.opening_mm, sp))
    stats["window_hu"] = [round(lo, 1), round(hi, 1)]
    # the full-resolution snap uses the window as reported (to 0.1 HU)
    return _CoarseLiver(scan.uncrop(liver), scan.uncrop(hypo), tuple(stats["window_hu"]), stats)


def _compete_rounds(scan: _CoarseScan, win, core, grad, p: LiverParams, info, *, texture_background: bool) -> np.ndarray:
    """The two competition rounds: in the homogeneous-texture part of the window ``win`` (whose
    coarse-texture voxels seed background when ``texture_background``), then in the plain window
    within ``regrow_mm`` of that result."""
    sp = scan.spacing_mm
    if p.texture_percentile:
        tmax = float(np.percentile(scan.texture[core], p.texture_percentile))
        win_t = win & (scan.texture < tmax)
        info["texture_max"] = round(tmax, 1)
        liver_t = _compete(win_t, core & win_t, sp, grad, p, info, outside=None if texture_background else ~win)
        win = win & morph.dilate(liver_t, p.regrow_mm, sp)
    return _compete(win, core, sp, grad, p, info)


def _adjoining(pieces: np.ndarray, liver: np.ndarray, min_contact: float, min_vox: float, info: dict) -> np.ndarray:
    """The 6-connected pieces of ``pieces`` of at least ``min_vox`` voxels at least ``min_contact`` of
    whose boundary faces face ``liver``."""
    lab, n = morph.components(pieces, connectivity=6)
    if n == 0:
        info["pieces_joined"] = 0
        return pieces
    contact, _ = _face_shares(lab.astype(np.int64), liver, np.zeros_like(liver), n)
    keep = (contact >= min_contact) & (np.bincount(lab.ravel(), minlength=n + 1) >= min_vox)
    keep[0] = False
    info["pieces_joined"] = int(np.count_nonzero(keep))
    return keep[lab]


def _compete(win, core, sp, grad, p: LiverParams, info, *, outside=None) -> np.ndarray:
    """Marker-controlled watershed: the liver core competes with every other thick organ and with
    ``outside`` (default: the outside of ``win``), eroded by ``background_erosion_mm``."""
    labels, n = morph.components(morph.erode(win, p.competitor_radius_mm, sp))
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    ov = np.bincount(labels[core], minlength=n + 1)
    ov[0] = 0
    liver_lab = int(np.argmax(ov))
    markers = np.zeros(win.shape, np.uint16)
    min_vox = p.min_competitor_ml / voxel_volume_ml(sp)
    k = 3
    for lab in range(1, n + 1):
        if lab == liver_lab or counts[lab] < min_vox:
            continue
        markers[labels == lab] = k
        k += 1
    markers[labels == liver_lab] = 2
    markers[morph.erode(~win if outside is None else outside, p.background_erosion_mm, sp)] = 1
    ws = _grid.watershed_from_markers(grad, markers, sp, fully_connected=False)
    info["markers"] = k - 1
    return morph.reconstruct(markers == 2, (ws == 2) & win)


def _bulging_lesions(scan: _CoarseScan, liver: np.ndarray, window_max_hu: float, p: LiverParams) -> tuple[np.ndarray, list]:
    """Compact blobs of non-liver tissue (``lesion_min_hu`` < HU < ``window_max_hu``) rooted in the liver.

    The dark tissue is split into convex blobs (watershed of its distance map), so that a round
    tumour bulging out of the liver separates from the muscle or bowel it touches. A blob joins
    the liver when at least ``lesion_min_contact_fraction`` of its boundary faces liver, it is
    compact (volume at most ``lesion_max_volume_to_sphere`` times its inscribed sphere), thick
    (``lesion_min_radius_mm``) and not bowel: at most ``lesion_max_gas_fraction`` of it, opened
    by a ball scaled to its own thickness (the tissue that joins), lies next to bowel gas, and at
    most ``lesion_max_outer_gas_fraction`` of its free boundary (the faces not on the liver) lies
    within ``coarse_spacing_mm`` of air. The opened blob joins.

    Returns the joined blobs (opened) and, for the self-check, every blob of at least
    ``lesion_report_min_ml`` with its volume (mL), contact fraction, gas fraction, outer gas fraction,
    volume over its inscribed sphere's, inscribed radius (mm), the coarse grid's largest spacing (mm:
    the radius's step) and whether it joined: the joins decided near a limit of any test.
    """
    s, sp = scan.image, scan.spacing_mm
    dark = scan.body & (s > p.lesion_min_hu) & (s < window_max_hu) & ~liver & morph.dilate(liver, p.lesion_search_mm, sp)
    if not dark.any():
        return np.zeros_like(liver), []
    d = morph._dist_inside(dark, sp).astype(np.float32)
    ws = _grid.watershed(-d, sp, level=p.lesion_split_level_mm).astype(np.int64)
    ws[~dark] = 0
    n = int(ws.max())
    vox = np.bincount(ws.ravel(), minlength=n + 1).astype(float)
    rmax = morph.label_max(d, ws, n)
    sphere_vox = 4.0 / 3.0 * np.pi * rmax**3 / float(np.prod(sp))
    shaped = (vox <= p.lesion_max_volume_to_sphere * sphere_vox) & (rmax >= p.lesion_min_radius_mm)
    shaped[0] = False
    # every blob the tests decide, and every large one (reported with all its tests for the self-check)
    reported = np.flatnonzero(vox * scan.voxel_ml >= p.lesion_report_min_ml)
    reported = reported[reported > 0]
    measured = shaped.copy()
    measured[reported] = True
    near_air = _near_air(scan, measured[ws], p.coarse_spacing_mm) if measured.any() else np.zeros_like(liver)
    # air is read across the faces of the axes sampled at least as finely as the coarse grid: across
    # a slice thicker than it, a block is judged near air over the whole slice's thickness
    fine = [s / f for s, f in zip(sp, scan.factors)]
    air_axes = [ax for ax in range(3) if fine[ax] <= p.coarse_spacing_mm] or [0, 1, 2]
    contact, outer_gas = _face_shares(ws, liver, near_air, n, air_axes)
    judged = np.union1d(np.flatnonzero(shaped & (contact >= p.lesion_min_contact_fraction)), reported)
    # bowel: gas inside the opened blob (a tumour's contact with a gas-filled loop is a thin rim the
    # opening sheds), or over much of its free boundary (a loop wrapped round its lumen)
    near_gas = morph.dilate(scan.gas, 1.01 * max(sp), sp) if judged.size else None
    objects = ndi.find_objects(ws)
    opened = {lab: _opened(ws, lab, objects[lab - 1], rmax, sp, p) for lab in judged}
    gas = np.zeros(n + 1)
    for lab, (win, m) in opened.items():
        gas[lab] = np.count_nonzero(m & near_gas[win]) / max(np.count_nonzero(m), 1)
    ok = shaped & (gas <= p.lesion_max_gas_fraction) & (outer_gas <= p.lesion_max_outer_gas_fraction) \
        & (contact >= p.lesion_min_contact_fraction)
    big = np.argsort(-vox)[:8]
    log.debug("dark blobs (vox, contact, r_mm): %s", [(int(vox[i]), round(contact[i], 2), round(rmax[i], 1), bool(ok[i])) for i in big])
    report = [{"volume_ml": round(float(vox[i]) * scan.voxel_ml, 1), "contact_fraction": round(float(contact[i]), 3),
               "gas_fraction": round(float(gas[i]), 4), "outer_gas_fraction": round(float(outer_gas[i]), 3),
               "volume_to_sphere": round(float(vox[i] / sphere_vox[i]), 2),
               "radius_mm": round(float(rmax[i]), 2), "voxel_mm": round(float(max(sp)), 2), "joined": bool(ok[i])}
              for i in reported]
    out = np.zeros(ws.shape, bool)
    for lab in np.flatnonzero(ok):
        win, m = opened[lab]
        out[win] |= m
    return out, report


def _near_air(scan: _CoarseScan, region: np.ndarray, mm: float) -> np.ndarray:
    """Blocks of the body in ``region``'s box widened by a block (its voxels and their neighbours)
    holding a voxel within ``mm`` of an air voxel of the full-resolution scan."""
    out = np.zeros(region.shape, bool)
    box = bounding_box(region, pad=1)
    if is_empty_box(box):
        return out
    f, n = scan.factors, scan.air.shape
    fine_sp = tuple(c / k for c, k in zip(scan.spacing_mm, f))
    reach = [int(np.ceil(mm / s)) for s in fine_sp]
    lo = [max(0, b.start * k - r) for b, k, r in zip(box, f, reach)]
    hi = [min(m, b.stop * k + r) for b, k, r, m in zip(box, f, reach, n)]
    near = morph.dilate(scan.air[tuple(map(slice, lo, hi))], mm, fine_sp)
    near = near[tuple(slice(b.start * k - a, min(b.stop * k, m) - a) for b, k, a, m in zip(box, f, lo, n))]
    shape = tuple(b.stop - b.start for b in box)
    near = np.pad(near, [(0, c * k - m) for c, k, m in zip(shape, f, near.shape)], mode="edge")
    out[box] = near.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2]).any(axis=(1, 3, 5)) & scan.body[box]
    return out


def _face_shares(ws: np.ndarray, liver: np.ndarray, near_air: np.ndarray, n: int,
                 air_axes: tuple | list = (0, 1, 2)) -> tuple[np.ndarray, np.ndarray]:
    """Per label 0..n of ``ws``: the share of its boundary faces (6-neighbours of another label or
    background) that face ``liver`` (contact), and the share of its free faces (those not facing
    ``liver``) across the axes ``air_axes`` that face ``near_air``."""
    total, touch, free, gas = (np.zeros(n + 1) for _ in range(4))
    for ax in range(3):
        for sl_a, sl_b in ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))):
            ia = [slice(None)] * 3
            ib = [slice(None)] * 3
            ia[ax], ib[ax] = sl_a, sl_b
            la, lb = ws[tuple(ia)], ws[tuple(ib)]
            edge = (la > 0) & (lb != la)
            on_liver = liver[tuple(ib)]
            total += np.bincount(la[edge], minlength=n + 1)
            touch += np.bincount(la[edge & on_liver], minlength=n + 1)
            if ax in air_axes:
                free_edge = edge & ~on_liver
                free += np.bincount(la[free_edge], minlength=n + 1)
                gas += np.bincount(la[free_edge & near_air[tuple(ib)]], minlength=n + 1)
    contact = np.divide(touch, total, out=np.zeros_like(touch), where=total > 0)
    return contact, np.divide(gas, free, out=np.zeros_like(gas), where=free > 0)


def _opened(ws, lab, sl, rmax, sp, p: LiverParams) -> tuple[tuple, np.ndarray]:
    """Label ``lab`` of ``ws`` (in its box ``sl``) opened by ``lesion_open_mm`` or ``lesion_open_fraction`` of its
    inscribed radius ``rmax`` (sheds attached muscle sheets from a large tumour without erasing a
    small one): the window (slices of ``ws``) and the opened mask in it."""
    pad = tuple(int(np.ceil(p.lesion_open_mm / v)) + 1 for v in sp)
    win = tuple(slice(max(0, a.start - q), min(n_, a.stop + q)) for a, q, n_ in zip(sl, pad, ws.shape))
    radius = min(p.lesion_open_mm, p.lesion_open_fraction * float(rmax[lab]))
    return win, morph.open_(ws[win] == lab, radius, sp)


def _refine_full(image, coarse: _CoarseLiver, factors, spacing, p: LiverParams) -> np.ndarray:
    """Up-sample the coarse mask and snap its boundary to the full-resolution intensities."""
    out = np.zeros(image.shape, dtype=bool)
    cbox = bounding_box(coarse.mask, pad=p.refine_box_margin_vox)
    if is_empty_box(cbox):
        return out
    # the full-resolution box covered by the coarse box (block i covers [i*f, (i+1)*f))
    box = tuple(slice(c.start * f, min(c.stop * f, n)) for c, f, n in zip(cbox, factors, image.shape))
    shape = tuple(b.stop - b.start for b in box)
    blurred = _grid.gaussian(coarse.mask[cbox].astype(np.float32), (1, 1, 1), p.coarse_blur_vox)
    sub = _grid.upsample(blurred, factors, shape) > 0.5
    if not p.band_mm:
        out[box] = sub
        return out
    with ThreadPoolExecutor(1) as smoothing:  # ITK's smoothing (outside the GIL) beside the band's distance maps
        img = smoothing.submit(_grid.gaussian, image[box], spacing, p.refine_smoothing_mm)
        inner = morph.erode(sub, p.band_mm, spacing)
        outer = morph.dilate(sub, p.band_mm, spacing)
        img = img.result()
    lo, hi = coarse.window_hu
    like = (img > lo) & (img < hi)
    if coarse.lesions[cbox].any():
        like |= _grid.upsample(coarse.lesions[cbox].astype(np.float32), factors, shape) > 0.5
    new = inner | (outer & like)
    new = morph.reconstruct(inner, new)
    new = morph.open_(new, p.refine_opening_mm, spacing) | inner
    out[box] = morph.fill_holes(new, per_slice=True)
    return out


def _qc(liver, info, spacing, body_centre_x, p: LiverParams) -> None:
    """Quality flags; ``qc_passed`` is False when the mask is not a credible liver.

    Failing: no mask, a volume outside the adult range (a low volume is only flagged when the
    liver touches the cranial or caudal end of the scan, i.e. the scan shows part of it), or a
    mask whose centre is not on the patient's right (a head, a leg, the spleen).
    """
    flags = info["qc_flags"]
    fail = []
    vol = info["liver_volume_ml"]
    partial = False
    for ax, name in zip(range(3), ("right-left", "anterior-posterior", "superior-inferior")):
        proj = liver.any(axis=tuple(a for a in range(3) if a != ax))
        if proj.size and (proj[0] or proj[-1]):
            flags.append(f"liver touches the scan border ({name} axis): volume may be incomplete")
            partial = partial or ax == 2
    right_mm = None
    if liver.any():
        cx = float(np.average(np.arange(liver.shape[0]), weights=liver.sum(axis=(1, 2))))
        right_mm = (cx - body_centre_x) * spacing[0]
        info["liver_centre_right_of_body_mm"] = round(right_mm, 1)
    more_flags, more_fail = liver_plausibility(
        vol, right_mm, partial=partial, volume_range_ml=p.liver_volume_range_ml,
        min_partial_ml=p.min_partial_liver_ml, min_right_offset_mm=p.min_right_offset_mm)
    flags.extend(more_flags)
    fail.extend(more_fail)
    flags.extend(fail)
    info["qc_passed"] = not fail
