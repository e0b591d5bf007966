"""Couinaud segments 1-8 from liver, portal-vein and hepatic-vein masks.

Orientation: every array is canonical RAS+ (as ``nibabel.as_closest_canonical`` gives): index
axis 0 increases toward the patient's **R**\\ ight, axis 1 toward **A**\\ nterior, axis 2 toward
**S**\\ uperior. Left/right, anterior/posterior and cranial/caudal below are read from these axes.

Method (Couinaud's classical, plane-based division, as the IRCADb reference annotations draw it):

1. Crop to the liver's bounding box (+ ``analysis.crop_margin_mm`` of :class:`~hepatoplan.couinaud.params.CouinaudParams`) and analyse the vessels on a grid
   of about ``analysis.analysis_spacing_mm`` (landmarks are millimetre-scale); the labels are computed
   at full resolution on the liver's bounding box.
2. Landmarks (:mod:`hepatoplan.couinaud.landmarks`): the IVC, tracked slice by slice as the thickest
   continuous tube of the hepatic-vein mask, its axis no steeper than
   ``ivc.max_tilt_mm_per_mm``; the portal root (caudal end of the trunk), the portal
   bifurcation (first split of the tree into two branches that each carry >= 12 % of the
   intrahepatic portal volume), the left portal vein and its umbilical portion; the azimuths of
   the hepatic-vein trunks around the IVC.
3. Boundaries, all planes:

   - *transverse portal planes* (from the vessels): the axial plane at the height of the right
     portal vein (median over its first 30 mm of the centre heights read from the mask's columns,
     free of the skeleton's bias at a thick junction) splits the right liver into cranial 7/8 and
     caudal 6/5; the axial plane at the
     level of the left portal vein (mean of the mean and the top height of its first 90 mm) splits
     2 from 3 and, with ``split_segment_4``, 4a from 4b. On IRCADb the 2|3 plane lies 10-50 mm
     above the 5|8 plane, as the reference draws it. Each plane is then moved halfway
     (``transverse.share_height_weight``) toward the height that leaves the reference's usual share
     (``transverse.section_share_below_*``) of its section's volume below it (right anterior section for
     the 5|8 and 6|7 plane, left lateral section for 2|3; for 2|3 only as far as a clear umbilical
     portion leaves room; not when the liver reaches the scan's first or last slice): the vessels'
     height is off by 6 mm rms, the share's by 6 mm, their mean by 4 mm;
   - *right scissura* (5/8 vs 6/7) and *middle scissura* (Cantlie's plane, right vs left liver):
     vertical planes hinged on the IVC axis at the bifurcation level. Each takes its hepatic-vein
     trunk's azimuth with a **confidence** stated in anatomical terms: the share of the venous
     skeleton within 25 deg of the trunk's azimuth (5-60 mm beyond the IVC wall) that lies within
     3 mm -- about a trunk radius -- of one vertical half-plane from the IVC axis. A straight vein
     running in its scissura puts nearly all of itself there; a curved trunk or one mixed with
     tributaries and neighbouring veins does not. Share >= ``scissurae.trunk_planar_high`` -> the vein
     decides (``vessel``), <= ``scissurae.trunk_planar_low`` -> the prior (``fallback``), linear blend of
     angle and hinge offset in between (``blend``). Priors: right scissura coronal through the IVC
     centre (the reference puts it there within ~5 mm on 10 of 12 IRCADb cases); middle scissura
     at ``scissurae.prior_middle_deg`` through the point ``scissurae.middle_offset_ivc_radii``
     IVC radii anterior-left of the IVC centre (where the middle hepatic vein joins; the reference
     plane has this orientation on every case, 40 +- 5 deg). On IRCADb 01-12 the in-plane share is
     at most 0.64 (the detected trunk azimuths there are off by up to 50 deg on 6 cases, worse
     than the prior), on the data_samples phantom, whose veins lie in their scissurae, >= 0.78;
   - *umbilical fissure* (4 vs 2/3): vertical. Vessel: the umbilical portion, found on the left
     portal vein's path as the longest run heading within 45 deg of anterior
     (:func:`hepatoplan.couinaud.landmarks.umbilical_run`), trusted when it is straight (rms <=
     ``umbilical.max_rms_mm``), >= ``umbilical.min_length_mm`` long and reached after a
     transverse part (its line crosses the bifurcation's coronal level >= ``umbilical.min_left_mm``
     to the left of it), heading within ``umbilical.max_turn_deg`` of the prior's direction;
     the 2|3 plane then moves to the umbilical portion's height by the same weight. Prior: ``umbilical.prior_deg``, ``umbilical.prior_offset_mm`` to the patient's
     left of the bifurcation (on IRCADb the detected runs start at the bifurcation or are not
     straight, and the prior decides);
   - *caudate lobe* (1): the liver in front of the IVC's centre line (from half a radius behind
     it), left of the bifurcation and up to ``caudate.front_of_bifurcation_mm`` in front of
     it, at most ``caudate.left_of_ivc_mm`` left of the IVC, from ``caudate.below_bifurcation_mm`` below to ``caudate.above_bifurcation_mm`` above the bifurcation.
4. Every liver voxel gets one label; each segment is reduced to one 6-connected piece (other
   pieces go to the segment that surrounds them most). Pieces of a liver mask that are not
   connected to the rest keep their planar label and are reported in ``warnings``.

Tuned values live in :class:`~hepatoplan.couinaud.params.CouinaudParams` (anatomical priors in
millimetres or degrees, each with its origin; values chosen on data were checked against the
reference on all twelve IRCADb cases together, with leave-one-out figures, never per case).
What the method cannot do: find the IVC when the hepatic-vein mask does not contain it
(:class:`~hepatoplan.errors.NotComputableError`); follow a middle scissura far from 40 deg when the
middle hepatic vein is curved (real veins are: the rule then keeps the prior); reproduce the
data_samples phantom's caudate (a sector open downward under an oblique top plane, Dice ~0.6;
the other segments reach >= 0.98 there); see bench/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from hepatoplan.arrays import bounding_box, padded_box, voxel_indices
from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError, NotComputableError
from hepatoplan.nearest_voxel import edt_mm
from hepatoplan.units import voxel_volume_ml

from . import landmarks as lm
from .separate import HEPATIC, PORTAL, separate_vessels
from .params import CaudateParams, CouinaudParams, ScissuraParams, TransverseParams, UmbilicalParams

log = logging.getLogger(__name__)

#: Segment 4 sub-labels when ``split_segment_4`` is true: 4a (cranial) keeps label 4, 4b (caudal)
#: gets label 9.
LABEL_4A = 4
LABEL_4B = 9


@dataclass
class CouinaudResult:
    """Result of :func:`segment_couinaud`.

    Attributes
    ----------
    labels : ndarray of uint8, same shape as the liver mask
        Canonical RAS+. 0 outside the liver, 1..8 = Couinaud segment I..VIII. With
        ``split_segment_4=True``: 4 = segment IVa (cranial), 9 = segment IVb (caudal).
    landmarks : dict
        JSON-ready; each landmark as ``{"voxel": [i, j, k], "mm": [x, y, z]}`` in the input array's
        frame (``mm = voxel * spacing_mm``, no origin), plus angles in degrees.
    methods : dict
        JSON-ready; for each boundary, which method decided it and its parameters: ``plane fit``
        (a plane through detected vessel landmarks), ``vessel`` (a scissura on a hepatic-vein trunk
        judged straight and planar, confidence 1), ``blend`` (vessel and prior weighted by the
        trunk's ``confidence``), ``fallback`` (an anatomical prior).
    warnings : list of str
    runtime_s : float
    params : CouinaudParams
        The tuned values used (``dataclasses.asdict(result.params)`` is JSON-ready).
    portal, hepatic : ndarray of bool or None
        From :func:`segment_couinaud_from_vessels` only: the two trees separated from the combined
        vessel mask (same shape as the liver mask), for the user to check.
    """

    labels: np.ndarray
    landmarks: dict
    methods: dict
    warnings: list = field(default_factory=list)
    runtime_s: float = float("nan")
    params: CouinaudParams = field(default_factory=CouinaudParams)
    portal: np.ndarray | None = None
    hepatic: np.ndarray | None = None


# --------------------------------------------------------------------------- validation


def _check_inputs(liver, portal, hepatic, spacing_mm):
    arrays = {"liver": liver, "portal": portal, "hepatic": hepatic}
    for name, a in arrays.items():
        if not isinstance(a, np.ndarray):
            raise InputError(f"{name}: expected a numpy array, found {type(a).__name__}")
        if a.ndim != 3:
            raise InputError(f"{name}: expected a 3D mask, found {a.ndim} dimensions (shape {a.shape})")
    shapes = {n: a.shape for n, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise InputError(
            f"liver, portal and hepatic masks must share one grid; found shapes {shapes}. "
            "Resample the masks onto the liver's grid (CLI: --resample-masks)."
        )
    sp = check_spacing_mm(spacing_mm)
    if not np.count_nonzero(liver):
        raise InputError("liver mask is empty: expected the liver as non-zero voxels")
    for n, a in (("portal", portal), ("hepatic", hepatic)):
        if not np.count_nonzero(a):
            raise InputError(
                f"{n} mask is empty: expected the {'portal vein' if n == 'portal' else 'hepatic veins + IVC'} "
                "as non-zero voxels; segment it first (the Couinaud division is defined by these vessels)"
            )
    return sp


def _pool(a, f):
    """Block max-pooling (logical OR for masks) by integer factors; edge voxels that do not fill a
    block are dropped. Done as an OR of strided views, much faster than a reshape + max."""
    s = [(n // k) * k for n, k in zip(a.shape, f)]
    out = None
    for i in range(f[0]):
        for j in range(f[1]):
            for k in range(f[2]):
                v = a[i: s[0]: f[0], j: s[1]: f[1], k: s[2]: f[2]]
                out = v.copy() if out is None else np.maximum(out, v, out=out)
    return out


# --------------------------------------------------------------------------- step 0: grids


@dataclass
class _Grids:
    """The liver's crop at full resolution and the vessels on the coarser analysis grid.

    Positions on the analysis grid (``index * spacing_analysis_mm``) become crop-frame mm by adding
    ``shift_mm`` (the centre of a pooled block); crop-frame mm become input-array mm by adding
    ``offset_vox * spacing_mm``. ``inner`` is the liver's own box within the crop.
    """

    box: tuple
    inner: tuple
    offset_vox: np.ndarray
    spacing_mm: np.ndarray
    liver: np.ndarray
    spacing_analysis_mm: np.ndarray
    shift_mm: np.ndarray
    liver_a: np.ndarray
    portal_a: np.ndarray
    hepatic_a: np.ndarray
    distance_to_liver_a_mm: Callable[[np.ndarray], np.ndarray]
    #: ``portal_a``'s skeleton graph and ``hepatic_a``'s IVC candidates, made in a thread while the
    #: rest of the grids were made (separate masks only: a combined mask's trees are known after the
    #: separation)
    portal_graph: Future | None = None
    ivc_candidates: Future | None = None
    #: ``hepatic_a``'s voxels in crop-frame mm (separate masks only, made on the same worker)
    hepatic_mm: Future | None = None

    def pt(self, p_crop_mm) -> dict:
        """A crop-frame position as ``{"voxel", "mm"}`` of the input array."""
        mm = np.asarray(p_crop_mm, float) + self.offset_vox * self.spacing_mm
        return {"voxel": [int(round(v)) for v in mm / self.spacing_mm], "mm": [round(float(v), 2) for v in mm]}


def _grids(liver, portal, hepatic, spa: np.ndarray, params: CouinaudParams, liver_box: tuple) -> _Grids:
    """Crop to the liver's box ``liver_box`` (+ margin), pool the crop to the analysis grid, check
    the vessels lie at the liver.

    ``portal`` and ``hepatic`` are arrays of the liver's shape, or one array (``portal is hepatic``)
    of ``liver_box``'s shape: the combined mask's vessels inside the liver, placed in the crop
    without a full-volume copy."""
    ap = params.analysis
    box = padded_box(liver_box, np.ceil(ap.crop_margin_mm / spa).astype(int), liver.shape)
    inner = tuple(slice(i.start - b.start, i.stop - b.start) for i, b in zip(liver_box, box))
    one = portal is hepatic  # one combined vessel mask: crop, pool and check it once
    f = np.maximum(1, np.round(ap.analysis_spacing_mm / spa).astype(int))
    sp2, shift_mm = spa * f, (f - 1) / 2.0 * spa
    if portal.shape == liver.shape:
        PVc = _mask_in(portal, box)
    else:
        PVc = np.zeros(tuple(b.stop - b.start for b in box), bool)
        PVc[inner] = portal
    PV2 = _pool(PVc, f)
    portal_graph = ivc_candidates = hepatic_mm = None
    if not one:  # the portal skeleton (thinning releases the GIL) beside the liver's and hepatic veins' grids
        pool = ThreadPoolExecutor(1, thread_name_prefix="couinaud-landmarks")
        portal_graph = pool.submit(lm.skeleton_graph, PV2, sp2)
    Lc = np.ascontiguousarray(liver[box], dtype=bool)  # a copy (a boolean's) or a cast: the != 0 copy's CPU / 6
    HVc = PVc if one else _mask_in(hepatic, box)
    for n, a, c in (("portal", portal, PVc), ("hepatic", hepatic, HVc))[:1 if one else 2]:
        k = int(np.count_nonzero(a)) - int(np.count_nonzero(c))
        if k:
            log.info("%s mask: %d voxels farther than %.0f mm from the liver's bounding box are ignored",
                     n, k, ap.crop_margin_mm)
    L2 = _pool(Lc, f)
    HV2 = PV2 if one else _pool(HVc, f)
    if not one:  # then, on the same worker, the IVC's candidates (they do not depend on the portal tree)
        ivc_candidates = pool.submit(lm.ivc_candidates, HV2, sp2, params.ivc)
        hepatic_mm = pool.submit(_voxels_mm, HV2, sp2, shift_mm)
        pool.shutdown(wait=False)
    return _Grids(
        box=box, inner=inner,
        offset_vox=np.array([b.start for b in box]), spacing_mm=spa, liver=Lc,
        spacing_analysis_mm=sp2, shift_mm=shift_mm, liver_a=L2, portal_a=PV2, hepatic_a=HV2,
        distance_to_liver_a_mm=_check_near_liver(L2, PV2, HV2, sp2, params), portal_graph=portal_graph,
        ivc_candidates=ivc_candidates, hepatic_mm=hepatic_mm,
    )


def _mask_in(mask: np.ndarray, box: tuple) -> np.ndarray:
    """``mask[box] != 0``; a boolean mask's box as a view, for a caller that only reads it (numpy's
    ``!= 0`` of a boolean array costs 5.7 ms on IRCADb 01's liver box + margin, 4 × a uint8's)."""
    return mask[box] if mask.dtype == bool else mask[box] != 0


def _voxels_mm(mask: np.ndarray, spacing_mm: np.ndarray, shift_mm: np.ndarray) -> np.ndarray:
    """The analysis grid's true voxels in crop-frame mm, ``(n, 3)``."""
    return voxel_indices(mask) * spacing_mm + shift_mm


