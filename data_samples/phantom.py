"""Synthetic liver study with answers known by construction.

:func:`make_phantom` builds a portal-venous-phase abdominal CT, a liver with the eight Couinaud
segments, a portal tree with one labelled branch per tube, three hepatic veins draining into an
inferior vena cava (IVC), and spherical tumours. Everything is defined analytically in **world
millimetres** (RAS+: x toward the patient's Right, y Anterior, z Superior) and evaluated at voxel
centres, so two spacings sample the same anatomy and the answers (segment volumes, tumour volumes,
branch territories, landmarks) are known.

Arrays are in canonical RAS+ index order: axis 0 increases toward the patient's right, axis 1
toward anterior, axis 2 toward superior (cranial). ``affine_ras`` maps voxel indices to world RAS
millimetres and is diagonal with positive spacing.

Anatomy (all lengths below are at ``scale=1`` and are multiplied by ``scale``)
-------------------------------------------------------------------------------
- **Liver**: a smooth union of three ellipsoids (big right lobe at +x, left lobe tapering toward -x
  and lying lower, a medial bridge), about 1.5 L at ``scale=1``. The liver mask is this organ shape
  **minus the IVC lumen** (the IVC runs in a tunnel/groove through the liver's posterior part, as
  in IRCADb where the cava is not liver). Intrahepatic portal and hepatic veins and tumours are
  inside the liver mask. Every liver voxel has exactly one segment.
- **IVC**: vertical tube (radius 11 mm) at x = +12, y = -42 mm, through the whole field of view
  (beyond the liver cranially and caudally). It is part of ``hepatic`` (as IRCADb's "venous
  system"), hepatic branch id 1.
- **Hepatic veins**: right (RHV), middle (MHV) and left (LHV) veins join the IVC near the dome. The
  RHV and MHV centre lines lie exactly in the vertical scissura planes (see segments). Tapered
  tubes with two tributaries each.
- **Portal vein**: the trunk rises from below the liver (its extrahepatic part lies outside the
  liver mask, kept as portal) to the bifurcation at height ``z_b``; right and left portal veins run
  horizontally in the plane ``z = z_b``; the right divides into anterior (terminals to 8 up and 5
  down) and posterior (7 up, 6 down) branches; the left runs to the left, then turns anteriorly into
  the umbilical portion lying in the umbilical-fissure plane, which gives terminals to 2 (cranial),
  3 (caudal) and two to 4; two small terminals feed the caudate (1).
- **Segments** (Couinaud's classical plane-based division, like the IRCADb reference): vertical
  half-planes from the IVC axis containing the RHV (azimuth ``phi_rhv``) and the MHV (``phi_mhv``),
  a posterior half-plane closing the right posterior section, the umbilical-fissure plane (left of
  it: 2/3), the transverse portal plane ``z = z_b`` (cranial 7/8/2, caudal 6/5/3; 4 is not split),
  and the caudate (1): the part of the IVC's left/anterior sector (between the MHV half-plane and
  the posterior closure, right of the umbilical-fissure plane) that lies posterior to the coronal
  plane ``y = y_c = y_bifurcation - 6 mm`` (the posterior wall of the portal bifurcation) and
  caudal to the oblique plane ``z = z_b + 20 mm + 0.5 (y_c - y)`` (the caudate rises along the IVC
  toward the hepatic-venous confluence); every caudate boundary is a plane derived from a landmark.
  After the planes, any voxel in a piece not connected to its segment's main
  piece (rare, at the organ surface) is given to the neighbouring segment, so each segment is one
  connected piece (6-connectivity); the number of voxels moved is in ``truth["segments"]["reassigned_voxels"]``.
- **Tumours**: hypodense spheres, instance-labelled in the order given.
- **CT** (portal-venous phase, int16 HU): liver 105, portal vein 185, hepatic veins and IVC 175,
  tumours 45, spleen 115, kidney 160, aorta 190, heart 130, stomach 15 with a gas cap, lungs -850
  wrapping the dome, vertebra 450, soft tissue 40 inside a subcutaneous fat layer (-100) of an
  elliptic body, air -1000 outside; Gaussian blur (sigma 0.7 mm) then Gaussian noise
  (``noise_hu``, seeded per 16-slice slab, so the CT depends only on ``seed`` and the grid).
- **Drawing**: tube radii below ``0.8 x`` the largest voxel spacing are raised to it, so each vessel
  tree is one 6-connected piece on any grid (the truth records the radii drawn). This is the only
  place where the spacing changes the anatomy; liver, segments and tumours do not depend on it.

Branch ids
----------
``portal_branches`` labels every portal tube voxel by branch id (0 = none). Where tubes overlap,
the parent (lower depth in the tree) wins, so each terminal branch's voxels are the part of its tube
outside its parent; every terminal lies inside the segment it feeds. ``truth["portal_branches"]``
gives per id: name, parent, children, depth, terminal, segment fed, geometry, voxel count, its
nearest-branch territory in the liver (``territory_ml``) and the territory of its whole subtree
(``subtree_territory_ml``: what is devascularised when the branch is cut). Territories: every liver
voxel goes to the branch of its nearest portal voxel (Euclidean distance in mm, ties broken by
scipy's ``distance_transform_edt``).

Ground truth (``PhantomStudy.truth``, written as ``truth.json``)
----------------------------------------------------------------
All positions are world RAS millimetres, all volumes mL; JSON-ready (str keys, lists, floats).

- ``generator``: ``name``, ``version``, ``seed``, ``noise_hu``, ``scale``.
- ``geometry``: ``shape``, ``spacing_mm``, ``origin_mm``, ``affine_ras`` (of the RAS arrays),
  ``voxel_volume_mm3``. (``write_study`` adds ``files``: ``axcodes``, file ``affine``, ``shape``.)
- ``volumes_ml``: ``liver``, ``tumours_total``, ``functional_liver`` (liver - tumours),
  ``portal_vein``, ``hepatic_veins`` (voxel counts x voxel volume).
- ``segments``: ``volumes_ml`` and ``voxel_counts`` keyed "1".."8", ``reassigned_voxels``,
  ``segment_4_split_ml`` (``4a``/``4b`` split by the transverse portal plane).
- ``tumours``: list of ``id``, ``centre_mm``, ``radius_mm``, ``volume_ml_analytic`` (4/3 pi r^3),
  ``volume_ml_voxels``, ``voxel_count``, ``segment``, ``segment_voxel_counts``,
  ``clipped_to_liver``, ``min_distance_to_portal_mm``, ``min_distance_to_hepatic_mm`` (analytic gap
  between sphere and tube surfaces), ``nearest_vessel`` (``tree``, ``branch``, ``name``, ``gap_mm``,
  ``vessel_radius_mm``, ``vessel_diameter_mm``).
- ``portal_branches``: keyed by branch id: ``name``, ``parent``, ``children``, ``depth``,
  ``terminal``, ``segment`` (terminals), ``segments_fed``, ``subtree``, ``points_mm``,
  ``radius_start_mm``, ``radius_end_mm``, ``length_mm``, ``voxel_count``, ``territory_ml``,
  ``territory_voxels``, ``subtree_territory_ml``, ``subtree_territory_voxels``.
- ``hepatic_branches``: keyed by id (1 = IVC, 2 right, 3 middle, 4 left hepatic vein, 5..10
  tributaries): ``name``, ``parent``, ``children``, ``depth``, ``terminal``, ``points_mm``, radii,
  ``voxel_count``, ``territory_ml``/``_voxels``, ``subtree_territory_ml``/``_voxels`` (nearest
  hepatic-vein voxel; ``hepatic_territories`` array).
- ``landmarks``: ``portal_bifurcation_mm``, ``portal_root_mm`` (lower end of the trunk),
  ``transverse_portal_plane_z_mm``, ``anatomical_frame`` (rotation about z; identity by default),
  ``ivc_axis`` (``point_mm``, ``direction``, ``radius_mm``),
  ``hepatic_vein_trunks`` (``right``/``middle``/``left``: ``junction_mm`` on the IVC axis,
  ``direction`` of the first leg, ``points_mm``), ``umbilical_portion`` (``start_mm``, ``end_mm``,
  ``direction``), ``scissurae`` (``right``, ``middle``, ``right_posterior_closure``: vertical
  half-planes from the IVC axis with ``point_mm``, ``normal``, ``azimuth_deg``,
  ``half_plane_direction``; ``umbilical``: ``point_mm``, ``normal``), ``caudate``
  (``anterior_plane_y_mm``, ``top_plane_z_mm``, ``top_plane_slope``, ``rule``).
- ``conventions``: one-line statements of the choices above.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError
from hepatoplan.units import MM3_PER_ML

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0.0"

#: Couinaud label values used in ``segments``.
SEGMENT_LABELS = (1, 2, 3, 4, 5, 6, 7, 8)


@dataclass(frozen=True)
class TumourSpec:
    """A spherical tumour, given at ``scale=1`` (centre and radius are multiplied by ``scale``).

    Parameters
    ----------
    centre_mm : tuple of 3 float
        Centre in world RAS millimetres at ``scale=1``.
    radius_mm : float
        Radius in millimetres at ``scale=1``.
    """

    centre_mm: tuple[float, float, float]
    radius_mm: float


#: Default tumours: r = 15 mm in segment 5 far from all vessels (about 9 mm gap), r = 12 mm in
#: segment 8 close to the right hepatic vein (about 2 mm gap), r = 8 mm in segment 2.
DEFAULT_TUMOURS: tuple[TumourSpec, ...] = (
    TumourSpec((35.0, 4.0, -44.0), 15.0),
    TumourSpec((33.6, -3.0, 22.0), 12.0),
    TumourSpec((-47.0, 25.0, 10.0), 8.0),
)

#: A point deep in the right lobe (world mm at ``scale=1``, multiply by ``scale``): the liver
#: surface is 49 mm away (measured at 1 mm spacing), so a sphere of radius up to ~45 mm x scale
#: centred here stays inside the liver (vessels pass nearby; they are liver voxels). For volume
#: tests of tumour + margin spheres.
DEEP_POINT_MM = (41.5, 10.5, -0.5)
DEEP_POINT_CLEARANCE_MM = 49.0

# --- intensities of the synthetic CT (portal-venous phase), HU ---------------------------------
HU_AIR = -1000.0
HU_FAT = -100.0
HU_SOFT_TISSUE = 40.0
HU_LIVER = 105.0
HU_PORTAL = 185.0
HU_HEPATIC = 175.0
HU_TUMOUR = 45.0
HU_SPLEEN = 115.0
HU_KIDNEY = 160.0
HU_AORTA = 190.0
HU_BONE = 450.0
HU_LUNG = -850.0
HU_HEART = 130.0
HU_STOMACH = 15.0

_BLUR_SIGMA_MM = 0.7
#: Vessel tubes are drawn with radius >= this x the largest voxel spacing (connected trees).
VESSEL_MIN_RADIUS_FACTOR = 0.8
_SLAB = 16  # slices per slab for the CT (fixed: the noise stream depends on it)


# ------------------------------------------------------------------------------------------------
# Geometry primitives
# ------------------------------------------------------------------------------------------------


@dataclass
class Branch:
    """A tapered tube along a polyline (world mm); radius varies linearly with arc length."""

    id: int
    name: str
    points_mm: np.ndarray  # (n, 3)
    radius_start_mm: float
    radius_end_mm: float
    parent: int | None
    segment: int | None = None  # segment fed (portal terminals only)
    children: list[int] = field(default_factory=list)

    def radii_mm(self) -> np.ndarray:
        seg_len = np.linalg.norm(np.diff(self.points_mm, axis=0), axis=1)
        s = np.concatenate([[0.0], np.cumsum(seg_len)])
        frac = s / s[-1] if s[-1] > 0 else np.zeros_like(s)
        return self.radius_start_mm + frac * (self.radius_end_mm - self.radius_start_mm)

    def length_mm(self) -> float:
        return float(np.linalg.norm(np.diff(self.points_mm, axis=0), axis=1).sum())


@dataclass(frozen=True)
class _Grid:
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]  # world position of voxel (0, 0, 0)

    def axis_mm(self, axis: int) -> np.ndarray:
        return (self.origin_mm[axis] + self.spacing_mm[axis] * np.arange(self.shape[axis])).astype(np.float64)

    def index_range(self, axis: int, lo_mm: float, hi_mm: float) -> tuple[int, int]:
        o, s, n = self.origin_mm[axis], self.spacing_mm[axis], self.shape[axis]
        i0 = max(0, int(math.floor((lo_mm - o) / s)))
        i1 = min(n, int(math.ceil((hi_mm - o) / s)) + 1)
        return i0, i1

    @property
    def affine(self) -> np.ndarray:
        a = np.diag([*self.spacing_mm, 1.0])
        a[:3, 3] = self.origin_mm
        return a


def _rasterize_tube(grid: _Grid, p0, p1, r0: float, r1: float, out: np.ndarray, value: int) -> None:
    """Set ``out`` to ``value`` inside a tapered capsule from p0 (radius r0) to p1 (radius r1)."""
    p0 = np.asarray(p0, float)
    p1 = np.asarray(p1, float)
    rmax = max(r0, r1)
    lo = np.minimum(p0, p1) - rmax
    hi = np.maximum(p0, p1) + rmax
    rng = [grid.index_range(a, lo[a], hi[a]) for a in range(3)]
    if any(i1 <= i0 for i0, i1 in rng):
        return
    xs, ys, zs = (grid.axis_mm(a)[rng[a][0]:rng[a][1]] for a in range(3))
    d = p1 - p0
    dd = float(d @ d)
    px = xs[:, None, None] - p0[0]
    py = ys[None, :, None] - p0[1]
    pz = zs[None, None, :] - p0[2]
    if dd > 0:
        t = np.clip((px * d[0] + py * d[1] + pz * d[2]) / dd, 0.0, 1.0)
    else:
        t = np.zeros(np.broadcast_shapes(px.shape, py.shape, pz.shape))
    dist2 = (px - t * d[0]) ** 2 + (py - t * d[1]) ** 2 + (pz - t * d[2]) ** 2
    r = r0 + t * (r1 - r0)
    inside = dist2 <= r * r
    view = out[rng[0][0]:rng[0][1], rng[1][0]:rng[1][1], rng[2][0]:rng[2][1]]
    view[inside] = value


def _rasterize_branch(grid: _Grid, br: Branch, out: np.ndarray, value: int) -> None:
    radii = br.radii_mm()
    for k in range(len(br.points_mm) - 1):
        _rasterize_tube(grid, br.points_mm[k], br.points_mm[k + 1], radii[k], radii[k + 1], out, value)


def _min_vessel_radius_mm(spacing_mm) -> float:
    """Smallest tube radius drawn on a grid: 0.8 x the largest spacing keeps every tree one
    6-connected piece (measured down to scale 0.3 at 1 mm and 0.4 at 2 x 2 x 3 mm); thinner twigs are drawn at this
    radius (``truth`` records the radii drawn)."""
    return VESSEL_MIN_RADIUS_FACTOR * float(max(spacing_mm))


# ------------------------------------------------------------------------------------------------
# Anatomy (scale 1 constants; multiplied by ``scale``)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Anatomy:
    s: float
    rotation_deg: float = 0.0  # the whole body turned about the world z axis (patient rotated on the table)

    @property
    def rotation(self) -> np.ndarray:
        """3x3 rotation: anatomical frame -> world (about z, counter-clockwise seen from above)."""
        c, s = math.cos(math.radians(self.rotation_deg)), math.sin(math.radians(self.rotation_deg))
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])

    def to_world(self, p) -> np.ndarray:
        """World mm of anatomical-frame point(s) ``p`` (..., 3)."""
        return np.asarray(p, float) @ self.rotation.T

    def anat_xy(self, X, Y):
        """Anatomical-frame x, y (float32) of world coordinates X, Y (broadcast)."""
        if self.rotation_deg == 0.0:
            return X, Y
        c, s = np.float32(math.cos(math.radians(self.rotation_deg))), np.float32(math.sin(math.radians(self.rotation_deg)))
        return c * X + s * Y, c * Y - s * X

    # organ ellipsoids: centre, semi-axes
    @property
    def ellipsoids(self):
        s = self.s
        return (
            (np.array([40.0, -8.0, 0.0]) * s, np.array([60.0, 68.0, 70.0]) * s),   # right lobe
            (np.array([-45.0, 8.0, 2.0]) * s, np.array([62.0, 50.0, 32.0]) * s),   # left lobe
            (np.array([0.0, 0.0, 5.0]) * s, np.array([45.0, 58.0, 48.0]) * s),     # medial bridge
        )

    smooth_k: float = 0.12  # smooth-union width (in normalised ellipsoid units)

    @property
    def ivc_xy(self):
        return np.array([12.0, -42.0]) * self.s

    @property
    def ivc_radius(self):
        return 11.0 * self.s

    @property
    def z_b(self):  # transverse portal plane
        return -10.0 * self.s

    @property
    def z_junction(self):  # hepatic veins join the IVC
        return 45.0 * self.s

    phi_rhv_deg: float = 35.0
    phi_mhv_deg: float = 92.0
    phi_post_deg: float = -110.0

    @property
    def bifurcation(self):
        return np.array([0.0, -5.0, -10.0]) * self.s

    @property
    def umbilical_start(self):
        return np.array([-28.0, -8.0, -10.0]) * self.s

    @property
    def umbilical_end(self):
        return np.array([-23.0, 38.0, -10.0]) * self.s

    @property
    def caudate_anterior_y(self):  # coronal plane: posterior wall of the portal bifurcation
        return self.bifurcation[1] - 6.0 * self.s

    @property
    def caudate_top_z(self):  # height of the caudate's oblique top plane at y = caudate_anterior_y
        return self.z_b + 20.0 * self.s

    caudate_top_slope: float = 0.5  # the top plane rises by this many mm per mm toward posterior

    def unit(self, phi_deg: float) -> np.ndarray:
        p = math.radians(phi_deg)
        return np.array([math.cos(p), math.sin(p)])


def _organ_field(A: _Anatomy, x, y, z) -> np.ndarray:
    """Smooth union of the ellipsoids' normalised radial functions; <= 0 inside the organ."""
    vals = []
    for c, r in A.ellipsoids:
        q = ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2
        vals.append(np.sqrt(q, dtype=np.float32) - 1.0)
    k = A.smooth_k
    f = vals[0]
    for g in vals[1:]:
        h = np.clip(0.5 + 0.5 * (g - f) / k, 0.0, 1.0)
        f = g * (1 - h) + f * h - k * h * (1 - h)
    return f


