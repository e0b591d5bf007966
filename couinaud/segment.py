"""Couinaud segments 1-8 from liver, portal-vein and hepatic-vein masks.

Orientation: every array is canonical RAS+ (as ``nibabel.as_closest_canonical`` gives): index
axis 0 increases toward the patient's **R**\\ ight, axis 1 toward **A**\\ nterior, axis 2 toward
**S**\\ uperior. Left/right, anterior/posterior and cranial/caudal below are read from these axes.

Method (Couinaud's classical, plane-based division, as the IRCADb reference annotations draw it):

1. Crop to the liver's bounding box (+ :data:`CROP_MARGIN_MM`) and analyse the vessels on a grid
   of about :data:`ANALYSIS_SPACING_MM` (landmarks are millimetre-scale); the labels are computed
   at full resolution on the liver's bounding box.
2. Landmarks (:mod:`hepatoplan.couinaud.landmarks`): the IVC, tracked slice by slice as the thickest
   continuous tube of the hepatic-vein mask, its axis no steeper than
   :data:`~hepatoplan.couinaud.landmarks.IVC_MAX_TILT`; the portal root (caudal end of the trunk), the portal
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
     (:data:`SHARE_HEIGHT_WEIGHT`) toward the height that leaves the reference's usual share
     (:data:`SECTION_SHARE_BELOW`) of its section's volume below it (right anterior section for
     the 5|8 and 6|7 plane, left lateral section for 2|3; for 2|3 only as far as a clear umbilical
     portion leaves room; not when the liver reaches the scan's first or last slice): the vessels'
     height is off by 6 mm rms, the share's by 6 mm, their mean by 4 mm;
   - *right scissura* (5/8 vs 6/7) and *middle scissura* (Cantlie's plane, right vs left liver):
     vertical planes hinged on the IVC axis at the bifurcation level. Each takes its hepatic-vein
     trunk's azimuth with a **confidence** stated in anatomical terms: the share of the venous
     skeleton within 25 deg of the trunk's azimuth (5-60 mm beyond the IVC wall) that lies within
     3 mm -- about a trunk radius -- of one vertical half-plane from the IVC axis. A straight vein
     running in its scissura puts nearly all of itself there; a curved trunk or one mixed with
     tributaries and neighbouring veins does not. Share >= :data:`TRUNK_PLANAR_HIGH` -> the vein
     decides (``vessel``), <= :data:`TRUNK_PLANAR_LOW` -> the prior (``fallback``), linear blend of
     angle and hinge offset in between (``blend``). Priors: right scissura coronal through the IVC
     centre (the reference puts it there within ~5 mm on 10 of 12 IRCADb cases); middle scissura
     at :data:`PRIOR_MIDDLE_SCISSURA_DEG` through the point :data:`MIDDLE_SCISSURA_OFFSET_IVC_RADII`
     IVC radii anterior-left of the IVC centre (where the middle hepatic vein joins; the reference
     plane has this orientation on every case, 40 +- 5 deg). On IRCADb 01-12 the in-plane share is
     at most 0.64 (the detected trunk azimuths there are off by up to 50 deg on 6 cases, worse
     than the prior), on the data_samples phantom, whose veins lie in their scissurae, >= 0.78;
   - *umbilical fissure* (4 vs 2/3): vertical. Vessel: the umbilical portion, found on the left
     portal vein's path as the longest run heading within 45 deg of anterior
     (:func:`hepatoplan.couinaud.landmarks.umbilical_run`), trusted when it is straight (rms <=
     :data:`UMBILICAL_MAX_RMS_MM`), >= :data:`UMBILICAL_MIN_LENGTH_MM` long and reached after a
     transverse part (its line crosses the bifurcation's coronal level >= :data:`UMBILICAL_MIN_LEFT_MM`
     to the left of it), heading within :data:`UMBILICAL_MAX_TURN_DEG` of the prior's direction;
     the 2|3 plane then moves to the umbilical portion's height by the same weight. Prior: :data:`PRIOR_UMBILICAL_DEG`, :data:`UMBILICAL_PRIOR_OFFSET_MM` to the patient's
     left of the bifurcation (on IRCADb the detected runs start at the bifurcation or are not
     straight, and the prior decides);
   - *caudate lobe* (1): the liver in front of the IVC's centre line (from half a radius behind
     it), left of the bifurcation and up to :data:`CAUDATE_FRONT_OF_BIFURCATION_MM` in front of
     it, at most :data:`CAUDATE_LEFT_OF_IVC_MM` left of the IVC, from :data:`CAUDATE_BELOW_MM` below to :data:`CAUDATE_ABOVE_MM` above the bifurcation.
4. Every liver voxel gets one label; each segment is reduced to one 6-connected piece (other
   pieces go to the segment that surrounds them most). Pieces of a liver mask that are not
   connected to the rest keep their planar label and are reported in ``warnings``.

Constants are anatomical priors in millimetres or degrees; their values were checked against the
reference on all twelve IRCADb cases together (flat optima, no per-case value), never per case.
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
from dataclasses import dataclass, field

import cc3d
import edt
import numpy as np
from scipy import ndimage as ndi

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError

from . import landmarks as lm

log = logging.getLogger(__name__)

#: Vessel analysis runs on a grid of about this spacing (mm), by integer block max-pooling.
ANALYSIS_SPACING_MM = 1.2
#: The IVC chain must reach up to this far (mm) below the portal bifurcation (the scissurae hinge
#: on the IVC at that height; a low thick piece, such as a kidney's upper pole in an automatic
#: mask, is not taken for it).
IVC_REACH_BELOW_BIFURCATION_MM = 20.0
#: Crop margin around the liver (mm): keeps the hilum and the IVC next to the liver.
CROP_MARGIN_MM = 15.0
#: A vessel voxel counts as "at the liver" within this distance of liver tissue (mm).
NEAR_LIVER_MM = 8.0
#: Below this fraction of vessel voxels at the liver, the mask is rejected as "outside the liver".
MIN_FRACTION_NEAR_LIVER = 0.25

#: Prior angle (deg, from +x toward +y) of the middle scissura in the axial plane; used when the
#: middle hepatic vein is not found. Cantlie's line runs from the IVC toward the gallbladder fossa,
#: anterior and to the right.
PRIOR_MIDDLE_SCISSURA_DEG = 40.0
#: Prior angle of the right scissura (the right hepatic vein runs to the right, nearly coronal).
PRIOR_RIGHT_SCISSURA_DEG = 0.0
#: Prior angle of the umbilical fissure (anterior, slightly to the right).
PRIOR_UMBILICAL_DEG = 74.0
#: The middle scissura passes this many IVC radii anterior-left of the IVC centre (the middle
#: hepatic vein joins the IVC on its anterior-left wall).
MIDDLE_SCISSURA_OFFSET_IVC_RADII = 1.5
#: Prior position of the umbilical fissure: this far to the patient's left of the bifurcation (mm).
UMBILICAL_PRIOR_OFFSET_MM = 25.0
#: Share of a section's volume below its transverse plane in the IRCADb reference, measured on the
#: sections this method draws: right anterior (5 + 8) below the 5|8 plane 0.42 (SD 0.04 over cases
#: 01-12), left lateral (2 + 3) below the 2|3 plane 0.30 (SD 0.06).
SECTION_SHARE_BELOW = {"right": 0.42, "left": 0.30}
#: Weight of that share's height against the portal veins' height, per transverse plane.
SHARE_HEIGHT_WEIGHT = 0.5
#: Caudate lobe extent around the bifurcation level (mm): below, above, and left of the IVC axis.
CAUDATE_BELOW_MM = 20.0
CAUDATE_ABOVE_MM = 40.0
CAUDATE_LEFT_OF_IVC_MM = 30.0
#: The caudate reaches this far (mm) in front of the bifurcation (the portal bifurcation and the
#: transverse left portal vein lie on its anterior face).
CAUDATE_FRONT_OF_BIFURCATION_MM = 5.0
#: (Caudate box chosen on IRCADb 01-12 by a grid over left 20-35, right 10-35 mm of the IVC or
#: 0-15 mm of the bifurcation, behind 0-1 IVC radii, front -10..10, below 5-30, above 20-50 mm:
#: in-sample mean Dice 0.809, leave-one-out 0.808, against 0.803 for the former 25/15/0 mm box.)
#: The caudate starts this many IVC radii behind the IVC's centre line (it wraps around the IVC).
CAUDATE_BEHIND_IVC_RADII = 0.5

#: Confidence that a hepatic-vein trunk marks its scissura: the share of the venous skeleton
#: within +-25 deg of the trunk's azimuth that lies within 3 mm (about a trunk radius) of one
#: vertical half-plane from the IVC axis (:func:`hepatoplan.couinaud.landmarks.hepatic_trunks`). A straight
#: vein running in its scissura puts nearly all of it there; a curved trunk, or one mixed with
#: tributaries and neighbouring veins, does not. At or below :data:`TRUNK_PLANAR_LOW` the prior
#: decides, at or above :data:`TRUNK_PLANAR_HIGH` the vein does, linear blend of the angles (and
#: of the middle scissura's offset) in between.
TRUNK_PLANAR_LOW = 0.65
TRUNK_PLANAR_HIGH = 0.75

#: Where the prior decides a scissura's angle, its position still follows its hepatic vein: the
#: plane moves by the median signed distance of the venous voxels lying within this distance
#: (mm) of the prior plane, on its own side of the IVC (beyond the IVC wall + 10 mm, up to 70 mm),
#: from 10 mm below the right portal plane up. Only the angle is a prior: a curved vein still
#: runs *in* its scissura on average. (Band 8 mm chosen among 8/12/16/20 on IRCADb 01-12; leave-one-out
#: picks 8 mm on 10 of 12 folds (16/20 mm on 06, 07), leave-one-out mean Dice 0.798 vs 0.804 in-sample.)
VEIN_BAND_MM = 8.0
#: ... using at least this much venous volume (mL) in the band, else the prior position stays.
VEIN_BAND_MIN_ML = 0.5

#: Umbilical portion trusted (see :func:`_umbilical_confidence`) when straight within this rms (mm),
UMBILICAL_MAX_RMS_MM = 1.2
#: at least this long (mm),
UMBILICAL_MIN_LENGTH_MM = 20.0
#: and crossing the bifurcation's coronal level at least this far (mm) to the patient's left of it.
UMBILICAL_MIN_LEFT_MM = 10.0
#: ... and heads within this many degrees of the prior's direction (the reference fissures lie at
#: 61-93 deg on 11 of the 12 IRCADb cases; a run far outside follows a segment 2 or 3 branch).
UMBILICAL_MAX_TURN_DEG = 30.0

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
    """

    labels: np.ndarray
    landmarks: dict
    methods: dict
    warnings: list = field(default_factory=list)
    runtime_s: float = float("nan")


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
    if not np.any(liver):
        raise InputError("liver mask is empty: expected the liver as non-zero voxels")
    for n, a in (("portal", portal), ("hepatic", hepatic)):
        if not np.any(a):
            raise InputError(
                f"{n} mask is empty: expected the {'portal vein' if n == 'portal' else 'hepatic veins + IVC'} "
                "as non-zero voxels; segment it first (the Couinaud division is defined by these vessels)"
            )
    return sp