# --------------------------------------------------------------------------- step 1: landmarks


@dataclass
class _Landmarks:
    """Vessel landmarks in mm of the crop frame (full resolution)."""

    portal: lm.PortalLandmarks
    ivc: lm.IVCAxis
    ivc_intercept_mm: np.ndarray
    bifurcation_mm: np.ndarray
    lpv_path_mm: np.ndarray
    z_right_mm: float
    z_left_mm: float
    ivc_at_bifurcation_xy_mm: np.ndarray
    trunks: lm.HepaticTrunks
    umbilical: lm.UmbilicalRun | None


def _find_landmarks(g: _Grids, params: CouinaudParams, warnings: list, *, ivc: lm.IVCAxis | None = None,
                    portal_root_mm=None) -> _Landmarks:
    """Portal landmarks, IVC axis (tracked in the hepatic mask unless given, on the analysis grid),
    transverse heights, hepatic-vein trunks and umbilical run. ``portal_root_mm`` (analysis grid
    mm): where the portal tree is entered, when the mask has no trunk."""
    sp2, shift = g.spacing_analysis_mm, g.shift_mm
    pl = lm.portal_landmarks(g.portal_a, g.liver_a, sp2, distance_to_liver_mm=g.distance_to_liver_a_mm,
                             root_mm=portal_root_mm, params=params.portal,
                             graph=None if g.portal_graph is None else g.portal_graph.result())
    if ivc is None:
        ivc = lm.ivc_axis(g.hepatic_a, sp2, params=params.ivc,
                          candidates=None if g.ivc_candidates is None else g.ivc_candidates.result(),
                          reach_z_mm=float(pl.bifurcation_mm[2]) - params.ivc.reach_below_bifurcation_mm)
    if pl.disconnected_fraction > params.portal.disconnected_warning_fraction:
        warnings.append(
            f"portal-vein mask: {100 * pl.disconnected_fraction:.0f}% of its intrahepatic volume is not "
            "connected to the main tree; only the main tree was used"
        )
    lpv = np.asarray(pl.lpv_path_mm, float) + shift
    # the right and left portal veins run nearly horizontally from the bifurcation: the transverse
    # plane is the median height of the right portal vein's first part (the skeleton's junction
    # node of a thick trunk tends to sit below the branches' centre lines; heights read from the
    # vessel mask's columns, see landmarks.column_centre_z)
    if pl.rpv_path_mm is not None:
        z_right = float(np.median(lm.column_centre_z(g.portal_a, pl.rpv_path_mm, sp2)) + shift[2])
    else:
        z_right = float(pl.bifurcation_mm[2] + shift[2])
    z_left = float((lpv[:, 2].mean() + lpv[:, 2].max()) / 2.0)
    # IVC centre at the level of the bifurcation: the scissurae are vertical planes hinged there
    ivc_at_b = ivc.centre_near(z_right - shift[2], window_mm=params.ivc.centre_window_mm) + shift[:2]
    trunks = lm.hepatic_trunks(g.hepatic_a, sp2, ivc_at_b - shift[:2], ivc.radius_mm, params=params.hepatic)
    run = lm.umbilical_run(lpv, params=params.portal)
    if run is not None:
        run.point_mm[2] = float(np.median(lm.column_centre_z(g.portal_a, pl.lpv_path_mm, sp2)[
            np.linalg.norm(lpv[:, :2] - run.point_mm[:2], axis=1) <= 0.5 * run.length_mm]) + shift[2])
    return _Landmarks(
        portal=pl, ivc=ivc, ivc_intercept_mm=np.array(ivc.intercept_mm) + shift[:2] - ivc.slope_xy * shift[2],
        bifurcation_mm=np.asarray(pl.bifurcation_mm, float) + shift, lpv_path_mm=lpv,
        z_right_mm=z_right, z_left_mm=z_left, ivc_at_bifurcation_xy_mm=ivc_at_b, trunks=trunks, umbilical=run,
    )


