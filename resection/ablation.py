"""Thermal ablation zones: a sparing alternative for small deep tumours.

An ablation zone is modelled as a sphere of radius ``radius_mm`` around a centre (the tumour's
centroid unless given). :func:`ablation_zone` reports whether it covers the tumour plus an ablative
margin, how much liver it destroys, and a heat-sink warning when a vessel of ≥ 3 mm diameter runs
within the zone or the tumour's margin (blood flow cools the tissue next to it, the classic cause of
incomplete ablation: Lu DSK et al., J Vasc Interv Radiol 2003;14:1267-74).

Arrays are canonical RAS+ (index axis 0 → patient Right, 1 → Anterior, 2 → Superior) on one grid;
positions are voxel indices and millimetres of the array frame (``index × spacing_mm``), never world
coordinates.

Geometry and partial voxels
---------------------------
- Zone voxels carry the fraction of them inside the sphere by the linear ramp
  ``f = clip((r + w/2 − d)/w, 0, 1)``, with ``d`` the distance from the centre and
  ``w = Σ_k spacing_k·|n_k|`` the voxel's extent along the radial direction ``n``. The wedges
  (:mod:`hepatoplan.resection.surface`) also correct this ramp for curvature; here that correction is left
  out, so a zone's ablated volume is high by about ``w²/(4r²)`` (0.2–0.4 % for r = 15 mm on 1–2 mm
  voxels).
- The tumour's extent from the centre is ``R_t = max over tumour voxels of (d − s)``, with ``s`` the
  signed distance to the tumour's smooth surface (:func:`hepatoplan.resection.surface.surface_distance`,
  negative inside): exact for a sphere, an upper bound otherwise (triangle inequality). The zone
  covers tumour + margin when ``radius_mm − R_t ≥ margin_mm``; ``radius_mm=None`` fits the radius
  to ``R_t + margin_mm``.
- Vessel diameter: the local radius of a vessel voxel is the largest ``t`` (on a grid of half the
  finest spacing) such that the voxel lies in the opening of the vessel mask with a ball of radius
  ``t`` (it belongs to a tube at least ``2t`` wide); the diameter is ``2t − min spacing`` (the
  distance to the wall at a voxel centre overestimates the radius by about half a voxel; same
  convention as :mod:`hepatoplan.resection.vascular`). A voxel is a heat sink when that diameter is at least
  ``heat_sink_diameter_mm``, even if only the vessel's wall enters the zone.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

import cc3d
import numpy as np

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError
from hepatoplan.nearest_voxel import edt_mm
from hepatoplan.units import MM3_PER_ML

from hepatoplan.arrays import bounding_box, padded_box
from hepatoplan.units import voxel_volume_ml

log = logging.getLogger(__name__)

#: Default ablative margin (mm) around the tumour.
DEFAULT_ABLATION_MARGIN_MM = 5.0


@dataclass(frozen=True)
class AblationParams:
    """Constants of :func:`ablation_zone` (today's values are the defaults).

    Attributes
    ----------
    heat_sink_diameter_mm : float
        Vessels at least this wide (mm) within the zone or the tumour's margin cool it (heat
        sink): 3 mm, the diameter above which perivascular radiofrequency ablation was incomplete
        in Lu DSK et al., J Vasc Interv Radiol 2003;14:1267-74 (literature, not fitted here).
    vessel_search_pad_mm : float
        The vessel masks are examined in the zone's box grown by this much (mm), so that a vessel
        whose axis lies outside the zone but whose wall enters it is measured with its whole
        thickness (tubes up to 30 mm wide: the IVC is about 25 mm). A geometric allowance, not
        fitted.
    """

    heat_sink_diameter_mm: float = 3.0
    vessel_search_pad_mm: float = 15.0

    def __post_init__(self):
        for name in ("heat_sink_diameter_mm", "vessel_search_pad_mm"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"AblationParams.{name} must be a distance > 0 mm, got {value!r}")


_ABLATE = re.compile(r"^ablate:(?P<id>\d+)(?:@(?P<radius>[-+0-9.eE]+|nan|inf))?$")


@dataclass(frozen=True)
class AblationSpec:
    """``--resect ablate:2@15``: ablate tumour 2 with a 15 mm zone radius (``None``: fitted)."""

    tumour_id: int
    radius_mm: float | None
    text: str

    def describe(self) -> str:
        size = "radius fitted to tumour + margin" if self.radius_mm is None else f"radius {self.radius_mm:g} mm"
        return f"ablation of tumour {self.tumour_id} ({size})"


def parse_ablation(text: str) -> AblationSpec:
    """Parse ``ablate:ID`` or ``ablate:ID@RADIUS_MM``.

    Raises
    ------
    InputError
        Malformed text, tumour id 0, radius not a number or ≤ 0.
    """
    spec = text.strip().lower()
    match = _ABLATE.match(spec)
    if not match:
        raise InputError(
            f"--resect {text!r}: expected 'ablate:2' (zone fitted to tumour 2 + margin) or 'ablate:2@15' "
            "(zone radius 15 mm around tumour 2's centre)"
        )
    tumour_id = int(match["id"])
    if tumour_id == 0:
        raise InputError(f"--resect {text!r}: tumour ids start at 1")
    radius = None
    if match["radius"] is not None:
        try:
            radius = float(match["radius"])
        except ValueError:
            raise InputError(f"--resect {text!r}: radius {match['radius']!r} is not a number") from None
        if not (math.isfinite(radius) and radius > 0):
            raise InputError(f"--resect {text!r}: ablation radius_mm must be a distance > 0 mm, got {radius:g}")
    return AblationSpec(tumour_id, radius, spec)


@dataclass(frozen=True)
class HeatSinkVessel:
    """A ≥ ``heat_sink_diameter_mm`` vessel piece inside the zone or the tumour's margin."""

    tree: str
    voxels: int
    max_diameter_mm: float
    min_distance_to_tumour_mm: float
    centroid_index: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {
            "tree": self.tree,
            "voxels": self.voxels,
            "max_diameter_mm": self.max_diameter_mm,
            "min_distance_to_tumour_mm": self.min_distance_to_tumour_mm,
            "centroid_index": list(self.centroid_index),
            "centroid_mm": list(self.centroid_mm),
        }