def _side_of_line(x, y, p, q):
    """Signed cross product: > 0 when (x, y) is left of the directed line p -> q (2D)."""
    return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])


def _classify_segments(A: _Anatomy, x, y, z) -> np.ndarray:
    """Couinaud label (1..8) of every point by the analytic planes (no liver test)."""
    cx, cy = A.ivc_xy
    ang = np.degrees(np.arctan2(y - cy, x - cx))  # (-180, 180]
    ang = np.broadcast_to(ang, np.broadcast_shapes(np.shape(ang), np.shape(z)))
    cranial = np.broadcast_to(z >= A.z_b, ang.shape)
    # right posterior sector: from phi_post counter-clockwise to phi_rhv
    rp = (ang >= A.phi_post_deg) & (ang < A.phi_rhv_deg)
    ra = (ang >= A.phi_rhv_deg) & (ang < A.phi_mhv_deg)
    # umbilical fissure: left of the directed line start -> end (pointing anterior) = patient left
    left = _side_of_line(x, y, A.umbilical_start, A.umbilical_end) > 0
    left = np.broadcast_to(left, ang.shape)
    seg = np.full(ang.shape, 4, np.uint8)
    seg[ra] = np.where(cranial[ra], 8, 5)
    seg[rp] = np.where(cranial[rp], 7, 6)
    lft = left & ~rp & ~ra
    seg[lft] = np.where(cranial[lft], 2, 3)
    caudate = ~left & ~rp & ~ra & np.broadcast_to(
        (y < A.caudate_anterior_y) & (z < A.caudate_top_z + A.caudate_top_slope * (A.caudate_anterior_y - y)), ang.shape)
    seg[caudate] = 1
    return seg