# --------------------------------------------------------------------------- step 2: boundaries


@dataclass
class Boundaries:
    """The surfaces of the division, in mm of the (cropped) array frame.

    Vertical planes are given by a point (x, y) and an angle (deg, from +x toward +y); a voxel is
    left of the middle scissura, anterior to the right scissura, lateral (patient-left) of the
    umbilical fissure.
    """

    middle_point_xy: np.ndarray
    middle_angle_deg: float
    right_point_xy: np.ndarray
    right_angle_deg: float
    umbilical_point_xy: np.ndarray
    umbilical_angle_deg: float
    z_right_mm: float
    z_left_mm: float
    ivc_xy: np.ndarray
    ivc_radius_mm: float
    bifurcation_mm: np.ndarray
    #: Weights (0..1) of the section-share height against the vessels' height (z_right_mm, z_left_mm).
    share_weights: tuple[float, float] = (0.0, 0.0)

    def shifted(self, origin_mm: np.ndarray) -> Boundaries:
        """The same boundaries in a frame whose origin lies at ``origin_mm`` of this one."""
        o = np.asarray(origin_mm, float)
        return dataclasses.replace(
            self, middle_point_xy=self.middle_point_xy - o[:2], right_point_xy=self.right_point_xy - o[:2],
            umbilical_point_xy=self.umbilical_point_xy - o[:2], z_right_mm=self.z_right_mm - o[2],
            z_left_mm=self.z_left_mm - o[2], ivc_xy=self.ivc_xy - o[:2], bifurcation_mm=self.bifurcation_mm - o,
        )


def _normal(angle_deg: float) -> np.ndarray:
    """Unit normal (2D) on the counter-clockwise side of a line at ``angle_deg``."""
    a = np.radians(angle_deg)
    return np.array([-np.sin(a), np.cos(a)])


def _scissurae(k: _Landmarks, p: ScissuraParams, min_separation_deg: float, warnings: list, *,
               middle_trunk: bool = True) -> dict:
    """Angles, hinge offset and confidences of the middle and right scissurae (before the vein band).
    ``middle_trunk=False``: the middle scissura from its prior alone."""
    t = k.trunks
    w_mid = _trunk_confidence(t.middle_deg, t.middle_in_plane_fraction, p) if middle_trunk else 0.0
    w_right = _trunk_confidence(t.right_deg, t.right_in_plane_fraction, p)
    mid_angle = p.prior_middle_deg + w_mid * ((t.middle_deg or 0.0) - p.prior_middle_deg)
    right_angle = p.prior_right_deg + w_right * ((t.right_deg or 0.0) - p.prior_right_deg)
    if mid_angle < right_angle + min_separation_deg:
        # one trunk from the vessels, the other from its prior: keep the right anterior section open
        warnings.append(f"middle scissura turned to {right_angle + min_separation_deg:.0f} deg to stay "
                        f"{min_separation_deg:.0f} deg anterior of the right scissura")
        mid_angle = right_angle + min_separation_deg
    return {"w_mid": w_mid, "w_right": w_right, "mid_angle": mid_angle, "right_angle": right_angle,
            "mid_offset": (1.0 - w_mid) * p.middle_offset_ivc_radii * k.ivc.radius_mm}