@dataclass(frozen=True, eq=False)
class AblationZone:
    """Outcome of :func:`ablation_zone`.

    Attributes
    ----------
    fraction : ndarray of float32
        Share (0-1) of each voxel inside the zone (restricted to the liver when ``liver`` was
        given); combine with a resection's ``resected_fraction`` by ``np.maximum``.
    centre_index, centre_mm : tuple of 3 float
        Zone centre (voxel indices; mm of the array frame).
    radius_mm : float
        Zone radius; ``radius_fitted`` says whether it was fitted to tumour + margin.
    zone_ml : float
        Volume of the sphere, ``4/3·π·r³``, mL.
    ablated_liver_ml : float or None
        Liver inside the zone (partial voxels), mL; ``None`` without ``liver``.
    tumour_extent_mm : float
        ``R_t``: farthest tumour surface from the centre, mm.
    min_coverage_margin_mm : float
        ``radius_mm − R_t``: the thinnest ablated rim beyond the tumour (negative: the tumour sticks
        out of the zone).
    margin_mm : float
        The ablative margin asked for.
    covers_tumour, covers_tumour_and_margin : bool
    heat_sink_warning : bool
        A ≥ ``heat_sink_diameter_mm`` vessel runs within the zone or within ``margin_mm`` of the
        tumour.
    heat_sink_vessels : list of HeatSinkVessel
    """

    fraction: np.ndarray
    centre_index: tuple[float, float, float]
    centre_mm: tuple[float, float, float]
    radius_mm: float
    radius_fitted: bool
    zone_ml: float
    ablated_liver_ml: float | None
    tumour_extent_mm: float
    min_coverage_margin_mm: float
    margin_mm: float
    covers_tumour: bool
    covers_tumour_and_margin: bool
    heat_sink_warning: bool
    heat_sink_diameter_mm: float
    heat_sink_vessels: list[HeatSinkVessel] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {
            "centre_index": list(self.centre_index),
            "centre_mm": list(self.centre_mm),
            "radius_mm": self.radius_mm,
            "radius_fitted": self.radius_fitted,
            "zone_ml": self.zone_ml,
            "ablated_liver_ml": self.ablated_liver_ml,
            "tumour_extent_mm": self.tumour_extent_mm,
            "min_coverage_margin_mm": self.min_coverage_margin_mm,
            "margin_mm": self.margin_mm,
            "covers_tumour": self.covers_tumour,
            "covers_tumour_and_margin": self.covers_tumour_and_margin,
            "heat_sink_warning": self.heat_sink_warning,
            "heat_sink_diameter_mm": self.heat_sink_diameter_mm,
            "heat_sink_vessels": [v.to_dict() for v in self.heat_sink_vessels],
        }