def _portal_tree(A: _Anatomy) -> list[Branch]:
    s = A.s
    P = lambda *v: np.array(v, float) * s  # noqa: E731
    zb = -10.0
    b = A.bifurcation
    rsplit = P(35, -10, zb)
    ra_end = P(48, 12, zb)
    rp_end = P(68, -38, zb)
    u0, u1 = A.umbilical_start, A.umbilical_end
    u_mid = 0.5 * (u0 + u1)
    u_q1 = u0 + 0.25 * (u1 - u0)
    u_q3 = u0 + 0.75 * (u1 - u0)
    br = [
        Branch(1, "main portal vein", np.stack([P(-8, 8, -105), P(-4, 2, -45), b]), 7.5 * s, 6.5 * s, None),
        Branch(2, "right portal vein", np.stack([b, rsplit]), 6.0 * s, 5.5 * s, 1),
        Branch(3, "left portal vein, transverse part", np.stack([b, P(-14, -9, zb), u0]), 5.5 * s, 5.0 * s, 1),
        Branch(4, "left portal vein, umbilical portion", np.stack([u0, u1]), 5.0 * s, 3.5 * s, 3),
        Branch(5, "right anterior portal vein", np.stack([rsplit, ra_end]), 4.5 * s, 4.0 * s, 2),
        Branch(6, "right posterior portal vein", np.stack([rsplit, rp_end]), 4.5 * s, 4.0 * s, 2),
        Branch(7, "segment 8 portal branch", np.stack([ra_end, P(52, 18, 15), P(55, 22, 42)]), 3.2 * s, 1.5 * s, 5, 8),
        Branch(8, "segment 5 portal branch", np.stack([ra_end, P(52, 20, -30), P(56, 26, -48)]), 3.2 * s, 1.5 * s, 5, 5),
        Branch(9, "segment 7 portal branch", np.stack([rp_end, P(72, -42, 15), P(72, -44, 36)]), 3.2 * s, 1.5 * s, 6, 7),
        Branch(10, "segment 6 portal branch", np.stack([rp_end, P(73, -40, -28), P(72, -38, -38)]), 3.2 * s, 1.5 * s, 6, 6),
        Branch(11, "segment 2 portal branch", np.stack([u_q1, P(-45, -2, 5), P(-72, -6, 18)]), 3.0 * s, 1.5 * s, 4, 2),
        Branch(12, "segment 3 portal branch", np.stack([u_q3, P(-32, 27, -18), P(-62, 27, -19)]), 3.0 * s, 1.5 * s, 4, 3),
        Branch(13, "segment 4 portal branch (cranial, 4a)", np.stack([u_mid, P(-10, 18, 5), P(-2, 20, 30)]), 2.8 * s, 1.5 * s, 4, 4),
        Branch(14, "segment 4 portal branch (caudal, 4b)", np.stack([u0 + 0.85 * (u1 - u0), P(-12, 35, -15), P(-8, 33, -24)]), 2.8 * s, 1.5 * s, 4, 4),
        Branch(15, "caudate portal branch (left)", np.stack([P(-12, -9, zb), P(-13, -20, zb), P(-16, -30, -2)]), 2.2 * s, 1.4 * s, 3, 1),
        Branch(16, "caudate portal branch (right)", np.stack([P(-6, -7, zb), P(-5, -20, zb), P(-3, -30, 8)]), 2.2 * s, 1.4 * s, 1, 1),
    ]
    for b in br:
        b.points_mm = A.to_world(b.points_mm)
    return _link(br)


