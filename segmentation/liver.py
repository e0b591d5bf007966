"""Automatic liver segmentation from CT (and MR) by classical image analysis.

Arrays are canonical RAS+: index axis 0 increases toward the patient's Right, axis 1 toward
Anterior, axis 2 toward Superior. Nothing here reads files.

Method (thresholds are learned from the scan, in HU or in units of the scan's own noise; the
constants below are in millimetres or in robust SDs, not tuned HU values):

1. Block-average to about 2 mm voxels (block SD kept as a texture measure), median-filter, crop to
   the body (air threshold, largest component, holes filled per slice).
2. Candidate liver intensities are the peaks of the soft-tissue histogram of the deep, right-sided
   body. For each peak a +-25 HU window is eroded by 6 mm and its blobs scored by volume times
   right-sidedness (axis 0 grows toward the patient's right); the best blob is the liver core and
   its median / MAD define the window ``median +- (WINDOW_K_SD * sd + margin)``.
3. Organ competition: inside the window, every blob that survives an ``CORE_RADIUS_MM`` erosion is
   a marker (the liver core, the spleen, heart, kidney ...), the outside of the window is another;
   a marker-controlled watershed on the gradient magnitude splits touching organs along their
   faint edges. It runs first on homogeneous-texture voxels only (the liver is smoother than bowel
   and pancreas), then again in the plain window within ``REGROW_MM`` of that result.
4. Closing (8 mm) and hole filling bring back vessels and tumours enclosed by parenchyma. Dark
   tissue next to the liver is split into convex blobs (watershed of its distance map); blobs
   that face the liver over at least a quarter of their boundary, are compact, thick and free of
   bowel gas are tumours bulging out of the liver and join it (opened by ``LESION_OPEN_MM`` to
   shed attached muscle).
5. The coarse mask is up-sampled (linear, partial-volume aware) and its boundary snapped to the
   full-resolution smoothed intensities within ``BAND_MM``.

MR has its own method (:mod:`hepatoplan.segmentation.mr_liver`): ``segment_liver(modality="MR")``
hands the volume to :func:`~hepatoplan.segmentation.mr_liver.segment_liver_mr`.

Known limits: the thresholds were developed on two IRCADb portal-venous CTs, a contrast and a plain
CT and one MR; large isodense tumours at the liver surface, a liver touching the spleen over a
wide flat contact, or unusual anatomy can still be mis-segmented: check the QC flags.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from scipy import ndimage as ndi

from hepatoplan.errors import InputError
from hepatoplan.units import MM3_PER_ML

from . import _grid
from . import _morph as morph

log = logging.getLogger(__name__)

#: Working resolution of the coarse stage (mm).
COARSE_SPACING_MM = 2.0
#: Intensity window half-width, in robust SDs of the liver core (plus 10 HU).
WINDOW_K_SD = 3.5
#: Texture (local SD) limit: this percentile of the liver core's texture.
TEXTURE_PERCENTILE = 95.0
#: Erosion radius (mm) defining organ cores that compete in the watershed.
CORE_RADIUS_MM = 8.0
#: How far (mm) the homogeneous-texture liver may regrow into the plain intensity window.
REGROW_MM = 11.0
#: Half-width (mm) of the band where the boundary is snapped to full-resolution intensities.
BAND_MM = 3.0
#: Opening radius (mm) applied to dark blobs joined to the liver (sheds attached muscle sheets).
LESION_OPEN_MM = 8.0
#: ... or this fraction of the blob's inscribed radius when that is smaller.
LESION_OPEN_FRACTION = 0.6
#: Candidate organs (liver cores) tried in turn while the mask grown from them fails the quality checks.
MAX_CORE_CANDIDATES = 3
#: Plausible adult liver volume range (mL) for the QC flags.
LIVER_VOLUME_RANGE_ML = (600.0, 4000.0)
#: Smallest liver volume (mL) accepted when the scan shows only part of the liver.
MIN_PARTIAL_LIVER_ML = 50.0
#: The liver's centre must lie at least this far (mm) to the right of the body's centre.
MIN_RIGHT_OFFSET_MM = 15.0


def _body_mask(small: np.ndarray, air_level: float) -> np.ndarray:
    body = morph.largest_component(small > air_level)
    return morph.fill_holes(body, per_slice=True)


def _robust_stats(values: np.ndarray) -> tuple[float, float]:
    med = float(np.median(values))
    mad = float(np.median(np.abs(values - med))) * 1.4826
    return med, max(mad, 1e-3)


def _body_centre_x(body, factors, offset=0) -> float:
    """Centre of the body along axis 0 (Right), in full-resolution voxel index."""
    w = body.sum(axis=(1, 2)).astype(float)
    cx = float(np.average(np.arange(body.shape[0]), weights=w)) if w.sum() else body.shape[0] / 2.0
    return (cx + offset + 0.5) * factors[0] - 0.5


def _contrast_phase(liver_median_hu: float) -> str:
    """Rough phase from the liver's density (non-contrast liver ~55 HU, portal-venous ~100-130 HU)."""
    if liver_median_hu < 75.0:
        return "non-contrast"
    if liver_median_hu < 90.0:
        return "arterial or early portal-venous"
    return "portal-venous"


