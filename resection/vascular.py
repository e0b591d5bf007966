"""Vascular consequences of a resection: devascularised (portal) and congested (hepatic) liver.

A cut through a portal branch kills the liver that branch feeds; a cut through a hepatic vein
congests the liver it drains. :func:`vascular_consequences` finds, after a planned resection, the
portal-vein voxels no longer connected to the portal root and the hepatic-vein voxels no longer
connected to the inferior vena cava (IVC), and the remnant liver they serve.

Arrays are canonical RAS+ (index axis 0 → patient Right, 1 → Anterior, 2 → Superior), all on one
grid, with ``spacing_mm`` in the same axis order. Positions in the results are voxel indices of
the full array and millimetres of the array frame (``index × spacing_mm``); nothing here knows
world coordinates. Nothing here reads files.

Method
------
1. **Crop** everything to the liver's bounding box enlarged by ``crop_pad_mm``.
2. **Which vessel voxels the resection cuts.** Vessel masks are often carved out of the liver mask
   (IRCADb: about 80 % of the portal voxels lie outside the liver mask), so a vessel voxel is
   *intrahepatic* when it lies in the liver mask or when the liver is about as close as the
   vessel's own wall: ``d_liver ≤ d_wall + max(spacing)``, with ``d_liver`` the distance (mm) to
   the nearest liver voxel and ``d_wall`` the distance to the nearest non-vessel voxel. A tube
   embedded in parenchyma passes at every voxel; the extrahepatic trunk, surrounded by fat, fails
   at its core. An intrahepatic vessel voxel is cut when its nearest liver voxel (itself, when it
   is liver) is resected (``resected_fraction ≥ 0.5``). Root voxels are never cut (the surgeon
   divides branches, not the portal trunk or the cava). Inside the ``anatomical`` part of a
   resection a vessel voxel is divided only when most of the liver its downstream part serves
   (shortest-path tree from the root over the vessel voxels; nearest-vessel territories) is
   removed: the surgeon ligates the pedicle of the removed territory and keeps the trunk, the
   bifurcation and the branches to the remnant even where a segment plane crosses them (on
   IRCADb 02 the reference's right hemiliver contains the portal bifurcation: without this rule a
   right hepatectomy detached the whole left portal vein, 379 mL). A kept stretch that still
   hangs on a divided pedicle goes with the resection.
3. **Roots.** Portal: ``portal_root`` if given, else the largest 26-connected piece of the
   *extrahepatic* portal voxels in the crop (trunk and its mesenteric/splenic tributaries); if the
   portal mask has no extrahepatic part, the ball of the portal's largest inscribed sphere. IVC:
   ``ivc`` if given, else the largest piece of the hepatic mask's *opening* with a ball of radius
   ``0.7 ×`` the mask's largest inscribed radius (the IVC is the thickest vein; its core stays
   connected along its length), or ``ivc_core_radius_mm`` when given.
4. **Disconnected pieces.** Voxels connected (26-neighbourhood) to the root before the cut but not
   after, and not themselves cut. Pieces already detached from the root before the cut (mask
   fragments) are ignored: the cut did not detach them.
5. **Territories.** Every remnant liver voxel goes to its nearest vessel voxel of the tree *before*
   the cut (scipy ``distance_transform_edt(return_indices=True)``, mm). It is devascularised
   (portal) or congested (hepatic) when that vessel voxel is in a *detached* piece (kept, but no
   longer connected to the root) or in a *transected* stretch: a vessel stretch removed by a
   non-anatomical cut (a wedge, an ablation) that severs the vessel (it touches a detached piece);
   its side branches fed the parenchyma around the cut
   too. Vessels removed by the ``anatomical`` part of a resection count only through what they
   detach: an anatomical resection follows the territories by intent (the surgeon divides the
   pedicle and cuts along the ischaemic line), and counting the parenchyma between a reference
   segment plane and the nearest-vessel boundary would charge the plan for a segmentation
   disagreement (on IRCADb 01 that would be 48 mL of segment IV after a right hepatectomy).
   Volumes weight each voxel by its kept share ``1 − resected_fraction`` and leave tumour voxels
   out, so ``remnant_ml − devascularised_ml`` is the functional remnant that keeps its inflow.

The vessel diameter of a piece is ``2 × max d_wall − min(spacing)``: ``d_wall`` at a voxel centre
overestimates the radius by about half a voxel (the wall lies half a voxel before the first
non-vessel voxel centre).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import cc3d
import edt
import numpy as np
from scipy import ndimage

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError

from hepatoplan.arrays import bounding_box, padded_box
from hepatoplan.units import voxel_volume_ml

from .volumetry import boundary_voxels, nearest_in_set

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class VascularParams:
    """Constants of :func:`vascular_consequences` (today's values are the defaults).

    Attributes
    ----------
    ivc_core_fraction : float
        The IVC core is the hepatic mask's opening with a ball of this fraction (0-1) of the mask's
        largest inscribed radius: the IVC is the thickest vein, and at 0.7 its core stays one
        connected piece along its length while the hepatic-vein trunks (at most about 0.6 of the
        IVC's radius) fall away. Set by hand on the phantom and IRCADb 01 (not fitted).
    ivc_core_radius_mm : float or None
        Radius (mm) of that ball instead of the fraction (an IVC of known size).
    crop_pad_mm : float
        Margin (mm) around the liver's bounding box kept for the analysis: room for the
        extrahepatic portal trunk and the IVC next to the liver, where the roots are found.
    """

    ivc_core_fraction: float = 0.7
    ivc_core_radius_mm: float | None = None
    crop_pad_mm: float = 20.0

    def __post_init__(self):
        if not (np.isfinite(self.crop_pad_mm) and self.crop_pad_mm >= 0):
            raise InputError(f"crop_pad_mm must be a distance >= 0 in mm, got {self.crop_pad_mm!r}")
        r = self.ivc_core_radius_mm
        if r is not None and not (np.isfinite(r) and r > 0):
            raise InputError(f"ivc_core_radius_mm must be > 0 mm, got {r!r}")
        if not (np.isfinite(self.ivc_core_fraction) and 0 < self.ivc_core_fraction <= 1):
            raise InputError(f"ivc_core_fraction must lie in (0, 1], got {self.ivc_core_fraction!r}")


@dataclass(frozen=True, eq=False)
class VesselRoots:
    """Explicit roots of the trees: any voxels of the portal trunk (``portal``) or of the IVC
    (``ivc``), boolean masks on the liver's grid; ``None`` lets :func:`vascular_consequences` find
    them (see the module notes)."""

    portal: np.ndarray | None = None
    ivc: np.ndarray | None = None


@dataclass(frozen=True)
class VesselPiece:
    """A piece of a vessel tree that a resection disconnects from its root.

    Attributes
    ----------
    tree : str
        ``"portal"`` or ``"hepatic"``.
    kind : str
        ``"detached"``: kept vessel no longer connected to its root; ``"transected"``: a vessel
        stretch removed by a non-anatomical cut that severs the vessel (its side territory outside
        the cut loses its supply too). A cut that only grazes a vessel wall or takes a vessel's
        tip detaches nothing and is not counted.
    voxels : int
        Vessel voxels in the piece.
    volume_ml : float
        Vessel volume of the piece, mL.
    max_diameter_mm : float
        Largest vessel diameter along the piece (see the module notes), mm.
    centroid_index : tuple of 3 float
        Centroid, voxel indices of the full canonical RAS+ array.
    centroid_mm : tuple of 3 float
        Centroid in mm of the array frame (``index × spacing_mm``), not world coordinates.
    territory_ml : float
        Functional remnant liver served by this piece (devascularised or congested), mL.
    segment : int or None
        Couinaud segment holding most of the territory (when ``segments`` was given).
    """

    tree: str
    kind: str
    voxels: int
    volume_ml: float
    max_diameter_mm: float
    centroid_index: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    territory_ml: float
    segment: int | None = None

    def to_dict(self) -> dict:
        return {
            "tree": self.tree,
            "kind": self.kind,
            "voxels": self.voxels,
            "volume_ml": self.volume_ml,
            "max_diameter_mm": self.max_diameter_mm,
            "centroid_index": list(self.centroid_index),
            "centroid_mm": list(self.centroid_mm),
            "territory_ml": self.territory_ml,
            "segment": self.segment,
        }


@dataclass(frozen=True, eq=False)
class VascularConsequences:
    """Outcome of :func:`vascular_consequences`.

    Attributes
    ----------
    devascularised, congested : ndarray of bool or None
        Remnant liver voxels (full array) whose portal inflow / hepatic outflow the resection cut;
        ``None`` when the corresponding vessel mask was not given.
    devascularised_ml, congested_ml : float or None
        Their functional volume (tumours excluded, each voxel weighted by its kept share), mL;
        ``None`` (not 0) when the vessel mask was not given.
    devascularised_or_congested_ml : float or None
        Volume of the union, mL (``None`` unless both masks were given).
    portal_pieces, hepatic_pieces : list of VesselPiece
        The disconnected pieces, largest territory first.
    portal_cut_voxels, hepatic_cut_voxels : int
        Vessel voxels inside the resection.
    portal_root_voxels, ivc_voxels : int
        Size of the roots used (0 when the mask was not given).
    notes : list of str
        How the roots were found, and anything the caller should know.
    """

    devascularised: np.ndarray | None
    congested: np.ndarray | None
    devascularised_ml: float | None
    congested_ml: float | None
    devascularised_or_congested_ml: float | None
    portal_pieces: list[VesselPiece] = field(default_factory=list)
    hepatic_pieces: list[VesselPiece] = field(default_factory=list)
    portal_cut_voxels: int = 0
    hepatic_cut_voxels: int = 0
    portal_root_voxels: int = 0
    ivc_voxels: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready summary (no arrays)."""
        return {
            "devascularised_ml": self.devascularised_ml,
            "congested_ml": self.congested_ml,
            "devascularised_or_congested_ml": self.devascularised_or_congested_ml,
            "portal_pieces": [p.to_dict() for p in self.portal_pieces],
            "hepatic_pieces": [p.to_dict() for p in self.hepatic_pieces],
            "portal_cut_voxels": self.portal_cut_voxels,
            "hepatic_cut_voxels": self.hepatic_cut_voxels,
            "portal_root_voxels": self.portal_root_voxels,
            "ivc_voxels": self.ivc_voxels,
            "notes": list(self.notes),
        }


def vascular_consequences(
    *,
    liver: np.ndarray,
    resected: np.ndarray,
    spacing_mm,
    portal: np.ndarray | None = None,
    hepatic: np.ndarray | None = None,
    tumours: np.ndarray | None = None,
    segments: np.ndarray | None = None,
    anatomical: np.ndarray | None = None,
    roots: VesselRoots = VesselRoots(),
    params: VascularParams = VascularParams(),
) -> VascularConsequences:
    """Liver devascularised and congested by a resection (nearest-branch territories).

    Parameters
    ----------
    liver : ndarray of bool, shape (nx, ny, nz)
        Liver mask (tumours inside count as liver), canonical RAS+ (axis 0 → Right,
        1 → Anterior, 2 → Superior).
    resected : ndarray of bool or float, same shape
        The resection: a mask, or the fraction (0-1) of each voxel removed (as
        ``ResectionResult.resected_fraction``); a voxel is removed when its fraction is ≥ 0.5.
    spacing_mm : sequence of 3 float
        Voxel spacing along the array axes, mm.
    portal, hepatic : ndarray of bool, optional
        Portal-vein and hepatic-vein masks (``hepatic`` may include the IVC, as IRCADb's venous
        system does). At least one is required.
    tumours : ndarray of int, optional
        Tumour labels (0 = none); tumour voxels are left out of the volumes.
    segments : ndarray of int, optional
        Couinaud segments, only to name the segment of each piece's territory.
    anatomical : ndarray of bool, optional
        The part of ``resected`` removed as whole Couinaud segments. Vessels removed there count
        only through the branches their removal detaches (an anatomical resection follows the
        territories, its plane is not a cut through them); vessels removed elsewhere (wedges,
        ablations) also count their own territory outside the cut. Default: no anatomical part.
    roots : VesselRoots
        Explicit roots (any voxels of the portal trunk / of the IVC); found automatically otherwise
        (see the module notes).
    params : VascularParams
        The IVC core's ball and the crop margin.

    Returns
    -------
    VascularConsequences

    Raises
    ------
    InputError
        Shapes that differ, a bad spacing, no vessel mask, a resected fraction outside 0-1, an
        empty liver, or a given root with no voxel in its vessel mask.
    """
    spacing = check_spacing_mm(spacing_mm)
    liver = np.asarray(liver).astype(bool, copy=False)
    arrays = {"resected": resected, "anatomical": anatomical, "portal": portal, "hepatic": hepatic, "tumours": tumours,
              "segments": segments, "portal_root": roots.portal, "ivc": roots.ivc}
    for name, arr in arrays.items():
        if arr is not None and np.shape(arr) != liver.shape:
            raise InputError(
                f"{name}: shape {np.shape(arr)} differs from the liver's {liver.shape}; give every "
                "mask on the liver's grid (resample the masks first)."
            )
    if portal is None and hepatic is None:
        raise InputError("vascular_consequences needs a portal-vein mask, a hepatic-vein mask, or both")
    if not liver.any():
        raise InputError("liver: the liver mask is empty")
    ctx = _LiverCrop.make(liver, _resected_fraction(resected), anatomical, tumours, segments, spacing,
                          params.crop_pad_mm)
    notes: list[str] = []
    results = {}
    for tree, vessel, root in (("portal", portal, roots.portal), ("hepatic", hepatic, roots.ivc)):
        if vessel is not None:
            vessel_c = np.ascontiguousarray(np.asarray(vessel)[ctx.box] > 0)
            root_c = None if root is None else np.asarray(root)[ctx.box] > 0
            results[tree] = _analyse_tree(tree, vessel_c, root_c, ctx, params, notes)
    return _consequences(results.get("portal"), results.get("hepatic"), ctx, liver.shape, notes)


@dataclass(frozen=True, eq=False)
class _LiverCrop:
    """The liver's box (+ ``crop_pad_mm``) and what every tree's analysis reads there.

    ``box`` are the slices of the full array; every array is cropped to it. ``inner`` is the
    liver's own box (+ 3 voxels) within the crop, where the territories are computed.
    """

    box: tuple[slice, ...]
    liver: np.ndarray
    liver_mm: np.ndarray  # distance to the nearest liver voxel, mm (0 inside)
    liver_surface: np.ndarray  # (n, 3) crop indices of the liver's boundary voxels
    removed: np.ndarray  # resected fraction >= 0.5
    anatomical: np.ndarray  # removed as whole segments
    kept_share: np.ndarray  # float32: 1 - resected fraction in the liver, 0 on tumours and outside
    segments: np.ndarray | None
    inner: tuple[slice, ...]
    spacing_mm: tuple[float, float, float]
    unit_ml: float

    @classmethod
    def make(cls, liver, fraction, anatomical, tumours, segments, spacing, crop_pad_mm) -> _LiverCrop:
        pad = [int(np.ceil(crop_pad_mm / s)) + 1 for s in spacing]
        box = padded_box(bounding_box(liver), pad, liver.shape)
        liver_c = liver[box]
        frac_c = fraction[box].astype(np.float32, copy=False)
        removed_c = frac_c >= 0.5
        anatomical_c = (np.zeros(liver_c.shape, bool) if anatomical is None
                        else np.asarray(anatomical)[box].astype(bool) & removed_c)
        kept_share = np.where(liver_c, 1.0 - np.clip(frac_c, 0.0, 1.0), 0.0).astype(np.float32)
        if tumours is not None:
            kept_share[np.asarray(tumours)[box] > 0] = 0.0
        return cls(
            box=box, liver=liver_c,
            liver_mm=edt.edt(~liver_c, anisotropy=spacing, black_border=False),
            liver_surface=np.argwhere(boundary_voxels(liver_c)),  # nearest liver voxel of outside vessels
            removed=removed_c, anatomical=anatomical_c, kept_share=kept_share,
            segments=None if segments is None else np.asarray(segments)[box],
            # territories are computed on the liver's own box (+ 3 voxels): cheaper, and a vessel
            # voxel farther than that cannot be the nearest one for most liver voxels
            inner=padded_box(bounding_box(liver_c), [3, 3, 3], liver_c.shape),
            spacing_mm=spacing, unit_ml=voxel_volume_ml(spacing),
        )

    @property
    def offset(self) -> np.ndarray:
        return np.array([b.start for b in self.box])


@dataclass(frozen=True, eq=False)
class _TreeOutcome:
    """One tree's analysis on the crop."""

    territory: np.ndarray  # bool, remnant liver served by the disconnected pieces
    ml: float
    pieces: list[VesselPiece]
    cut_voxels: int
    root_voxels: int


def _consequences(p: _TreeOutcome | None, h: _TreeOutcome | None, ctx: _LiverCrop, shape, notes
                  ) -> VascularConsequences:
    """The trees' outcomes on the full array."""

    def full(outcome):
        if outcome is None:
            return None
        out = np.zeros(shape, bool)
        out[ctx.box] = outcome.territory
        return out

    union_ml = None
    if p is not None and h is not None:
        union_ml = float(ctx.kept_share[p.territory | h.territory].sum(dtype=np.float64)) * ctx.unit_ml
    return VascularConsequences(
        devascularised=full(p),
        congested=full(h),
        devascularised_ml=None if p is None else p.ml,
        congested_ml=None if h is None else h.ml,
        devascularised_or_congested_ml=union_ml,
        portal_pieces=[] if p is None else p.pieces,
        hepatic_pieces=[] if h is None else h.pieces,
        portal_cut_voxels=0 if p is None else p.cut_voxels,
        hepatic_cut_voxels=0 if h is None else h.cut_voxels,
        portal_root_voxels=0 if p is None else p.root_voxels,
        ivc_voxels=0 if h is None else h.root_voxels,
        notes=notes,
    )


def _analyse_tree(tree: str, vessel_c, root_c, ctx: _LiverCrop, params: VascularParams, notes) -> _TreeOutcome:
    """Cut, disconnected pieces and their territories for one vessel tree (see the module notes)."""
    if not vessel_c.any():
        notes.append(f"{tree}: no vessel voxel near the liver; nothing to cut")
        return _TreeOutcome(np.zeros(ctx.liver.shape, bool), 0.0, [], 0, 0)
    spacing = ctx.spacing_mm
    wall_mm = edt.edt(vessel_c, anisotropy=spacing, black_border=False).astype(np.float32)
    intra, (nearest_removed, nearest_anatomical) = _intrahepatic(vessel_c, wall_mm, ctx)
    root = _tree_root(tree, vessel_c, root_c, intra, wall_mm, spacing, params, notes)
    before = _connected_to(vessel_c, root)
    cut, nearest_idx = _divided(tree, vessel_c & intra & nearest_removed & ~root, nearest_anatomical, before,
                                vessel_c, root, ctx, notes)
    after = _connected_to(vessel_c & ~cut, root)
    disconnected = before & ~cut & ~after
    n_cut = int(np.count_nonzero(cut & before))
    if not disconnected.any():
        return _TreeOutcome(np.zeros(ctx.liver.shape, bool), 0.0, [], n_cut, int(root.sum()))
    # vessel stretches a non-anatomical cut removes *and* thereby severs (they touch a detached
    # piece): their side territory outside the cut loses its supply too. A cut that only grazes a
    # vessel wall, or takes a tip, detaches nothing and costs nothing here.
    pieces_lab, n_detached = _pieces(disconnected, cut & before & ~nearest_anatomical)
    owner = _territory_owner(pieces_lab, vessel_c, nearest_idx, ctx)
    territory = owner > 0
    pieces, total_ml = _describe_pieces(tree, pieces_lab, n_detached, owner, wall_mm, ctx)
    return _TreeOutcome(territory, total_ml, pieces, n_cut, int(root.sum()))


def _tree_root(tree, vessel_c, root_c, intra, wall_mm, spacing, params: VascularParams, notes) -> np.ndarray:
    """The given root (checked), or the portal root / the IVC core found in the vessel mask."""
    if root_c is not None:
        root = root_c & vessel_c
        if not root.any():
            raise InputError(
                f"{'portal_root' if tree == 'portal' else 'ivc'}: the given root has no voxel in the "
                f"{tree} mask near the liver; give voxels of the {tree} vessel itself."
            )
        notes.append(f"{tree}: root given by the caller ({int(root.sum())} voxels)")
        return root
    if tree == "portal":
        return _portal_root(vessel_c, intra, wall_mm, spacing, notes)
    return _ivc_core(vessel_c, wall_mm, spacing, params, notes)


def _divided(tree, cut, nearest_anatomical, before, vessel_c, root, ctx: _LiverCrop, notes):
    """The vessel voxels the resection divides, and the nearest-vessel indices of the ``inner``
    box when they were needed (``None`` otherwise).

    An anatomical resection divides a vessel only where what it serves downstream is mostly
    removed (the surgeon ligates the pedicle of the removed territory, not the trunk that also
    feeds the remnant).
    """
    candidates = cut & nearest_anatomical & before
    if not candidates.any():
        return cut, None
    nearest_idx = _nearest_vessel_index(vessel_c, ctx.inner, ctx.spacing_mm)
    share = _downstream_removed_share(vessel_c & before, root & before, ctx.liver, ctx.anatomical,
                                      nearest_idx, ctx.inner, ctx.spacing_mm)
    spared = candidates & (share < 0.5)
    cut = cut & ~spared
    after = _connected_to(vessel_c & ~cut, root)
    # a spared stretch that hangs on a divided pedicle gains nothing: it goes with the resection
    cut |= spared & ~after
    spared &= after
    if spared.any():
        notes.append(f"{tree}: {int(np.count_nonzero(spared))} vessel voxels inside the anatomical "
                     "resection kept: most of what they serve downstream stays")
    return cut, nearest_idx


def _pieces(disconnected, transected) -> tuple[np.ndarray, int]:
    """Label map (int32) of the disconnected pieces: the detached ones (26-connected pieces of
    ``disconnected``) first, then the ``transected`` stretches that touch them; and the number of
    detached pieces."""
    pieces_lab, n_detached = cc3d.connected_components(disconnected, connectivity=26, return_N=True)
    pieces_lab = pieces_lab.astype(np.int32, copy=False)
    if transected.any():
        cut_lab = cc3d.connected_components(transected, connectivity=26)
        dbox = padded_box(bounding_box(disconnected), [1, 1, 1], disconnected.shape)
        touching = ndimage.binary_dilation(disconnected[dbox], structure=np.ones((3, 3, 3), bool))
        severing = np.unique(cut_lab[dbox][touching])
        severing = severing[severing > 0]
        if severing.size:
            relabel = np.zeros(int(cut_lab.max()) + 1, np.int32)
            relabel[severing] = np.arange(1, severing.size + 1) + n_detached
            new = relabel[cut_lab]
            pieces_lab = np.where(new > 0, new, pieces_lab)
    return pieces_lab, n_detached


def _territory_owner(pieces_lab, vessel_c, nearest_idx, ctx: _LiverCrop) -> np.ndarray:
    """The piece (label) owning each remnant liver voxel of the crop: that of its nearest pre-cut
    vessel voxel (0: a vessel voxel not in any piece)."""
    inner, spacing, liver_c = ctx.inner, ctx.spacing_mm, ctx.liver
    # nearest pre-cut vessel voxel of the remnant liver voxels that a piece can serve: none lies
    # farther from the piece than the liver's largest distance to the tree (``reach``)
    if nearest_idx is not None:
        tbox = inner
        owner_t = pieces_lab[inner][tuple(nearest_idx)]
    else:
        gap_mm = edt.edt(~vessel_c[inner], anisotropy=spacing, black_border=False)
        reach = float(gap_mm[liver_c[inner]].max()) if liver_c[inner].any() else 0.0
        del gap_mm
        pbox = bounding_box((pieces_lab > 0)[inner])
        pad = [int(np.ceil(reach / s)) + 2 for s in spacing]
        tbox = padded_box(pbox, pad, liver_c[inner].shape)
        tbox = tuple(slice(i.start + t.start, i.start + t.stop) for i, t in zip(inner, tbox))
        idx = ndimage.distance_transform_edt(~vessel_c[tbox], sampling=spacing, return_distances=False,
                                             return_indices=True)
        owner_t = pieces_lab[tbox][tuple(idx)]
        del idx
    owner = np.zeros(liver_c.shape, pieces_lab.dtype)
    owner[tbox] = np.where(liver_c[tbox] & ~ctx.removed[tbox], owner_t, 0)
    return owner


def _describe_pieces(tree, pieces_lab, n_detached, owner, wall_mm, ctx: _LiverCrop) -> tuple[list[VesselPiece], float]:
    """Each piece's size, diameter, centroid, territory (mL) and segment, largest territory first;
    and the total territory (mL)."""
    spacing, unit_ml = ctx.spacing_mm, ctx.unit_ml
    n_pieces = int(pieces_lab.max())
    territory = owner > 0
    own = owner[territory].astype(np.int64)
    terr_ml = np.bincount(own, weights=ctx.kept_share[territory], minlength=n_pieces + 1) * unit_ml
    seg_counts = None
    if ctx.segments is not None:
        seg_counts = np.bincount(own * 256 + ctx.segments[territory].astype(np.int64),
                                 minlength=(n_pieces + 1) * 256).reshape(n_pieces + 1, 256)
        seg_counts[:, 0] = 0
    counts = np.bincount(pieces_lab.ravel(), minlength=n_pieces + 1)
    pieces = []
    for k, sl in enumerate(ndimage.find_objects(pieces_lab), start=1):
        m = pieces_lab[sl] == k
        full_idx = (np.argwhere(m) + np.array([s.start for s in sl])).mean(axis=0) + ctx.offset
        segment = None
        if seg_counts is not None and seg_counts[k].any():
            segment = int(seg_counts[k].argmax())
        pieces.append(VesselPiece(
            tree=tree, kind="detached" if k <= n_detached else "transected", voxels=int(counts[k]),
            volume_ml=float(counts[k]) * unit_ml,
            max_diameter_mm=round(max(0.0, 2.0 * float(wall_mm[sl][m].max()) - min(spacing)), 3),
            centroid_index=tuple(round(float(v), 2) for v in full_idx),
            centroid_mm=tuple(round(float(v * s), 2) for v, s in zip(full_idx, spacing)),
            territory_ml=float(terr_ml[k]), segment=segment,
        ))
    pieces.sort(key=lambda p: -p.territory_ml)
    return pieces, float(terr_ml[1:].sum())


def _nearest_vessel_index(vessel_c, inner, spacing):
    """Indices (within ``inner``) of the nearest vessel voxel of every voxel of the box ``inner``."""
    return ndimage.distance_transform_edt(~vessel_c[inner], sampling=spacing, return_distances=False,
                                          return_indices=True)


def _downstream_removed_share(tree_mask, root, liver_c, anatomical_c, nearest_idx, inner, spacing):
    """For every voxel of a vessel tree, the removed share of the liver its downstream part serves.

    Downstream = the voxels whose shortest path (26-neighbourhood, mm) to the root passes through
    it; served = the liver voxels whose nearest vessel voxel is there. Voxels serving nothing get
    share 1 (nothing argues for keeping them).
    """
    from scipy import sparse
    from scipy.sparse import csgraph

    nodes = np.argwhere(tree_mask)
    n = len(nodes)
    node_id = np.full(tree_mask.shape, -1, np.int64)
    node_id[tuple(nodes.T)] = np.arange(n)
    rows, cols, weights = [], [], []
    shape = tree_mask.shape
    for off in _FORWARD_OFFSETS:
        src = tuple(slice(max(0, -o), shape[a] - max(0, o)) for a, o in enumerate(off))
        dst = tuple(slice(max(0, o), shape[a] - max(0, -o)) for a, o in enumerate(off))
        a, b = node_id[src], node_id[dst]
        both = (a >= 0) & (b >= 0)
        rows.append(a[both])
        cols.append(b[both])
        weights.append(np.full(int(both.sum()), float(np.linalg.norm(np.asarray(off) * spacing))))
    r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    graph = sparse.coo_matrix((np.r_[w, w], (np.r_[r, c], np.r_[c, r])), shape=(n, n)).tocsr()
    sources = node_id[root]
    sources = sources[sources >= 0]
    dist, pred, _ = csgraph.dijkstra(graph, directed=False, indices=sources, min_only=True,
                                  return_predecessors=True)
    # liver each node serves (all / removed), from the nearest-vessel map of the liver box
    liver_in = liver_c[inner]
    owner = node_id[inner][tuple(nearest_idx)]
    served = liver_in & (owner >= 0)
    total = np.bincount(owner[served], minlength=n).astype(np.float64)
    removed = np.bincount(owner[served & anatomical_c[inner]], minlength=n).astype(np.float64)
    order = np.argsort(-np.where(np.isfinite(dist), dist, -1.0), kind="stable")
    pred = np.where(pred < 0, -1, pred)
    for v in order:  # leaves first: push each node's sums to its predecessor
        p = pred[v]
        if p >= 0:
            total[p] += total[v]
            removed[p] += removed[v]
    with np.errstate(invalid="ignore", divide="ignore"):
        share_nodes = np.where(total > 0, removed / total, 1.0)
    share = np.ones(tree_mask.shape, np.float32)
    share[tuple(nodes.T)] = share_nodes
    return share


_FORWARD_OFFSETS = [(di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1)
                    if (di, dj, dk) > (0, 0, 0)]


def _intrahepatic(vessel_c, wall_mm, ctx: _LiverCrop):
    """Which vessel voxels lie in parenchyma, and whether their nearest liver voxel (the voxel
    itself when it is liver) is removed / removed as whole segments."""
    liver_c, liver_mm, liver_surface, spacing = ctx.liver, ctx.liver_mm, ctx.liver_surface, ctx.spacing_mm
    fields = (ctx.removed, ctx.anatomical)
    intra = vessel_c & liver_c
    values = [vessel_c & f for f in fields]
    if not len(liver_surface):
        return intra, values
    candidates = vessel_c & ~liver_c & (liver_mm <= wall_mm + max(spacing))
    outside = np.argwhere(candidates)
    if len(outside):
        _, k = nearest_in_set(outside, liver_surface, spacing_mm=spacing)
        at = tuple(outside.T)
        near = tuple(liver_surface[k].T)
        intra[at] = True
        for v, f in zip(values, fields):
            v[at] = f[near]
    return intra, values


def _portal_root(vessel_c, intra, wall_mm, spacing, notes):
    extra = vessel_c & ~intra
    if extra.any():
        root = cc3d.largest_k(extra, k=1, connectivity=26) > 0
        notes.append(f"portal: root = the extrahepatic portal vein ({int(np.count_nonzero(root))} voxels)")
        return root
    k = np.unravel_index(int(np.argmax(wall_mm)), wall_mm.shape)
    r = float(wall_mm[k])
    grids = np.ogrid[tuple(slice(0, n) for n in vessel_c.shape)]
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(grids, k, spacing))
    notes.append("portal: no extrahepatic portal voxel; root = the portal's thickest point "
                 f"(radius {r:.1f} mm); give portal_root to be sure")
    return vessel_c & (d2 <= r * r)


def _ivc_core(vessel_c, wall_mm, spacing, params: VascularParams, notes):
    """Largest piece of the opening of the hepatic mask with a ball (the IVC)."""
    r = (params.ivc_core_fraction * float(wall_mm.max()) if params.ivc_core_radius_mm is None
         else float(params.ivc_core_radius_mm))
    centres = wall_mm >= r
    if not centres.any():
        raise InputError(
            f"ivc_core_radius_mm: no part of the hepatic mask is {r:.1f} mm thick (largest inscribed "
            f"radius {float(wall_mm.max()):.1f} mm); give a smaller radius or an IVC mask."
        )
    pad = [int(np.ceil(r / s)) + 1 for s in spacing]
    box = padded_box(bounding_box(centres), pad, centres.shape)  # the opening lies within r of a centre
    opening = np.zeros(vessel_c.shape, bool)
    opening[box] = (edt.edt(~centres[box], anisotropy=spacing, black_border=False) <= r) & vessel_c[box]
    root = cc3d.largest_k(opening, k=1, connectivity=26) > 0
    notes.append(f"hepatic: root = IVC core, the hepatic mask's opening with a {r:.1f} mm ball "
                 f"({int(np.count_nonzero(root))} voxels)")
    return root


def _connected_to(mask, root):
    """Voxels of ``mask`` 26-connected to any voxel of ``root``."""
    lab = cc3d.connected_components(mask, connectivity=26)
    ids = np.unique(lab[root & mask])
    ids = ids[ids > 0]
    if ids.size == 0:
        return np.zeros(mask.shape, bool)
    return np.isin(lab, ids)


def _resected_fraction(resected) -> np.ndarray:
    arr = np.asarray(resected)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"resected: expected a boolean mask or fractions 0-1, found dtype {arr.dtype}")
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    if not (np.isfinite(arr).all() and lo >= 0.0 and hi <= 1.0):
        raise InputError(
            f"resected: fractions must lie in 0-1, found {lo:g} to {hi:g}; pass the resection's "
            "resected_fraction or a boolean mask."
        )
    return arr