def _hepatic_tree(A: _Anatomy) -> tuple[list[Branch], dict]:
    s = A.s
    cx, cy = A.ivc_xy
    zj = A.z_junction

    def inplane(phi, rho, z):
        u = A.unit(phi)
        return np.array([cx + rho * s * u[0], cy + rho * s * u[1], z * s])

    rhv = np.stack([inplane(A.phi_rhv_deg, 0, 45), inplane(A.phi_rhv_deg, 40, 22), inplane(A.phi_rhv_deg, 88, -40)])
    mhv = np.stack([inplane(A.phi_mhv_deg, 0, 45), inplane(A.phi_mhv_deg, 40, 18), inplane(A.phi_mhv_deg, 88, -28)])
    lhv = np.stack([np.array([cx, cy, 40.0 * s]), np.array([-25, -22, 28]) * s, np.array([-75, -4, 14]) * s])
    P = lambda *v: np.array(v, float) * s  # noqa: E731
    zlo, zhi = -1e4, 1e4  # the IVC spans the whole field of view
    br = [
        Branch(1, "inferior vena cava", np.stack([[cx, cy, zlo], [cx, cy, zhi]]), A.ivc_radius, A.ivc_radius, None),
        Branch(2, "right hepatic vein", rhv, 7.0 * s, 2.0 * s, 1),
        Branch(3, "middle hepatic vein", mhv, 6.5 * s, 2.0 * s, 1),
        Branch(4, "left hepatic vein", lhv, 6.0 * s, 2.0 * s, 1),
        Branch(5, "right hepatic vein tributary (posterior-superior)", np.stack([rhv[1], P(80, -40, 30)]), 2.5 * s, 1.2 * s, 2),
        Branch(6, "right hepatic vein tributary (posterior-inferior)", np.stack([0.5 * (rhv[1] + rhv[2]), P(92, -25, -25)]), 2.5 * s, 1.2 * s, 2),
        Branch(7, "middle hepatic vein tributary (segment 8)", np.stack([mhv[1], P(45, 30, 40)]), 2.5 * s, 1.2 * s, 3),
        Branch(8, "middle hepatic vein tributary (segment 4)", np.stack([0.5 * (mhv[1] + mhv[2]), P(-5, 40, -5)]), 2.5 * s, 1.2 * s, 3),
        Branch(9, "left hepatic vein tributary (segment 2)", np.stack([lhv[1], P(-60, -20, 20)]), 2.5 * s, 1.2 * s, 4),
        Branch(10, "left hepatic vein tributary (segment 3)", np.stack([0.5 * (lhv[1] + lhv[2]), P(-75, 28, 0)]), 2.5 * s, 1.2 * s, 4),
    ]
    for b in br:
        b.points_mm = A.to_world(b.points_mm)
    trunks = {"right": A.to_world(rhv), "middle": A.to_world(mhv), "left": A.to_world(lhv)}
    return _link(br), trunks


def _link(branches: list[Branch]) -> list[Branch]:
    by_id = {b.id: b for b in branches}
    for b in branches:
        if b.parent is not None:
            by_id[b.parent].children.append(b.id)
    return branches


def _depths(branches: list[Branch]) -> dict[int, int]:
    by_id = {b.id: b for b in branches}
    out = {}
    for b in branches:
        d, p = 0, b.parent
        while p is not None:
            d, p = d + 1, by_id[p].parent
        out[b.id] = d
    return out


# ------------------------------------------------------------------------------------------------
# The study
# ------------------------------------------------------------------------------------------------