def _histogram_peaks(values: np.ndarray, lo: float, hi: float, bin_width: float, n_peaks: int = 4):
    bins = np.arange(lo, hi + bin_width, bin_width)
    hist, edges = np.histogram(values, bins=bins)
    hist = ndi.gaussian_filter1d(hist.astype(float), 1.5)
    centres = 0.5 * (edges[:-1] + edges[1:])
    peaks = [i for i in range(1, len(hist) - 1) if hist[i] >= hist[i - 1] and hist[i] > hist[i + 1]]
    peaks.sort(key=lambda i: -hist[i])
    return [float(centres[i]) for i in peaks[:n_peaks]]


def _score_blob(blob: np.ndarray, body_centre, spacing, voxel_ml) -> float:
    vol_ml = blob.sum() * voxel_ml
    idx = np.argwhere(blob)
    c = idx.mean(axis=0)
    # right-sidedness in mm (axis 0 grows toward patient right)
    right_mm = (c[0] - body_centre[0]) * spacing[0]
    side = 1.0 / (1.0 + np.exp(-right_mm / 20.0))
    return float(vol_ml * side)


def _liver_core_candidates(s, body, spacing, *, peaks, window_halfwidth, erode_mm, voxel_ml):
    """Candidate liver cores, best first: (core mask, centre intensity) of the best-scoring blob
    over the candidate peaks, then of the best blob not overlapping the earlier ones, up to
    :data:`MAX_CORE_CANDIDATES`."""
    body_centre = np.argwhere(body[:, :, body.shape[2] // 2]).mean(axis=0) if body[:, :, body.shape[2] // 2].any() else np.array(body.shape[:2]) / 2
    blobs = []
    for c in peaks:
        win = body & (s > c - window_halfwidth) & (s < c + window_halfwidth)
        core = morph.erode(win, erode_mm, spacing)
        labels, n = morph.components(core)
        if n == 0:
            continue
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        for lab in np.argsort(counts)[::-1][:5]:
            if counts[lab] == 0:
                break
            blob = labels == lab
            score = _score_blob(blob, body_centre, spacing, voxel_ml)
            log.debug("peak %.0f blob %d vol %.0f mL score %.0f", c, lab, counts[lab] * voxel_ml, score)
            blobs.append((score, c, blob))
    chosen: list = []
    taken = np.zeros(s.shape, bool)
    for score, c, blob in sorted(blobs, key=lambda b: -b[0]):
        if len(chosen) == MAX_CORE_CANDIDATES:
            break
        if not np.any(blob & taken):
            chosen.append((blob, c))
            taken |= blob
    return chosen


def segment_liver(
    image: np.ndarray,
    *,
    spacing_mm,
    modality: str = "CT",
) -> tuple[np.ndarray, dict]:
    """Segment the liver in a CT (portal-venous or plain) or MR volume.

    Parameters
    ----------
    image : (X, Y, Z) array
        Canonical RAS+ volume (axis 0 -> Right, 1 -> Anterior, 2 -> Superior); CT in HU.
    spacing_mm : 3-tuple of float
        Voxel size along the three axes (mm).
    modality : {"CT", "MR"}
        Imaging modality; MR is segmented by :func:`~hepatoplan.segmentation.mr_liver.segment_liver_mr`.

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
    _check_ct_range(image)
    # the best-scoring candidate organ is the liver unless it fails the quality checks (e.g. a
    # large right renal mass outscoring the lower part of a liver whose top is cut off): then the
    # runner-up, a different organ, is tried
    tried = []
    for rank in range(MAX_CORE_CANDIDATES):
        info = {**base, "qc_flags": [], "qc_passed": True}
        found = _coarse_liver_ct(image, spacing, info, rank=rank)
        if found is None:
            break
        liver_small, factors, stats = found
        liver = _refine_full(image, liver_small, factors, spacing, stats)
        info.update(stats)
        info["liver_volume_ml"] = round(float(liver.sum()) * float(np.prod(spacing)) / MM3_PER_ML, 1)
        _qc(liver, info, spacing)
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


def _check_ct_range(image: np.ndarray) -> None:
    sample = image[::4, ::4, ::2]
    lo, hi = (float(v) for v in np.percentile(sample, [1, 99.5]))
    air = float(np.mean(sample < -500))
    if lo > -500 or air < 0.02:
        raise InputError(
            f"CT intensities do not look like Hounsfield units: 1st percentile {lo:.0f}, "
            f"{100 * air:.1f} % of voxels below -500 (expected air near -1000 HU around the body); "
            "rescale with RescaleSlope/Intercept, or pass --modality mr for an MR scan"
        )
    if hi > 4000:
        raise InputError(
            f"CT intensities do not look like Hounsfield units: 99.5th percentile {hi:.0f} (> 4000); "
            "rescale with RescaleSlope/Intercept"
        )


def _coarse_liver_ct(image, spacing, info, *, lesions=True, window_margin=10.0, rank=0):
    """Coarse liver mask grown from the ``rank``-th candidate core (None when there is none)."""
    factors = _grid.shrink_factors(spacing, COARSE_SPACING_MM)
    sp = tuple(s * f for s, f in zip(spacing, factors))
    voxel_ml = float(np.prod(sp)) / MM3_PER_ML
    small_full, bsd_full = _grid.block_mean_sd(image, factors)
    # crop to the body (arms, table and air cost time, not information)
    pre = morph.largest_component(small_full > -400.0)
    cb = _grid.bbox(pre, margin=(2, 2, 2)) or tuple(slice(0, n) for n in small_full.shape)
    small, bsd = small_full[cb], bsd_full[cb]
    s = _grid.median(small, 1)
    tex = np.sqrt(np.maximum(_grid.gaussian(np.square(bsd), sp, 3.0) + _grid.gaussian(np.square(small - s), sp, 3.0), 0.0))
    body = _body_mask(s, -400.0)
    info["_body_centre_index_x"] = _body_centre_x(body, factors, offset=cb[0].start)
    depth = morph.erode(body, 15.0, sp)
    right = np.zeros_like(body)
    cx = np.argwhere(body).mean(axis=0)[0]
    right[int(cx):] = True
    sel = depth & right & (s > -20) & (s < 250)
    peaks = _histogram_peaks(s[sel], -20, 250, 4.0)
    info["histogram_peaks_hu"] = [round(p, 1) for p in peaks]
    # noise of the smoothed coarse image inside soft tissue
    cands = _liver_core_candidates(s, body, sp, peaks=peaks, window_halfwidth=25.0, erode_mm=6.0, voxel_ml=voxel_ml)
    if not cands:
        raise InputError("no liver-like soft tissue found in the CT; is this an abdominal scan?")
    if rank >= len(cands):
        return None
    core, centre = cands[rank]
    med, sd = _robust_stats(s[core])
    stats = {
        "liver_median_hu": round(med, 1),
        "liver_sd_hu": round(sd, 1),
        "contrast_phase_guess": _contrast_phase(med),
    }
    k = WINDOW_K_SD
    lo, hi = med - k * sd - window_margin, med + k * sd + window_margin
    win = body & (s > lo) & (s < hi)
    grad = _grid.gradient_magnitude(s, sp, 1.5)
    tq = TEXTURE_PERCENTILE
    if tq:
        tmax = float(np.percentile(tex[core], tq))
        win_t = win & (tex < tmax)
        info["texture_max"] = round(tmax, 1)
        liver_t = _compete(win_t, core & win_t, sp, grad=grad, info=info)
        win = win & morph.dilate(liver_t, REGROW_MM, sp)
    liver = _compete(win, core, sp, grad=grad, info=info)
    # enclose vessels and tumours
    soft = s > -30
    liver = (morph.close(liver, 8.0, sp, pad_vox=6) & soft) | liver
    liver = morph.fill_holes(liver, per_slice=True)
    # hypodense lesions rooted in the liver belong to it, also where they bulge out of it
    if lesions:
        # gas: any block holding a few voxels of air (bowel bubbles vanish in the block mean)
        gas = _grid.block_mean((image < -400).astype(np.float32), factors)[cb] > 0.02
        hypo = _rooted_lesions(s, body, liver, lo, hi, sp, gas=gas & body)
    else:
        hypo = np.zeros_like(liver)
    liver = morph.fill_holes(liver | hypo, per_slice=True)
    liver = morph.open_(liver, 3.0, sp)
    liver = morph.largest_component(liver)
    stats["window_hu"] = [round(lo, 1), round(hi, 1)]
    liver_full = np.zeros(small_full.shape, bool)
    liver_full[cb] = liver
    hypo_full = np.zeros(small_full.shape, bool)
    hypo_full[cb] = hypo
    stats["_hypo"] = hypo_full
    return liver_full, factors, stats


def _rooted_lesions(s, body, liver, lo, hi, sp, *, gas=None, fluid_hu=20.0, min_contact=0.25, max_to_sphere=6.0, min_radius_mm=3.0):
    """Compact hypodense blobs (``fluid_hu`` < HU < ``lo``) attached to the liver.

    The dark tissue is split into convex blobs (watershed of its distance map), so that a round
    tumour bulging out of the liver separates from the muscle or bowel it touches. A blob joins
    the liver when at least ``min_contact`` of its boundary faces liver, it is compact (volume at
    most ``max_to_sphere`` times its inscribed sphere) and thick (``min_radius_mm``).
    """
    import SimpleITK as sitk

    dark = body & (s > fluid_hu) & (s < hi) & ~liver & morph.dilate(liver, 60.0, sp)
    if not dark.any():
        return np.zeros_like(liver)
    d = morph._dist_inside(dark, sp).astype(np.float32)
    ws = _grid._from_sitk(
        sitk.MorphologicalWatershed(_grid._to_sitk(-d, sp), level=2.0, markWatershedLine=False, fullyConnected=False)
    ).astype(np.int64)
    ws[~dark] = 0
    n = int(ws.max())
    idx = np.arange(1, n + 1)
    total = np.zeros(n + 1)
    touch = np.zeros(n + 1)
    for ax in range(3):
        for sl_a, sl_b in ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))):
            ia = [slice(None)] * 3
            ib = [slice(None)] * 3
            ia[ax], ib[ax] = sl_a, sl_b
            la, lb = ws[tuple(ia)], ws[tuple(ib)]
            edge = (la > 0) & (lb != la)
            total += np.bincount(la[edge], minlength=n + 1)
            touch += np.bincount(la[edge & liver[tuple(ib)]], minlength=n + 1)
    vox = np.bincount(ws.ravel(), minlength=n + 1).astype(float)
    rmax = morph.label_max(d, ws, n)
    sphere_vox = 4.0 / 3.0 * np.pi * rmax**3 / float(np.prod(sp))
    frac = np.divide(touch, total, out=np.zeros_like(touch), where=total > 0)
    ok = (frac >= min_contact) & (vox <= max_to_sphere * sphere_vox) & (rmax >= min_radius_mm)
    ok[0] = False
    # bowel: gas bubbles inside or right next to the blob
    cand_ids = np.flatnonzero(ok)
    if len(cand_ids) and gas is not None:
        near_gas = morph.dilate(gas, 1.01 * max(sp), sp)
        gas_hits = np.bincount(ws[near_gas], minlength=n + 1)
        ok &= gas_hits <= 0.01 * vox
    big = np.argsort(-vox)[:8]
    log.debug("dark blobs (vox, contact, r_mm): %s", [(int(vox[i]), round(frac[i], 2), round(rmax[i], 1), bool(ok[i])) for i in big])
    # open each accepted blob with a ball scaled to its own thickness (sheds attached muscle sheets
    # from a large tumour without erasing a small one)
    out = np.zeros_like(liver)
    objects = ndi.find_objects(ws)
    pad = tuple(int(np.ceil(LESION_OPEN_MM / v)) + 1 for v in sp)
    for lab in np.flatnonzero(ok):
        sl = objects[lab - 1]
        if sl is None:
            continue
        win = tuple(slice(max(0, a.start - p), min(n_, a.stop + p)) for a, p, n_ in zip(sl, pad, ws.shape))
        blob = ws[win] == lab
        radius = min(LESION_OPEN_MM, LESION_OPEN_FRACTION * float(rmax[lab]))
        out[win] |= morph.open_(blob, radius, sp)
    return out


def _compete(win, core, sp, *, grad, info):
    """Marker-controlled watershed: the liver core competes with every other thick organ."""
    import SimpleITK as sitk
    r_big = CORE_RADIUS_MM
    labels, n = morph.components(morph.erode(win, r_big, sp))
    counts = np.bincount(labels.ravel(), minlength=n + 1)
    ov = np.bincount(labels[core], minlength=n + 1)
    ov[0] = 0
    liver_lab = int(np.argmax(ov))
    markers = np.zeros(win.shape, np.uint16)
    vmin = 2.0 * 1000.0 / np.prod(sp)  # 2 mL
    k = 3
    for lab in range(1, n + 1):
        if lab == liver_lab or counts[lab] < vmin:
            continue
        markers[labels == lab] = k
        k += 1
    markers[labels == liver_lab] = 2
    bg = morph.erode(~win, 2.0, sp)
    markers[bg] = 1
    ws = _grid._from_sitk(
        sitk.MorphologicalWatershedFromMarkers(
            _grid._to_sitk(grad, sp), _grid._to_sitk(markers, sp), markWatershedLine=False, fullyConnected=False
        )
    )
    info["markers"] = k - 1
    return morph.reconstruct(markers == 2, (ws == 2) & win)


def _refine_full(image, liver_small, factors, spacing, stats):
    """Up-sample the coarse mask and snap its boundary to the full-resolution intensities."""
    hypo = stats.pop("_hypo", None)
    out = np.zeros(image.shape, dtype=bool)
    cbox = _grid.bbox(liver_small, margin=(3, 3, 3))
    if cbox is None:
        return out
    # the full-resolution box covered by the coarse box (block i covers [i*f, (i+1)*f))
    box = tuple(slice(c.start * f, min(c.stop * f, n)) for c, f, n in zip(cbox, factors, image.shape))
    shape = tuple(b.stop - b.start for b in box)
    prob = _grid.upsample(_grid.gaussian(liver_small[cbox].astype(np.float32), (1, 1, 1), 0.7), factors, shape)
    sub = prob > 0.5
    if not BAND_MM:
        out[box] = sub
        return out
    band_mm = BAND_MM
    img = _grid.gaussian(image[box], spacing, 1.0)
    lo, hi = stats["window_hu"]
    inner = morph.erode(sub, band_mm, spacing)
    outer = morph.dilate(sub, band_mm, spacing)
    like = (img > lo) & (img < hi)
    if hypo is not None and hypo[cbox].any():
        like |= _grid.upsample(hypo[cbox].astype(np.float32), factors, shape) > 0.5
    new = inner | (outer & like)
    new = morph.reconstruct(inner, new)
    new = morph.open_(new, 1.5, spacing) | inner
    new = morph.fill_holes(new, per_slice=True)
    out[box] = new
    return out


def _qc(liver, info, spacing):
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
    lo_ml, hi_ml = LIVER_VOLUME_RANGE_ML
    if vol < MIN_PARTIAL_LIVER_ML or vol > hi_ml or (vol < lo_ml and not partial):
        fail.append(f"liver volume {vol:.0f} mL outside the plausible range {LIVER_VOLUME_RANGE_ML} mL")
    elif vol < lo_ml:
        flags.append(f"liver volume {vol:.0f} mL below {lo_ml:.0f} mL: partial scan coverage")
    body_x = info.pop("_body_centre_index_x", None)
    if liver.any() and body_x is not None:
        cx = float(np.average(np.arange(liver.shape[0]), weights=liver.sum(axis=(1, 2))))
        right_mm = (cx - body_x) * spacing[0]
        info["liver_centre_right_of_body_mm"] = round(right_mm, 1)
        if right_mm < MIN_RIGHT_OFFSET_MM:
            fail.append(
                f"the liver candidate's centre lies {right_mm:.0f} mm right of the body centre "
                f"(a liver lies at least {MIN_RIGHT_OFFSET_MM:.0f} mm to the patient's right): "
                "no liver in this scan, or the orientation is wrong"
            )
    if not liver.any():
        fail.append("no liver found")
    flags.extend(fail)
    info["qc_passed"] = not fail
