"""Parenchymal-sparing wedges: modulated margins and vascular detachment.

Two refinements of the tumour wedge of :mod:`hepatoplan.resection.virtual` (tumour + a margin of parenchyma):

- **Modulated margin.** ``margin_mm`` in free parenchyma, and ``near_vessel_margin_mm`` (e.g. 1 mm)
  where the tumour lies within ``near_vessel_distance_mm`` of a major vessel: the surgeon aims for
  a generous margin where it costs nothing and shaves close to a vessel that must be kept. Each
  point around the tumour takes the margin of the tumour voxel nearest to it; a tumour voxel is
  "near a vessel" when the gap between its surface and the vessel's is at most
  ``near_vessel_distance_mm`` (gap = centre-to-centre distance − the finest spacing, half a voxel
  on each side).
- **Vascular detachment.** A ``protected`` vessel (e.g. a hepatic vein the tumour touches) is
  not taken: its voxels stay, and so does every voxel of the margin *behind* it, i.e. whose
  straight segment to its nearest tumour voxel crosses the protected vessel (the surgeon dissects
  the tumour off the vessel and does not go around it). A tumour touching the protected vessel (a 26-neighbour voxel) is a **vascular R1**: its
  margin against the vessel is 0 by design, which is oncologically acceptable on a vessel wall
  (Viganò L et al., Ann Surg Oncol 2016;23:1352-60) unlike a parenchymal R1.

Volumes follow the lead's partial-voxel construction (:mod:`hepatoplan.resection.virtual`): with ``s`` the
distance to the tumour's smooth surface corrected for curvature
(:class:`hepatoplan.resection.surface.SurfaceDistance`, ``ramp_mm``), ``w`` the voxel extent along its normal
and ``m`` the local margin, a voxel's resected fraction is ``f = clip((m + w/2 − s)/w, 0, 1)``.
Protected and shadowed voxels get ``f = 0``. With no modulation and no protection the fraction
equals :func:`hepatoplan.resection.virtual.plan_resection`'s wedge exactly (tested).

Achieved margin: for every kept parenchyma voxel (liver, not tumour, not protected, ``f < 1``) the
local clearance is ``s_e − w_e/2 + f·w_e`` with the *straight-line* distance ``s_e`` (through
vessels): equal to ``m`` on the partial voxels of the cut surface, larger beyond it, smaller in a
protected vessel's shadow (the parenchyma behind the vessel, as close as the vessel is thick). The
minimum and the voxel where it occurs are reported (index of the full array and mm of the array
frame, ``index × spacing_mm``; never world coordinates).

Arrays are canonical RAS+ (index axis 0 → patient Right, 1 → Anterior, 2 → Superior) on one grid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError
from hepatoplan.nearest_voxel import edt_mm

from .procedures import check_margin_mm
from .surface import surface_distance
from hepatoplan.arrays import bounding_box, padded_box
from hepatoplan.units import voxel_volume_ml

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SparingOutcome:
    """What a sparing wedge does to one tumour.

    Attributes
    ----------
    id : int
        Tumour id.
    resected_ml : float
        Liver removed by this tumour's wedge (tumour included, partial voxels), mL.
    margin_mm, near_vessel_margin_mm : float
        Margins asked for in free parenchyma / near a major vessel (the latter ``None`` when not
        modulated).
    near_vessel_surface_percent : float
        Share of the tumour's surface voxels lying within ``near_vessel_distance_mm`` of a major
        vessel (0 when not modulated).
    achieved_min_margin_mm : float or None
        Smallest clearance to kept parenchyma (see the module notes); ``None`` when no parenchyma
        is kept near the tumour.
    thinnest_index : tuple of 3 int or None
        Kept voxel where the clearance is smallest (full-array indices).
    thinnest_mm : tuple of 3 float or None
        The same in mm of the array frame (``index × spacing_mm``).
    protected : bool
        Whether a protected vessel was given.
    vascular_r1 : bool
        The tumour touches the protected vessel (margin 0 on the vessel wall by design).
    protected_gap_mm : float or None
        Gap from the tumour's surface to the protected vessel (0 when touching), mm.
    """

    id: int
    resected_ml: float
    margin_mm: float
    near_vessel_margin_mm: float | None
    near_vessel_surface_percent: float
    achieved_min_margin_mm: float | None
    thinnest_index: tuple[int, int, int] | None
    thinnest_mm: tuple[float, float, float] | None
    protected: bool
    vascular_r1: bool
    protected_gap_mm: float | None

    @property
    def r_status(self) -> str:
        """``"R0"``, ``"vascular R1"`` or ``"R1"`` (no clearance in parenchyma)."""
        if self.vascular_r1:
            return "vascular R1"
        if self.achieved_min_margin_mm is not None and self.achieved_min_margin_mm <= 0:
            return "R1"
        return "R0"

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "resected_ml": self.resected_ml,
            "margin_mm": self.margin_mm,
            "near_vessel_margin_mm": self.near_vessel_margin_mm,
            "near_vessel_surface_percent": self.near_vessel_surface_percent,
            "achieved_min_margin_mm": self.achieved_min_margin_mm,
            "thinnest_index": None if self.thinnest_index is None else list(self.thinnest_index),
            "thinnest_mm": None if self.thinnest_mm is None else list(self.thinnest_mm),
            "protected": self.protected,
            "vascular_r1": self.vascular_r1,
            "protected_gap_mm": self.protected_gap_mm,
            "r_status": self.r_status,
        }


def sparing_wedge(
    *,
    tumour: np.ndarray,
    liver: np.ndarray,
    spacing_mm,
    margin_mm: float = 1.0,
    near_vessel_margin_mm: float | None = None,
    near_vessel_distance_mm: float | None = None,
    major_vessels: np.ndarray | None = None,
    protected: np.ndarray | None = None,
    tumour_id: int = 1,
) -> tuple[np.ndarray, SparingOutcome]:
    """Resected fraction of one tumour's wedge with a modulated margin and/or vascular detachment.

    Parameters
    ----------
    tumour : ndarray of bool, shape (nx, ny, nz)
        One tumour, canonical RAS+ (axis 0 → Right, 1 → Anterior, 2 → Superior).
    liver : ndarray of bool, same shape
        Liver mask (tumours inside count as liver); nothing outside it is resected.
    spacing_mm : sequence of 3 float
        Voxel spacing along the array axes, mm.
    margin_mm : float
        Margin in free parenchyma, mm (≥ 0).
    near_vessel_margin_mm, near_vessel_distance_mm : float, optional
        Modulation: the margin where the tumour lies within ``near_vessel_distance_mm`` of
        ``major_vessels``. Give both (and ``major_vessels``) or neither.
    major_vessels : ndarray of bool, optional
        Vessels that make a margin shrink (e.g. hepatic veins and the first portal branches).
    protected : ndarray of bool, optional
        Vessels to detach from: never resected, and the margin is not taken through them.
    tumour_id : int
        Id written in the outcome.

    Returns
    -------
    fraction : ndarray of float32
        Resected share (0-1) of each voxel (full array; 0 outside the liver and on protected
        voxels; 1 on the tumour). Combine several with ``np.maximum``.
    outcome : SparingOutcome

    Raises
    ------
    InputError
        Negative margins, modulation options given partly, shapes that differ, an empty tumour, a
        bad spacing.
    """
    spacing = check_spacing_mm(spacing_mm)
    tumour = np.asarray(tumour).astype(bool, copy=False)
    liver = np.asarray(liver).astype(bool, copy=False)
    for name, arr in (("liver", liver), ("major_vessels", major_vessels), ("protected", protected)):
        if arr is not None and np.shape(arr) != tumour.shape:
            raise InputError(f"{name}: shape {np.shape(arr)} differs from the tumour's {tumour.shape}; "
                             "give every mask on one grid.")
    modulated = _check_margins(margin_mm, near_vessel_margin_mm, near_vessel_distance_mm, major_vessels)
    if not tumour.any():
        raise InputError(f"tumour {tumour_id}: the tumour mask is empty")

    biggest = max(margin_mm, near_vessel_margin_mm or 0.0)
    reach = biggest + (near_vessel_distance_mm or 0.0) + 3 * max(spacing)
    box = padded_box(bounding_box(tumour), [int(np.ceil(reach / s)) + 2 for s in spacing], tumour.shape)
    w = _WedgeBox.crop(box, tumour, liver, major_vessels, protected, spacing)
    # the lead's narrow band (margin + 2 voxels): identical values where any fraction is non-zero
    distance = surface_distance(w.tumour, spacing_mm=spacing, band_mm=biggest + 2 * max(spacing),
                                depth_mm=max(spacing))
    margin, near_percent = np.full(w.tumour.shape, float(margin_mm), np.float32), 0.0
    if modulated:
        margin, near_percent = _modulated_margin(w, margin, near_vessel_margin_mm, near_vessel_distance_mm)
    frac = _wedge_fraction(w, distance, margin, biggest)
    thinnest = _thinnest_clearance(w, distance, frac)
    vascular_r1, gap = _protected_contact(w, distance) if protected is not None else (False, None)

    full = np.zeros(tumour.shape, np.float32)
    full[box] = frac
    outcome = SparingOutcome(
        id=int(tumour_id),
        resected_ml=float(frac.sum(dtype=np.float64)) * voxel_volume_ml(spacing),
        margin_mm=float(margin_mm),
        near_vessel_margin_mm=None if not modulated else float(near_vessel_margin_mm),
        near_vessel_surface_percent=round(near_percent, 2),
        **thinnest,
        protected=protected is not None,
        vascular_r1=vascular_r1,
        protected_gap_mm=gap,
    )
    return full, outcome


@dataclass(frozen=True, eq=False)
class _WedgeBox:
    """One tumour's work box: its masks there (bool), where the box starts, and the spacing (mm)."""

    tumour: np.ndarray
    liver: np.ndarray  # liver or tumour
    protected: np.ndarray  # protected vessel voxels, the tumour excluded (all False when none)
    major: np.ndarray | None  # major vessels (None when not given)
    offset: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]

    @classmethod
    def crop(cls, box, tumour, liver, major_vessels, protected, spacing_mm) -> _WedgeBox:
        tum = tumour[box]
        return cls(
            tumour=tum,
            liver=liver[box] | tum,
            protected=(np.zeros(tum.shape, bool) if protected is None
                       else (np.asarray(protected)[box] > 0) & ~tum),
            major=None if major_vessels is None else np.asarray(major_vessels)[box] > 0,
            offset=tuple(b.start for b in box),
            spacing_mm=spacing_mm,
        )