@dataclass
class PhantomStudy:
    """A synthetic study: canonical RAS+ arrays on one grid plus the ground truth.

    Attributes
    ----------
    ct_hu : ndarray of int16, shape (nx, ny, nz)
        CT in Hounsfield units.
    liver, portal, hepatic : ndarray of uint8
        Binary masks (0/1). ``hepatic`` includes the IVC; ``liver`` excludes the IVC lumen.
    segments : ndarray of uint8
        Couinaud labels 1..8 on every liver voxel, 0 elsewhere.
    tumours : ndarray of uint8
        Tumour instance ids 1..n, 0 elsewhere.
    portal_branches, hepatic_branches : ndarray of uint8
        Vessel voxels labelled by branch id (0 = none); see ``truth``.
    portal_territories, hepatic_territories : ndarray of uint8
        Liver voxels labelled by the id of the portal branch whose voxel is nearest (mm).
    affine_ras : ndarray, shape (4, 4)
        Voxel index -> world RAS millimetres.
    spacing_mm : tuple of 3 float
    truth : dict
        JSON-ready ground truth (see :func:`make_phantom`).
    """

    ct_hu: np.ndarray
    liver: np.ndarray
    portal: np.ndarray
    hepatic: np.ndarray
    segments: np.ndarray
    tumours: np.ndarray
    portal_branches: np.ndarray
    hepatic_branches: np.ndarray
    portal_territories: np.ndarray
    hepatic_territories: np.ndarray
    affine_ras: np.ndarray
    spacing_mm: tuple[float, float, float]
    truth: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.ct_hu.shape)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    def world_mm(self, ijk) -> np.ndarray:
        """World RAS millimetres of voxel index/indices ``ijk`` (..., 3)."""
        ijk = np.asarray(ijk, float)
        return ijk @ self.affine_ras[:3, :3].T + self.affine_ras[:3, 3]

    def index_of(self, xyz_mm) -> np.ndarray:
        """Nearest voxel index of world point(s) ``xyz_mm`` (..., 3), as int."""
        inv = np.linalg.inv(self.affine_ras)
        ijk = np.asarray(xyz_mm, float) @ inv[:3, :3].T + inv[:3, 3]
        return np.rint(ijk).astype(int)

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays written by :func:`hepatoplan.data_samples.write.write_study`, by file stem."""
        return {
            "ct": self.ct_hu,
            "liver": self.liver,
            "tumours": self.tumours,
            "portal_vein": self.portal,
            "hepatic_veins": self.hepatic,
            "segments": self.segments,
            "portal_branches": self.portal_branches,
            "hepatic_branches": self.hepatic_branches,
            "portal_territories": self.portal_territories,
            "hepatic_territories": self.hepatic_territories,
        }


def _default_grid(anat: _Anatomy, spacing_mm, shape) -> _Grid:
    scale = anat.s
    # field of view at scale 1: body ellipse x in [-165, 165], y in [-135, 105]; liver z in ~[-75, 75]
    lo = np.array([-180.0, -150.0, -115.0]) * scale
    hi = np.array([180.0, 120.0, 95.0]) * scale
    sp = np.asarray(spacing_mm)
    if shape is None:
        n = np.maximum(1, np.ceil((hi - lo) / sp).astype(int))
    else:
        n = np.asarray(shape, int)
        if n.shape != (3,) or (n < 1).any():
            raise InputError(f"shape must be 3 positive integers, found {shape!r}")
    centre = 0.5 * (lo + hi)
    origin = centre - 0.5 * (n - 1) * sp
    # Snap z so that the transverse portal plane z_b lies on a voxel face: the cranial/caudal split
    # then carries no sampling bias, and segment volumes agree across spacings.
    # Likewise y, for the caudate's coronal plane (when the body is not rotated).
    faces = [(2, anat.z_b)] + ([(1, anat.caudate_anterior_y)] if anat.rotation_deg == 0.0 else [])
    for axis, face in faces:
        m = math.ceil((face - origin[axis]) / sp[axis] - 0.5)
        origin[axis] = face - (m + 0.5) * sp[axis]
    return _Grid(tuple(int(v) for v in n), tuple(float(v) for v in sp), tuple(float(v) for v in origin))


def make_phantom(
    *,
    spacing_mm=(1.5, 1.5, 2.5),
    scale: float = 1.0,
    tumours=DEFAULT_TUMOURS,
    seed: int = 0,
    noise_hu: float = 12.0,
    shape=None,
    rotation_deg: float = 0.0,
) -> PhantomStudy:
    """Generate a synthetic liver study whose answers are known by construction.

    Parameters
    ----------
    spacing_mm : tuple of 3 float
        Voxel spacing (x, y, z) in mm, RAS order.
    scale : float
        Multiplies every length of the anatomy (body, liver, vessels, tumour centres and radii);
        ``scale=0.5`` gives a liver of about 1/8 the volume, fast for tests.
    tumours : sequence of TumourSpec or None
        Spheres at ``scale=1`` (centre in world RAS mm, radius mm). Empty or None for none. A later
        tumour overwrites an earlier one where they overlap; voxels outside the liver are dropped
        (``clipped_to_liver`` in the truth). See :data:`DEEP_POINT_MM` for room for big spheres.
    seed : int
        Seed of the CT noise.
    noise_hu : float
        Standard deviation of the Gaussian CT noise in HU (>= 0).
    shape : tuple of 3 int, optional
        Grid shape; default covers the body (360 x 270 x 210 mm at ``scale=1``). The grid is always
        centred on the same world point, so anatomy does not move with spacing or shape.
    rotation_deg : float
        Turn the whole body (liver, vessels, tumours, neighbours) by this angle about the world z
        axis through the origin (counter-clockwise seen from above, i.e. from +x toward +y), as a
        patient lying slightly rotated on the table; within [-30, 30]. Tumour centres are given in
        the unrotated (anatomical) frame; every position in ``truth`` is in world mm.

    Returns
    -------
    PhantomStudy
        Arrays in canonical RAS+ and ``truth``, a JSON-ready dict with keys ``generator``,
        ``geometry``, ``volumes_ml``, ``segments``, ``tumours``, ``portal_branches``,
        ``hepatic_branches``, ``landmarks``, ``conventions``.

    Raises
    ------
    hepatoplan.errors.InputError
        On a non-positive spacing, scale, tumour radius, negative noise, or bad shape.
    """
    sp = check_spacing_mm(spacing_mm)
    tumours = _check_phantom_options(scale, noise_hu, tumours, rotation_deg)
    A = _Anatomy(float(scale), float(rotation_deg))
    grid = _default_grid(A, sp, shape)
    liver, segments, reassigned = _organ_and_segments(A, grid)
    portal_tree, hepatic_tree, hv_trunks = _vessel_trees(A, grid)
    portal_branches = _paint_tree(grid, portal_tree)
    hepatic_branches = _paint_tree(grid, hepatic_tree)
    tum, sphere_counts = _tumours(A, grid, tumours, liver)
    parts = _PhantomParts(
        liver=liver, segments=segments, reassigned=reassigned, tumours=tum, tumour_specs=tumours,
        sphere_counts=sphere_counts, portal_tree=portal_tree, hepatic_tree=hepatic_tree, hv_trunks=hv_trunks,
        portal_branches=portal_branches, hepatic_branches=hepatic_branches,
        portal_territories=_nearest_branch_territories(liver, portal_branches, grid.spacing_mm),
        hepatic_territories=_nearest_branch_territories(liver, hepatic_branches, grid.spacing_mm),
    )
    portal = (portal_branches > 0).astype(np.uint8)
    hepatic = (hepatic_branches > 0).astype(np.uint8)
    ct = _synthesize_ct(A, grid, liver, portal, hepatic, tum, noise_hu=float(noise_hu), seed=int(seed))
    truth = _truth(A, grid, parts, seed=int(seed), noise_hu=float(noise_hu))
    return PhantomStudy(
        ct_hu=ct, liver=liver, portal=portal, hepatic=hepatic, segments=segments, tumours=tum,
        portal_branches=portal_branches, hepatic_branches=hepatic_branches,
        portal_territories=parts.portal_territories, hepatic_territories=parts.hepatic_territories,
        affine_ras=grid.affine, spacing_mm=grid.spacing_mm, truth=truth,
    )


@dataclass(frozen=True, eq=False)
class _PhantomParts:
    """What :func:`make_phantom` draws (canonical RAS+ arrays) and the trees it draws them from."""

    liver: np.ndarray
    segments: np.ndarray
    reassigned: int  # segment voxels moved to make each segment one piece
    tumours: np.ndarray
    tumour_specs: tuple[TumourSpec, ...]
    sphere_counts: np.ndarray  # voxels of each tumour sphere before clipping to the liver
    portal_tree: list[Branch]
    hepatic_tree: list[Branch]
    hv_trunks: dict
    portal_branches: np.ndarray
    hepatic_branches: np.ndarray
    portal_territories: np.ndarray
    hepatic_territories: np.ndarray


def _check_phantom_options(scale, noise_hu, tumours, rotation_deg) -> tuple[TumourSpec, ...]:
    """Validate :func:`make_phantom`'s options; the tumours as a tuple."""
    if not (np.isfinite(scale) and scale > 0):
        raise InputError(f"scale must be a positive number, found {scale!r}")
    if not (np.isfinite(noise_hu) and noise_hu >= 0):
        raise InputError(f"noise_hu must be >= 0, found {noise_hu!r}")
    tumours = () if tumours is None else tuple(tumours)
    for t in tumours:
        centre = np.asarray(t.centre_mm, dtype=float) if hasattr(t, "centre_mm") else np.empty(0)
        if centre.shape != (3,) or not np.isfinite(centre).all():
            raise InputError(f"each tumour must be a TumourSpec with a 3-number centre_mm, found {t!r}")
        if not (np.isfinite(t.radius_mm) and t.radius_mm > 0):
            raise InputError(f"tumour radius_mm must be > 0, found {t.radius_mm!r}")
    if len(tumours) > 255:
        raise InputError(f"at most 255 tumours, found {len(tumours)}")
    if not (np.isfinite(rotation_deg) and abs(rotation_deg) <= 30.0):
        raise InputError(f"rotation_deg must be within [-30, 30] degrees, found {rotation_deg!r}")
    return tumours


def _organ_and_segments(A: _Anatomy, grid: _Grid) -> tuple[np.ndarray, np.ndarray, int]:
    """Liver mask and Couinaud segments (uint8), slab by slab, each segment made one piece; and the
    number of voxels moved to make them so."""
    xs, ys, zs = (grid.axis_mm(a) for a in range(3))
    X, Y = A.anat_xy(xs[:, None, None].astype(np.float32), ys[None, :, None].astype(np.float32))
    liver = np.zeros(grid.shape, np.uint8)
    segments = np.zeros(grid.shape, np.uint8)
    cx, cy = A.ivc_xy
    ivc_disk = ((X - cx) ** 2 + (Y - cy) ** 2) <= A.ivc_radius ** 2  # (nx, ny, 1)
    zlo = min(c[2] - r[2] for c, r in A.ellipsoids)
    zhi = max(c[2] + r[2] for c, r in A.ellipsoids)
    k0, k1 = grid.index_range(2, zlo, zhi)
    for a in range(k0, k1, _SLAB):
        b = min(k1, a + _SLAB)
        Z = zs[None, None, a:b].astype(np.float32)
        organ = (_organ_field(A, X, Y, Z) <= 0.0) & ~ivc_disk
        liver[:, :, a:b] = organ
        seg = _classify_segments(A, X, Y, Z)
        segments[:, :, a:b] = np.where(organ, seg, 0)
    nzi = [np.nonzero(liver.any(axis=tuple(j for j in range(3) if j != ax)))[0] for ax in range(3)]
    crop = tuple(slice(max(0, int(v[0]) - 1), int(v[-1]) + 2) if v.size else slice(0, 0) for v in nzi)
    reassigned = _make_segments_connected(segments[crop])  # in place on the liver's bounding box
    return liver, segments, reassigned


def _vessel_trees(A: _Anatomy, grid: _Grid) -> tuple[list[Branch], list[Branch], dict]:
    """Portal and hepatic trees with the radii drawn on ``grid`` (and recorded in the truth), and
    the hepatic-vein trunks."""
    portal_tree = _portal_tree(A)
    hepatic_tree, hv_trunks = _hepatic_tree(A)
    r_min = _min_vessel_radius_mm(grid.spacing_mm)
    for br in (*portal_tree, *hepatic_tree):
        br.radius_start_mm = max(br.radius_start_mm, r_min)
        br.radius_end_mm = max(br.radius_end_mm, r_min)
    return portal_tree, hepatic_tree, hv_trunks