def _umbilical_plane(k: _Landmarks, p: UmbilicalParams) -> tuple[np.ndarray, float, float, float]:
    """Point (x, y, z), angle, confidence of the umbilical fissure and the 2|3 plane's vessel height.

    Prior: through the umbilical portion's anterior part (``PortalLandmarks.umbilical_front_mm``: the
    thick left-portal nodes >= ``PortalParams.umbilical_front_mm`` in front of the bifurcation, whose
    centroid segment 4's thick branches near the bifurcation no longer pull); without it,
    ``p.prior_offset_mm`` to the patient's left of the bifurcation. On IRCADb 01-12 the reference
    fissure lies 9.8 mm rms from the former (its mean offset chosen leave-one-out; 1.9 mm on average,
    not applied) and 14.5 mm from the latter; the leftmost point of the left portal vein misses by
    24-26 mm (the heaviest left-portal path often follows a segment 2/3 or 4 branch). A clear
    umbilical run (:func:`_umbilical_confidence`, weight > 0: IRCADb 02 only) moves the offset prior
    toward itself as before (blending from the anterior part instead cost 02 0.871 -> 0.848).
    """
    B = k.bifurcation_mm
    U = B + np.array([-p.prior_offset_mm, 0.0, 0.0])
    w_umb, x_run = _umbilical_confidence(k.umbilical, B, p)
    angle, z_left = p.prior_deg, k.z_left_mm
    front = k.portal.umbilical_front_mm
    if w_umb == 0.0 and front is not None and front[0] < k.portal.bifurcation_mm[0]:  # left of it, as anatomy has it
        U = np.array([*(B[:2] + front[:2] - k.portal.bifurcation_mm[:2]), B[2]])
    elif w_umb > 0.0:
        run = k.umbilical
        U = np.array([U[0] + w_umb * (x_run - U[0]), B[1], B[2]])
        angle = p.prior_deg + w_umb * (run.angle_deg - p.prior_deg)
        # segments 2 and 3 are the cranial and caudal branches of the umbilical portion: a clear
        # umbilical portion also gives the 2|3 plane's height
        z_left = z_left + w_umb * (float(run.point_mm[2]) - z_left)
    return U, angle, w_umb, z_left


def _boundaries(k: _Landmarks, g: _Grids, params: CouinaudParams, warnings: list, *,
                separated: bool = False, middle_trunk: bool = True) -> tuple[Boundaries, dict]:
    """The division's planes from the landmarks, and the JSON record of how each was decided.
    ``separated``: the trees were separated from one combined mask (the transverse planes then lean
    more on the sections' shares, ``transverse.share_height_weight_separated``). ``middle_trunk``:
    see :func:`_scissurae`."""
    sc, up = params.scissurae, params.umbilical
    s = _scissurae(k, sc, params.hepatic.min_trunk_separation_deg, warnings, middle_trunk=middle_trunk)
    U, umb_angle, w_umb, z_left = _umbilical_plane(k, up)
    ivc_at_b, r_ivc = k.ivc_at_bifurcation_xy_mm, k.ivc.radius_mm
    # the prior part of each scissura: moved onto its vein's mean course (see ScissuraParams.vein_band_mm)
    vein_mm = (_voxels_mm(g.hepatic_a, g.spacing_analysis_mm, g.shift_mm) if g.hepatic_mm is None
               else g.hepatic_mm.result())
    voxel_ml = voxel_volume_ml(g.spacing_analysis_mm)
    z_min = k.z_right_mm - sc.vein_band_below_right_plane_mm
    mid_point = ivc_at_b + s["mid_offset"] * _normal(s["mid_angle"])
    mid_shift_mm = (1.0 - s["w_mid"]) * _vein_band_offset_mm(vein_mm, mid_point, s["mid_angle"], ivc_at_b, r_ivc,
                                                             z_min, voxel_ml, sc)
    right_shift_mm = (1.0 - s["w_right"]) * _vein_band_offset_mm(vein_mm, ivc_at_b, s["right_angle"], ivc_at_b,
                                                                 r_ivc, z_min, voxel_ml, sc)
    # a liver cut by the scan's first or last slice has incomplete sections: no share heights
    w_share = params.transverse.share_height_weight_separated if separated else params.transverse.share_height_weight
    if np.any(g.liver[:, :, 0]) or np.any(g.liver[:, :, -1]):
        w_share = 0.0
        warnings.append("the liver reaches the first or last axial slice of the scan: the transverse planes "
                        "come from the portal veins alone (its sections' volume shares are incomplete)")
    bd = Boundaries(
        middle_point_xy=mid_point + mid_shift_mm * _normal(s["mid_angle"]), middle_angle_deg=s["mid_angle"],
        right_point_xy=ivc_at_b + right_shift_mm * _normal(s["right_angle"]), right_angle_deg=s["right_angle"],
        umbilical_point_xy=U[:2], umbilical_angle_deg=umb_angle,
        z_right_mm=k.z_right_mm, z_left_mm=z_left,
        ivc_xy=ivc_at_b, ivc_radius_mm=r_ivc, bifurcation_mm=k.bifurcation_mm,
        share_weights=(w_share, w_share * (1.0 - w_umb)),
    )
    methods = _methods_record(s, umb_angle, w_umb, params)
    methods["middle_scissura"]["vein_shift_mm"] = round(mid_shift_mm, 2)
    methods["right_scissura"]["vein_shift_mm"] = round(right_shift_mm, 2)
    return bd, methods


def _methods_record(s: dict, umb_angle: float, w_umb: float, params: CouinaudParams) -> dict:
    sc, up, tp, cp = params.scissurae, params.umbilical, params.transverse, params.caudate
    return {
        "middle_scissura": {
            "method": _blend_method(s["w_mid"]), "angle_deg": round(float(s["mid_angle"]), 2),
            "confidence": round(s["w_mid"], 3), "offset_mm": round(float(s["mid_offset"]), 2),
            "detail": "vertical plane hinged on the IVC axis at the bifurcation level; prior: "
                      f"{sc.prior_middle_deg:.0f} deg, {sc.middle_offset_ivc_radii} IVC radii anterior-left "
                      "of its centre (where the middle hepatic vein joins); vessel: the half-plane of the middle "
                      "hepatic vein trunk; weighted by the trunk's planarity",
        },
        "right_scissura": {
            "method": _blend_method(s["w_right"]),
            "angle_deg": round(float(s["right_angle"]), 2), "confidence": round(s["w_right"], 3),
            "detail": "vertical plane through the IVC centre at the bifurcation level; prior: coronal (the "
                      "right hepatic vein's usual course); vessel: the half-plane of the right hepatic vein "
                      "trunk; weighted by the trunk's planarity",
        },
        "umbilical_fissure": {
            "method": _blend_method(w_umb), "angle_deg": round(float(umb_angle), 2), "confidence": round(w_umb, 3),
            "detail": f"vertical plane; prior: {up.prior_deg:.0f} deg through the umbilical portion's anterior "
                      f"part (its thick nodes >= {params.portal.umbilical_front_mm:.0f} mm in front of the portal "
                      f"bifurcation), else {up.prior_offset_mm:.0f} mm to the left of the bifurcation; vessel: the line of the umbilical portion, weighted by how "
                      "straight it is and whether it follows a transverse part (the 2|3 plane then moves to its "
                      "height by the same weight)",
        },
        "transverse_right": {"detail": "axial plane (7/8 cranial, 6/5 caudal) between the right portal vein's height "
                                       f"and the height with {tp.section_share_below_right_fraction:.0%} of the right "
                                       "anterior section below it, weighted by share_weight"},
        "transverse_left": {"detail": "axial plane (2 cranial, 3 caudal) between the left portal vein's (or a clear "
                                      f"umbilical portion's) height and the height with "
                                      f"{tp.section_share_below_left_fraction:.0%} of the left lateral section below "
                                      "it, weighted by share_weight"},
        "caudate": {"method": "plane fit",
                    "detail": "liver in front of the IVC, left of the portal bifurcation and up to "
                              f"{cp.front_of_bifurcation_mm:.0f} mm in front of it, from "
                              f"{cp.below_bifurcation_mm:.0f} mm below to {cp.above_bifurcation_mm:.0f} mm above it"},
    }


# --------------------------------------------------------------------------- step 3: labels


def _share_height_mm(liver: np.ndarray, columns: np.ndarray, share: float, spacing_z_mm: float) -> float | None:
    """Height (mm of the array frame) of the axial plane with ``share`` of the liver in ``columns``
    (an axial mask) below it; None when those columns hold no liver."""
    # the columns' rows of the (X * Y, Z) view: a gather of contiguous rows, not a pass over the box
    counts = np.count_nonzero(liver.reshape(-1, liver.shape[2])[columns.ravel()], axis=0)
    total = int(counts.sum())
    if total == 0:
        return None
    cum = np.cumsum(counts)  # cum[k]: liver below the plane between slices k and k + 1
    return float(np.interp(share * total, cum, (np.arange(len(cum)) + 0.5) * spacing_z_mm))


