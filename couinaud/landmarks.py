"""Vessel landmarks for the Couinaud division: IVC axis, portal bifurcation, left portal vein,
umbilical portion, hepatic-vein trunks.

Frame: every function takes masks in canonical RAS+ orientation (index axis 0 increases toward the
patient's Right, axis 1 toward Anterior, axis 2 toward Superior) and returns positions in mm of the
array frame it was given (``index * spacing_mm``, no origin, no world). Angles in the axial plane
are measured from +x (patient right) toward +y (anterior), in degrees: 0 = right, 90 = anterior,
180 = left, -90 = posterior.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import edt
import numpy as np
from scipy import ndimage as ndi

from hepatoplan.errors import InputError, NotComputableError

from .graph import heaviest_path, largest_component, main_split, rooted_tree, skeleton_graph

log = logging.getLogger(__name__)

#: Smallest in-plane radius (mm) an axial cross-section must have to be taken for the IVC.
IVC_MIN_RADIUS_MM = 4.0
#: A branch of the portal tree counts as a main branch when it carries this fraction of the
#: intrahepatic portal volume (r^2-weighted skeleton length).
PORTAL_MAIN_BRANCH_FRACTION = 0.12
#: Length (mm) of the left portal vein followed from the bifurcation (transverse + umbilical part).
LPV_LENGTH_MM = 90.0


@dataclass
class IVCAxis:
    """The inferior vena cava as a straight line ``(x, y) = a * z + b`` with a radius.

    Attributes
    ----------
    slope_xy : ndarray (2,)    dx/dz, dy/dz
    intercept_mm : ndarray (2,) x, y at z = 0 (mm)
    radius_mm : float          median in-plane radius
    z_range_mm : tuple         z extent of the tracked cross-sections
    centres_mm : ndarray (n, 3) tracked centres (x, y, z)
    """

    slope_xy: np.ndarray
    intercept_mm: np.ndarray
    radius_mm: float
    z_range_mm: tuple[float, float]
    centres_mm: np.ndarray

    def xy_at(self, z_mm):
        z = np.asarray(z_mm, float)
        return self.slope_xy[0] * z + self.intercept_mm[0], self.slope_xy[1] * z + self.intercept_mm[1]


def ivc_axis(hepatic: np.ndarray, spacing_mm) -> IVCAxis:
    """Track the IVC through the axial slices of the hepatic-vein mask and fit a straight axis.

    Every axial slice offers up to three candidate cross-sections (the biggest inscribed discs of
    its 2D components, radius >= :data:`IVC_MIN_RADIUS_MM`); dynamic programming picks the chain
    of candidates, continuous from slice to slice, with the largest summed radius: the IVC is the
    thickest long vertical tube of the venous mask (IRCADb's hepatic-vein masks include it).

    Parameters
    ----------
    hepatic : ndarray of bool, shape (X, Y, Z)
        Hepatic veins + IVC, canonical RAS+.
    spacing_mm : sequence of 3 float

    Raises
    ------
    NotComputableError
        No tube of IVC calibre in the mask.
    """
    sp = np.asarray(spacing_mm, float)
    # per-slice 2D distances: an enormous z anisotropy makes edt ignore the neighbouring slices
    d2 = edt.edt(np.ascontiguousarray(hepatic), anisotropy=(sp[0], sp[1], 1e6), black_border=False)
    cands = []
    for z in np.nonzero(hepatic.any(axis=(0, 1)))[0]:
        s = hepatic[:, :, z]
        d = d2[:, :, z]
        if d.max() < IVC_MIN_RADIUS_MM:
            continue
        lab, n = ndi.label(s)
        big = np.unique(lab[d >= IVC_MIN_RADIUS_MM])
        big = big[big > 0]
        mx = ndi.maximum(d, lab, big)
        pos = ndi.maximum_position(d, lab, big)
        for k in np.argsort(-np.asarray(mx))[:3]:
            cands.append((z * sp[2], pos[k][0] * sp[0], pos[k][1] * sp[1], mx[k]))
    if len(cands) < 3:
        raise NotComputableError(
            "no IVC found in the hepatic-vein mask: no vertical tube of radius >= "
            f"{IVC_MIN_RADIUS_MM} mm; the mask must include the inferior vena cava behind the liver"
        )
    C = np.array(cands)
    C = C[np.argsort(C[:, 0], kind="stable")]
    n = len(C)
    score = C[:, 3].copy()
    prev = -np.ones(n, int)
    for i in range(n):
        dz = C[i, 0] - C[:i, 0]
        ok = (dz > 0) & (dz <= 3 * sp[2] + 1e-6)
        if not ok.any():
            continue
        dxy = np.hypot(C[i, 1] - C[:i, 1], C[i, 2] - C[:i, 2])
        ok &= dxy <= np.maximum(4.0, 0.7 * dz) + 0.3 * C[i, 3]
        if ok.any():
            cand = np.nonzero(ok)[0]
            j = cand[np.argmax(score[cand])]
            score[i] = C[i, 3] + score[j]
            prev[i] = j
    chain = [int(np.argmax(score))]
    while prev[chain[-1]] >= 0:
        chain.append(int(prev[chain[-1]]))
    P = C[chain[::-1]]
    w = P[:, 3]
    A = np.c_[P[:, 0], np.ones(len(P))] * w[:, None]
    if np.ptp(P[:, 0]) < 10.0:
        fx = np.array([0.0, np.average(P[:, 1], weights=w)])
        fy = np.array([0.0, np.average(P[:, 2], weights=w)])
    else:
        fx = np.linalg.lstsq(A, P[:, 1] * w, rcond=None)[0]
        fy = np.linalg.lstsq(A, P[:, 2] * w, rcond=None)[0]
    return IVCAxis(
        slope_xy=np.array([fx[0], fy[0]]),
        intercept_mm=np.array([fx[1], fy[1]]),
        radius_mm=float(np.median(P[:, 3])),
        z_range_mm=(float(P[0, 0]), float(P[-1, 0])),
        centres_mm=P[:, [1, 2, 0]],
    )


@dataclass
class PortalLandmarks:
    """Landmarks of the portal tree (mm, array frame).

    Attributes
    ----------
    root_mm : portal root (where the tree is entered, at or outside the hilum)
    bifurcation_mm : the split of the trunk into the main branches
    lpv_path_mm : (n, 3) left portal vein from the bifurcation along its heaviest branch
    umbilical_mm : the umbilical portion (the leftmost point of the left portal vein)
    main_branch_centroids_mm : (k, 3) centroids of the main branches' territories (vessel volume)
    disconnected_fraction : share of intrahepatic portal volume outside the analysed component
    """

    root_mm: np.ndarray
    bifurcation_mm: np.ndarray
    lpv_path_mm: np.ndarray
    umbilical_mm: np.ndarray
    main_branch_centroids_mm: np.ndarray
    disconnected_fraction: float
    notes: list = field(default_factory=list)


def portal_landmarks(portal: np.ndarray, liver: np.ndarray, spacing_mm) -> PortalLandmarks:
    """Root, bifurcation, left portal vein and umbilical portion of the portal tree.

    The skeleton graph is weighted by ``radius^2`` on its intrahepatic nodes (within the node's
    radius + 3 mm of liver tissue). The root is the thickest skeleton node clearly outside the
    liver (the extrahepatic trunk) or, if the mask is purely intrahepatic, the thickest node. From
    the root the walk follows the heaviest child until at least two children each carry
    :data:`PORTAL_MAIN_BRANCH_FRACTION` of the intrahepatic volume: that node is the bifurcation;
    the main branch whose territory lies most to the patient's left is the left portal vein.

    Raises
    ------
    NotComputableError
        The tree does not split into main branches inside the liver.
    """
    sp = np.asarray(spacing_mm, float)
    dpv = edt.edt(np.ascontiguousarray(portal), anisotropy=tuple(sp), black_border=False)
    g = skeleton_graph(portal, sp, distance_mm=dpv)
    if g.n < 10:
        raise NotComputableError("portal-vein mask too small to build a vessel tree (fewer than 10 skeleton voxels)")
    dl = edt.edt(np.ascontiguousarray(~liver), anisotropy=tuple(sp), black_border=False)
    dnode = dl[tuple(g.ijk.T)]
    inside = dnode <= g.radius_mm + 3.0
    w = np.where(inside, g.radius_mm ** 2, 0.0)
    comp = largest_component(g, w)
    total_in = w.sum()
    disc = float(1.0 - w[comp].sum() / total_in) if total_in > 0 else 1.0
    outside = comp & (dnode > g.radius_mm + 5.0)
    if outside.any():
        cand = np.nonzero(outside)[0]
    else:
        cand = np.nonzero(comp)[0]
    root = int(cand[np.argmax(g.radius_mm[cand])])
    wc = np.where(comp, w, 0.0)
    t = rooted_tree(g, root, wc)
    node, big = main_split(t, min_fraction=PORTAL_MAIN_BRANCH_FRACTION)
    if len(big) < 2:
        raise NotComputableError(
            "the portal tree does not divide into main branches inside the liver; "
            "check that the portal-vein mask covers the intrahepatic branches"
        )
    cents = []
    for k in big:
        m = t.descendants(k)
        cents.append((g.xyz_mm[m] * wc[m, None]).sum(0) / max(wc[m].sum(), 1e-9))
    cents = np.array(cents)
    lpv = big[int(np.argmin(cents[:, 0]))]
    path = heaviest_path(t, lpv, max_length_mm=LPV_LENGTH_MM)
    lp = g.xyz_mm[[node] + path]
    umb = lp[int(np.argmin(lp[:, 0]))]
    return PortalLandmarks(
        root_mm=g.xyz_mm[root], bifurcation_mm=g.xyz_mm[node], lpv_path_mm=lp, umbilical_mm=umb,
        main_branch_centroids_mm=cents, disconnected_fraction=disc,
    )