def _tumours(A: _Anatomy, grid: _Grid, tumours: tuple[TumourSpec, ...], liver) -> tuple[np.ndarray, np.ndarray]:
    """Tumour instance labels (clipped to the liver) and each sphere's voxel count before clipping."""
    tum = np.zeros(grid.shape, np.uint8)
    for i, t in enumerate(tumours, start=1):
        c = A.to_world(np.asarray(t.centre_mm, float) * A.s)
        r = float(t.radius_mm) * A.s
        _rasterize_tube(grid, c, c, r, r, tum, i)
    sphere_counts = _label_counts(tum, len(tumours) + 1)
    tum[liver == 0] = 0  # a tumour is liver tissue; never outside the organ
    in_liver = _label_counts(tum, len(tumours) + 1)
    for i in range(1, len(tumours) + 1):
        if in_liver[i] == 0:
            raise InputError(f"tumour {i} ({tumours[i - 1]}) has no voxel inside the liver at scale {A.s}; "
                             "move its centre into the liver (see truth['landmarks'] for the anatomy)")
    return tum, sphere_counts


def _paint_tree(grid: _Grid, tree: list[Branch]) -> np.ndarray:
    """Label map of a tree; deeper branches are painted first so parents win on overlaps."""
    out = np.zeros(grid.shape, np.uint8)
    depth = _depths(tree)
    for br in sorted(tree, key=lambda b: (-depth[b.id], -b.id)):
        _rasterize_branch(grid, br, out, br.id)
    return out


def _make_segments_connected(segments: np.ndarray) -> int:
    """Give voxels outside each segment's largest 6-connected piece to a neighbouring segment."""
    import cc3d

    moved = 0
    for _ in range(4):
        stray = np.zeros(segments.shape, bool)
        for k in SEGMENT_LABELS:
            m = segments == k
            if not m.any():
                continue
            lab, n = cc3d.connected_components(m, connectivity=6, return_N=True)
            if n <= 1:
                continue
            counts = np.bincount(lab.ravel())
            counts[0] = 0
            stray |= m & (lab != counts.argmax())
        if not stray.any():
            break
        moved += int(stray.sum())
        keep = (segments > 0) & ~stray
        idx = ndimage.distance_transform_edt(~keep, return_distances=False, return_indices=True)
        fill = segments[tuple(idx)]
        segments[stray] = fill[stray]
    if moved:
        log.debug("moved %d stray segment voxels to a neighbouring segment", moved)
    return moved


def _nearest_branch_territories(liver, branches, spacing_mm, *, margin_mm: float = 30.0) -> np.ndarray:
    """Label every liver voxel with the branch id of its nearest vessel voxel (Euclidean, mm).

    Works on a crop: in x and y the bounding box of liver and vessels together (no vessel voxel is
    left out), in z the liver's extent grown by ``margin_mm``. Exact: a vessel voxel cut off in z
    is at least the z-distance to the crop face away; the few liver voxels whose nearest in-crop
    vessel is not closer than that are looked up among all vessel voxels with a k-d tree.
    """
    from scipy.spatial import cKDTree

    out = np.zeros(liver.shape, np.uint8)
    if not (liver.any() and branches.any()):
        return out
    both_xy = (liver > 0).any(axis=2) | (branches > 0).any(axis=2)
    xs = np.nonzero(both_xy.any(axis=1))[0]
    ys = np.nonzero(both_xy.any(axis=0))[0]
    zs = np.nonzero(liver.any(axis=(0, 1)))[0]
    nz, dz = liver.shape[2], float(spacing_mm[2])
    g = int(math.ceil(margin_mm / dz))
    z0, z1 = max(0, int(zs[0]) - g), min(nz, int(zs[-1]) + g + 1)
    crop = (slice(int(xs[0]), int(xs[-1]) + 1), slice(int(ys[0]), int(ys[-1]) + 1), slice(z0, z1))
    br = branches[crop]
    inside = liver[crop] > 0
    if br.any():
        dist, idx = ndimage.distance_transform_edt(br == 0, sampling=spacing_mm, return_indices=True)
        lab = np.where(inside, br[tuple(idx)], 0).astype(np.uint8)
        k = np.arange(z1 - z0, dtype=float)
        lower = (k + 1) * dz if z0 > 0 else np.full(k.shape, np.inf)
        upper = (z1 - z0 - k) * dz if z1 < nz else np.full(k.shape, np.inf)
        unsure = inside & ~(dist < np.minimum(lower, upper)[None, None, :])
        del dist, idx
    else:
        lab = np.zeros(inside.shape, np.uint8)
        unsure = inside
    out[crop] = lab
    if unsure.any():
        sp = np.asarray(spacing_mm, float)
        vessel_ijk = np.argwhere(branches > 0)
        tree = cKDTree(vessel_ijk * sp)
        q = np.argwhere(unsure) + np.array([c.start for c in crop])
        _, nearest = tree.query(q * sp)
        out[tuple(q.T)] = branches[tuple(vessel_ijk[nearest].T)]
    return out


# tissue codes of the CT label volume, in painting priority (a higher code wins)
_TISSUES = (("air", HU_AIR), ("fat", HU_FAT), ("soft_tissue", HU_SOFT_TISSUE), ("lung", HU_LUNG),
            ("heart", HU_HEART), ("stomach", HU_STOMACH), ("spleen", HU_SPLEEN),
            ("kidney", HU_KIDNEY), ("aorta", HU_AORTA), ("bone", HU_BONE), ("liver", HU_LIVER),
            ("tumour", HU_TUMOUR), ("portal", HU_PORTAL), ("hepatic", HU_HEPATIC))
_CODE = {name: i for i, (name, _) in enumerate(_TISSUES)}


