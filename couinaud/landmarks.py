"""Vessel landmarks for the Couinaud division: IVC axis, portal bifurcation, left portal vein,
umbilical portion, hepatic-vein trunks.

Frame: every function takes masks in canonical RAS+ orientation (index axis 0 increases toward the
patient's Right, axis 1 toward Anterior, axis 2 toward Superior) and returns positions in mm of the
array frame it was given (``index * spacing_mm``, no origin, no world). Angles in the axial plane
are measured from +x (patient right) toward +y (anterior), in degrees: 0 = right, 90 = anterior,
180 = left, -90 = posterior. Tuned values come from :mod:`hepatoplan.couinaud.params`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hepatoplan.arrays import bounding_box, is_empty_box
from hepatoplan.errors import NotComputableError
from hepatoplan.nearest_voxel import edt_mm

from .graph import SkeletonGraph, heaviest_path, largest_component, main_split, rooted_tree, skeleton_graph
from .params import HepaticParams, IVCParams, PortalParams

log = logging.getLogger(__name__)


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

    def centre_near(self, z_mm: float, *, window_mm: float = IVCParams.centre_window_mm) -> np.ndarray:
        """IVC centre (x, y) at height ``z_mm``: mean of the tracked centres within ``window_mm``,
        or the fitted axis where no centre was tracked that close."""
        c = self.centres_mm
        near = np.abs(c[:, 2] - z_mm) <= window_mm
        if near.sum() >= 2:
            return c[near, :2].mean(axis=0)
        return np.array(self.xy_at(z_mm), float)


def ivc_axis(hepatic: np.ndarray, spacing_mm, *, reach_z_mm: float | None = None,
             params: IVCParams = IVCParams(), candidates: np.ndarray | None = None) -> IVCAxis:
    """Track the IVC through the axial slices of the hepatic-vein mask and fit a straight axis.

    Every axial slice offers up to ``params.candidates_per_slice`` candidate cross-sections (the
    biggest inscribed discs of the slice, radius >= ``params.min_radius_mm``); dynamic programming
    picks the chain of candidates, continuous from slice to slice, with the largest summed radius:
    the IVC is the thickest long vertical tube of the venous mask (IRCADb's hepatic-vein masks
    include it).

    Parameters
    ----------
    hepatic : ndarray of bool, shape (X, Y, Z)
        Hepatic veins + IVC, canonical RAS+.
    spacing_mm : sequence of 3 float
    reach_z_mm : float, optional
        The chain must reach this height (mm): the IVC runs up behind the liver to the dome,
        whereas a thick piece of another organ in the mask (the upper pole of an enhancing right
        kidney in an automatic mask) stays low. Ignored when no chain reaches it.
    params : IVCParams
    candidates : ndarray, optional
        ``ivc_candidates(hepatic, spacing_mm, params)`` already made.

    Raises
    ------
    NotComputableError
        No tube of IVC calibre in the mask.
    """
    sp = np.asarray(spacing_mm, float)
    C = ivc_candidates(hepatic, sp, params) if candidates is None else candidates
    if len(C) < 3:
        raise NotComputableError(
            "no IVC found in the hepatic-vein mask: no vertical tube of radius >= "
            f"{params.min_radius_mm} mm; the mask must include the inferior vena cava behind the liver"
        )
    P = C[_ivc_chain(C, sp, reach_z_mm, params)]
    return _fit_ivc_axis(P, params)


def ivc_candidates(hepatic: np.ndarray, sp, params: IVCParams) -> np.ndarray:
    """Candidate IVC cross-sections ``(z, x, y, radius)`` in mm, sorted by height: the biggest
    inscribed discs of each axial slice, each suppressing its neighbourhood."""
    sp = np.asarray(sp, float)
    # per-slice 2D distances: an enormous z anisotropy makes edt ignore the neighbouring slices;
    # on the mask's box (+1 voxel of background): the same distances, a fraction of the work
    box = bounding_box(hepatic, pad=1)
    if is_empty_box(box):
        return np.zeros((0, 4))
    o = np.array([b.start for b in box])
    d2 = edt_mm(hepatic[box], spacing_mm=(sp[0], sp[1], 1e6))
    xx = ((np.arange(d2.shape[0]) + o[0]) * sp[0])[:, None]
    yy = ((np.arange(d2.shape[1]) + o[1]) * sp[1])[None, :]
    cands = []
    for z in np.nonzero(d2.max(axis=(0, 1)) >= params.min_radius_mm)[0]:
        d = d2[:, :, z].copy()
        for _ in range(params.candidates_per_slice):
            k = int(np.argmax(d))
            r = float(d.flat[k])
            if r < params.min_radius_mm:
                break
            i, j = np.unravel_index(k, d.shape) + o[:2]
            cands.append(((z + o[2]) * sp[2], i * sp[0], j * sp[1], r))
            d[(xx - i * sp[0]) ** 2 + (yy - j * sp[1]) ** 2 <= (2.0 * r + params.suppression_margin_mm) ** 2] = 0
    C = np.array(cands).reshape(-1, 4)
    return C[np.argsort(C[:, 0], kind="stable")]


def _ivc_chain(C: np.ndarray, sp: np.ndarray, reach_z_mm: float | None, params: IVCParams) -> list[int]:
    """Indices (bottom to top) of the continuous chain of candidates with the largest summed
    radius, ending at or above ``reach_z_mm`` when any chain does."""
    n = len(C)
    score = C[:, 3].copy()
    prev = -np.ones(n, int)
    for i in range(n):
        dz = C[i, 0] - C[:i, 0]
        ok = (dz > 0) & (dz <= params.max_gap_slices * sp[2] + 1e-6)
        if not ok.any():
            continue
        dxy = np.hypot(C[i, 1] - C[:i, 1], C[i, 2] - C[:i, 2])
        ok &= dxy <= params.max_step_mm + params.max_tilt_mm_per_mm * dz
        if ok.any():
            cand = np.nonzero(ok)[0]
            j = cand[np.argmax(score[cand])]
            score[i] = C[i, 3] + score[j]
            prev[i] = j
    high = C[:, 0] >= reach_z_mm if reach_z_mm is not None else np.ones(n, bool)
    chain = [int(np.argmax(np.where(high, score, -np.inf))) if high.any() else int(np.argmax(score))]
    while prev[chain[-1]] >= 0:
        chain.append(int(prev[chain[-1]]))
    return chain[::-1]


def _fit_ivc_axis(P: np.ndarray, params: IVCParams) -> IVCAxis:
    """Robust straight axis through chain centres ``(z, x, y, radius)``: radius-weighted least
    squares, trimming centres far from the line; vertical for a short chain, slope capped."""
    keep = np.ones(len(P), bool)
    fx = fy = None
    for _ in range(3):
        Q = P[keep]
        w = Q[:, 3]
        if np.ptp(Q[:, 0]) < params.min_span_for_slope_mm:
            fx = np.array([0.0, np.average(Q[:, 1], weights=w)])
            fy = np.array([0.0, np.average(Q[:, 2], weights=w)])
        else:
            A = np.c_[Q[:, 0], np.ones(len(Q))] * w[:, None]
            fx = np.linalg.lstsq(A, Q[:, 1] * w, rcond=None)[0]
            fy = np.linalg.lstsq(A, Q[:, 2] * w, rcond=None)[0]
        res = np.hypot(P[:, 1] - (fx[0] * P[:, 0] + fx[1]), P[:, 2] - (fy[0] * P[:, 0] + fy[1]))
        new_keep = res <= max(params.trim_residual_mm,
                              params.trim_residual_radius_fraction * float(np.median(P[keep, 3])))
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
    P = P[keep] if keep.sum() >= 3 else P
    tilt = float(np.hypot(fx[0], fy[0]))
    if np.ptp(P[:, 0]) < params.min_fit_length_mm:
        # too short to tell a slope: vertical through the chain's weighted centre
        fx = np.array([0.0, np.average(P[:, 1], weights=P[:, 3])])
        fy = np.array([0.0, np.average(P[:, 2], weights=P[:, 3])])
    elif tilt > params.max_tilt_mm_per_mm:
        # a short or wandering chain fits a slope no IVC has: keep its direction, cap its steepness
        # and put the axis through the chain's weighted centre
        fx[0], fy[0] = fx[0] * params.max_tilt_mm_per_mm / tilt, fy[0] * params.max_tilt_mm_per_mm / tilt
        w = P[:, 3]
        fx[1] = np.average(P[:, 1] - fx[0] * P[:, 0], weights=w)
        fy[1] = np.average(P[:, 2] - fy[0] * P[:, 0], weights=w)
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
    umbilical_front_mm : the umbilical portion's anterior part (``PortalParams.umbilical_front_mm``),
        None when fewer than 3 thick left-portal nodes lie that far in front of the bifurcation
    main_branch_centroids_mm : (k, 3) centroids of the main branches' territories (vessel volume)
    disconnected_fraction : share of intrahepatic portal volume outside the analysed component
    """

    root_mm: np.ndarray
    bifurcation_mm: np.ndarray
    lpv_path_mm: np.ndarray
    umbilical_mm: np.ndarray
    umbilical_angle_deg: float | None
    umbilical_nodes: int
    main_branch_centroids_mm: np.ndarray
    disconnected_fraction: float
    rpv_path_mm: np.ndarray | None = None
    notes: list = field(default_factory=list)
    umbilical_front_mm: np.ndarray | None = None