def _sectors(shape, spa: np.ndarray, bd: Boundaries) -> np.ndarray:
    """Sector of every axial column (x, y): 0 right posterior, 1 right anterior, 2 segment 4,
    3 lateral left (2/3). The scissurae and the umbilical fissure are vertical planes."""
    X = (np.arange(shape[0], dtype=np.float32) * np.float32(spa[0]))[:, None]
    Y = (np.arange(shape[1], dtype=np.float32) * np.float32(spa[1]))[None, :]

    def side(point, angle_deg):
        n = _normal(angle_deg).astype(np.float32)
        return n[0] * (X - np.float32(point[0])) + n[1] * (Y - np.float32(point[1]))

    icx, icy = float(bd.ivc_xy[0]), float(bd.ivc_xy[1])
    # left liver: left of the middle scissura, plus what lies behind and left of the IVC
    left = (side(bd.middle_point_xy, bd.middle_angle_deg) > 0) | ((X < icx) & (Y < icy))
    ant = side(bd.right_point_xy, bd.right_angle_deg) > 0
    lat = side(bd.umbilical_point_xy, bd.umbilical_angle_deg) > 0
    return np.where(left, np.where(lat, 3, 2), np.where(ant, 1, 0)).astype(np.uint8)


def _caudate_box(shape, spa: np.ndarray, bd: Boundaries, p: CaudateParams) -> tuple[slice, ...]:
    """The caudate lobe's axis-aligned box (index slices) around the IVC and the bifurcation."""
    B, r = bd.bifurcation_mm, bd.ivc_radius_mm
    icx, icy = float(bd.ivc_xy[0]), float(bd.ivc_xy[1])

    def span(lo_mm, hi_mm, n, step):
        lo = int(np.clip(np.floor(lo_mm / step) + 1, 0, n))
        hi = int(np.clip(np.ceil(hi_mm / step), 0, n))
        return slice(lo, max(lo, hi))

    return (span(icx - p.left_of_ivc_mm, max(B[0], icx), shape[0], spa[0]),
            span(icy - p.behind_ivc_radii * r, B[1] + p.front_of_bifurcation_mm, shape[1], spa[1]),
            span(B[2] - p.below_bifurcation_mm, B[2] + p.above_bifurcation_mm, shape[2], spa[2]))


def _label_crop(liver: np.ndarray, spa: np.ndarray, bd: Boundaries, *, split_segment_4: bool,
                transverse: TransverseParams = TransverseParams(),
                caudate: CaudateParams = CaudateParams()) -> tuple[np.ndarray, dict[str, float]]:
    """Couinaud labels of every liver voxel from the boundaries (before the connectivity step).

    Each axial column falls in one of four sectors (:func:`_sectors`); the transverse planes then
    pick the label per height through a lookup table; the caudate is an axis-aligned box and is
    painted by slicing.
    """
    sector = _sectors(liver.shape, spa, bd)
    Z = np.arange(liver.shape[2], dtype=np.float32) * np.float32(spa[2])
    # transverse planes: the portal veins' height blended with the height that leaves the
    # reference's usual share of the section below
    heights_mm = {}
    for name, z_vessel_mm, sec, w, share in (
            ("right", bd.z_right_mm, 1, bd.share_weights[0], transverse.section_share_below_right_fraction),
            ("left", bd.z_left_mm, 3, bd.share_weights[1], transverse.section_share_below_left_fraction)):
        z_share_mm = _share_height_mm(liver, sector == sec, share, float(spa[2]))
        heights_mm[name] = z_vessel_mm if z_share_mm is None else z_vessel_mm + w * (z_share_mm - z_vessel_mm)
    # height band per slice: bit 0 = cranial to the right transverse plane, bit 1 = to the left one
    band = ((Z >= heights_mm["right"]).astype(np.uint8) | ((Z >= heights_mm["left"]).astype(np.uint8) << 1))
    lut = np.zeros((4, 4), np.uint8)
    for bnd in range(4):
        up_r, up_l = bool(bnd & 1), bool(bnd & 2)
        lut[0, bnd] = 7 if up_r else 6
        lut[1, bnd] = 8 if up_r else 5
        lut[2, bnd] = LABEL_4A if (up_l or not split_segment_4) else LABEL_4B
        lut[3, bnd] = 2 if up_l else 3
    lab = np.empty(liver.shape, np.uint8)
    # the bands are runs of slices (each bit steps up once along z): one sector map per run
    for run in np.split(np.arange(len(band)), np.flatnonzero(np.diff(band)) + 1):
        lab[:, :, run[0]:run[-1] + 1] = lut[sector, band[run[0]]][:, :, None]
    lab[_caudate_box(liver.shape, spa, bd, caudate)] = 1
    lab *= liver
    return lab, heights_mm


def _label_liver(g: _Grids, bd: Boundaries, methods: dict, params: CouinaudParams, *,
                 split_segment_4: bool, warnings: list) -> np.ndarray:
    """Labels on the liver's own bounding box ``g.inner`` of the crop (the analysis crop has a
    margin), one piece per segment; records the transverse heights in ``methods``."""
    inner = g.inner
    o_mm = np.array([b.start for b in inner]) * g.spacing_mm
    lab, heights_mm = _label_crop(g.liver[inner], g.spacing_mm, bd.shifted(o_mm),
                                  split_segment_4=split_segment_4, transverse=params.transverse,
                                  caudate=params.caudate)
    z0_mm = g.offset_vox[2] * g.spacing_mm[2]
    for name, z_vessel_mm, w in (("right", bd.z_right_mm, bd.share_weights[0]),
                                 ("left", bd.z_left_mm, bd.share_weights[1])):
        methods[f"transverse_{name}"].update(
            method="blend" if w > 0 else "plane fit", share_weight=round(w, 3),
            z_mm=round(float(heights_mm[name] + o_mm[2] + z0_mm), 2),
            vessel_z_mm=round(float(z_vessel_mm + z0_mm), 2))
    return _one_piece_per_label(lab, warnings)


# --------------------------------------------------------------------------- main


def segment_couinaud(liver, portal, hepatic, *, spacing_mm, split_segment_4: bool = False,
                     params: CouinaudParams = CouinaudParams()) -> CouinaudResult:
    """Divide the liver into Couinaud segments from its portal and hepatic veins.

    Parameters
    ----------
    liver : ndarray, shape (X, Y, Z)
        Liver mask (non-zero = liver), canonical RAS+: axis 0 -> patient Right, axis 1 ->
        Anterior, axis 2 -> Superior.
    portal : ndarray, shape (X, Y, Z)
        Portal-vein mask on the same grid (the trunk at the hilum and intrahepatic branches).
    hepatic : ndarray, shape (X, Y, Z)
        Hepatic veins **including the inferior vena cava** on the same grid.
    spacing_mm : sequence of 3 float
        Voxel spacing along axes 0, 1, 2 (mm).
    split_segment_4 : bool, keyword-only
        Split segment 4 at the left transverse portal plane into 4a (label 4, cranial) and 4b
        (label :data:`LABEL_4B` = 9, caudal).
    params : CouinaudParams, keyword-only
        Tuned values (defaults: the values of bench/RESULTS.md); returned in the result.

    Returns
    -------
    CouinaudResult

    Raises
    ------
    InputError
        Masks of different shapes, bad spacing, an empty mask, or vessels that do not lie at the
        liver.
    NotComputableError
        A landmark needed for the division (IVC, portal bifurcation) cannot be found.
    """
    t0 = time.perf_counter()
    spa = np.asarray(_check_inputs(liver, portal, hepatic, spacing_mm))
    warnings: list[str] = []
    liver_box = bounding_box(liver)
    mirror = _laterality(liver[liver_box], spa, warnings)
    if mirror:
        liver, portal, hepatic = (a[::-1] for a in (liver, portal, hepatic))
        liver_box = _mirrored_box(liver_box, liver.shape[0])
    g = _grids(liver, portal, hepatic, spa, params, liver_box)
    k = _find_landmarks(g, params, warnings)
    res = _divide(g, k, liver.shape, params, split_segment_4=split_segment_4, warnings=warnings)
    res.runtime_s = time.perf_counter() - t0
    return _unmirror(res, spa) if mirror else res


