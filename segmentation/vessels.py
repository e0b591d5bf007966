"""Portal and hepatic veins inside (and at the doors of) the liver, separated into two trees.

Arrays are canonical RAS+ (axis 0 -> Right, 1 -> Anterior, 2 -> Superior). Nothing here reads files.
Every tuned value is a field of :class:`~hepatoplan.segmentation.params.VesselParams`.

Method:

1. Crop to the liver grown by ``trunk_margin_mm`` and block-average to about 1.2 mm.
2. Vessels are voxels brighter than the parenchyma by ``k_sd`` robust SDs of the parenchyma
   (statistics from the scan itself) within ``roi_margin_mm`` of the liver, plus thick vessels
   reached from them up to ``trunk_margin_mm`` below the liver's mid-height (portal trunk,
   infrahepatic IVC); tiny fragments are dropped.
3. Seeds from anatomy: the inferior vena cava is the thickest vessel that runs vertically along
   the posterior liver for at least ``ivc_min_run_mm``; the portal trunk is the thickest vessel
   elsewhere in the caudal two thirds of the liver. Hepatic veins drain to the IVC near the dome,
   the portal tree enters at the hilum.
4. The two trees compete in a marker watershed over the vessels' negative distance map: floods
   run along vessel centrelines and meet at the narrow contacts where branches of the two trees
   touch, so crossings are cut where they are thinnest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from hepatoplan.arrays import bounding_box
from hepatoplan.errors import InputError
from hepatoplan.units import MM3_PER_ML, voxel_volume_ml

from . import _grid
from . import _morph as morph
from .params import VesselParams

log = logging.getLogger(__name__)

#: Robust SD of a normal distribution from its interquartile range.
IQR_TO_SD = 1.349


@dataclass(frozen=True)
class _VesselGrid:
    """The liver's box (grown by the trunk margin) at the vessel search's resolution.

    ``box``: the crop on the full grid (a whole number of blocks from the liver's box);
    ``factors``: block size (voxels); ``image``: smoothed block mean (HU); ``liver``: liver mask.
    """

    box: tuple
    factors: tuple
    spacing_mm: tuple
    image: np.ndarray
    liver: np.ndarray

    def full_index(self, mask: np.ndarray) -> list[int]:
        """Mean voxel index of ``mask`` on the full grid."""
        return [int(v) for v in np.argwhere(mask).mean(axis=0) * self.factors + [s.start for s in self.box]]


def segment_vessels(
    image: np.ndarray,
    liver: np.ndarray,
    *,
    spacing_mm,
    params: VesselParams = VesselParams(),
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Segment the portal and hepatic venous trees of a contrast CT.

    Parameters
    ----------
    image : (X, Y, Z) array
        Contrast-enhanced CT in HU, canonical RAS+ (axis 0 -> Right, 1 -> Anterior, 2 -> Superior).
    liver : (X, Y, Z) array
        Liver mask (non-zero inside), same grid.
    spacing_mm : 3-tuple of float
        Voxel size (mm).
    params : VesselParams, keyword-only
        The algorithm's tuned values (``k_sd``: vessel threshold in robust SDs of the parenchyma).

    Returns
    -------
    portal, hepatic : (X, Y, Z) uint8 arrays
        Portal venous tree; hepatic veins including the inferior vena cava (as IRCADb labels it).
    info : dict
        JSON-ready: threshold (HU), seeds (voxel index), volumes (mL), QC flags.
    """
    spacing = _grid.check_volume(image, spacing_mm)
    image = np.asanyarray(image)
    liver = np.asanyarray(liver) > 0
    if liver.shape != image.shape:
        raise InputError(f"liver mask shape {liver.shape} differs from image shape {image.shape}; pass masks on the image grid")
    portal = np.zeros(image.shape, np.uint8)
    hepatic = np.zeros(image.shape, np.uint8)
    info: dict = {"qc_flags": []}
    if not liver.any():
        info["qc_flags"].append("empty liver mask: no vessels")
        return portal, hepatic, info
    grid = _vessel_grid(image, liver, spacing, params)
    ves, near_ves = _vessel_voxels(grid, params, info)
    if not ves.any():
        info["qc_flags"].append("no vessel brighter than the parenchyma: not a contrast-enhanced scan?")
        return portal, hepatic, info
    ves = _drop_fragments(ves, grid.liver, grid.spacing_mm, params)
    d = morph._dist_inside(ves, grid.spacing_mm).astype(np.float32)
    markers = _tree_markers(grid, ves, near_ves & ves, d, params, info)
    elev = np.where(ves, -d, 1000.0).astype(np.float32)
    ws = _grid.watershed_from_markers(elev, markers, grid.spacing_mm, fully_connected=True) if markers.any() else markers
    lab_small = (ves & (ws == 1)).astype(np.uint8) + 2 * (ves & (ws == 2)).astype(np.uint8)
    lab_full = _grid.upsample(lab_small, grid.factors, tuple(s.stop - s.start for s in grid.box), linear=False)
    portal[grid.box] = lab_full == 1
    hepatic[grid.box] = lab_full == 2
    info["portal_volume_ml"] = round(float(portal.sum()) * voxel_volume_ml(spacing), 1)
    info["hepatic_volume_ml"] = round(float(hepatic.sum()) * voxel_volume_ml(spacing), 1)
    return portal, hepatic, info


def _vessel_grid(image, liver, spacing, p: VesselParams) -> _VesselGrid:
    """Crop to the liver grown by the trunk margin, block-average to about ``target_spacing_mm``, smooth."""
    factors = tuple(max(1, int(round(p.target_spacing_mm / s))) for s in spacing)
    # margin a whole number of blocks: the block grid stays aligned to the liver's bounding box
    margin = tuple(int(np.ceil((np.ceil(p.trunk_margin_mm / s) + 2) / f)) * f for s, f in zip(spacing, factors))
    box = bounding_box(liver, pad=margin)
    sp = tuple(s * f for s, f in zip(spacing, factors))
    img = _grid.gaussian(_grid.block_mean(image[box], factors), sp, p.smoothing_mm)
    liv = _grid.block_mean(liver[box].astype(np.float32), factors) > 0.5
    return _VesselGrid(box, factors, sp, img, liv)


def _vessel_voxels(grid: _VesselGrid, p: VesselParams, info: dict) -> tuple[np.ndarray, np.ndarray]:
    """Vessel voxels (at the liver, plus thick trunks below it) and those of them within
    ``roi_margin_mm`` of the liver."""
    img, liv, sp = grid.image, grid.liver, grid.spacing_mm
    deep = morph.erode(liv, p.deep_erosion_mm, sp)
    vals = img[deep] if deep.sum() > p.min_deep_voxels else img[liv]
    med = float(np.median(vals))
    # parenchyma SD from the central part of the histogram (lesions and vessels sit in the tails)
    q25, q75 = np.percentile(vals[np.abs(vals - med) < p.parenchyma_window_hu], [25, 75])
    sd = max(float(q75 - q25) / IQR_TO_SD, p.min_parenchyma_sd_hu)
    thr = med + p.k_sd * sd
    info.update(parenchyma_median_hu=round(med, 1), parenchyma_sd_hu=round(sd, 1), threshold_hu=round(thr, 1))
    roi = morph.dilate(liv, p.roi_margin_mm, sp)
    # subtract the local parenchyma level (normalised convolution over non-vessel liver voxels)
    par = (liv & (np.abs(img - med) < p.background_k_sd * sd)).astype(np.float32)
    num = _grid.gaussian(img * par, sp, p.background_sigma_mm)
    den = _grid.gaussian(par, sp, p.background_sigma_mm)
    level = img - np.where(den > p.background_min_weight, num / np.maximum(den, 1e-3), med) + med
    bright = (level > thr) & (level < med + p.max_enhancement_hu)
    near_ves = roi & bright
    return _with_trunks(grid, near_ves, bright & ~roi, p, info), near_ves


def _with_trunks(grid: _VesselGrid, ves, bright_outside, p: VesselParams, info: dict) -> np.ndarray:
    """``ves`` plus the thick vessels leaving the liver's lower half (portal trunk, infrahepatic
    IVC), followed up to ``trunk_margin_mm`` from the liver: only the thick cores reached from the
    vessels at the liver, then their lumen."""
    liv, sp = grid.liver, grid.spacing_mm
    zs = np.flatnonzero(liv.any(axis=(0, 1)))
    far = morph.dilate(liv, p.trunk_margin_mm, sp) & bright_outside
    far[:, :, (zs[0] + zs[-1]) // 2 + 1:] = False
    if not far.any():
        return ves
    thick = morph._dist_inside(ves | far, sp) >= p.trunk_min_radius_mm
    thick_far = far & thick
    core = morph.reconstruct(ves & thick, (ves & thick) | thick_far, 26)
    ves = ves | (morph.dilate(core & thick_far, p.trunk_min_radius_mm + 0.5 * min(sp), sp) & far)
    info["extrahepatic_trunk_ml"] = round(float((ves & far).sum()) * voxel_volume_ml(sp), 1)
    return ves


def _drop_fragments(ves, liv, sp, p: VesselParams) -> np.ndarray:
    """Components of ``ves`` of at least ``min_fragment_ml`` that reach into the liver."""
    labels, n = morph.components(ves, connectivity=26)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    inside = np.bincount(labels[liv], minlength=n + 1)
    keep = (counts >= p.min_fragment_ml * MM3_PER_ML / float(np.prod(sp))) & (inside > 0)
    keep[0] = False
    return keep[labels]


def _tree_markers(grid: _VesselGrid, ves, near_ves, d, p: VesselParams, info: dict) -> np.ndarray:
    """Watershed markers: 1 = portal trunk seed, 2 = IVC and dome hepatic veins (0 elsewhere);
    ``d``: the vessels' radius map (mm), ``near_ves``: the vessels within the ROI margin."""
    liv, sp = grid.liver, grid.spacing_mm
    ivc = _find_ivc(ves, d, liv, sp, p)
    if ivc is None or not ivc.any():
        ivc = np.zeros_like(ves)
    info["ivc_found"] = bool(ivc.any())
    # the portal trunk is sought among the vessels at the liver, with their own thickness (the
    # extrahepatic additions make the kidneys' and the aorta's walls look thicker)
    pv_seed = _find_portal_seed(near_ves, morph._dist_inside(near_ves, sp).astype(np.float32), liv, ivc, sp, p)
    markers = np.zeros(ves.shape, np.uint8)
    markers[ivc] = 2
    dome = _dome_hepatic_seed(ves, d, liv, pv_seed, sp, p)
    markers[dome] = 2
    if not (ivc.any() or dome.any()):
        info["qc_flags"].append("no hepatic-vein seed (IVC or dome veins): every vessel labelled portal")
    if pv_seed is not None:
        markers[pv_seed] = 1
        info["portal_seed_index"] = grid.full_index(pv_seed)
    else:
        info["qc_flags"].append("portal trunk not found: portal/hepatic separation unreliable")
    if ivc.any():
        info["ivc_seed_index"] = grid.full_index(ivc)
    return markers


def _find_ivc(ves, d, liv, sp, p: VesselParams):
    """The inferior vena cava: the thickest long vertical vessel along the posterior liver."""
    run_vox = int(np.ceil(p.ivc_min_run_mm / sp[2]))
    thick = ves & (d >= p.ivc_min_radius_mm)
    if not thick.any():
        return None
    # vertical continuity: opening along z with a line of run_vox voxels
    vert = ndi.binary_opening(thick, structure=np.ones((1, 1, run_vox), bool))
    labels, n = morph.components(vert, connectivity=26)
    if n == 0:
        return None
    counts = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    # closeness to the liver: fraction of the component near the liver
    near = morph.dilate(liv, p.ivc_near_liver_mm, sp)
    near_frac = np.bincount(labels[near], minlength=n + 1)[1:] / np.maximum(counts, 1)
    best = int(np.argmax(counts * near_frac)) + 1
    if near_frac[best - 1] < p.ivc_min_near_fraction:
        return None
    # grow the seed over the vessel within its own radius (the IVC lumen)
    return morph.dilate(labels == best, p.ivc_lumen_mm, sp) & ves


def _dome_hepatic_seed(ves, d, liv, pv_seed, sp, p: VesselParams):
    """Thick vessels in the cranial part of the liver: hepatic veins converging on the IVC."""
    zs = np.flatnonzero(liv.any(axis=(0, 1)))
    top = np.zeros_like(ves)
    top[:, :, zs[-1] - int(p.dome_fraction * (zs[-1] - zs[0])):] = True
    seed = ves & top & (d >= p.dome_min_radius_mm) & liv
    if pv_seed is not None and pv_seed.any():
        seed &= ~morph.dilate(pv_seed, p.dome_portal_clearance_mm, sp)
    return seed


def _find_portal_seed(ves, d, liv, ivc, sp, p: VesselParams):
    """A ball inside the portal trunk: the thickest vessel away from the IVC, caudal to the dome."""
    zs = np.flatnonzero(liv.any(axis=(0, 1)))
    if len(zs) == 0:
        return None
    z_lo, z_hi = zs[0], zs[-1]
    allowed = np.zeros_like(ves)
    allowed[:, :, z_lo : z_lo + int(p.portal_seed_height_fraction * (z_hi - z_lo)) + 1] = True
    away = ~morph.dilate(ivc, p.portal_ivc_clearance_mm, sp) if ivc.any() else np.ones_like(ves)
    cand = np.where(ves & allowed & away, d, 0.0)
    if cand.max() < p.portal_min_radius_mm:
        return None
    i = np.unravel_index(int(np.argmax(cand)), cand.shape)
    ball = np.zeros_like(ves)
    ball[i] = True
    return morph.dilate(ball, float(cand[i]), sp) & ves