def _crop_box(liver, sp, margin_mm):
    xy = liver.any(axis=2)
    idx = np.nonzero(xy.any(axis=1))[0], np.nonzero(xy.any(axis=0))[0], np.nonzero(liver.any(axis=(0, 1)))[0]
    box = []
    for ax, ii in enumerate(idx):
        m = int(np.ceil(margin_mm / sp[ax]))
        box.append(slice(max(int(ii[0]) - m, 0), min(int(ii[-1]) + 1 + m, liver.shape[ax])))
    return tuple(box)


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


# --------------------------------------------------------------------------- boundaries -> labels


@dataclass
class Boundaries:
    """The surfaces of the division, in mm of the (cropped) array frame.

    Vertical planes are given by a point in the axial plane and an angle (deg, from +x = patient
    right toward +y = anterior); the "positive" side of a plane is the counter-clockwise one:
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


def _normal(angle_deg: float) -> np.ndarray:
    """Unit normal (2D) on the counter-clockwise side of a line at ``angle_deg``."""
    a = np.radians(angle_deg)
    return np.array([-np.sin(a), np.cos(a)])


def _share_height_mm(liver: np.ndarray, columns: np.ndarray, share: float, spacing_z_mm: float) -> float | None:
    """Height (mm of the array frame) of the axial plane with ``share`` of the liver in ``columns``
    (an axial mask) below it; None when those columns hold no liver."""
    counts = np.count_nonzero(liver & columns[:, :, None], axis=(0, 1))
    total = int(counts.sum())
    if total == 0:
        return None
    cum = np.cumsum(counts)  # cum[k]: liver below the plane between slices k and k + 1
    return float(np.interp(share * total, cum, (np.arange(len(cum)) + 0.5) * spacing_z_mm))


def _label_crop(liver: np.ndarray, spa: np.ndarray, bd: Boundaries, *,
                split_segment_4: bool) -> tuple[np.ndarray, dict[str, float]]:
    """Couinaud labels of every liver voxel from the boundaries (before the connectivity step).

    The scissurae and the umbilical fissure are vertical, so each axial column (x, y) falls in one
    of four sectors (right posterior, right anterior, segment 4, lateral left); the transverse
    planes then pick the label per height through a lookup table; the caudate is an axis-aligned
    box and is painted by slicing.
    """
    nx, ny, nz = liver.shape
    X = (np.arange(nx, dtype=np.float32) * np.float32(spa[0]))[:, None]
    Y = (np.arange(ny, dtype=np.float32) * np.float32(spa[1]))[None, :]
    Z = np.arange(nz, dtype=np.float32) * np.float32(spa[2])

    def side(point, angle_deg):
        n = _normal(angle_deg).astype(np.float32)
        return n[0] * (X - np.float32(point[0])) + n[1] * (Y - np.float32(point[1]))

    icx, icy = float(bd.ivc_xy[0]), float(bd.ivc_xy[1])
    # left liver: left of the middle scissura, plus what lies behind and left of the IVC
    left = (side(bd.middle_point_xy, bd.middle_angle_deg) > 0) | ((X < icx) & (Y < icy))
    ant = side(bd.right_point_xy, bd.right_angle_deg) > 0
    lat = side(bd.umbilical_point_xy, bd.umbilical_angle_deg) > 0
    # sector per column: 0 right posterior, 1 right anterior, 2 segment 4, 3 lateral left (2/3)
    sector = np.where(left, np.where(lat, 3, 2), np.where(ant, 1, 0)).astype(np.uint8)
    # transverse planes: the portal veins' height blended with the height that leaves the
    # reference's usual share of the section below (see SECTION_SHARE_BELOW)
    heights_mm = {}
    for name, z_vessel_mm, sec, w in (("right", bd.z_right_mm, 1, bd.share_weights[0]),
                                      ("left", bd.z_left_mm, 3, bd.share_weights[1])):
        z_share_mm = _share_height_mm(liver, sector == sec, SECTION_SHARE_BELOW[name], float(spa[2]))
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
    lab = lut[sector[:, :, None], band[None, None, :]]
    B = bd.bifurcation_mm
    r = bd.ivc_radius_mm

    def span(lo_mm, hi_mm, n, step):
        lo = int(np.clip(np.floor(lo_mm / step) + 1, 0, n))
        hi = int(np.clip(np.ceil(hi_mm / step), 0, n))
        return slice(lo, max(lo, hi))

    s1 = (span(icx - CAUDATE_LEFT_OF_IVC_MM, max(B[0], icx), nx, spa[0]),
          span(icy - CAUDATE_BEHIND_IVC_RADII * r, B[1] + CAUDATE_FRONT_OF_BIFURCATION_MM, ny, spa[1]),
          span(B[2] - CAUDATE_BELOW_MM, B[2] + CAUDATE_ABOVE_MM, nz, spa[2]))
    lab[s1] = 1
    lab *= liver
    return lab, heights_mm


# --------------------------------------------------------------------------- main


def segment_couinaud(liver, portal, hepatic, *, spacing_mm, split_segment_4: bool = False) -> CouinaudResult:
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
    sp = _check_inputs(liver, portal, hepatic, spacing_mm)
    spa = np.asarray(sp)
    warnings: list[str] = []

    box = _crop_box(liver, spa, CROP_MARGIN_MM)
    off_vox = np.array([b.start for b in box])
    Lc, PVc, HVc = (np.asarray(a[box]) != 0 for a in (liver, portal, hepatic))
    n_out = {n: int(np.count_nonzero(a)) - int(np.count_nonzero(a[box])) for n, a in (("portal", portal), ("hepatic", hepatic))}
    for n, k in n_out.items():
        if k:
            log.info("%s mask: %d voxels farther than %.0f mm from the liver's bounding box are ignored", n, k, CROP_MARGIN_MM)

    # --- analysis grid
    f = np.maximum(1, np.round(ANALYSIS_SPACING_MM / spa).astype(int))
    sp2 = spa * f
    shift = (f - 1) / 2.0 * spa  # centre of a pooled block, in mm of the crop frame
    L2, PV2, HV2 = _pool(Lc, f), _pool(PVc, f), _pool(HVc, f)

    dl2 = _check_near_liver(L2, PV2, HV2, sp2)

    pl = lm.portal_landmarks(PV2, L2, sp2, distance_to_liver_mm=dl2)
    ivc = lm.ivc_axis(HV2, sp2, reach_z_mm=float(pl.bifurcation_mm[2]) - IVC_REACH_BELOW_BIFURCATION_MM)
    if pl.disconnected_fraction > 0.2:
        warnings.append(
            f"portal-vein mask: {100 * pl.disconnected_fraction:.0f}% of its intrahepatic volume is not "
            "connected to the main tree; only the main tree was used"
        )

    # shift landmark positions to the crop frame at full resolution
    def to_crop(p):
        return np.asarray(p, float) + shift

    ivc_b = np.array(ivc.intercept_mm) + shift[:2] - ivc.slope_xy * shift[2]
    B = to_crop(pl.bifurcation_mm)
    U = to_crop(pl.umbilical_mm)
    lpv = to_crop(pl.lpv_path_mm)
    r_ivc = ivc.radius_mm

    # the right and left portal veins run nearly horizontally from the bifurcation: the transverse
    # plane is the mean height of the right portal vein's first RPV_LENGTH_MM (the skeleton's
    # junction node of a thick trunk tends to sit below the branches' centre lines)
    # (heights read from the vessel mask's columns, see landmarks.column_centre_z)
    if pl.rpv_path_mm is not None:
        z_right = float(np.median(lm.column_centre_z(PV2, pl.rpv_path_mm, sp2)) + shift[2])
    else:
        z_right = float(B[2])
    z_left = float((lpv[:, 2].mean() + lpv[:, 2].max()) / 2.0)
    # IVC centre at the level of the bifurcation: the scissurae are vertical planes hinged there
    ivc_at_b = ivc.centre_near(z_right - shift[2]) + shift[:2]

    trunks = lm.hepatic_trunks(HV2, sp2, ivc_at_b - shift[:2], r_ivc)

    w_mid = _trunk_confidence(trunks.middle_deg, trunks.middle_in_plane_fraction)
    w_right = _trunk_confidence(trunks.right_deg, trunks.right_in_plane_fraction)
    mid_angle = PRIOR_MIDDLE_SCISSURA_DEG + w_mid * ((trunks.middle_deg or 0.0) - PRIOR_MIDDLE_SCISSURA_DEG)
    mid_offset = (1.0 - w_mid) * MIDDLE_SCISSURA_OFFSET_IVC_RADII * r_ivc
    right_angle = PRIOR_RIGHT_SCISSURA_DEG + w_right * ((trunks.right_deg or 0.0) - PRIOR_RIGHT_SCISSURA_DEG)
    if mid_angle < right_angle + lm.MIN_TRUNK_SEPARATION_DEG:
        # one trunk from the vessels, the other from its prior: keep the right anterior section open
        warnings.append(f"middle scissura turned to {right_angle + lm.MIN_TRUNK_SEPARATION_DEG:.0f} deg to stay "
                        f"{lm.MIN_TRUNK_SEPARATION_DEG:.0f} deg anterior of the right scissura")
        mid_angle = right_angle + lm.MIN_TRUNK_SEPARATION_DEG

    # umbilical fissure: UMBILICAL_PRIOR_OFFSET_MM to the patient's left of the bifurcation.
    # Measured on IRCADb 01-12 against the reference, this prior (rms 12.6 mm) beats the vessel
    # estimates tried (leftmost point of the left portal vein: rms 26 mm; centroid of its
    # territory: worse Dice), because the heaviest left-portal path often follows a segment 2/3
    # or 4 branch rather than the umbilical portion. The detected umbilical portion is still
    # reported in the landmarks.
    u_vessel = lpv[int(np.argmin(lpv[:, 0]))]
    U = B + np.array([-UMBILICAL_PRIOR_OFFSET_MM, 0.0, 0.0])
    run = lm.umbilical_run(lpv)
    if run is not None:
        run.point_mm[2] = float(np.median(lm.column_centre_z(PV2, pl.lpv_path_mm, sp2)[
            np.linalg.norm(lpv[:, :2] - run.point_mm[:2], axis=1) <= 0.5 * run.length_mm]) + shift[2])
    w_umb, x_run = _umbilical_confidence(run, B)
    umb_angle = PRIOR_UMBILICAL_DEG
    if w_umb > 0.0:
        U = np.array([U[0] + w_umb * (x_run - U[0]), B[1], B[2]])
        umb_angle = PRIOR_UMBILICAL_DEG + w_umb * (run.angle_deg - PRIOR_UMBILICAL_DEG)
        # segments 2 and 3 are the cranial and caudal branches of the umbilical portion: a clear
        # umbilical portion also gives the 2|3 plane's height
        z_left = z_left + w_umb * (float(run.point_mm[2]) - z_left)

    methods = {
        "middle_scissura": {
            "method": _blend_method(w_mid), "angle_deg": round(float(mid_angle), 2), "confidence": round(w_mid, 3),
            "offset_mm": round(float(mid_offset), 2),
            "detail": "vertical plane hinged on the IVC axis at the bifurcation level; prior: "
                      f"{PRIOR_MIDDLE_SCISSURA_DEG:.0f} deg, {MIDDLE_SCISSURA_OFFSET_IVC_RADII} IVC radii anterior-left "
                      "of its centre (where the middle hepatic vein joins); vessel: the half-plane of the middle "
                      "hepatic vein trunk; weighted by the trunk's planarity",
        },
        "right_scissura": {
            "method": _blend_method(w_right),
            "angle_deg": round(float(right_angle), 2), "confidence": round(w_right, 3),
            "detail": "vertical plane through the IVC centre at the bifurcation level; prior: coronal (the "
                      "right hepatic vein's usual course); vessel: the half-plane of the right hepatic vein "
                      "trunk; weighted by the trunk's planarity",
        },
        "umbilical_fissure": {
            "method": _blend_method(w_umb), "angle_deg": round(float(umb_angle), 2), "confidence": round(w_umb, 3),
            "detail": f"vertical plane; prior: {PRIOR_UMBILICAL_DEG:.0f} deg, {UMBILICAL_PRIOR_OFFSET_MM:.0f} mm to the "
                      "left of the portal bifurcation; vessel: the line of the umbilical portion, weighted by how "
                      "straight it is and whether it follows a transverse part (the 2|3 plane then moves to its "
                      "height by the same weight)",
        },
        "transverse_right": {"detail": "axial plane (7/8 cranial, 6/5 caudal) between the right portal vein's height "
                                       f"and the height with {SECTION_SHARE_BELOW['right']:.0%} of the right anterior "
                                       "section below it, weighted by share_weight"},
        "transverse_left": {"detail": "axial plane (2 cranial, 3 caudal) between the left portal vein's (or a clear "
                                      f"umbilical portion's) height and the height with {SECTION_SHARE_BELOW['left']:.0%} "
                                      "of the left lateral section below it, weighted by share_weight"},
        "caudate": {"method": "plane fit",
                    "detail": "liver in front of the IVC, left of the portal bifurcation and up to 5 mm in front of it, "
                              f"from {CAUDATE_BELOW_MM:.0f} mm below to {CAUDATE_ABOVE_MM:.0f} mm above it"},
    }

    # the prior part of each scissura: moved onto its vein's mean course (see VEIN_BAND_MM)
    vein_mm = np.argwhere(HV2) * sp2 + shift  # analysis grid: block centres in mm of the crop frame
    mid_point = ivc_at_b + mid_offset * _normal(mid_angle)
    mid_shift_mm = (1.0 - w_mid) * _vein_band_offset_mm(vein_mm, mid_point, mid_angle, ivc_at_b, r_ivc,
                                                        z_right - 10.0, float(np.prod(sp2)))
    right_shift_mm = (1.0 - w_right) * _vein_band_offset_mm(vein_mm, ivc_at_b, right_angle, ivc_at_b, r_ivc,
                                                            z_right - 10.0, float(np.prod(sp2)))
    methods["middle_scissura"]["vein_shift_mm"] = round(mid_shift_mm, 2)
    methods["right_scissura"]["vein_shift_mm"] = round(right_shift_mm, 2)
    # a liver cut by the scan's first or last slice has incomplete sections: no share heights
    w_share = SHARE_HEIGHT_WEIGHT
    if np.any(liver[:, :, 0]) or np.any(liver[:, :, -1]):
        w_share = 0.0
        warnings.append("the liver reaches the first or last axial slice of the scan: the transverse planes "
                        "come from the portal veins alone (its sections' volume shares are incomplete)")
    bd = Boundaries(
        middle_point_xy=mid_point + mid_shift_mm * _normal(mid_angle),
        middle_angle_deg=mid_angle,
        right_point_xy=ivc_at_b + right_shift_mm * _normal(right_angle), right_angle_deg=right_angle,
        umbilical_point_xy=U[:2], umbilical_angle_deg=umb_angle,
        z_right_mm=z_right, z_left_mm=z_left,
        ivc_xy=ivc_at_b, ivc_radius_mm=r_ivc, bifurcation_mm=B,
        share_weights=(w_share, w_share * (1.0 - w_umb)),
    )
    # label only the liver's own bounding box (the analysis crop has a margin)
    inner = _crop_box(Lc, spa, 0.0)
    o_mm = np.array([b.start for b in inner]) * spa
    bd_in = dataclasses.replace(
        bd, middle_point_xy=bd.middle_point_xy - o_mm[:2], right_point_xy=bd.right_point_xy - o_mm[:2],
        umbilical_point_xy=bd.umbilical_point_xy - o_mm[:2], z_right_mm=bd.z_right_mm - o_mm[2],
        z_left_mm=bd.z_left_mm - o_mm[2], ivc_xy=bd.ivc_xy - o_mm[:2], bifurcation_mm=bd.bifurcation_mm - o_mm,
    )
    lab = np.zeros(Lc.shape, np.uint8)
    lab_inner, heights_mm = _label_crop(Lc[inner], spa, bd_in, split_segment_4=split_segment_4)
    lab[inner] = _one_piece_per_label(lab_inner, warnings)
    for name, z_vessel_mm, w in (("right", z_right, bd.share_weights[0]), ("left", z_left, bd.share_weights[1])):
        methods[f"transverse_{name}"].update(
            method="blend" if w > 0 else "plane fit", share_weight=round(w, 3),
            z_mm=round(float(heights_mm[name] + o_mm[2] + off_vox[2] * spa[2]), 2),
            vessel_z_mm=round(float(z_vessel_mm + off_vox[2] * spa[2]), 2))

    out = np.zeros(liver.shape, np.uint8)
    out[box] = lab

    def pt(p_crop):
        mm = np.asarray(p_crop, float) + off_vox * spa
        return {"voxel": [int(round(v)) for v in mm / spa], "mm": [round(float(v), 2) for v in mm]}

    zc = 0.5 * (z_right + z_left)
    landmarks = {
        "frame": "canonical RAS+ array: axis0 Right, axis1 Anterior, axis2 Superior; mm = voxel * spacing_mm",
        "portal_root": pt(to_crop(pl.root_mm)),
        "portal_bifurcation": pt(B),
        "umbilical_portion": pt(to_crop(pl.umbilical_mm)),
        "left_portal_vein_leftmost": pt(u_vessel),
        "left_portal_vein_path": [pt(p)["mm"] for p in lpv[:: max(1, len(lpv) // 10)]],
        "ivc_axis": {
            "point_at_bifurcation": pt([*(ivc.slope_xy * z_right + ivc_b), z_right]),
            "point_at_mid_level": pt([*(ivc.slope_xy * zc + ivc_b), zc]),
            "direction_dxdz_dydz": [round(float(v), 4) for v in ivc.slope_xy],
            "radius_mm": round(r_ivc, 2),
        },
        "hepatic_vein_trunks": {
            name: {"azimuth_deg": None if a is None else round(float(a), 1), "vote_share": round(float(w), 3)}
            for name, a, w in (("right", trunks.right_deg, trunks.right_weight),
                               ("middle", trunks.middle_deg, trunks.middle_weight),
                               ("left", trunks.left_deg, trunks.left_weight))
        },
        "hepatic_vein_trunk_in_plane_fraction": {
            "right": round(trunks.right_in_plane_fraction, 3), "middle": round(trunks.middle_in_plane_fraction, 3)
        },
    }
    return CouinaudResult(out, landmarks, methods, warnings, time.perf_counter() - t0)


def _vein_band_offset_mm(vein_mm, point_xy, angle_deg, ivc_xy, ivc_radius_mm, z_min_mm, voxel_mm3) -> float:
    """Signed distance (mm, along the plane's counter-clockwise normal) by which a vertical plane
    should move to sit on the median of the hepatic-vein voxels near it.

    Voxels counted: within :data:`VEIN_BAND_MM` of the plane, on the plane's outward half (ahead of
    ``point_xy`` along ``angle_deg``), 10-70 mm beyond the IVC wall (the IVC itself is left out),
    above ``z_min_mm``. Returns 0 with less than :data:`VEIN_BAND_MIN_ML` of vein there.
    """
    a = np.radians(angle_deg)
    q = vein_mm[:, :2] - np.asarray(point_xy, float)
    along = q @ np.array([np.cos(a), np.sin(a)])
    perp = q @ _normal(angle_deg)
    rho = np.hypot(vein_mm[:, 0] - ivc_xy[0], vein_mm[:, 1] - ivc_xy[1])
    sel = ((along > 0) & (rho > ivc_radius_mm + 10.0) & (rho < ivc_radius_mm + 70.0)
           & (np.abs(perp) < VEIN_BAND_MM) & (vein_mm[:, 2] > z_min_mm))
    if sel.sum() * voxel_mm3 < 1000.0 * VEIN_BAND_MIN_ML:
        return 0.0
    return float(np.median(perp[sel]))


def _trunk_confidence(azimuth_deg, in_plane_fraction: float) -> float:
    """Weight 0..1 of a hepatic-vein trunk against the prior (see :data:`TRUNK_PLANAR_LOW`)."""
    if azimuth_deg is None:
        return 0.0
    return float(np.clip((in_plane_fraction - TRUNK_PLANAR_LOW) / (TRUNK_PLANAR_HIGH - TRUNK_PLANAR_LOW), 0.0, 1.0))


def _umbilical_confidence(run, bifurcation_mm) -> tuple[float, float]:
    """Weight 0..1 of the detected umbilical portion against the prior, and its x (mm) at the
    bifurcation's y.

    The umbilical portion is trusted when it is a straight anterior run (rms distance from its
    line <= :data:`UMBILICAL_MAX_RMS_MM`, none above :data:`UMBILICAL_MAX_RMS_MM` + 0.4 mm), at least
    :data:`UMBILICAL_MIN_LENGTH_MM` long, and reached after a transverse part: its line crosses
    the bifurcation's coronal level at least :data:`UMBILICAL_MIN_LEFT_MM` to the patient's left
    of the bifurcation (a branch heading forward straight from the bifurcation is not the
    umbilical portion), and heading within :data:`UMBILICAL_MAX_TURN_DEG` of the prior's direction
    (full weight up to 10 deg less). Linear ramps between the stated limits.
    """
    if run is None or not (0.0 < run.angle_deg < 180.0):
        return 0.0, float("nan")
    b = np.asarray(bifurcation_mm, float)
    x_at_b = float(run.point_mm[0] + (b[1] - run.point_mm[1]) / np.tan(np.radians(run.angle_deg)))
    left_mm = b[0] - x_at_b
    w = (np.clip((UMBILICAL_MAX_RMS_MM + 0.4 - run.rms_mm) / 0.4, 0.0, 1.0)
         * np.clip((run.length_mm - UMBILICAL_MIN_LENGTH_MM + 5.0) / 5.0, 0.0, 1.0)
         * np.clip((left_mm - UMBILICAL_MIN_LEFT_MM + 5.0) / 5.0, 0.0, 1.0)
         * np.clip((UMBILICAL_MAX_TURN_DEG - abs(run.angle_deg - PRIOR_UMBILICAL_DEG)) / 10.0, 0.0, 1.0))
    return float(w), x_at_b


def _blend_method(w: float) -> str:
    return "fallback" if w <= 0.0 else ("vessel" if w >= 1.0 else "blend")


def _check_near_liver(L2, PV2, HV2, sp2):
    """Reject vessel masks that do not lie at the liver; return the distance map to the liver (mm,
    on the analysis grid; computed on a grid twice as coarse, upsampled, accurate to ~1 voxel)."""
    f = np.array([2, 2, 1 if sp2[2] >= 2 * sp2[0] else 2])
    Lq = _pool(L2, f)
    dq = edt.edt(np.ascontiguousarray(~Lq), anisotropy=tuple(sp2 * f), black_border=False)
    ii = [np.minimum(np.arange(n) // k, m - 1) for n, k, m in zip(L2.shape, f, dq.shape)]
    dl = dq[np.ix_(*ii)]
    dl[L2] = 0.0
    for name, m in (("portal", PV2), ("hepatic", HV2)):
        n = int(m.sum())
        if n == 0:
            raise InputError(f"{name} mask has no voxel within the liver's bounding box (+{CROP_MARGIN_MM:.0f} mm): "
                             "it does not belong to this liver (wrong file or different grid)")
        frac = float((dl[m] <= NEAR_LIVER_MM).mean())
        if frac < MIN_FRACTION_NEAR_LIVER:
            raise InputError(
                f"{name} mask lies outside the liver: only {100 * frac:.0f}% of its voxels near the liver are within "
                f"{NEAR_LIVER_MM:.0f} mm of liver tissue (expected >= {100 * MIN_FRACTION_NEAR_LIVER:.0f}%); "
                "check that the masks belong to this study and share its grid"
            )
    return dl


def _one_piece_per_label(lab: np.ndarray, warnings: list) -> np.ndarray:
    """Keep the largest 6-connected piece of each label and give every other piece to the label
    that surrounds it most (repeated until stable). A piece with no labelled neighbour is a
    separate island of the liver mask: it keeps its planar label and a warning says so."""
    work = lab.copy()
    islands = 0
    for _ in range(6):
        cc, n = cc3d.connected_components(work, connectivity=6, return_N=True)
        if n == 0:
            break
        st = cc3d.statistics(cc)
        sizes = np.asarray(st["voxel_counts"])
        boxes = st["bounding_boxes"]
        comp_label = np.zeros(n + 1, np.uint8)
        for i in range(1, n + 1):
            sl = boxes[i]
            comp_label[i] = work[sl][cc[sl] == i][0]
        keep = np.zeros(n + 1, bool)
        for k in np.unique(comp_label[1:]):
            ids = np.nonzero(comp_label == k)[0]
            ids = ids[ids > 0]
            keep[ids[np.argmax(sizes[ids])]] = True
        strays = [i for i in range(1, n + 1) if not keep[i]]
        if not strays:
            break
        for i in strays:
            sl = boxes[i]
            sl2 = tuple(slice(max(q.start - 1, 0), q.stop + 1) for q in sl)
            piece = cc[sl2] == i
            ring = ndi.binary_dilation(piece) & ~piece
            nb = work[sl2][ring]
            nb = nb[(nb > 0) & (nb != comp_label[i])]
            if nb.size:
                sub = work[sl2]
                sub[piece] = np.bincount(nb).argmax()
            else:
                keep[i] = True
        if all(keep[i] for i in strays):
            islands = len(strays)
            break
    if islands:
        warnings.append(f"liver mask has {islands} piece(s) not connected to the rest of the liver; they keep "
                        "their planar label, so those segments are not single pieces there")
    return work