def _divide(g: _Grids, k: _Landmarks, shape, params: CouinaudParams, *, split_segment_4: bool,
            warnings: list, separated: bool = False) -> CouinaudResult:
    """Boundaries and labels from the landmarks, as a result on the input's grid."""
    for middle_trunk in (True, False):
        tried: list = []
        bd, methods = _boundaries(k, g, params, tried, separated=separated, middle_trunk=middle_trunk)
        lab = _label_liver(g, bd, methods, params, split_segment_4=split_segment_4, warnings=tried)
        share_4 = (np.count_nonzero(lab == LABEL_4A) + np.count_nonzero(lab == LABEL_4B)) / max(np.count_nonzero(lab), 1)
        if share_4 >= params.scissurae.min_segment_4_fraction or not methods["middle_scissura"]["confidence"]:
            break
        # the "middle" trunk closed segment 4: it ran on the left hepatic vein's course
        warnings.append(f"the middle hepatic vein trunk found at {k.trunks.middle_deg:.0f} deg left segment 4 "
                        f"{100 * share_4:.1f}% of the liver: middle scissura from its prior "
                        f"({params.scissurae.prior_middle_deg:.0f} deg) instead; check the hepatic veins")
    warnings.extend(tried)
    out = np.zeros(shape, np.uint8)
    out[g.box][g.inner] = lab
    return CouinaudResult(out, _landmarks_record(k, g, bd), methods, warnings, float("nan"), params)


def segment_couinaud_from_vessels(liver, vessels, *, spacing_mm, split_segment_4: bool = False,
                                  params: CouinaudParams = CouinaudParams()) -> CouinaudResult:
    """Couinaud segments from the liver and ONE combined vessel mask (portal and hepatic veins in
    one class, clipped to the liver, no IVC), as TotalSegmentator's ``liver_vessels`` or nnU-Net give.

    The mask is separated into portal and hepatic trees and the IVC axis inferred
    (:mod:`hepatoplan.couinaud.separate`); the division then runs as in :func:`segment_couinaud`.
    The result carries the separated trees (``portal``, ``hepatic``) and, under
    ``landmarks["vessel_separation"]``, the separation's confidence and what was found.

    Parameters
    ----------
    liver, vessels : ndarray, shape (X, Y, Z)
        Canonical RAS+ (axis 0 -> patient Right, 1 -> Anterior, 2 -> Superior), non-zero = inside.
    spacing_mm : sequence of 3 float
    split_segment_4 : bool, keyword-only
    params : CouinaudParams, keyword-only

    Raises
    ------
    InputError
        Bad arrays; no vessel inside the liver; vessels mostly outside it; a mask that fills the
        liver like a blob rather than a vessel tree.
    NotComputableError
        The IVC cannot be inferred, or the mask holds no portal or hepatic root.
    """
    t0 = time.perf_counter()
    spa = np.asarray(_check_inputs(liver, vessels, vessels, spacing_mm))
    warnings: list[str] = []
    liver_box = bounding_box(liver)
    inside = _vessels_in_liver(liver, vessels, liver_box, spa, params, warnings)
    mirror = _laterality(liver[liver_box], spa, warnings)
    if mirror:
        liver, inside = liver[::-1], inside[::-1]
        liver_box = _mirrored_box(liver_box, liver.shape[0])
    g = _grids(liver, inside, inside, spa, params, liver_box)
    sep = separate_vessels(g.liver_a, g.portal_a, g.spacing_analysis_mm, params=params.separation, ivc_params=params.ivc)
    g.portal_a, g.hepatic_a = sep.portal_joined, sep.labels == HEPATIC
    if sep.confidence < 0.5:
        why = f" ({sep.record['implausible']})" if "implausible" in sep.record else ""
        warnings.append(f"vessel separation confidence {sep.confidence:.2f}{why}: check portal_vein / hepatic_veins; "
                        "separate masks give a more reliable division")
    k = _portal_rooted_landmarks(g, sep, params, warnings)
    res = _divide(g, k, liver.shape, params, split_segment_4=split_segment_4, warnings=warnings, separated=True)
    res.portal, res.hepatic = _full_resolution(sep.labels, g, inside, liver.shape)
    res.landmarks["vessel_separation"] = {**sep.record, "ivc": "inferred from the liver's dorsal groove and the "
                                          "vessels' course (not in the mask)"}
    res.runtime_s = time.perf_counter() - t0
    return _unmirror(res, spa) if mirror else res


def _portal_rooted_landmarks(g: _Grids, sep, params: CouinaudParams, warnings: list) -> _Landmarks:
    """Landmarks of a separated tree: rooted at the expected bifurcation when the tree was cut at
    the hilum, or when the bifurcation found on an uncut tree lies farther than
    ``separation.bifurcation_max_offset_mm`` (horizontally) from the expected one.

    The umbilical fissure keeps its offset prior here (no ``umbilical_front_mm``): the separated
    tree's thick left-portal nodes put the umbilical portion's anterior part off (IRCADb 01 with the
    combined mask: mean Dice 0.858 -> 0.784 through it)."""
    def offset_prior(k: _Landmarks) -> _Landmarks:
        return dataclasses.replace(k, portal=dataclasses.replace(k.portal, umbilical_front_mm=None))

    sp = params.separation
    if not sep.record["portal_tree_cut_at_hilum"]:
        first: list[str] = []
        try:
            k = _find_landmarks(g, params, first, ivc=sep.ivc)
        except NotComputableError:  # no split found from the tree's own root: try the expected bifurcation
            k = None
        if k is not None:
            off_mm = float(np.hypot(*(k.bifurcation_mm[:2] - (sep.bifurcation_mm[:2] + g.shift_mm[:2]))))
            sep.record["bifurcation_offset_from_expected_mm"] = round(off_mm, 1)
            if off_mm <= sp.bifurcation_max_offset_mm:
                warnings.extend(first)
                return offset_prior(k)
    sep.record["portal_rooted_at_expected_bifurcation"] = True
    return offset_prior(_find_landmarks(g, params, warnings, ivc=sep.ivc, portal_root_mm=sep.bifurcation_mm))


def _vessels_in_liver(liver: np.ndarray, vessels: np.ndarray, box: tuple, spa: np.ndarray, params: CouinaudParams,
                      warnings: list) -> np.ndarray:
    """The vessel voxels inside the liver on the liver's bounding box ``box`` (bool, the box's
    shape: the liver has no voxel outside it); refuses masks that are not an intrahepatic vessel tree."""
    inside = _mask_in(vessels, box) & _mask_in(liver, box)
    n_in, n_all = int(np.count_nonzero(inside)), int(np.count_nonzero(vessels))
    if n_in == 0:
        raise InputError("--vessels: no vessel voxel inside the liver mask; expected the intrahepatic portal and "
                         "hepatic veins on the liver's grid (wrong file, or a mask of another study)")
    if n_in < params.analysis.min_fraction_near_liver * n_all:
        raise InputError(f"--vessels: only {100 * n_in / n_all:.0f}% of the vessel voxels lie inside the liver "
                         f"(expected >= {100 * params.analysis.min_fraction_near_liver:.0f}%); check that the mask "
                         "belongs to this study and shares its grid")
    if n_in > params.separation.blob_max_liver_fraction * np.count_nonzero(liver):
        raise InputError(f"--vessels: the mask fills {100 * n_in / np.count_nonzero(liver):.0f}% of the liver "
                         f"(a vessel tree fills at most {100 * params.separation.blob_max_liver_fraction:.0f}%): "
                         "it is one blob, not vessels; give the vessel mask (e.g. TotalSegmentator liver_vessels)")
    if n_all > n_in:
        warnings.append(f"--vessels: {(n_all - n_in) * voxel_volume_ml(spa):.1f} mL of the vessel mask outside the "
                        "liver mask was ignored (only intrahepatic vessels are separated)")
    return inside