def portal_landmarks(portal: np.ndarray, liver: np.ndarray, spacing_mm, *,
                     distance_to_liver_mm: Callable[[np.ndarray], np.ndarray] | None = None, root_mm=None,
                     params: PortalParams = PortalParams(), graph: SkeletonGraph | None = None) -> PortalLandmarks:
    """Root, bifurcation, left portal vein and umbilical portion of the portal tree.

    The skeleton graph is weighted by ``radius^2`` on its intrahepatic nodes (within the node's
    radius + ``params.intrahepatic_margin_mm`` of liver tissue). The root is the most caudal of the thick skeleton nodes (the
    trunk coming up to the hilum). From
    the root the walk follows the heaviest child until at least two children each carry
    ``params.main_branch_fraction`` of the intrahepatic volume: that node is the bifurcation;
    the main branch whose territory lies most to the patient's left is the left portal vein.
    ``root_mm`` (mm of the array frame), when given, replaces that rule: the root is the node of
    the analysed component nearest to it (a tree clipped to the liver has no trunk; its pieces are
    joined at the expected bifurcation, see :func:`hepatoplan.couinaud.separate.bifurcation_prior`).
    ``distance_to_liver_mm``, when given, is a function returning the distance (mm) to liver tissue
    at voxel indices ``(n, 3)``; otherwise it is computed from ``liver``. ``graph``, when given, is
    ``skeleton_graph(portal, spacing_mm)`` already made.

    Raises
    ------
    NotComputableError
        The tree does not split into main branches inside the liver.
    """
    sp = np.asarray(spacing_mm, float)
    g = skeleton_graph(portal, sp) if graph is None else graph
    if g.n < params.min_skeleton_nodes:
        raise NotComputableError("portal-vein mask too small to build a vessel tree "
                                 f"(fewer than {params.min_skeleton_nodes} skeleton voxels)")
    if distance_to_liver_mm is None:
        dnode = edt_mm(~liver, spacing_mm=sp)[tuple(g.ijk.T)]
    else:
        dnode = distance_to_liver_mm(g.ijk)
    inside = dnode <= g.radius_mm + params.intrahepatic_margin_mm
    w = np.where(inside, g.radius_mm ** 2, 0.0)
    comp = largest_component(g, w)
    total_in = w.sum()
    disc = float(1.0 - w[comp].sum() / total_in) if total_in > 0 else 1.0
    # root: the caudal end of the trunk. Among the thick nodes (radius >= root_radius_fraction of
    # the thickest), the most caudal one: the portal vein enters the liver from below, and the
    # hilum itself (often outside the liver mask) is not a safe root because the bifurcation is there.
    cc_nodes = np.nonzero(comp)[0]
    thick = cc_nodes[g.radius_mm[cc_nodes] >= params.root_radius_fraction * g.radius_mm[cc_nodes].max()]
    if root_mm is None:
        root = int(thick[np.argmin(g.xyz_mm[thick, 2])])
    else:
        root = int(cc_nodes[np.argmin(np.linalg.norm(g.xyz_mm[cc_nodes] - np.asarray(root_mm, float), axis=1))])
    wc = np.where(comp, w, 0.0)
    t = rooted_tree(g, root, wc)
    node, big = main_split(t, min_fraction=params.main_branch_fraction)
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
    lpv_from = node
    path = heaviest_path(t, lpv, max_length_mm=params.lpv_length_mm)
    lp = g.xyz_mm[[lpv_from] + path]
    umb, ang, n_umb, front = _umbilical_portion(g, t, lpv, lp, params)
    rpv = big[int(np.argmax(cents[:, 0]))]
    rp = g.xyz_mm[[node] + heaviest_path(t, rpv, max_length_mm=params.rpv_length_mm)]
    return PortalLandmarks(
        rpv_path_mm=rp,
        root_mm=g.xyz_mm[root], bifurcation_mm=g.xyz_mm[node], lpv_path_mm=lp, umbilical_mm=umb,
        umbilical_angle_deg=ang, umbilical_nodes=n_umb, umbilical_front_mm=front,
        main_branch_centroids_mm=cents, disconnected_fraction=disc,
    )