def _check_margins(margin_mm, near_vessel_margin_mm, near_vessel_distance_mm, major_vessels) -> bool:
    """Validate the margins; whether the margin is modulated near vessels."""
    check_margin_mm(margin_mm)
    modulated = near_vessel_margin_mm is not None or near_vessel_distance_mm is not None
    if modulated:
        if near_vessel_margin_mm is None or near_vessel_distance_mm is None or major_vessels is None:
            raise InputError(
                "modulated margin: give near_vessel_margin_mm (--near-vessel-margin-mm), "
                "near_vessel_distance_mm (--near-vessel-distance-mm) and the major vessels "
                "(--portal/--hepatic) together"
            )
        check_margin_mm(near_vessel_margin_mm, flag="--near-vessel-margin-mm")
        check_margin_mm(near_vessel_distance_mm, flag="--near-vessel-distance-mm")
    return modulated


def _modulated_margin(w: _WedgeBox, margin, near_vessel_margin_mm, near_vessel_distance_mm):
    """Each voxel's margin: that of its nearest tumour voxel (``near_vessel_margin_mm`` where that
    voxel is near a major vessel); and the share (%) of the tumour's surface near a vessel."""
    spacing = w.spacing_mm
    near = _near_vessel_voxels(w.tumour, w.major, spacing, near_vessel_distance_mm)
    surface = w.tumour & ~ndimage.binary_erosion(w.tumour, structure=np.ones((3, 3, 3), bool), border_value=0)
    near_percent = 100.0 * float(np.count_nonzero(near & surface)) / max(1, int(np.count_nonzero(surface)))
    if near.any():
        idx = ndimage.distance_transform_edt(~w.tumour, sampling=spacing, return_distances=False,
                                             return_indices=True)
        margin = np.where(near[tuple(idx)], np.float32(near_vessel_margin_mm), margin).astype(np.float32)
    return margin, near_percent