def _full_resolution(labels_a: np.ndarray, g: _Grids, inside: np.ndarray, shape) -> tuple[np.ndarray, np.ndarray]:
    """Analysis-grid tree labels on the input grid (``shape``), as the portal and hepatic masks
    (bool): each vessel voxel (``inside``, on the liver's box ``g.inner`` of the crop) takes its
    block's label (a voxel in a block the pooling dropped, at the crop's far edge, the nearest
    labelled block's)."""
    f = np.round(g.spacing_analysis_mm / g.spacing_mm).astype(int)
    ijk = voxel_indices(inside) + np.array([s.start for s in g.inner])
    blocks = np.minimum(ijk // f, np.array(labels_a.shape) - 1)
    lab = labels_a[tuple(blocks.T)]
    missing = lab == 0
    if missing.any():
        have = voxel_indices(labels_a)
        _, nearest = cKDTree(have * g.spacing_analysis_mm).query(blocks[missing] * g.spacing_analysis_mm)
        lab[missing] = labels_a[tuple(have[nearest].T)]
    trees = []
    for k in (PORTAL, HEPATIC):
        tree = np.zeros(shape, bool)
        tree[tuple((ijk[lab == k] + g.offset_vox).T)] = True
        trees.append(tree)
    return trees[0], trees[1]


def _mirrored_box(box: tuple, n: int) -> tuple:
    """``box`` on an array flipped along axis 0 of length ``n``."""
    return (slice(n - box[0].stop, n - box[0].start), *box[1:])


def _laterality(liver: np.ndarray, spa: np.ndarray, warnings: list) -> bool:
    """True when the liver's bulk lies on the array's left (axis 0 low = patient left in RAS+);
    ``liver`` may be cropped to its box.

    The right lobe holds most of the liver: its centroid lies 16-51 mm to the patient's right of
    its bounding box's centre on IRCADb 01-12, 14-35 mm on the TotalSegmentator examples and CHAOS
    MR 01/02/03/05 (partial livers among them). A centroid on the other side means a left-right
    flipped header or situs inversus; the division then runs on the mirrored image so that the
    labels follow the anatomy the image shows, and a warning says so.
    """
    counts = np.array([np.count_nonzero(s) for s in liver])  # slab by slab: a third of the CPU of axis=(1, 2)
    x = np.nonzero(counts)[0]
    centroid = float((np.arange(len(counts)) * counts).sum() / counts.sum())
    offset_mm = (centroid - 0.5 * (x[0] + x[-1])) * spa[0]
    if offset_mm >= 0:
        return False
    log.warning("liver on the header's left side")
    warnings.append(f"laterality: the liver's bulk lies {abs(offset_mm):.0f} mm toward the header's LEFT side of its "
                    "extent; likely a left-right flipped header (check the file's orientation) or situs inversus. "
                    "The segments follow the anatomy the image shows (mirrored)")
    return True


def _unmirror(res: CouinaudResult, spa: np.ndarray) -> CouinaudResult:
    """A result computed on the mirrored arrays, back on the input's own axis 0."""
    n = res.labels.shape[0]

    def fix(node):
        if isinstance(node, dict):
            if "voxel" in node:
                node["voxel"][0] = n - 1 - node["voxel"][0]
                node["mm"][0] = round((n - 1) * float(spa[0]) - node["mm"][0], 2)
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(res.landmarks)
    res.landmarks["left_portal_vein_path"] = [[round((n - 1) * float(spa[0]) - p[0], 2), *p[1:]]
                                              for p in res.landmarks["left_portal_vein_path"]]
    res.landmarks["ivc_axis"]["direction_dxdz_dydz"][0] *= -1
    res.landmarks["mirrored"] = "the division ran on the image mirrored left-right (liver on the header's left)"
    res.labels = res.labels[::-1].copy()
    if res.portal is not None:
        res.portal, res.hepatic = res.portal[::-1].copy(), res.hepatic[::-1].copy()
    return res


def _landmarks_record(k: _Landmarks, g: _Grids, bd: Boundaries) -> dict:
    """JSON-ready landmarks in the input array's frame (the mid level: between the right and the
    left transverse plane's vessel heights)."""
    ivc, lpv, pt = k.ivc, k.lpv_path_mm, g.pt
    zr, zc = k.z_right_mm, 0.5 * (bd.z_right_mm + bd.z_left_mm)
    t = k.trunks
    return {
        "frame": "canonical RAS+ array: axis0 Right, axis1 Anterior, axis2 Superior; mm = voxel * spacing_mm",
        "portal_root": pt(np.asarray(k.portal.root_mm, float) + g.shift_mm),
        "portal_bifurcation": pt(k.bifurcation_mm),
        "umbilical_portion": pt(np.asarray(k.portal.umbilical_mm, float) + g.shift_mm),
        "left_portal_vein_leftmost": pt(lpv[int(np.argmin(lpv[:, 0]))]),
        "left_portal_vein_path": [pt(p)["mm"] for p in lpv[:: max(1, len(lpv) // 10)]],
        "ivc_axis": {
            "point_at_bifurcation": pt([*(ivc.slope_xy * zr + k.ivc_intercept_mm), zr]),
            "point_at_mid_level": pt([*(ivc.slope_xy * zc + k.ivc_intercept_mm), zc]),
            "direction_dxdz_dydz": [round(float(v), 4) for v in ivc.slope_xy],
            "radius_mm": round(ivc.radius_mm, 2),
        },
        "hepatic_vein_trunks": {
            name: {"azimuth_deg": None if a is None else round(float(a), 1), "vote_share": round(float(w), 3)}
            for name, a, w in (("right", t.right_deg, t.right_weight), ("middle", t.middle_deg, t.middle_weight),
                               ("left", t.left_deg, t.left_weight))
        },
        "hepatic_vein_trunk_in_plane_fraction": {
            "right": round(t.right_in_plane_fraction, 3), "middle": round(t.middle_in_plane_fraction, 3)
        },
    }


def _vein_band_offset_mm(vein_mm, point_xy, angle_deg, ivc_xy, ivc_radius_mm, z_min_mm, voxel_ml: float,
                         p: ScissuraParams) -> float:
    """Signed distance (mm, along the plane's counter-clockwise normal) by which a vertical plane
    should move to sit on the median of the hepatic-vein voxels near it.

    Voxels counted: within ``p.vein_band_mm`` of the plane, on the plane's outward half (ahead of
    ``point_xy`` along ``angle_deg``), ``p.vein_band_ring_mm`` beyond the IVC wall (the IVC itself
    is left out), above ``z_min_mm``. Returns 0 with less than ``p.vein_band_min_ml`` of vein there.
    """
    a = np.radians(angle_deg)
    q = vein_mm[:, :2] - np.asarray(point_xy, float)
    along = q @ np.array([np.cos(a), np.sin(a)])
    perp = q @ _normal(angle_deg)
    rho = np.hypot(vein_mm[:, 0] - ivc_xy[0], vein_mm[:, 1] - ivc_xy[1])
    sel = ((along > 0) & (rho > ivc_radius_mm + p.vein_band_ring_mm[0]) & (rho < ivc_radius_mm + p.vein_band_ring_mm[1])
           & (np.abs(perp) < p.vein_band_mm) & (vein_mm[:, 2] > z_min_mm))
    if sel.sum() * voxel_ml < p.vein_band_min_ml:
        return 0.0
    return float(np.median(perp[sel]))


def _trunk_confidence(azimuth_deg, in_plane_fraction: float, p: ScissuraParams) -> float:
    """Weight 0..1 of a hepatic-vein trunk against the prior (see ``ScissuraParams.trunk_planar_low``)."""
    if azimuth_deg is None:
        return 0.0
    return float(np.clip((in_plane_fraction - p.trunk_planar_low) / (p.trunk_planar_high - p.trunk_planar_low), 0.0, 1.0))


def _umbilical_confidence(run, bifurcation_mm, p: UmbilicalParams) -> tuple[float, float]:
    """Weight 0..1 of the detected umbilical portion against the prior, and its x (mm) at the
    bifurcation's y.

    The umbilical portion is trusted when it is a straight anterior run (rms distance from its
    line <= ``p.max_rms_mm``, none above ``p.max_rms_mm + p.rms_ramp_mm``), at least
    ``p.min_length_mm`` long, and reached after a transverse part: its line crosses the
    bifurcation's coronal level at least ``p.min_left_mm`` to the patient's left of the
    bifurcation (a branch heading forward straight from the bifurcation is not the umbilical
    portion), and heading within ``p.max_turn_deg`` of the prior's direction (full weight
    ``p.turn_ramp_deg`` less). Linear ramps between the stated limits.
    """
    if run is None or not (0.0 < run.angle_deg < 180.0):
        return 0.0, float("nan")
    b = np.asarray(bifurcation_mm, float)
    x_at_b = float(run.point_mm[0] + (b[1] - run.point_mm[1]) / np.tan(np.radians(run.angle_deg)))
    left_mm = b[0] - x_at_b
    w = (np.clip((p.max_rms_mm + p.rms_ramp_mm - run.rms_mm) / p.rms_ramp_mm, 0.0, 1.0)
         * np.clip((run.length_mm - p.min_length_mm + p.length_ramp_mm) / p.length_ramp_mm, 0.0, 1.0)
         * np.clip((left_mm - p.min_left_mm + p.left_ramp_mm) / p.left_ramp_mm, 0.0, 1.0)
         * np.clip((p.max_turn_deg - abs(run.angle_deg - p.prior_deg)) / p.turn_ramp_deg, 0.0, 1.0))
    return float(w), x_at_b


def _blend_method(w: float) -> str:
    return "fallback" if w <= 0.0 else ("vessel" if w >= 1.0 else "blend")


def _check_near_liver(L2, PV2, HV2, sp2, params: CouinaudParams):
    """Reject vessel masks that do not lie at the liver; return the distance to the liver (mm) at
    voxel indices ``(n, 3)`` of the analysis grid, as a function (0 in the liver; elsewhere from a
    grid twice as coarse, accurate to ~1 voxel)."""
    f = np.array([2, 2, 1 if sp2[2] >= 2 * sp2[0] else 2])
    dq = edt_mm(~_pool(L2, f), spacing_mm=sp2 * f)

    def distance_to_liver_mm(ijk: np.ndarray) -> np.ndarray:
        ijk = np.asarray(ijk)
        coarse = np.minimum(ijk // f, np.array(dq.shape) - 1)
        return np.where(L2[tuple(ijk.T)], 0.0, dq[tuple(coarse.T)])

    ap = params.analysis
    for name, m in (("portal", PV2), ("hepatic", HV2))[:1 if HV2 is PV2 else 2]:
        ijk = voxel_indices(m)
        if len(ijk) == 0:
            raise InputError(f"{name} mask has no voxel within the liver's bounding box (+{ap.crop_margin_mm:.0f} mm): "
                             "it does not belong to this liver (wrong file or different grid)")
        frac = float((distance_to_liver_mm(ijk) <= ap.near_liver_mm).mean())
        if frac < ap.min_fraction_near_liver:
            raise InputError(
                f"{name} mask lies outside the liver: only {100 * frac:.0f}% of its voxels near the liver are within "
                f"{ap.near_liver_mm:.0f} mm of liver tissue (expected >= {100 * ap.min_fraction_near_liver:.0f}%); "
                "check that the masks belong to this study and share its grid"
            )
    return distance_to_liver_mm


def _one_piece_per_label(lab: np.ndarray, warnings: list) -> np.ndarray:
    """Keep the largest 6-connected piece of each label and give every other piece to the label
    that surrounds it most (repeated until stable). A piece with no labelled neighbour is a
    separate island of the liver mask: it keeps its planar label and a warning says so.

    A pass ends the loop when every piece it relabelled touches the kept piece of its new label
    (the kept pieces never change, so each label is then one piece, as another pass would find).

    ``lab`` is relabelled in place (its only caller owns it: no copy of the liver's box) and returned."""
    islands = 0
    for _ in range(6):
        cc, n = cc3d.connected_components(lab, connectivity=6, return_N=True)
        if n == 0:
            break
        sizes, comp_label, lo, hi = _pieces(cc, lab, n)
        keep = np.zeros(n + 1, bool)
        for k in np.unique(comp_label[1:]):
            ids = np.nonzero(comp_label == k)[0]
            ids = ids[ids > 0]
            keep[ids[np.argmax(sizes[ids])]] = True
        strays = [i for i in range(1, n + 1) if not keep[i]]
        if not strays:
            break
        joined_kept = True
        for i in strays:
            sl2 = tuple(slice(max(a - 1, 0), b + 2) for a, b in zip(lo[i], hi[i]))
            piece = cc[sl2] == i
            ring = ndi.binary_dilation(piece) & ~piece
            sub = lab[sl2]
            nb, nb_cc = sub[ring], cc[sl2][ring]
            other = (nb > 0) & (nb != comp_label[i])
            if other.any():
                new = np.bincount(nb[other]).argmax()
                sub[piece] = new
                joined_kept &= bool(keep[nb_cc[nb == new]].any())
            else:
                keep[i] = True
        if all(keep[i] for i in strays):
            islands = len(strays)
            break
        if joined_kept:
            islands = sum(bool(keep[i]) for i in strays)
            break
    if islands:
        warnings.append(f"liver mask has {islands} piece(s) not connected to the rest of the liver; they keep "
                        "their planar label, so those segments are not single pieces there")
    return lab


def _pieces(cc, lab, n):
    """Voxel count, label and index bounds (inclusive) of each numbered piece ``1..n`` of ``cc``
    (``lab``: the labels it was numbered from). A piece's label is read on its box's first plane
    along axis 0, which holds one of its voxels. Only the pieces of a label that has several are
    counted (the count picks the piece kept; a label's only piece is kept whatever it counts, and
    its count is left 0), each within its own box: on IRCADb 01 / 05 / 08 / 12 18-72 ms less CPU
    than ``np.bincount`` of the whole box (its int64 copy of the uint32 pieces), 3-8 ms more on
    this thread; ``cc3d.statistics`` also sums centroids (twice the CPU)."""
    lo, hi = np.zeros((n + 1, 3), np.int64), np.zeros((n + 1, 3), np.int64)
    boxes = ndi.find_objects(cc, n)
    lo[1:] = [[s.start for s in b] for b in boxes]
    hi[1:] = [[s.stop - 1 for s in b] for b in boxes]
    label = np.zeros(n + 1, np.uint8)
    for c in range(1, n + 1):
        plane = (lo[c, 0], slice(lo[c, 1], hi[c, 1] + 1), slice(lo[c, 2], hi[c, 2] + 1))
        label[c] = lab[plane][cc[plane] == c][0]
    counts, pieces_of = np.zeros(n + 1, np.int64), np.bincount(label[1:], minlength=256)
    for c in range(1, n + 1):
        if pieces_of[label[c]] > 1:
            counts[c] = np.count_nonzero(cc[boxes[c - 1]] == c)
    return counts, label, lo, hi