def _umbilical_portion(g, t, lpv: int, lp: np.ndarray, params: PortalParams):
    """The umbilical portion: the thick part of the left portal vein that runs anteriorly.

    Nodes of the left-portal subtree whose radius is at least ``params.umbilical_radius_fraction``
    of the left portal vein's own radius (median over its first ``params.lpv_radius_length_mm``) and that lie anterior to the
    bifurcation. A weighted line fit in the axial plane gives its position (weighted centroid) and
    direction (angle from +x toward +y, in [0, 180)). Returns ``(point, angle or None, n_nodes,
    front)``; the angle is None when fewer than ``params.umbilical_min_nodes`` nodes qualify, and the
    point is then the leftmost point of the left portal vein; ``front``: the radius²-weighted centroid
    of those nodes at least ``params.umbilical_front_mm`` in front of the bifurcation (None: fewer
    than 3).
    """
    sub = t.descendants(lpv)
    d = t.dist_mm - t.dist_mm[lpv]
    first = sub & (d <= params.lpv_radius_length_mm)
    r_lpv = float(np.median(g.radius_mm[first])) if first.any() else float(g.radius_mm[lpv])
    b = lp[0]
    sel = sub & (g.radius_mm >= params.umbilical_radius_fraction * r_lpv) & (g.xyz_mm[:, 1] > b[1])
    n = int(sel.sum())
    far = sel & (g.xyz_mm[:, 1] > b[1] + params.umbilical_front_mm)
    w_far = g.radius_mm[far] ** 2
    front = (g.xyz_mm[far] * w_far[:, None]).sum(0) / w_far.sum() if np.count_nonzero(far) >= 3 else None
    if n < params.umbilical_min_nodes:
        return lp[int(np.argmin(lp[:, 0]))], None, n, front
    p = g.xyz_mm[sel]
    w = g.radius_mm[sel] ** 2
    m = (p * w[:, None]).sum(0) / w.sum()
    q = p[:, :2] - m[:2]
    cov = (q * w[:, None]).T @ q / w.sum()
    ev, evec = np.linalg.eigh(cov)
    dvec = evec[:, 1]
    if dvec[1] < 0:
        dvec = -dvec
    ang = float(np.degrees(np.arctan2(dvec[1], dvec[0])))
    return m, ang, n, front