def _wedge_fraction(w: _WedgeBox, distance, margin, biggest_margin_mm: float) -> np.ndarray:
    """Resected share of each voxel: the partial-voxel ramp, the tumour whole, nothing protected or
    in a protected vessel's shadow, nothing outside the liver."""
    s, width = distance.ramp_mm, distance.width_mm
    frac = np.clip((margin + 0.5 * width - s) / width, 0.0, 1.0).astype(np.float32)
    if biggest_margin_mm == 0.0:
        frac = w.tumour.astype(np.float32)
    frac[w.tumour] = 1.0
    if w.protected.any():
        frac[w.protected] = 0.0
        frac[_shadow(frac > 0, w.tumour, w.protected, w.spacing_mm)] = 0.0
    frac *= w.liver
    return frac


def _thinnest_clearance(w: _WedgeBox, distance, frac) -> dict:
    """The smallest clearance to kept parenchyma and where it is (see the module notes):
    ``achieved_min_margin_mm``, ``thinnest_index`` and ``thinnest_mm`` (all ``None`` when no
    parenchyma is kept near the tumour)."""
    s_e, w_e = distance.ramp_mm, distance.width_mm
    kept = w.liver & ~w.tumour & ~w.protected & (frac < 1.0)
    if not kept.any():
        return {"achieved_min_margin_mm": None, "thinnest_index": None, "thinnest_mm": None}
    local = np.where(kept, s_e - 0.5 * w_e + frac * w_e, np.inf)
    lowest = float(local.min())
    # ties (a whole modulated cap has the same margin): the one closest to a vessel
    ties = local <= lowest + 0.05
    vessels = w.protected if w.major is None else w.protected | w.major
    if vessels.any() and np.count_nonzero(ties) > 1:
        closeness = np.where(ties, edt_mm(~vessels, spacing_mm=w.spacing_mm), np.inf)
        flat = int(np.argmin(closeness))
    else:
        flat = int(np.argmax(ties))
    index = tuple(int(i + o) for i, o in zip(np.unravel_index(flat, local.shape), w.offset))
    return {"achieved_min_margin_mm": round(max(0.0, lowest), 3), "thinnest_index": index,
            "thinnest_mm": tuple(round(i * sp, 3) for i, sp in zip(index, w.spacing_mm))}