def ablation_zone(
    *,
    tumour: np.ndarray,
    spacing_mm,
    radius_mm: float | None = None,
    margin_mm: float = DEFAULT_ABLATION_MARGIN_MM,
    centre_index=None,
    liver: np.ndarray | None = None,
    portal: np.ndarray | None = None,
    hepatic: np.ndarray | None = None,
    params: AblationParams = AblationParams(),
) -> AblationZone:
    """A spherical ablation zone around one tumour: coverage, volume, heat-sink warning.

    Parameters
    ----------
    tumour : ndarray of bool, shape (nx, ny, nz)
        The tumour to ablate (one instance), canonical RAS+ (axis 0 → Right, 1 → Anterior,
        2 → Superior).
    spacing_mm : sequence of 3 float
        Voxel spacing along the array axes, mm.
    radius_mm : float, optional
        Zone radius (``ablate:2@15`` → 15). ``None``: fitted to the tumour's extent + ``margin_mm``.
    margin_mm : float
        Ablative margin required around the tumour, mm (default 5).
    centre_index : sequence of 3 float, optional
        Zone centre in voxel indices; default the tumour's centroid.
    liver : ndarray of bool, optional
        Liver mask: the zone's fraction is restricted to it and ``ablated_liver_ml`` reported.
    portal, hepatic : ndarray of bool, optional
        Vessel masks searched for heat sinks (``hepatic`` may include the IVC).
    params : AblationParams
        The heat-sink diameter (3 mm) and the vessel search box.

    Returns
    -------
    AblationZone

    Raises
    ------
    InputError
        ``radius_mm`` ≤ 0 or not finite, ``margin_mm`` < 0, an empty tumour, a centre outside the
        array, shapes that differ, a bad spacing.
    """
    spacing = check_spacing_mm(spacing_mm)
    tumour = np.asarray(tumour).astype(bool, copy=False)
    for name, arr in (("liver", liver), ("portal", portal), ("hepatic", hepatic)):
        if arr is not None and np.shape(arr) != tumour.shape:
            raise InputError(f"{name}: shape {np.shape(arr)} differs from the tumour's {tumour.shape}; "
                             "give every mask on one grid.")
    if radius_mm is not None and not (_real(radius_mm) and radius_mm > 0):
        raise InputError(f"ablation radius_mm must be a distance > 0 mm (e.g. 'ablate:2@15'), got {radius_mm!r}")
    if not (_real(margin_mm) and 0 <= margin_mm < 100):
        raise InputError(f"ablation margin_mm must be a distance >= 0 mm, got {margin_mm!r}")
    if not tumour.any():
        raise InputError("tumour: the tumour mask is empty; pick a tumour id present in the tumour map")
    centre = _zone_centre(tumour, centre_index)
    extent = _TumourExtent.measure(tumour, centre, spacing, margin_mm)
    fitted = radius_mm is None
    radius = extent.extent_mm + float(margin_mm) if fitted else float(radius_mm)
    zone = _ZoneBox.around(centre, max(radius, extent.extent_mm + margin_mm) + 2 * max(spacing)
                           + params.vessel_search_pad_mm, tumour.shape, spacing)
    frac = zone.fraction(radius)
    if liver is not None:
        frac *= np.asarray(liver)[zone.box] > 0
    full = np.zeros(tumour.shape, np.float32)
    full[zone.box] = frac
    vessels = _heat_sinks(zone, extent, tumour, radius, margin_mm, {"portal": portal, "hepatic": hepatic},
                          params.heat_sink_diameter_mm)
    coverage = radius - extent.extent_mm
    return AblationZone(
        fraction=full,
        centre_index=tuple(round(float(v), 3) for v in centre),
        centre_mm=tuple(round(float(v * s), 3) for v, s in zip(centre, spacing)),
        radius_mm=radius,
        radius_fitted=fitted,
        zone_ml=4.0 / 3.0 * math.pi * radius**3 / MM3_PER_ML,
        ablated_liver_ml=float(frac.sum(dtype=np.float64)) * voxel_volume_ml(spacing) if liver is not None else None,
        tumour_extent_mm=extent.extent_mm,
        min_coverage_margin_mm=coverage,
        margin_mm=float(margin_mm),
        covers_tumour=coverage >= 0.0,
        covers_tumour_and_margin=coverage >= float(margin_mm) - 1e-9,
        heat_sink_warning=bool(vessels),
        heat_sink_diameter_mm=float(params.heat_sink_diameter_mm),
        heat_sink_vessels=vessels,
    )