def _synthesize_ct(A: _Anatomy, grid: _Grid, liver, portal, hepatic, tum, *, noise_hu: float, seed: int) -> np.ndarray:
    """Portal-venous CT: tissue codes -> HU lookup, Gaussian blur (0.7 mm), Gaussian noise; by z slabs."""
    s = A.s
    xs, ys, zs = (grid.axis_mm(a) for a in range(3))
    X, Y = A.anat_xy(xs[:, None].astype(np.float32), ys[None, :].astype(np.float32))
    X, Y = np.broadcast_arrays(X, Y)
    ct = np.empty(grid.shape, np.int16)
    sigma = [_BLUR_SIGMA_MM / v for v in grid.spacing_mm]
    halo = int(math.ceil(3 * sigma[2]))
    nz = grid.shape[2]
    lut = np.array([hu for _, hu in _TISSUES], np.float32)
    # z-invariant background (2D): body ellipse with a subcutaneous fat layer, spine, aorta
    body_a, body_b, body_c, fat_mm = 165.0 * s, 120.0 * s, -15.0 * s, 14.0 * s
    bg = np.zeros((grid.shape[0], grid.shape[1]), np.uint8)
    bg[(X / body_a) ** 2 + ((Y - body_c) / body_b) ** 2 <= 1.0] = _CODE["fat"]
    bg[(X / (body_a - fat_mm)) ** 2 + ((Y - body_c) / (body_b - fat_mm)) ** 2 <= 1.0] = _CODE["soft_tissue"]
    bg[(X + 18.0 * s) ** 2 + (Y + 70.0 * s) ** 2 <= (11.0 * s) ** 2] = _CODE["aorta"]
    bg[X ** 2 + (Y + 100.0 * s) ** 2 <= (18.0 * s) ** 2] = _CODE["bone"]
    soft = _CODE["soft_tissue"]
    organs = (  # (code, centre, semi-axes) ellipsoids at scale 1, painted in order over the codes given
        (_CODE["heart"], (-25.0, 5.0, 110.0), (55.0, 45.0, 45.0), soft),
        (_CODE["lung"], (80.0, -25.0, 115.0), (70.0, 80.0, 80.0), soft),     # right lung, wraps the dome
        (_CODE["lung"], (-80.0, -25.0, 105.0), (65.0, 80.0, 80.0), soft),    # left lung
        (_CODE["stomach"], (-70.0, 25.0, -45.0), (40.0, 30.0, 35.0), soft),
        (_CODE["air"], (-70.0, 25.0, -20.0), (30.0, 20.0, 12.0), _CODE["stomach"]),  # gas in the stomach
        (_CODE["spleen"], (-110.0, -70.0, 10.0), (32.0, 26.0, 50.0), soft),
        (_CODE["kidney"], (70.0, -80.0, -80.0), (28.0, 25.0, 50.0), soft),
    )
    rot = A.rotation
    boxed = []
    for c, centre, semi, over in organs:  # conservative x-y index box of each (possibly rotated) ellipsoid
        w = rot @ (np.asarray(centre) * s)
        half = max(semi[0], semi[1]) * s
        (i0, i1), (j0, j1) = grid.index_range(0, w[0] - half, w[0] + half), grid.index_range(1, w[1] - half, w[1] + half)
        box = (slice(i0, i1), slice(j0, j1)) if i1 > i0 and j1 > j0 else None
        boxed.append((c, centre, semi, over, box))
    organs = tuple(boxed)
    for slab_index, a in enumerate(range(0, nz, _SLAB)):
        b = min(nz, a + _SLAB)
        ha, hb = max(0, a - halo), min(nz, b + halo)
        code = np.repeat(bg[:, :, None], hb - ha, axis=2)
        Z = zs[ha:hb].astype(np.float32)
        for c, centre, semi, over, box in organs:
            cz, rz = centre[2] * s, semi[2] * s
            kz = np.nonzero(np.abs(Z - cz) < rz)[0]
            if kz.size == 0 or box is None:
                continue
            kz = slice(int(kz[0]), int(kz[-1]) + 1)
            xy = (box[0], box[1])
            q = ((X[xy][:, :, None] - centre[0] * s) / (semi[0] * s)) ** 2 \
                + ((Y[xy][:, :, None] - centre[1] * s) / (semi[1] * s)) ** 2 + ((Z[None, None, kz] - cz) / rz) ** 2
            sub = code[box[0], box[1], kz]
            sub[(q <= 1.0) & (sub == over)] = c
        for name, arr in (("liver", liver), ("tumour", tum), ("portal", portal), ("hepatic", hepatic)):
            np.maximum(code, (arr[:, :, ha:hb] > 0).view(np.uint8) * np.uint8(_CODE[name]), out=code)
        img = lut[code]
        img = ndimage.gaussian_filter(img, sigma, mode="nearest", truncate=3.0)[:, :, a - ha:a - ha + (b - a)]
        if noise_hu > 0:
            rng = np.random.default_rng([seed, slab_index])
            img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise_hu)
        np.clip(np.rint(img), -1024, 3071, out=img)
        ct[:, :, a:b] = img.astype(np.int16)
    return ct


def _label_counts(arr: np.ndarray, n: int) -> np.ndarray:
    """Voxel count of each label 0..n-1 (bincount in chunks: no full-size intp copy)."""
    flat = arr.reshape(-1)
    out = np.zeros(n, np.int64)
    step = 1 << 22
    for i in range(0, flat.size, step):
        out += np.bincount(flat[i:i + step], minlength=n)[:n]
    return out


def _r(v, nd=3):
    return [round(float(x), nd) for x in np.ravel(v)]


def _truth(A: _Anatomy, grid: _Grid, parts: _PhantomParts, *, seed: int, noise_hu: float) -> dict:
    """The JSON-ready ground truth of a phantom (see the module notes)."""
    vml = float(np.prod(grid.spacing_mm)) / MM3_PER_ML
    seg_counts = _label_counts(parts.segments, 9)
    tum_counts = _label_counts(parts.tumours, len(parts.tumour_specs) + 1)
    pb_counts = _label_counts(parts.portal_branches, len(parts.portal_tree) + 1)
    hb_counts = _label_counts(parts.hepatic_branches, len(parts.hepatic_tree) + 1)
    liver_n = int(_label_counts(parts.liver, 2)[1])
    zc = grid.origin_mm[2] + grid.spacing_mm[2] * np.arange(grid.shape[2])
    per_slice_4 = np.array([int(np.count_nonzero(parts.segments[:, :, k] == 4)) for k in range(grid.shape[2])])
    seg4_cranial = int(per_slice_4[zc >= A.z_b].sum())
    return {
        "generator": {"name": "hepatoplan.data_samples.phantom", "version": GENERATOR_VERSION, "seed": seed,
                      "noise_hu": noise_hu, "scale": A.s, "rotation_deg": A.rotation_deg},
        "geometry": {
            "shape": list(grid.shape), "spacing_mm": list(grid.spacing_mm), "origin_mm": list(grid.origin_mm),
            "affine_ras": [list(map(float, row)) for row in grid.affine],
            "orientation": "RAS (arrays in memory; files may be written in other axcodes)",
            "voxel_volume_mm3": float(np.prod(grid.spacing_mm)),
        },
        "volumes_ml": {
            "liver": round(liver_n * vml, 6),
            "tumours_total": round(float(tum_counts[1:].sum()) * vml, 6),
            "functional_liver": round((liver_n - int(tum_counts[1:].sum())) * vml, 6),
            "portal_vein": round(float(pb_counts[1:].sum()) * vml, 6),
            "hepatic_veins": round(float(hb_counts[1:].sum()) * vml, 6),
        },
        "segments": {
            "volumes_ml": {str(k): round(float(seg_counts[k]) * vml, 6) for k in SEGMENT_LABELS},
            "voxel_counts": {str(k): int(seg_counts[k]) for k in SEGMENT_LABELS},
            "reassigned_voxels": int(parts.reassigned),
            "segment_4_split_ml": {"4a": round(float(seg4_cranial) * vml, 6),
                                   "4b": round(float(seg_counts[4] - seg4_cranial) * vml, 6),
                                   "rule": "4a cranial, 4b caudal to the transverse portal plane"},
        },
        "tumours": _tumour_truth(A, parts, tum_counts, vml),
        "portal_branches": _portal_truth(parts, pb_counts, vml),
        "hepatic_branches": _hepatic_truth(parts, grid, hb_counts, vml),
        "landmarks": _landmarks_truth(A, parts),
        "conventions": {
            "arrays": "canonical RAS+: axis 0 -> patient Right, 1 -> Anterior, 2 -> Superior",
            "liver": "organ minus the IVC lumen; intrahepatic portal/hepatic veins and tumours are liver",
            "portal_extrahepatic": "the portal trunk below the hilum lies outside the liver mask and is kept in portal_vein",
            "hepatic_veins": "includes the IVC (branch 1) through the whole field of view, as IRCADb",
            "segments": "Couinaud 1..8 (4 not split) on every liver voxel; plane-based, see landmarks.scissurae",
            "territories": "liver voxel -> branch of nearest portal (hepatic) voxel in mm; portal subtree_territory = "
                           "devascularised if the branch is cut at its origin, hepatic subtree_territory = congested",
        },
    }


def _descendants(tree: list[Branch], bid: int) -> list[int]:
    """Ids of branch ``bid`` and of every branch downstream of it, sorted."""
    by_id = {b.id: b for b in tree}
    out, stack = [], [bid]
    while stack:
        c = stack.pop()
        out.append(c)
        stack.extend(by_id[c].children)
    return sorted(out)


def _territory_truth(counts: np.ndarray, branch_id: int, subtree: list[int], vml: float) -> dict:
    """A branch's own and its subtree's nearest-branch territories (mL and voxels)."""
    return {
        "territory_ml": round(float(counts[branch_id]) * vml, 6),
        "territory_voxels": int(counts[branch_id]),
        "subtree_territory_ml": round(float(sum(counts[i] for i in subtree)) * vml, 6),
        "subtree_territory_voxels": int(sum(counts[i] for i in subtree)),
    }