@dataclass
class HepaticTrunks:
    """Azimuths (deg, from +x = Right toward +y = Anterior) of the hepatic-vein trunks around the
    IVC, each with its share of the venous volume in the analysed ring (None when not found)."""

    right_deg: float | None
    middle_deg: float | None
    left_deg: float | None
    right_weight: float
    middle_weight: float
    left_weight: float
    histogram: tuple = ()
    right_in_plane_fraction: float = 0.0
    middle_in_plane_fraction: float = 0.0


def hepatic_trunks(hepatic: np.ndarray, spacing_mm, ivc_xy, ivc_radius_mm: float, *,
                   z_min_mm: float = -np.inf, params: HepaticParams = HepaticParams()) -> HepaticTrunks:
    """Azimuths of the right, middle and left hepatic veins around the IVC axis.

    Skeleton nodes of the venous mask in a ring around the IVC (``params.ring_mm`` beyond its
    wall, above ``z_min_mm``, thinner than the IVC) vote with weight radius^2 into a circular
    histogram of azimuth (``params.histogram_bin_deg`` bins, smoothed). The right hepatic vein is
    the strongest peak in ``params.right_window_deg``, the middle one the strongest in
    ``params.middle_window_deg`` at least ``params.min_trunk_separation_deg`` counter-clockwise of it, the left one likewise beyond the
    middle one.
    """
    sp = np.asarray(spacing_mm, float)
    # only the ring around the IVC matters: skeletonize that box
    reach = ivc_radius_mm + params.ring_mm[1] + 5.0
    lo = np.maximum(np.floor((np.array([ivc_xy[0], ivc_xy[1]]) - reach) / sp[:2]).astype(int), 0)
    hi = np.minimum(np.ceil((np.array([ivc_xy[0], ivc_xy[1]]) + reach) / sp[:2]).astype(int) + 1, hepatic.shape[:2])
    k0 = int(max(np.floor(z_min_mm / sp[2]), 0)) if np.isfinite(z_min_mm) else 0
    sub = hepatic[lo[0]:hi[0], lo[1]:hi[1], k0:]
    g = skeleton_graph(sub, sp)
    if g.n == 0:
        return HepaticTrunks(None, None, None, 0.0, 0.0, 0.0)
    x, y, z = (g.xyz_mm + np.array([lo[0], lo[1], k0]) * sp).T
    dx, dy = x - ivc_xy[0], y - ivc_xy[1]
    rho = np.hypot(dx, dy)
    sel = ((rho > ivc_radius_mm + params.ring_mm[0]) & (rho < ivc_radius_mm + params.ring_mm[1])
           & (z >= z_min_mm) & (g.radius_mm < params.max_radius_ivc_fraction * ivc_radius_mm))
    th = np.degrees(np.arctan2(dy[sel], dx[sel]))
    w = g.radius_mm[sel] ** 2
    n_bins = int(round(360.0 / params.histogram_bin_deg))
    h, _ = np.histogram(th, bins=n_bins, range=(-180.0, 180.0), weights=w)
    k = np.array([1, 2, 3, 2, 1], float)
    hs = np.convolve(np.r_[h[-2:], h, h[:2]], k / k.sum(), mode="same")[2:-2]
    ctr = (np.arange(n_bins) + 0.5) * params.histogram_bin_deg - 180.0
    total = hs.sum()
    if total <= 0:
        return HepaticTrunks(None, None, None, 0.0, 0.0, 0.0)
    is_peak = (hs >= np.roll(hs, 1)) & (hs >= np.roll(hs, -1)) & (hs >= params.peak_min_fraction * hs.max())

    def best(lo, hi, after=None):
        a = np.where(ctr < lo - 90, ctr + 360, ctr)  # unwrap so that windows past 180 work
        ok = is_peak & (a >= lo) & (a <= hi)
        if after is not None:
            ok &= a >= after + params.min_trunk_separation_deg
        if not ok.any():
            return None, 0.0
        i = np.nonzero(ok)[0][np.argmax(hs[ok])]
        # refine: weighted mean angle of the votes near the peak
        dd = (th - ctr[i] + 180.0) % 360.0 - 180.0
        near = np.abs(dd) <= params.refine_window_deg
        ang = ctr[i] + (np.average(dd[near], weights=w[near]) if near.any() else 0.0)
        ang = float(np.where(ang < lo - 90, ang + 360, ang))
        return ang, float(hs[i] / total)

    def in_plane(ang):
        if ang is None:
            return 0.0
        dd = (th - ang + 180.0) % 360.0 - 180.0
        win = np.abs(dd) <= params.planarity_window_deg
        perp = rho[sel] * np.abs(np.sin(np.radians(dd)))
        tot = w[win].sum()
        return float(w[win & (perp <= params.planarity_tolerance_mm)].sum() / tot) if tot > 0 else 0.0

    r_deg, r_w = best(*params.right_window_deg)
    m_deg, m_w = best(*params.middle_window_deg, after=r_deg)
    l_deg, l_w = best(*params.left_window_deg, after=m_deg if m_deg is not None else r_deg)
    return HepaticTrunks(r_deg, m_deg, l_deg, r_w, m_w, l_w, tuple(np.round(hs, 1)),
                         right_in_plane_fraction=in_plane(r_deg), middle_in_plane_fraction=in_plane(m_deg))