def _zone_centre(tumour: np.ndarray, centre_index) -> np.ndarray:
    """The zone's centre in voxel indices: ``centre_index`` checked, or the tumour's centroid."""
    if centre_index is None:
        return np.argwhere(tumour).mean(axis=0)
    centre = np.asarray(centre_index, float)
    if centre.shape != (3,) or not np.all((centre >= -0.5) & (centre <= np.array(tumour.shape) - 0.5)):
        raise InputError(f"centre_index must be 3 voxel indices inside the array {tumour.shape}, got {centre_index!r}")
    return centre


@dataclass(frozen=True, eq=False)
class _TumourExtent:
    """The tumour's smooth-surface signed distance (mm) on its padded box, and its extent ``R_t``
    from the zone's centre (mm)."""

    box: tuple[slice, ...]
    signed_mm: np.ndarray
    extent_mm: float

    @classmethod
    def measure(cls, tumour, centre, spacing, margin_mm) -> _TumourExtent:
        tpad = [int(np.ceil(2 * max(spacing) / s)) + 2 for s in spacing]
        box = padded_box(bounding_box(tumour), tpad, tumour.shape)
        from .surface import surface_distance  # scipy's ndimage and spatial: only ablations need them

        signed = surface_distance(tumour[box], spacing_mm=spacing, band_mm=float(margin_mm) + 2 * max(spacing),
                                  depth_mm=max(spacing)).distance_mm
        pts = np.argwhere(tumour[box])
        d_t = np.linalg.norm((pts + [b.start for b in box] - centre) * np.asarray(spacing), axis=1)
        return cls(box, signed, float((d_t - signed[tuple(pts.T)]).max()))