def _protected_contact(w: _WedgeBox, distance) -> tuple[bool, float | None]:
    """Vascular R1 (the tumour touches the protected vessel) and the gap (mm) to it; a protected
    vessel farther than the box: not touching, gap ``None`` (beyond the box)."""
    prot = w.protected
    if not prot.any():
        return False, None
    touching = ndimage.binary_dilation(w.tumour, structure=np.ones((3, 3, 3), bool)) & prot
    if touching.any():
        return True, 0.0
    return False, round(max(0.0, float(np.min(distance.ramp_mm[prot] - 0.5 * distance.width_mm[prot]))), 3)


def sparing_wedges(
    *,
    liver: np.ndarray,
    tumours: np.ndarray,
    spacing_mm,
    tumour_ids=None,
    margin_mm: float = 1.0,
    near_vessel_margin_mm: float | None = None,
    near_vessel_distance_mm: float | None = None,
    major_vessels: np.ndarray | None = None,
    protected: np.ndarray | None = None,
) -> dict:
    """Sparing wedges of several tumours, combined (union of fractions).

    Parameters
    ----------
    liver : ndarray of bool
    tumours : ndarray of int
        Tumour instance labels (0 = none).
    tumour_ids : iterable of int, optional
        Tumours to resect; default all present in the liver.
    Other parameters as :func:`sparing_wedge`.

    Returns
    -------
    dict
        ``fraction`` (ndarray float32, union), ``resected_ml`` (float, liver removed, tumours
        included), ``resected_functional_ml`` (float, tumour voxels excluded), ``tumours`` (list of
        :class:`SparingOutcome`).

    Raises
    ------
    InputError
        A tumour id absent from the map, and anything :func:`sparing_wedge` refuses.
    """
    spacing = check_spacing_mm(spacing_mm)
    liver = np.asarray(liver).astype(bool, copy=False)
    tumours = np.asarray(tumours)
    if tumours.shape != liver.shape:
        raise InputError(f"tumours: shape {tumours.shape} differs from the liver's {liver.shape}")
    present = [int(i) for i in np.flatnonzero(np.bincount(tumours[liver].ravel().astype(np.int64), minlength=1)) if i]
    ids = present if tumour_ids is None else sorted({int(i) for i in tumour_ids})
    missing = sorted(set(ids) - set(present))
    if missing:
        raise InputError(f"tumour ids {missing} are not in the tumour map (inside the liver: {present})")
    fraction = np.zeros(liver.shape, np.float32)
    outcomes = []
    for i in ids:
        f, out = sparing_wedge(
            tumour=tumours == i, liver=liver, spacing_mm=spacing, margin_mm=margin_mm,
            near_vessel_margin_mm=near_vessel_margin_mm, near_vessel_distance_mm=near_vessel_distance_mm,
            major_vessels=major_vessels, protected=protected, tumour_id=i,
        )
        np.maximum(fraction, f, out=fraction)
        outcomes.append(out)
    unit = voxel_volume_ml(spacing)
    functional = liver & (tumours == 0)
    return {
        "fraction": fraction,
        "resected_ml": float(fraction.sum(dtype=np.float64)) * unit,
        "resected_functional_ml": float(fraction[functional].sum(dtype=np.float64)) * unit,
        "tumours": outcomes,
    }


