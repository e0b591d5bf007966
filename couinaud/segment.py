"""Couinaud segments 1-8 from liver, portal-vein and hepatic-vein masks.

Orientation: every array is canonical RAS+ (as ``nibabel.as_closest_canonical`` gives): index
axis 0 increases toward the patient's **R**\\ ight, axis 1 toward **A**\\ nterior, axis 2 toward
**S**\\ uperior. Left/right, anterior/posterior and cranial/caudal below are read from these axes.

Method (Couinaud's classical, plane-based division; the reference annotations follow it):

1. Crop to the liver's bounding box (+ margin) and analyse the vessels on a grid of about
   :data:`ANALYSIS_SPACING_MM` (landmarks are millimetre-scale; the labels are computed at full
   resolution).
2. Landmarks (:mod:`couinaud.landmarks`): the IVC axis tracked in the hepatic-vein mask, the
   portal root, the portal bifurcation, the left portal vein and its umbilical portion, the
   hepatic-vein trunks.
3. Boundaries, all smooth surfaces (planes or ruled surfaces along the IVC axis):

   - *middle scissura* (Cantlie's plane, right vs left liver): the vertical plane of the middle
     hepatic vein, hinged on the IVC;
   - *right scissura* (anterior 5/8 vs posterior 6/7 sector): the vertical plane of the right
     hepatic vein through the IVC axis;
   - *umbilical fissure* (segment 4 vs 2/3): the vertical plane through the umbilical portion of
     the left portal vein;
   - *transverse portal planes*: the axial plane through the portal bifurcation splits the right
     liver into cranial 7/8 and caudal 6/5; the axial plane at the level of the left portal vein
     splits 2 from 3 (and 4a from 4b);
   - *caudate lobe* (1): the liver in front of and left of the IVC, behind the portal bifurcation
     and the left portal vein.
4. Every liver voxel gets one label; each segment is reduced to one connected piece (strays are
   given to the neighbouring segment that surrounds them most).

The angles and offsets used where a vein cannot be found are anatomical priors (documented at their
definition) and are reported in ``methods`` as ``"fallback"``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import cc3d
import edt
import numpy as np
from scipy import ndimage as ndi

from hepatoplan.errors import InputError, NotComputableError

from . import landmarks as lm

log = logging.getLogger(__name__)

#: Vessel analysis runs on a grid of about this spacing (mm), by integer block max-pooling.
ANALYSIS_SPACING_MM = 1.2
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
#: Caudate lobe extent around the bifurcation level (mm): below, above, and left of the IVC axis.
CAUDATE_BELOW_MM = 15.0
CAUDATE_ABOVE_MM = 40.0
CAUDATE_LEFT_OF_IVC_MM = 25.0

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
        JSON-ready; for each boundary, which method decided it (``plane fit``, ``territory`` or
        ``fallback``) and its parameters.
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
    try:
        sp = tuple(float(s) for s in spacing_mm)
    except TypeError as exc:
        raise InputError(f"spacing_mm: expected 3 positive numbers (mm), found {spacing_mm!r}") from exc
    if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
        raise InputError(f"spacing_mm: expected 3 positive numbers (mm), found {spacing_mm!r}")
    masks = {n: np.asarray(a) != 0 for n, a in arrays.items()}
    if not masks["liver"].any():
        raise InputError("liver mask is empty: expected the liver as non-zero voxels")
    for n in ("portal", "hepatic"):
        if not masks[n].any():
            raise InputError(
                f"{n} mask is empty: expected the {'portal vein' if n == 'portal' else 'hepatic veins + IVC'} "
                "as non-zero voxels; segment it first (the Couinaud division is defined by these vessels)"
            )
    return masks["liver"], masks["portal"], masks["hepatic"], sp


def _crop_box(liver, sp, margin_mm):
    idx = np.nonzero(liver.any(axis=(1, 2)))[0], np.nonzero(liver.any(axis=(0, 2)))[0], np.nonzero(liver.any(axis=(0, 1)))[0]
    box = []
    for ax, ii in enumerate(idx):
        m = int(np.ceil(margin_mm / sp[ax]))
        box.append(slice(max(int(ii[0]) - m, 0), min(int(ii[-1]) + 1 + m, liver.shape[ax])))
    return tuple(box)


def _pool(a, f):
    """Block max-pooling by integer factors (edge voxels that do not fill a block are dropped)."""
    s = [(n // k) * k for n, k in zip(a.shape, f)]
    a = a[: s[0], : s[1], : s[2]]
    return a.reshape(s[0] // f[0], f[0], s[1] // f[1], f[1], s[2] // f[2], f[2]).max(axis=(1, 3, 5))


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
    L, PV, HV, sp = _check_inputs(liver, portal, hepatic, spacing_mm)
    spa = np.asarray(sp)
    warnings: list[str] = []

    box = _crop_box(L, spa, CROP_MARGIN_MM)
    off_vox = np.array([b.start for b in box])
    Lc, PVc, HVc = L[box], PV[box], HV[box]

    # --- analysis grid
    f = np.maximum(1, np.round(ANALYSIS_SPACING_MM / spa).astype(int))
    sp2 = spa * f
    shift = (f - 1) / 2.0 * spa  # centre of a pooled block, in mm of the crop frame
    L2, PV2, HV2 = _pool(Lc, f), _pool(PVc, f), _pool(HVc, f)

    dl2 = _check_near_liver(L2, PV2, HV2, sp2)

    ivc = lm.ivc_axis(HV2, sp2)
    pl = lm.portal_landmarks(PV2, L2, sp2, distance_to_liver_mm=dl2)
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

    z_right = float(B[2])
    z_left = float((lpv[:, 2].mean() + lpv[:, 2].max()) / 2.0)
    # IVC centre at the level of the bifurcation: the scissurae are vertical planes hinged there
    ivc_at_b = ivc.centre_near(z_right - shift[2]) + shift[:2]

    # umbilical fissure: shrink the vessel estimate (leftmost point of the left portal vein)
    # halfway toward the prior position (UMBILICAL_PRIOR_OFFSET_MM to the left of the bifurcation)
    u_vessel = lpv[int(np.argmin(lpv[:, 0]))]
    u_prior = B + np.array([-UMBILICAL_PRIOR_OFFSET_MM, 0.0, 0.0])
    U = 0.5 * (u_vessel + u_prior)

    methods = {
        "middle_scissura": {
            "method": "fallback", "angle_deg": PRIOR_MIDDLE_SCISSURA_DEG,
            "offset_mm": round(MIDDLE_SCISSURA_OFFSET_IVC_RADII * r_ivc, 2),
            "detail": "vertical plane at the prior angle, hinged on the IVC axis at the bifurcation level, "
                      f"{MIDDLE_SCISSURA_OFFSET_IVC_RADII} IVC radii anterior-left of its centre (where the middle "
                      "hepatic vein joins)",
        },
        "right_scissura": {
            "method": "plane fit", "angle_deg": PRIOR_RIGHT_SCISSURA_DEG,
            "detail": "vertical coronal plane through the IVC centre at the bifurcation level (the right "
                      "hepatic vein's course)",
        },
        "umbilical_fissure": {
            "method": "plane fit", "angle_deg": PRIOR_UMBILICAL_DEG,
            "detail": "vertical plane through the left portal vein's umbilical portion (leftmost point, shrunk "
                      f"halfway toward {UMBILICAL_PRIOR_OFFSET_MM:.0f} mm left of the bifurcation)",
        },
        "transverse_right": {"method": "plane fit", "z_mm": round(z_right + off_vox[2] * spa[2], 2),
                             "detail": "axial plane through the portal bifurcation (7/8 cranial, 6/5 caudal)"},
        "transverse_left": {"method": "plane fit", "z_mm": round(z_left + off_vox[2] * spa[2], 2),
                            "detail": "axial plane at the level of the left portal vein (2 cranial, 3 caudal)"},
        "caudate": {"method": "plane fit",
                    "detail": "liver in front of the IVC, behind and left of the portal bifurcation, "
                              f"from {CAUDATE_BELOW_MM:.0f} mm below to {CAUDATE_ABOVE_MM:.0f} mm above it"},
    }

    # --- labels at full resolution on the crop
    nx, ny, nz = Lc.shape
    X = (np.arange(nx, dtype=np.float32) * spa[0])[:, None, None]
    Y = (np.arange(ny, dtype=np.float32) * spa[1])[None, :, None]
    Z = (np.arange(nz, dtype=np.float32) * spa[2])[None, None, :]
    icx, icy = np.float32(ivc_at_b[0]), np.float32(ivc_at_b[1])

    def side(px, py, phi_deg, off=0.0):
        """> 0 on the counter-clockwise side of the directed line through p at angle phi (deg)."""
        a = np.radians(phi_deg)
        return np.float32(np.cos(a)) * (Y - py) - np.float32(np.sin(a)) * (X - px) - np.float32(off)

    left = (side(ivc_at_b[0], ivc_at_b[1], PRIOR_MIDDLE_SCISSURA_DEG, MIDDLE_SCISSURA_OFFSET_IVC_RADII * r_ivc) > 0) \
        | ((X < icx) & (Y < icy))
    ant = side(icx, icy, PRIOR_RIGHT_SCISSURA_DEG) > 0
    lat = side(U[0], U[1], PRIOR_UMBILICAL_DEG) > 0
    up_r = Z >= z_right
    up_l = Z >= z_left
    lab = np.where(
        left,
        np.where(lat, np.where(up_l, 2, 3), np.where(up_l | (not split_segment_4), LABEL_4A, LABEL_4B)),
        np.where(ant, np.where(up_r, 8, 5), np.where(up_r, 7, 6)),
    ).astype(np.uint8)
    s1 = (
        (Y > icy - 0.5 * r_ivc) & (Y < B[1]) & (X > icx - CAUDATE_LEFT_OF_IVC_MM) & (X < B[0])
        & (Z > z_right - CAUDATE_BELOW_MM) & (Z < z_right + CAUDATE_ABOVE_MM)
    )
    lab[np.broadcast_to(s1, lab.shape)] = 1
    lab[~Lc] = 0
    lab = _one_piece_per_label(lab, warnings)

    out = np.zeros(L.shape, np.uint8)
    out[box] = lab

    def pt(p_crop):
        mm = np.asarray(p_crop, float) + off_vox * spa
        return {"voxel": [int(round(v)) for v in mm / spa], "mm": [round(float(v), 2) for v in mm]}

    zc = 0.5 * (z_right + z_left)
    landmarks = {
        "frame": "canonical RAS+ array: axis0 Right, axis1 Anterior, axis2 Superior; mm = voxel * spacing_mm",
        "portal_root": pt(to_crop(pl.root_mm)),
        "portal_bifurcation": pt(B),
        "umbilical_portion": pt(U),
        "left_portal_vein_path": [pt(p)["mm"] for p in lpv[:: max(1, len(lpv) // 10)]],
        "ivc_axis": {
            "point_at_bifurcation": pt([*(ivc.slope_xy * z_right + ivc_b), z_right]),
            "point_at_mid_level": pt([*(ivc.slope_xy * zc + ivc_b), zc]),
            "direction_dxdz_dydz": [round(float(v), 4) for v in ivc.slope_xy],
            "radius_mm": round(r_ivc, 2),
        },
    }
    return CouinaudResult(out, landmarks, methods, warnings, time.perf_counter() - t0)


def _check_near_liver(L2, PV2, HV2, sp2):
    """Reject vessel masks that do not lie at the liver; return the distance map to the liver."""
    dl = edt.edt(np.ascontiguousarray(~L2), anisotropy=tuple(sp2), black_border=False)
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
    """Keep the largest connected piece of each label; give every other piece to the label that
    surrounds it most (iterated until stable). Liver islands disconnected from the main liver
    keep the label of the largest neighbouring... (they cannot join a segment) and are reported."""
    liver = lab > 0
    lcc, nl = cc3d.connected_components(liver, connectivity=26, return_N=True)
    if nl > 1:
        sizes = np.bincount(lcc.ravel())
        sizes[0] = 0
        main = lcc == int(np.argmax(sizes))
        n_off = int(liver.sum() - main.sum())
        warnings.append(f"liver mask has {nl} disconnected pieces; {n_off} voxels outside the main piece keep "
                        "their planar label (segments are connected only within the main piece)")
    else:
        main = liver
    work = np.where(main, lab, 0).astype(np.uint8)
    for _ in range(6):
        cc, n = cc3d.connected_components(work, connectivity=6, return_N=True)
        if n == 0:
            break
        sizes = np.bincount(cc.ravel(), minlength=n + 1)
        comp_label = np.zeros(n + 1, np.uint8)
        objs = ndi.find_objects(cc)
        for i, sl in enumerate(objs, start=1):
            if sl is not None:
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
            sl = objs[i - 1]
            sl2 = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in sl)
            piece = cc[sl2] == i
            ring = ndi.binary_dilation(piece) & ~piece
            nb = work[sl2][ring]
            nb = nb[(nb > 0) & (nb != comp_label[i])]
            if nb.size:
                sub = work[sl2]
                sub[piece] = np.bincount(nb).argmax()
    out = np.where(main, work, lab)
    return out