def _portal_truth(parts: _PhantomParts, pb_counts: np.ndarray, vml: float) -> dict:
    tree = parts.portal_tree
    ter_counts = _label_counts(parts.portal_territories, len(tree) + 1)
    depth = _depths(tree)
    info = {}
    for b in tree:
        sub = _descendants(tree, b.id)
        info[str(b.id)] = {
            "name": b.name,
            "parent": b.parent,
            "children": list(b.children),
            "depth": depth[b.id],
            "terminal": not b.children,
            "segment": b.segment,
            "segments_fed": sorted({x.segment for x in tree if x.id in sub and x.segment is not None}),
            "subtree": sub,
            "points_mm": [_r(p) for p in b.points_mm],
            "radius_start_mm": round(b.radius_start_mm, 3),
            "radius_end_mm": round(b.radius_end_mm, 3),
            "length_mm": round(b.length_mm(), 3),
            "voxel_count": int(pb_counts[b.id]),
            **_territory_truth(ter_counts, b.id, sub, vml),
        }
    return info


def _hepatic_truth(parts: _PhantomParts, grid: _Grid, hb_counts: np.ndarray, vml: float) -> dict:
    tree = parts.hepatic_tree
    ter_counts = _label_counts(parts.hepatic_territories, len(tree) + 1)
    depth = _depths(tree)
    info = {}
    for b in tree:
        pts = b.points_mm.copy()
        if b.id == 1:  # clip the IVC to the field of view for the record
            pts[:, 2] = np.clip(pts[:, 2], grid.origin_mm[2], grid.origin_mm[2] + grid.spacing_mm[2] * (grid.shape[2] - 1))
        info[str(b.id)] = {
            "name": b.name, "parent": b.parent, "children": list(b.children), "depth": depth[b.id],
            "terminal": not b.children, "points_mm": [_r(p) for p in pts],
            "radius_start_mm": round(b.radius_start_mm, 3), "radius_end_mm": round(b.radius_end_mm, 3),
            "voxel_count": int(hb_counts[b.id]),
            **_territory_truth(ter_counts, b.id, _descendants(tree, b.id), vml),
        }
    return info


def _tumour_truth(A: _Anatomy, parts: _PhantomParts, tum_counts: np.ndarray, vml: float) -> list[dict]:
    tum_idx = np.nonzero(parts.tumours)
    tum_lab = parts.tumours[tum_idx]
    tum_seg = parts.segments[tum_idx]
    del tum_idx
    info = []
    for i, t in enumerate(parts.tumour_specs, start=1):
        c = A.to_world(np.asarray(t.centre_mm, float) * A.s)
        r = float(t.radius_mm) * A.s
        seg_in = np.bincount(tum_seg[tum_lab == i], minlength=9)
        gp = _sphere_to_tree_gap(c, r, parts.portal_tree)
        gh = _sphere_to_tree_gap(c, r, parts.hepatic_tree)
        tree, g = ("portal", gp) if gp[0] <= gh[0] else ("hepatic", gh)
        name = {b.id: b.name for b in (parts.portal_tree if tree == "portal" else parts.hepatic_tree)}[g[1]]
        info.append({
            "id": i,
            "centre_mm": _r(c),
            "radius_mm": round(r, 4),
            "volume_ml_analytic": round(4.0 / 3.0 * math.pi * r ** 3 / MM3_PER_ML, 6),
            "volume_ml_voxels": round(float(tum_counts[i]) * vml, 6),
            "voxel_count": int(tum_counts[i]),
            "segment": int(seg_in[1:].argmax() + 1) if seg_in[1:].any() else None,
            "segment_voxel_counts": {str(k): int(seg_in[k]) for k in SEGMENT_LABELS if seg_in[k]},
            "clipped_to_liver": bool(tum_counts[i] < parts.sphere_counts[i]),
            "min_distance_to_portal_mm": round(gp[0], 3),
            "min_distance_to_hepatic_mm": round(gh[0], 3),
            "nearest_vessel": {
                "tree": tree, "branch": int(g[1]), "name": name, "gap_mm": round(g[0], 3),
                "vessel_radius_mm": round(g[2], 3), "vessel_diameter_mm": round(2 * g[2], 3),
            },
        })
    return info


def _landmarks_truth(A: _Anatomy, parts: _PhantomParts) -> dict:
    trunks = {}
    for name, pts in parts.hv_trunks.items():
        d = pts[1] - pts[0]
        trunks[name] = {
            "junction_mm": _r(pts[0]),
            "direction": _r(d / np.linalg.norm(d), 5),
            "points_mm": [_r(p) for p in pts],
        }
    cx, cy = A.ivc_xy
    ivc_point = A.to_world([cx, cy, 0.0])

    def vplane(phi):
        u = A.unit(phi)
        return {"point_mm": _r(ivc_point), "normal": _r(A.to_world([-u[1], u[0], 0.0]), 6),
                "azimuth_deg": round(phi + A.rotation_deg, 6), "half_plane_direction": _r(A.to_world([u[0], u[1], 0.0]), 6)}

    u0, u1 = A.to_world(A.umbilical_start), A.to_world(A.umbilical_end)
    du = (u1 - u0) / np.linalg.norm(u1 - u0)
    rot = A.rotation
    return {
        "portal_bifurcation_mm": _r(A.to_world(A.bifurcation)),
        "portal_root_mm": _r(parts.portal_tree[0].points_mm[0]),
        "transverse_portal_plane_z_mm": round(A.z_b, 4),
        "ivc_axis": {"point_mm": _r(ivc_point), "direction": [0.0, 0.0, 1.0], "radius_mm": round(A.ivc_radius, 4)},
        "hepatic_vein_trunks": trunks,
        "umbilical_portion": {"start_mm": _r(u0), "end_mm": _r(u1), "direction": _r(du, 6)},
        "scissurae": {
            "right": vplane(A.phi_rhv_deg),
            "middle": vplane(A.phi_mhv_deg),
            "right_posterior_closure": vplane(A.phi_post_deg),
            "umbilical": {"point_mm": _r(u0), "normal": _r([-du[1], du[0], 0.0], 6)},
        },
        "anatomical_frame": {
            "rotation_deg_about_z": A.rotation_deg, "origin_mm": [0.0, 0.0, 0.0],
            "x_axis": _r(rot[:, 0], 6), "y_axis": _r(rot[:, 1], 6), "z_axis": [0.0, 0.0, 1.0],
            "note": "world = rotation @ anatomical; identical to world when rotation_deg_about_z is 0",
        },
        "caudate": {
            "frame": "anatomical (x, y below are landmarks.anatomical_frame coordinates)",
            "anterior_plane_y_mm": round(float(A.caudate_anterior_y), 4),
            "top_plane_z_mm": round(float(A.caudate_top_z), 4),
            "top_plane_slope": A.caudate_top_slope,
            "rule": "liver in the IVC's left sector (between scissurae.middle and "
                    "scissurae.right_posterior_closure), right of scissurae.umbilical, "
                    "y < anterior_plane_y_mm and "
                    "z < top_plane_z_mm + top_plane_slope * (anterior_plane_y_mm - y)",
        },
    }


def _sphere_to_tree_gap(c, r, tree: list[Branch]) -> tuple[float, int, float]:
    """Smallest gap (mm) from a sphere's surface to a tube's surface (negative = overlap).

    Returns the gap, the branch id and the tube radius (mm) at the closest point.
    """
    best = (np.inf, 0, 0.0)
    for b in tree:
        radii = b.radii_mm()
        for k in range(len(b.points_mm) - 1):
            p0, p1 = b.points_mm[k], b.points_mm[k + 1]
            d = p1 - p0
            dd = float(d @ d)
            t = 0.0 if dd == 0 else float(np.clip((c - p0) @ d / dd, 0, 1))
            dist = float(np.linalg.norm(c - (p0 + t * d)))
            rt = radii[k] + t * (radii[k + 1] - radii[k])
            if dist - rt - r < best[0]:
                best = (float(dist - rt - r), b.id, float(rt))
    return best