def _shadow(candidates, tum, prot, spacing, *, samples_per_voxel: int = 2):
    """Candidate voxels hidden from the tumour by ``prot``: the straight segment from the nearest
    tumour voxel to the voxel crosses a protected voxel."""
    idx = ndimage.distance_transform_edt(~tum, sampling=spacing, return_distances=False, return_indices=True)
    pts = np.argwhere(candidates & ~tum & ~prot)
    if not len(pts):
        return np.zeros(tum.shape, bool)
    src = np.stack([idx[a][tuple(pts.T)] for a in range(3)], axis=1)
    del idx
    steps = int(np.abs(pts - src).max()) * samples_per_voxel + 1
    hidden = np.zeros(len(pts), bool)
    for k in range(1, steps):
        q = np.rint(src + (pts - src) * (k / steps)).astype(np.int64)
        hidden |= prot[tuple(q.T)]
    out = np.zeros(tum.shape, bool)
    out[tuple(pts[hidden].T)] = True
    return out


def _near_vessel_voxels(tum, vessels, spacing, distance_mm):
    """Tumour voxels whose surface gap to a vessel is at most ``distance_mm``."""
    if not vessels.any():
        return np.zeros(tum.shape, bool)
    d = edt_mm(~vessels, spacing_mm=spacing)
    return tum & (d - min(spacing) <= distance_mm)