@dataclass(frozen=True, eq=False)
class _ZoneBox:
    """The work box around the zone's centre: its slices, first voxel, and each voxel's distance
    from the centre and extent along the radial direction (mm)."""

    box: tuple[slice, ...]
    origin: np.ndarray
    distance_mm: np.ndarray
    width_mm: np.ndarray
    spacing_mm: tuple[float, float, float]

    @classmethod
    def around(cls, centre, reach_mm: float, shape, spacing) -> _ZoneBox:
        sp = np.asarray(spacing)
        lo = np.floor(centre - reach_mm / sp).astype(int)
        hi = np.ceil(centre + reach_mm / sp).astype(int) + 1
        box = tuple(slice(max(int(a), 0), min(int(b), n)) for a, b, n in zip(lo, hi, shape))
        origin = np.array([b.start for b in box])
        grids = np.ogrid[tuple(slice(0, b.stop - b.start) for b in box)]
        rel = [(g + o - c) * s for g, o, c, s in zip(grids, origin, centre, sp)]
        dist = np.sqrt(rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            width = sum(s * np.abs(r) for s, r in zip(sp, rel)) / dist
        return cls(box, origin, dist, np.where(dist > 0, width, sp.mean()), spacing)

    def fraction(self, radius_mm: float) -> np.ndarray:
        """Share of each voxel inside the sphere (the linear ramp of the module notes)."""
        w = self.width_mm
        return np.clip((radius_mm + 0.5 * w - self.distance_mm) / w, 0.0, 1.0).astype(np.float32)


def _heat_sinks(zone: _ZoneBox, extent: _TumourExtent, tumour, radius_mm, margin_mm, trees: dict,
                diameter_mm: float) -> list[HeatSinkVessel]:
    """Vessel pieces at least ``diameter_mm`` wide within the zone or the tumour's margin, nearest first."""
    box, spacing = zone.box, zone.spacing_mm
    tumour_mm = np.full(zone.distance_mm.shape, np.inf, np.float32)  # signed distance to the tumour, mm
    inner = tuple(slice(t.start - b.start, t.stop - b.start) for t, b in zip(extent.box, box))
    if all(i.start >= 0 and i.stop <= b.stop - b.start for i, b in zip(inner, box)):
        tumour_mm[inner] = extent.signed_mm
    outside_t = ~np.isfinite(tumour_mm)
    if outside_t.any():  # beyond the tumour's small box: distance to its voxels' surface
        tumour_mm[outside_t] = (edt_mm(~tumour[box], spacing_mm=spacing)
                                - 0.5 * min(spacing))[outside_t]
    region = (zone.distance_mm <= radius_mm) | (tumour_mm <= margin_mm)
    vessels = []
    for tree, mask in trees.items():
        if mask is not None:
            vessels += _thick_pieces(tree, np.asarray(mask)[box] > 0, region, tumour_mm, spacing,
                                     diameter_mm, zone.origin)
    vessels.sort(key=lambda v: v.min_distance_to_tumour_mm)
    return vessels


def _thick_pieces(tree, vessel, region, tumour_mm, spacing, diameter_mm, origin):
    if not (vessel & region).any():
        return []
    wall = edt_mm(vessel, spacing_mm=spacing)
    r = 0.5 * (diameter_mm + min(spacing))
    if not (wall >= r).any():
        return []
    # local radius: the largest t whose opening (union of balls of radius t centred where the wall
    # is ≥ t away) holds the voxel, t on a grid of half the finest spacing
    local = np.zeros(vessel.shape, np.float32)
    step = 0.5 * min(spacing)
    for t in np.arange(r, float(wall.max()) + step, step):
        centres = wall >= t
        if not centres.any():
            break
        inside = (edt_mm(~centres, spacing_mm=spacing) <= t) & vessel & region
        if not inside.any():
            break
        local[inside] = t
    hit = local > 0
    if not hit.any():
        return []
    lab, n = cc3d.connected_components(hit, connectivity=26, return_N=True)
    out = []
    for k in range(1, n + 1):
        m = lab == k
        pts = np.argwhere(m)
        c = pts.mean(axis=0) + origin
        out.append(HeatSinkVessel(
            tree=tree,
            voxels=int(len(pts)),
            max_diameter_mm=round(max(0.0, 2.0 * float(local[m].max()) - min(spacing)), 3),
            min_distance_to_tumour_mm=round(max(0.0, float(tumour_mm[m].min())), 3),
            centroid_index=tuple(round(float(v), 2) for v in c),
            centroid_mm=tuple(round(float(v * s), 2) for v, s in zip(c, spacing)),
        ))
    return out


def _real(value) -> bool:
    try:
        return math.isfinite(float(value)) and not isinstance(value, bool)
    except (TypeError, ValueError):
        return False