@dataclass
class UmbilicalRun:
    """The anteriorly running part of the left portal vein (the umbilical portion), as a straight
    line in the axial plane.

    Attributes
    ----------
    point_mm : ndarray (3,)  centroid of the run (mm, array frame)
    angle_deg : float        axial direction, from +x (Right) toward +y (Anterior), in (0, 180)
    length_mm : float        length of the run along the path
    rms_mm : float           rms distance of the run's points from the fitted line
    """

    point_mm: np.ndarray
    angle_deg: float
    length_mm: float
    rms_mm: float


def umbilical_run(lpv_path_mm: np.ndarray, *, params: PortalParams = PortalParams()) -> UmbilicalRun | None:
    """Find the umbilical portion along the left portal vein's path.

    The left portal vein runs to the patient's left from the bifurcation (transverse part), then
    turns forward into the umbilical fissure (umbilical portion). Along the path, each point's
    direction is the chord to the point ``params.umbilical_chord_mm`` further on; the longest
    contiguous run of points heading within ``params.umbilical_run_max_tilt_deg`` of anterior is the
    umbilical portion. Returns None when no point heads anteriorly.
    """
    p = np.asarray(lpv_path_mm, float)
    if len(p) < 3:
        return None
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.r_[0.0, np.cumsum(seg)]
    j = np.searchsorted(s, s + params.umbilical_chord_mm)
    valid = j < len(p)
    d = np.zeros((len(p), 2))
    d[valid] = p[j[valid], :2] - p[valid, :2]
    ang = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
    fwd = valid & (np.abs(ang - 90.0) <= params.umbilical_run_max_tilt_deg)
    best, cur = None, None
    for i in range(len(p)):
        if fwd[i]:
            cur = (cur[0], i) if cur else (i, i)
            if best is None or s[cur[1]] - s[cur[0]] > s[best[1]] - s[best[0]]:
                best = cur
        else:
            cur = None
    if best is None:
        return None
    i0, i1 = best[0], min(int(j[best[1]]), len(p) - 1)  # the last chord's end belongs to the run
    q = p[i0: i1 + 1]
    m = q.mean(axis=0)
    c = q[:, :2] - m[:2]
    ev, evec = np.linalg.eigh(c.T @ c / len(q))
    dvec = evec[:, 1] if evec[1, 1] >= 0 else -evec[:, 1]
    rms = float(np.sqrt(max(ev[0], 0.0)))
    return UmbilicalRun(m, float(np.degrees(np.arctan2(dvec[1], dvec[0]))), float(s[i1] - s[i0]), rms)


def column_centre_z(mask: np.ndarray, points_mm: np.ndarray, spacing_mm) -> np.ndarray:
    """Heights (mm) of vessel centre lines, read from the mask rather than the skeleton.

    For each point, the contiguous run of ``mask`` voxels in its axial column (same x, y) that
    contains it; the run's middle height is returned. For a near-horizontal vessel this is the
    centre line's height without the skeleton's one-voxel bias (a thin 3D skeleton picks one of
    the slices inside a thick vessel). Points outside the mask keep their own height.
    """
    sp = np.asarray(spacing_mm, float)
    p = np.asarray(points_mm, float)
    ijk = np.clip(np.round(p / sp).astype(int), 0, np.array(mask.shape) - 1)
    out = p[:, 2].copy()
    for n, (i, j, k) in enumerate(ijk):
        col = mask[i, j, :]
        if not col[k]:
            continue
        lo = k
        while lo > 0 and col[lo - 1]:
            lo -= 1
        hi = k
        while hi < len(col) - 1 and col[hi + 1]:
            hi += 1
        out[n] = 0.5 * (lo + hi) * sp[2]
    return out
