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
   the cut (an exact Euclidean feature transform, mm). It is devascularised
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

Implementation
--------------
Work follows the vessel tree, not the volume, except for one feature transform per tree:

- A tree is its voxels (nodes, in C order) and its bounding box; every mask above (intrahepatic,
  cut, root, connected before / after the cut, pieces) is a boolean per node. Connectivity is
  labelled with cc3d in the tree's box and read at the nodes.
- ``d_liver`` and the nearest liver voxel of a vessel voxel outside the liver come from a KD-tree
  of the liver's boundary voxels (the nearest liver voxel of an outside point is always one), asked
  only about the voxels that blocks of the boundary do not put beyond their ``d_wall + max(spacing)``.
- The downstream rule's shortest-path tree is Dijkstra on the nodes' 26-neighbour graph (edges
  read from an array of node numbers over the tree's box, compiled); the downstream sums are one compiled loop
  over the predecessor tree, from the farthest node back (the liver each node serves downstream, in
  the preparation; the removed part of it, after the resection).
- The nearest vessel voxel of every liver voxel (``inner`` box) is one feature transform
  (:func:`~hepatoplan.nearest_voxel.nearest_voxel`: the same voxels as scipy's
  ``distance_transform_edt(return_indices=True)``, six times faster, answered as node numbers),
  used by the downstream rule and the territories alike. Without the downstream rule it is
  computed only around the disconnected pieces: the pieces' box grown by twice the liver's
  largest distance to the tree, read within once that distance of the box.
- The two trees run in two threads; their feature transforms overlap (compiled without the GIL).
- Everything that does not depend on the resection (the crop, each tree's nodes, wall distances,
  root, connection to the root before the cut, intrahepatic voxels and, for the downstream rule,
  the nearest vessel voxels and the shortest-path tree) is :func:`prepare_vessel_trees`; the rest
  is :func:`consequences_of`. ``plan`` prepares the trees while the Couinaud segments are derived,
  so that only the second half waits for the resection.

``bench/bench_vascular.py`` compares this with the earlier implementation (the whole crop at every
step) on the phantom and IRCADb 01-12.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from functools import cached_property

import cc3d
import numpy as np
from scipy import ndimage

from hepatoplan.checks import check_spacing_mm
from hepatoplan.errors import InputError

from hepatoplan.arrays import bounding_box, padded_box, voxel_indices
from hepatoplan.units import voxel_volume_ml

from hepatoplan.nearest_voxel import compiled, edt_mm, nearest_voxel
from .volumetry import VoxelSet, boundary_voxels

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
        ``None`` when the corresponding vessel mask was not given. Each is made when first read (two
        full-volume arrays: the plan reads the first only when the cut devascularises liver).
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
    full_territory : callable
        ``"portal"`` or ``"hepatic"`` -> that tree's territory as a full boolean array (None without the tree):
        what ``devascularised`` and ``congested`` are made by.
    """

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
    full_territory: Callable[[str], np.ndarray | None] = field(default=lambda tree: None, repr=False)

    @cached_property
    def devascularised(self) -> np.ndarray | None:
        return self.full_territory("portal")

    @cached_property
    def congested(self) -> np.ndarray | None:
        return self.full_territory("hepatic")

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
    trees = prepare_vessel_trees(liver=liver, spacing_mm=spacing_mm, portal=portal, hepatic=hepatic, roots=roots,
                                 params=params, nearest_nodes=False)
    return consequences_of(trees, resected=resected, tumours=tumours, segments=segments, anatomical=anatomical)


@dataclass(frozen=True, eq=False)
class VesselTrees:
    """What :func:`vascular_consequences` computes before it looks at the resection: the crop
    around the liver and, for each given tree, its voxels, wall distances, root, the part connected
    to the root, which voxels are intrahepatic and, when asked, each liver voxel's nearest vessel
    voxel. Made by :func:`prepare_vessel_trees`, read by :func:`consequences_of`; ``plan`` makes it
    while the Couinaud segments are derived, one resection-independent half of the analysis.

    Each part (the crop, each tree) is computed once, by whoever needs it first: :meth:`prepare`
    or :func:`consequences_of`; a caller that finds a part being computed waits for it.
    """

    liver_shape: tuple[int, ...]
    _geometry: _Once
    _trees: tuple[_Once, ...]

    @property
    def geometry(self) -> _LiverGeometry:
        return self._geometry.get()

    @property
    def trees(self) -> tuple[_PreparedTree, ...]:
        return tuple(t.get() for t in self._trees)

    def prepare(self) -> VesselTrees:
        """Compute every part not computed yet."""
        self._geometry.get()
        # the two trees side by side: their feature transforms (compiled without the GIL) overlap
        with ThreadPoolExecutor(max_workers=max(1, len(self._trees))) as pool:
            list(pool.map(_Once.get, self._trees))
        # the liver's boundary voxels and their KD-tree are read only while a tree is prepared
        self._geometry.get().boundary.forget()
        return self


class _Once:
    """A value made by the first caller of :meth:`get` (a caller arriving meanwhile waits for it).
    A failure is not kept: the next caller makes it again, and fails the same way."""

    def __init__(self, make: Callable[[], object]):
        self._make, self._lock, self._done, self._value = make, threading.Lock(), False, None

    def get(self):
        with self._lock:
            if not self._done:
                self._value = self._make()
                self._done = True
            return self._value

    def forget(self) -> None:
        """Drop the value (the next :meth:`get` makes it again)."""
        with self._lock:
            self._done, self._value = False, None


def prepare_vessel_trees(
    *,
    liver: np.ndarray,
    spacing_mm,
    portal: np.ndarray | None = None,
    hepatic: np.ndarray | None = None,
    roots: VesselRoots = VesselRoots(),
    params: VascularParams = VascularParams(),
    nearest_nodes: bool = True,
    deferred: bool = False,
) -> VesselTrees:
    """The resection-independent half of :func:`vascular_consequences` (same parameters).

    ``nearest_nodes``: also each liver voxel's nearest vessel voxel (one feature transform per tree),
    and the shortest-path tree from the root, which the downstream rule of an anatomical resection
    needs when it divides a vessel there; otherwise computed when that happens. ``deferred``: nothing is computed (or checked) now; each part is
    computed by whoever needs it first: :meth:`VesselTrees.prepare` (e.g. in another thread) or
    :func:`consequences_of`.

    Raises
    ------
    InputError
        Shapes that differ, a bad spacing, no vessel mask, an empty liver, or a given root with no
        voxel in its vessel mask (with ``deferred``, when that part is computed).
    """
    liver = np.asarray(liver).astype(bool, copy=False)

    def geometry() -> _LiverGeometry:
        spacing = check_spacing_mm(spacing_mm)
        for name, arr in {"portal": portal, "hepatic": hepatic, "portal_root": roots.portal, "ivc": roots.ivc}.items():
            _check_shape(name, arr, liver.shape)
        if portal is None and hepatic is None:
            raise InputError("vascular_consequences needs a portal-vein mask, a hepatic-vein mask, or both")
        if not liver.any():
            raise InputError("liver: the liver mask is empty")
        return _LiverGeometry.make(liver, spacing, params.crop_pad_mm)

    crop = _Once(geometry)

    def tree_part(item) -> _Once:
        return _Once(lambda: _PreparedTree.make(*item, crop.get(), params, nearest_nodes))

    trees = VesselTrees(liver.shape, crop, tuple(tree_part(item) for item in (
        ("portal", portal, roots.portal), ("hepatic", hepatic, roots.ivc)) if item[1] is not None))
    return trees if deferred else trees.prepare()


def consequences_of(
    trees: VesselTrees,
    *,
    resected: np.ndarray,
    tumours: np.ndarray | None = None,
    segments: np.ndarray | None = None,
    anatomical: np.ndarray | None = None,
    box: tuple[slice, ...] | None = None,
) -> VascularConsequences:
    """:func:`vascular_consequences` of the resection ``resected`` on the prepared ``trees``
    (:func:`prepare_vessel_trees`); the other parameters as there. With ``box`` (slices of the
    liver's grid holding every resected voxel, e.g. ``ResectionResult.box``), ``resected`` and
    ``anatomical`` are given on that box only (their full arrays are 0 / False outside it).

    Raises
    ------
    InputError
        Shapes that differ from the prepared liver's, or a resected fraction outside 0-1.
    """
    on_box = {"resected": resected, "anatomical": anatomical}
    if box is not None:
        box = tuple(slice(*b.indices(n)[:2]) for b, n in zip(box, trees.liver_shape))
        for name, arr in on_box.items():
            _check_shape(name, arr, _shape(box), what="the box's")
    for name, arr in {**(on_box if box is None else {}), "tumours": tumours, "segments": segments}.items():
        _check_shape(name, arr, trees.liver_shape)
    ctx = _LiverCrop.of(trees.geometry, _OnBox.of(_resected_fraction(resected), box),
                        None if anatomical is None else _OnBox.of(anatomical, box), tumours, segments)

    def analyse(part: _Once):  # a tree not prepared yet is prepared here, beside the other
        prepared = part.get()
        notes = list(prepared.notes)
        return _analyse_tree(prepared, ctx, notes), notes

    with ThreadPoolExecutor(max_workers=len(trees._trees)) as pool:
        done = list(pool.map(analyse, trees._trees))
    results = {p.name: outcome for p, (outcome, _) in zip(trees.trees, done)}
    notes = [note for _, tree_notes in done for note in tree_notes]
    return _consequences(results.get("portal"), results.get("hepatic"), ctx, trees.liver_shape, notes)


def _check_shape(name: str, arr, shape, *, what: str = "the liver's") -> None:
    if arr is not None and np.shape(arr) != shape:
        raise InputError(
            f"{name}: shape {np.shape(arr)} differs from {what} {shape}; give every "
            "mask on the liver's grid (resample the masks first)."
        )


@dataclass(frozen=True, eq=False)
class _OnBox:
    """A full array held as its values on ``box`` (``None``: the whole array); 0 / False outside."""

    values: np.ndarray
    box: tuple[slice, ...] | None

    @classmethod
    def of(cls, arr, box) -> _OnBox:
        return cls(np.asarray(arr), box)

    def region(self, region: tuple[slice, ...], mask: np.ndarray, count: int) -> np.ndarray:
        """The values at the ``count`` true voxels of ``mask`` (the shape of the full array's ``region``), in C
        order."""
        if self.box is None:
            return self.values[region][mask]
        cut = tuple(slice(max(r.start, b.start), min(r.stop, b.stop)) for r, b in zip(region, self.box))
        if all(c.stop > c.start for c in cut):
            in_cut = mask[tuple(slice(c.start - r.start, c.stop - r.start) for c, r in zip(cut, region))]
            if np.count_nonzero(in_cut) == count:  # every voxel asked lies in the box
                return self.values[tuple(slice(c.start - b.start, c.stop - b.start) for c, b in zip(cut, self.box))][in_cut]
        return self.at(np.argwhere(mask) + [r.start for r in region])

    def where(self, ijk: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]] | None:
        """Where the full array's voxels ``ijk`` ((n, 3)) lie in ``values``: whether each is inside the box, and
        its indices there (clipped to the box outside it); None without a box."""
        if self.box is None:
            return None
        rel = (ijk - [b.start for b in self.box]).T
        inside = np.logical_and.reduce([(r >= 0) & (r < n) for r, n in zip(rel, self.values.shape)])
        return inside, tuple(np.clip(r, 0, n - 1) for r, n in zip(rel, self.values.shape))

    def at(self, ijk: np.ndarray, where=None) -> np.ndarray:
        """The values at the full array's voxels ``ijk`` ((n, 3)); ``where``: :meth:`where` of them, when known
        (of any array on the same box)."""
        where = self.where(ijk) if where is None else where
        if where is None:
            return self.values[tuple(ijk.T)]
        out = self.values[where[1]]
        out[~where[0]] = 0
        return out


@dataclass(frozen=True, eq=False)
class _LiverGeometry:
    """The crop around the liver and the liver's own box in it.

    ``box`` (slices of the full array) is the liver's box grown by ``crop_pad_mm``: vessels are
    analysed there. ``inner`` (slices of the crop) is the liver's box grown by 3 voxels: the
    territories are computed there. The liver's voxels of ``inner`` are listed once, in C order
    (``liver_flat``). The liver's boundary voxels (``surface``, with their KD-tree and blocks) are
    made when first read (by the first tree that asks which of its voxels lie in parenchyma), so that
    the trees start with the crop and the boundary is made beside the other tree's feature transform.
    """

    box: tuple[slice, ...]
    liver: np.ndarray  # bool, the crop
    inner: tuple[slice, ...]
    in_inner: np.ndarray  # bool, the liver in ``inner``
    liver_flat: np.ndarray  # flat indices (in ``inner``) of its liver voxels
    spacing_mm: tuple[float, float, float]
    boundary: _Once  # -> (surface, surface_blocks)

    @classmethod
    def make(cls, liver, spacing, crop_pad_mm) -> _LiverGeometry:
        pad = [int(np.ceil(crop_pad_mm / s)) + 1 for s in spacing]
        box = padded_box(bounding_box(liver), pad, liver.shape)
        liver_c = liver[box]
        # territories are computed on the liver's own box (+ 3 voxels): a vessel voxel farther
        # than that cannot be the nearest one for most liver voxels
        inner = padded_box(bounding_box(liver_c), [3, 3, 3], liver_c.shape)
        in_inner = liver_c[inner]

        def boundary():  # nearest liver voxel of outside vessels
            surface = voxel_indices(boundary_voxels(liver_c))
            if not len(surface):
                return None, None
            return VoxelSet(surface, spacing_mm=spacing), _Blocks.of(surface, liver_c.shape, spacing)

        return cls(box=box, liver=liver_c, inner=inner, in_inner=in_inner, liver_flat=np.flatnonzero(in_inner),
                   spacing_mm=spacing, boundary=_Once(boundary))

    @property
    def surface(self) -> VoxelSet | None:
        """The liver's boundary voxels (crop indices), with their KD-tree."""
        return self.boundary.get()[0]

    @property
    def surface_blocks(self) -> _Blocks | None:
        """A lower bound of the distance to ``surface``."""
        return self.boundary.get()[1]

    @property
    def offset(self) -> np.ndarray:
        return np.array([b.start for b in self.box])

    def at_liver(self, arr) -> np.ndarray:
        """The values of a full array (or an :class:`_OnBox`) at the liver voxels of ``inner``, in C order."""
        full_inner = tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(self.box, self.inner))
        if isinstance(arr, _OnBox):
            return arr.region(full_inner, self.in_inner, len(self.liver_flat))
        return np.asarray(arr)[full_inner][self.in_inner]


@dataclass(frozen=True, eq=False)
class _Blocks:
    """Blocks of about 2.5 mm and, for each, the distance (mm, float32) from its centre to the centre
    of the nearest block holding one of ``voxels``: less the block's extent, a lower bound of the
    distance from any voxel of the block to any of ``voxels`` (each lies within half the extent of
    its block's centre). Cheap to make (a scatter and a distance map on a grid ~30 × coarser)."""

    size: np.ndarray  # voxels per block along each axis
    distance_mm: np.ndarray
    extent_mm: float  # the farthest two voxel centres of one block are apart

    @classmethod
    def of(cls, voxels: np.ndarray, shape, spacing, *, block_mm: float = 2.5) -> _Blocks:
        spacing = np.asarray(spacing, float)
        size = np.maximum(1, np.round(block_mm / spacing)).astype(int)
        held = np.zeros(-(-np.asarray(shape) // size), bool)
        held[tuple((voxels // size).T)] = True
        return cls(size, edt_mm(~held, spacing_mm=size * spacing), float(np.linalg.norm((size - 1) * spacing)))

    def farther_than(self, ijk: np.ndarray, bound_mm: np.ndarray) -> np.ndarray:
        """Whether each voxel ``ijk`` (n, 3) is certainly farther than ``bound_mm`` (n,) from every one
        of the voxels (1 µm of slack for the float32 distances)."""
        return self.distance_mm[tuple((ijk // self.size).T)] - self.extent_mm > bound_mm + 1e-3


@dataclass(frozen=True, eq=False)
class _PreparedTree:
    """One tree before the resection: its nodes (``t``), which are intrahepatic, where each node's
    resected state is read (``state_ijk``: the node itself, or its nearest liver voxel when it lies
    outside the liver mask but in parenchyma), its root, the nodes connected to the root, and
    (when asked) the nearest node of each liver voxel of ``inner`` with the downstream sums
    (:class:`_Downstream`). ``t`` is None when no vessel
    voxel lies near the liver."""

    name: str
    vessel_c: np.ndarray | None
    t: _Tree | None
    intra: np.ndarray | None
    state_ijk: np.ndarray | None
    root: np.ndarray | None
    before: np.ndarray | None
    downstream: _Downstream | None
    notes: tuple[str, ...]

    @classmethod
    def make(cls, tree, vessel, root_mask, geometry: _LiverGeometry, params: VascularParams,
             nearest_nodes: bool) -> _PreparedTree:
        vessel_c = np.asarray(vessel)[geometry.box]
        # a boolean mask is read through a view of its crop (IRCADb 01: a 17 MB copy per tree, kept through the plan)
        vessel_c = vessel_c if vessel_c.dtype == bool else np.ascontiguousarray(vessel_c > 0)
        if not vessel_c.any():
            return cls(tree, None, None, None, None, None, None, None,
                       (f"{tree}: no vessel voxel near the liver; nothing to cut",))
        notes: list[str] = []
        ijk = voxel_indices(vessel_c)
        # the feature transform first (compiled, without the GIL): it needs neither the wall distances (whose
        # ``edt`` holds the GIL), nor the liver's boundary, nor the root
        nearest = _nearest_nodes(ijk, vessel_c, geometry.inner, geometry) if nearest_nodes else None
        t, wall_box_mm = _Tree.of(vessel_c, geometry.spacing_mm, ijk)
        # the portal root is found among the extrahepatic voxels; the IVC core (or a given root) needs no liver
        # boundary: that tree's intrahepatic voxels come last, when the other tree has likely made the boundary
        intra = _intrahepatic(t, geometry) if tree == "portal" and root_mask is None else None
        root = _tree_root(tree, t, wall_box_mm, root_mask, intra and intra[0], geometry, params, notes)
        del wall_box_mm  # read by the IVC core only (the plan's largest array kept by the trees otherwise)
        downstream = None if nearest is None else _Downstream.make(t, root, nearest)
        before = t.connected_to(np.ones(t.n, bool), root) if downstream is None else downstream.before
        intra, state_ijk = intra or _intrahepatic(t, geometry)
        return cls(tree, vessel_c, t, intra, state_ijk, root, before, downstream, tuple(notes))


@dataclass(frozen=True, eq=False)
class _LiverCrop(_LiverGeometry):
    """What every tree's analysis reads: the liver's geometry (:class:`_LiverGeometry`) and the
    resection at the liver voxels of ``inner`` (C order): resected (fraction ≥ 0.5), removed as
    whole segments, kept share (``1 − fraction``, 0 on tumours) and segment.
    """

    fraction: _OnBox  # float32 or bool
    anatomical_full: _OnBox | None
    removed_at_liver: np.ndarray
    anatomical_at_liver: np.ndarray
    kept_at_liver: np.ndarray  # float32
    segment_at_liver: np.ndarray | None
    unit_ml: float

    @classmethod
    def of(cls, geometry: _LiverGeometry, fraction: _OnBox, anatomical: _OnBox | None, tumours, segments
           ) -> _LiverCrop:
        at_liver = geometry.at_liver
        frac = at_liver(fraction).astype(np.float32, copy=False)
        removed = frac >= 0.5
        kept = (1.0 - np.clip(frac, 0.0, 1.0)).astype(np.float32)
        if tumours is not None:
            kept[at_liver(tumours) > 0] = 0.0
        return cls(
            **{f.name: getattr(geometry, f.name) for f in fields(_LiverGeometry)},
            fraction=fraction, anatomical_full=anatomical,
            removed_at_liver=removed,
            anatomical_at_liver=(np.zeros(len(geometry.liver_flat), bool) if anatomical is None
                                 else at_liver(anatomical).astype(bool) & removed),
            kept_at_liver=kept, segment_at_liver=None if segments is None else at_liver(segments),
            unit_ml=voxel_volume_ml(geometry.spacing_mm),
        )

    def removed_and_anatomical(self, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Whether the voxels ``ijk`` (crop indices, (n, 3)) are resected, and removed as whole segments."""
        at = ijk + self.offset
        where = self.fraction.where(at)  # the resection's arrays share one box
        removed = self.fraction.at(at, where).astype(np.float32, copy=False) >= 0.5
        if self.anatomical_full is None:
            return removed, np.zeros(len(ijk), bool)
        return removed, self.anatomical_full.at(at, where).astype(bool) & removed


def _shape(box) -> tuple[int, ...]:
    return tuple(b.stop - b.start for b in box)


@dataclass(frozen=True, eq=False)
class _TreeOutcome:
    """One tree's analysis: the liver voxels of ``inner`` it makes devascularised / congested
    (``owner > 0``: the label of the piece that served them), their volume and the pieces."""

    owner_at_liver: np.ndarray | None  # int32 per liver voxel of ``inner``; None: nothing
    ml: float
    pieces: list[VesselPiece]
    cut_voxels: int
    root_voxels: int

    def territory_at_liver(self, n: int) -> np.ndarray:
        return np.zeros(n, bool) if self.owner_at_liver is None else self.owner_at_liver > 0


def _consequences(p: _TreeOutcome | None, h: _TreeOutcome | None, ctx: _LiverCrop, shape, notes
                  ) -> VascularConsequences:
    """The trees' outcomes; their territories on the full array made when read (:func:`_full_territory`)."""
    n = len(ctx.liver_flat)
    union_ml = None
    if p is not None and h is not None:
        either = p.territory_at_liver(n) | h.territory_at_liver(n)
        union_ml = float(ctx.kept_at_liver[either].sum(dtype=np.float64)) * ctx.unit_ml
    return VascularConsequences(
        full_territory=_full_territory({"portal": p, "hepatic": h}, ctx, shape),
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


def _full_territory(outcomes: dict[str, _TreeOutcome | None], ctx: _LiverCrop, shape) -> Callable:
    """A function giving a tree's territory (``outcomes[tree]``) as a full boolean array (None without the tree).
    It holds the territories' owners and where the liver voxels lie (shared with the trees), not the rest of
    ``ctx`` nor two full arrays that the plan mostly never reads (IRCADb 01: 34 MB each)."""
    liver_flat, box, inner = ctx.liver_flat, ctx.box, ctx.inner

    def full(tree: str) -> np.ndarray | None:
        outcome = outcomes[tree]
        if outcome is None:
            return None
        out = np.zeros(shape, bool)
        if outcome.owner_at_liver is not None:
            at = np.unravel_index(liver_flat[outcome.territory_at_liver(len(liver_flat))], _shape(inner))
            out[tuple(a + b.start + i.start for a, b, i in zip(at, box, inner))] = True
        return out

    return full


@dataclass(frozen=True, eq=False)
class _Tree:
    """A vessel tree in the crop, as its voxels (nodes, C order) and their box.

    ``ijk`` are crop indices; ``box`` is the tree's bounding box grown by one voxel (clipped to
    the crop), where connectivity is labelled; ``wall_mm`` is each node's distance to the nearest
    non-vessel voxel.
    """

    ijk: np.ndarray
    box: tuple[slice, ...]
    wall_mm: np.ndarray  # float32 per node
    spacing_mm: tuple[float, float, float]

    @classmethod
    def of(cls, vessel_c: np.ndarray, spacing, ijk: np.ndarray) -> tuple[_Tree, np.ndarray]:
        """The tree of the vessel voxels ``ijk`` (``voxel_indices(vessel_c)``), and the distance (mm,
        float32) of every voxel of its ``box`` to the nearest non-vessel voxel, for the caller to drop
        once read (IRCADb 01: 31 MB per tree, kept through the whole plan when the tree held it)."""
        box = tuple(slice(max(int(lo) - 1, 0), min(int(hi) + 2, n))
                    for lo, hi, n in zip(ijk.min(axis=0), ijk.max(axis=0), vessel_c.shape))
        # the nearest non-vessel voxel of a vessel voxel lies in the box (one voxel beyond the
        # vessels' extent is background wherever the crop has it)
        wall = edt_mm(vessel_c[box], spacing_mm=spacing)
        wall = wall.astype(np.float32, copy=False)
        return cls(ijk, box, wall[tuple((ijk - [b.start for b in box]).T)], spacing), wall

    @property
    def n(self) -> int:
        return len(self.ijk)

    def labels(self, keep: np.ndarray) -> np.ndarray:
        """26-connected pieces of the nodes ``keep``: a label per node (0 = not kept), numbered in
        the order of each piece's first voxel (C order), as cc3d numbers them. Labelled in the kept
        nodes' own box (the pieces a cut detaches fill a small part of the tree's): no piece reaches
        beyond it, and a shift keeps the C order of the voxels, so the numbers are the tree box's."""
        lab = np.zeros(self.n, np.int32)
        ijk = self.ijk[keep]
        if len(ijk):
            at = tuple((ijk - ijk.min(axis=0)).T)
            mask = np.zeros([int(a.max()) + 1 for a in at], bool)
            mask[at] = True
            lab[keep] = cc3d.connected_components(mask, connectivity=26)[at]
        return lab

    def connected_to(self, keep: np.ndarray, root: np.ndarray) -> np.ndarray:
        """The nodes of ``keep`` 26-connected to a node of ``root`` through ``keep``."""
        lab = self.labels(keep)
        ids = np.unique(lab[root & keep])
        ids = ids[ids > 0]
        return keep & np.isin(lab, ids) if ids.size else np.zeros(self.n, bool)


def _analyse_tree(p: _PreparedTree, ctx: _LiverCrop, notes) -> _TreeOutcome | None:
    """Cut, disconnected pieces and their territories for one prepared vessel tree (see the module notes)."""
    t = p.t
    if t is None:
        return _TreeOutcome(None, 0.0, [], 0, 0)
    removed, nearest_anatomical = ctx.removed_and_anatomical(p.state_ijk)
    root, before = p.root, p.before
    cut, after, nearest = _divided(p.name, t, p.intra & removed & ~root, nearest_anatomical, before, root,
                                   p.vessel_c, ctx, notes, p.downstream)
    disconnected = before & ~cut & ~after
    n_cut = int(np.count_nonzero(cut & before))
    if not disconnected.any():
        return _TreeOutcome(None, 0.0, [], n_cut, int(root.sum()))
    # vessel stretches a non-anatomical cut removes *and* thereby severs (they touch a detached
    # piece): their side territory outside the cut loses its supply too. A cut that only grazes a
    # vessel wall, or takes a tip, detaches nothing and costs nothing here.
    piece, n_detached = _pieces(t, disconnected, cut & before & ~nearest_anatomical)
    owner = _territory_owner(t, piece, p.vessel_c, nearest, ctx)
    pieces, total_ml = _describe_pieces(p.name, t, piece, n_detached, owner, ctx)
    return _TreeOutcome(owner, total_ml, pieces, n_cut, int(root.sum()))


def _intrahepatic(t: _Tree, geometry: _LiverGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Which vessel voxels lie in parenchyma, and the voxel (crop indices) whose resected state
    each one takes: itself when it is liver, else its nearest liver voxel.

    The distance from a vessel voxel outside the liver to the liver is that to the nearest liver
    boundary voxel (a KD-tree of them, mm), which is also the voxel whose state it takes.
    """
    intra = geometry.liver[tuple(t.ijk.T)]
    outside = np.flatnonzero(~intra)
    if geometry.surface is None or not len(outside):
        return intra, t.ijk
    # the KD-tree is asked only about the voxels the surface's blocks do not already put beyond their bound (most
    # of the extrahepatic trunks: IRCADb 01, 173 k -> 48 k voxels); its full search names the nearest liver voxel
    # (among equidistant ones, the one it finds first) and its distance, the least of them all whatever it names
    bound_mm = t.wall_mm[outside] + max(geometry.spacing_mm)
    if geometry.surface_blocks is not None:
        near = ~geometry.surface_blocks.farther_than(t.ijk[outside], bound_mm)
        outside, bound_mm = outside[near], bound_mm[near]
    liver_mm, k = geometry.surface.nearest(t.ijk[outside])
    within = liver_mm <= bound_mm
    candidates, k = outside[within], k[within]
    intra, state = intra.copy(), t.ijk.copy()
    intra[candidates] = True
    state[candidates] = geometry.surface.voxels[k]
    return intra, state


def _tree_root(tree, t: _Tree, wall_box_mm, root_mask, intra, ctx: _LiverGeometry, params: VascularParams,
               notes) -> np.ndarray:
    """The given root (checked), or the portal root / the IVC core found in the vessel mask (``intra``, the
    intrahepatic nodes, is read for the portal root only; ``wall_box_mm``, as :meth:`_Tree.of` gives it, for
    the IVC core only)."""
    if root_mask is not None:
        root = np.asarray(root_mask)[tuple((t.ijk + ctx.offset).T)] > 0
        if not root.any():
            raise InputError(
                f"{'portal_root' if tree == 'portal' else 'ivc'}: the given root has no voxel in the "
                f"{tree} mask near the liver; give voxels of the {tree} vessel itself."
            )
        notes.append(f"{tree}: root given by the caller ({int(root.sum())} voxels)")
        return root
    if tree == "portal":
        return _portal_root(t, intra, notes)
    return _ivc_core(t, wall_box_mm, params, notes)


def _divided(tree, t: _Tree, cut, nearest_anatomical, before, root, vessel_c, ctx: _LiverCrop, notes,
             downstream: _Downstream | None = None):
    """The vessel voxels the resection divides, those still connected to the root after the cut,
    and each liver voxel's nearest vessel voxel (node index, per liver voxel of ``inner``) when it
    was needed (``None`` otherwise; ``downstream``: the downstream sums with that array, when already made).

    An anatomical resection divides a vessel only where what it serves downstream is mostly
    removed (the surgeon ligates the pedicle of the removed territory, not the trunk that also
    feeds the remnant).
    """
    candidates = cut & nearest_anatomical & before
    if not candidates.any():  # the prepared graph's search, else cc3d's labels: the same nodes
        return cut, (t if downstream is None else downstream).connected_to(~cut, root), None
    if downstream is None:
        downstream = _Downstream.make(t, root, _nearest_nodes(t.ijk, vessel_c, ctx.inner, ctx))
    nearest = downstream.nearest
    share = downstream.removed_share(ctx.anatomical_at_liver)
    spared = candidates & (share < 0.5)
    cut = cut & ~spared
    after = downstream.connected_to(~cut, root)
    # a spared stretch that hangs on a divided pedicle gains nothing: it goes with the resection
    # (cutting voxels that no longer reach the root leaves ``after`` as it is)
    cut |= spared & ~after
    spared &= after
    if spared.any():
        notes.append(f"{tree}: {int(np.count_nonzero(spared))} vessel voxels inside the anatomical "
                     "resection kept: most of what they serve downstream stays")
    return cut, after, nearest


def _nearest_nodes(ijk: np.ndarray, vessel_c, box, ctx: _LiverGeometry, liver_sel=None) -> np.ndarray:
    """Index (into the tree's nodes ``ijk``) of the vessel voxel of the box ``box`` (crop slices) nearest
    to each liver voxel of ``inner`` that lies in ``box`` (``liver_sel``: their positions in
    ``ctx.liver_flat``; default all, ``box`` being ``inner``): one feature transform
    (:func:`~hepatoplan.nearest_voxel.nearest_voxel`, mm). -1 where the box holds no vessel voxel."""
    shape = _shape(box)
    rel = ijk - [b.start for b in box]
    inside = np.flatnonzero(np.all((rel >= 0) & (rel < shape), axis=1)).astype(np.int32)
    if liver_sel is None:  # the liver's voxels of ``inner`` (``box``), in C order as ``liver_flat``
        asking = ctx.liver[ctx.inner]
    else:
        at = np.unravel_index(ctx.liver_flat[liver_sel], _shape(ctx.inner))
        asking = np.zeros(shape, bool)
        asking[tuple(a + i.start - b.start for a, i, b in zip(at, ctx.inner, box))] = True
    if not inside.size:
        return np.full(np.count_nonzero(asking), -1, np.int32)
    # the tree's nodes in the box are its vessel voxels in C order: answers are node numbers there
    return inside[nearest_voxel(vessel_c[box], spacing_mm=ctx.spacing_mm, at=asking)]


@dataclass(frozen=True, eq=False)
class _Downstream:
    """The downstream sums of a vessel tree rooted at ``root``: the nodes' 26-neighbour graph (mm), the
    nodes it joins to the root (``before``), the shortest-path tree from the root (Dijkstra), and the
    liver voxels each node serves (those whose nearest vessel voxel it is; ``nearest`` as
    :func:`_nearest_nodes` gives it) summed downstream of each node.

    Downstream = the voxels whose shortest path to the root passes through a node: its sum is the node's
    own count plus its children's sums, added up from the farthest node back to the root (in order of
    distance from the root every parent comes before its children), one compiled loop
    (:func:`~hepatoplan.nearest_voxel_compiled.subtree_sums`). The counts are whole numbers in float64, so
    any order of the additions gives the same sums (as the triangular solve that gave them before).

    The graph holds every node of the tree: the search never reaches the nodes not joined to the root, and
    for the others it scans the same neighbours in the same order, with the same weights, as on the graph of
    ``before`` alone (where it ran before; the same distances and predecessors, bench/RESULTS.md, trees19).
    """

    indptr: np.ndarray  # the graph (CSR, without its weights): the nodes joined to the root are searched on it
    indices: np.ndarray
    before: np.ndarray  # bool per node: joined to the root
    order: np.ndarray  # the nodes, in order of distance from the root (those not joined to it last)
    parent: np.ndarray  # int32 per node: its parent in the shortest-path tree (< 0: a root, or not joined)
    nearest: np.ndarray
    total: np.ndarray  # float64 per node: liver voxels served downstream

    @classmethod
    def make(cls, t: _Tree, root, nearest) -> _Downstream:
        from scipy.sparse import csgraph

        graph = _voxel_graph(t.ijk, t.spacing_mm)
        # liver voxels served by each node (nearest -1: no vessel voxel in the box)
        served = np.bincount(nearest[nearest >= 0], minlength=t.n).astype(np.float64)
        # ``graph`` holds both directions of every edge with one weight: as a directed graph it is searched
        # as the undirected one (the same relaxations in the same order; the undirected search's second scan
        # of the transpose improves nothing, as only a strictly shorter path replaces a predecessor) without
        # building that transpose (IRCADb 01: 0.09 -> 0.05 s per plan, the same distances and predecessors)
        dist, parent, _ = csgraph.dijkstra(graph, directed=True, indices=np.flatnonzero(root), min_only=True,
                                           return_predecessors=True)
        order = np.argsort(dist, kind="stable")
        # the compiled types; the columns copied out of the graph's buffer sized for 26 neighbours per node
        indptr, indices = graph.indptr.astype(np.int32, copy=False), graph.indices.astype(np.int32, copy=True)
        before = compiled("reached")(indptr, indices, np.ones(t.n, bool), np.flatnonzero(root))
        return cls(indptr, indices, before, order, parent, nearest, compiled("subtree_sums")(order, parent, served))

    def connected_to(self, keep: np.ndarray, root: np.ndarray) -> np.ndarray:
        """The nodes of ``keep`` joined to a node of ``root`` through ``keep`` (as :meth:`_Tree.connected_to`)."""
        return compiled("reached")(self.indptr, self.indices, keep, np.flatnonzero(root))

    def removed_share(self, anatomical_at_liver) -> np.ndarray:
        """For every node of the tree, the removed (``anatomical_at_liver``) share of the liver its
        downstream part serves (float32; 1 off ``before``, and where it serves nothing: nothing
        argues for keeping it)."""
        nearest = self.nearest
        removed = np.bincount(nearest[(nearest >= 0) & anatomical_at_liver], minlength=len(self.before))
        removed = compiled("subtree_sums")(self.order, self.parent, removed.astype(np.float64))
        share = np.ones(len(self.before), np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            share[self.before] = np.where(self.total > 0, removed / self.total, 1.0)[self.before]
        return share


#: The 13 "forward" offsets of the 26-neighbourhood (the other 13 are their negatives).
_FORWARD_OFFSETS = [(di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1)
                    if (di, dj, dk) > (0, 0, 0)]


def _voxel_graph(ijk: np.ndarray, spacing):
    """Symmetric sparse graph (CSR, columns sorted) of voxels ``ijk`` (C order): 26-neighbours
    joined by their distance (mm). Neighbours are read from an array of node numbers over the
    voxels' box, by one compiled loop without the GIL
    (:func:`~hepatoplan.nearest_voxel_compiled.neighbours`)."""
    from scipy import sparse

    n = len(ijk)
    rel = ijk - ijk.min(axis=0) + 1  # one voxel of margin on each side: no neighbour wraps around
    dims = rel.max(axis=0) + 2
    key = (rel[:, 0] * dims[1] + rel[:, 1]) * dims[2] + rel[:, 2]  # increasing (C order)
    # node number + 1 (0: no node) in zeros, whose pages are mapped only where the voxels are written
    number = np.zeros(int(np.prod(dims)), np.int32)
    number[key] = np.arange(1, n + 1, dtype=np.int32)
    forward = [(off[0] * dims[1] + off[1]) * dims[2] + off[2] for off in _FORWARD_OFFSETS]
    forward_mm = [float(np.linalg.norm(np.asarray(off) * spacing)) for off in _FORWARD_OFFSETS]
    # columns in increasing order of key: the backward offsets from the last, then the forward ones
    steps = np.array([-step for step in forward[::-1]] + forward, np.int64)
    indptr, indices, data = np.empty(n + 1, np.int32), np.empty(n * len(steps), np.int32), np.empty(n * len(steps))
    edges = compiled("neighbours")(key.astype(np.int64, copy=False), number, steps,
                                   np.array(forward_mm[::-1] + forward_mm), indptr, indices, data)
    return sparse.csr_array((data[:edges], indices[:edges], indptr), shape=(n, n))


def _pieces(t: _Tree, disconnected, transected) -> tuple[np.ndarray, int]:
    """Label per node (int32) of the disconnected pieces: the detached ones (26-connected pieces
    of ``disconnected``) first, then the ``transected`` stretches that touch them; and the number
    of detached pieces."""
    piece = t.labels(disconnected)
    n_detached = int(piece.max())
    if transected.any():
        cut_lab = t.labels(transected)
        # the transected stretches 26-adjacent to a detached voxel
        dis = t.ijk[disconnected]
        dbox = tuple(slice(max(int(a) - 1, 0), min(int(b) + 2, b_.stop))
                     for a, b, b_ in zip(dis.min(axis=0), dis.max(axis=0), t.box))
        mask = np.zeros(_shape(dbox), bool)
        start = np.array([b.start for b in dbox])
        mask[tuple((t.ijk[disconnected] - start).T)] = True
        touching = ndimage.binary_dilation(mask, structure=np.ones((3, 3, 3), bool))
        rel = t.ijk - start
        near = np.all((rel >= 0) & (rel < _shape(dbox)), axis=1)
        near[near] = touching[tuple(rel[near].T)]
        severing = np.unique(cut_lab[near & (cut_lab > 0)])
        if severing.size:
            relabel = np.zeros(int(cut_lab.max()) + 1, np.int32)
            relabel[severing] = np.arange(1, severing.size + 1) + n_detached
            new = relabel[cut_lab]
            piece = np.where(new > 0, new, piece)
    return piece, n_detached


def _territory_owner(t: _Tree, piece, vessel_c, nearest, ctx: _LiverCrop) -> np.ndarray:
    """The piece (label) owning each liver voxel of ``inner``: that of its nearest pre-cut vessel
    voxel when the voxel is kept (0: kept voxels served by no piece, and resected voxels)."""
    if nearest is not None:
        owner = np.where(nearest >= 0, piece[nearest], 0)
    else:
        # a liver voxel a piece serves lies within ``reach`` (the liver's largest distance to the
        # tree) of the piece, and its nearest vessel voxel within ``reach`` of the voxel: one
        # feature transform on the pieces' box grown by twice the reach is exact for every voxel
        # within the reach of that box
        inner, spacing = ctx.inner, ctx.spacing_mm
        gap_mm = edt_mm(~vessel_c[inner], spacing_mm=spacing)
        reach = float(gap_mm.reshape(-1)[ctx.liver_flat].max())
        del gap_mm
        ijk = t.ijk[piece > 0] - [i.start for i in inner]
        ijk = ijk[np.all((ijk >= 0) & (ijk < _shape(inner)), axis=1)]  # the pieces' voxels in ``inner``
        pbox = (tuple(slice(int(a), int(b) + 1) for a, b in zip(ijk.min(axis=0), ijk.max(axis=0))) if len(ijk)
                else (slice(0, 0),) * 3)
        served = padded_box(pbox, [int(np.ceil(reach / s)) + 1 for s in spacing], _shape(inner))
        tbox = padded_box(pbox, [int(np.ceil(2 * reach / s)) + 2 for s in spacing], _shape(inner))
        at = np.unravel_index(ctx.liver_flat, _shape(inner))
        sel = np.flatnonzero(np.all([(a >= b.start) & (a < b.stop) for a, b in zip(at, served)], axis=0))
        near = _nearest_nodes(t.ijk, vessel_c, tuple(slice(i.start + b.start, i.start + b.stop)
                                                 for i, b in zip(inner, tbox)), ctx, liver_sel=sel)
        owner = np.zeros(len(ctx.liver_flat), np.int32)
        owner[sel] = np.where(near >= 0, piece[near], 0)
    owner[ctx.removed_at_liver] = 0
    return owner


def _describe_pieces(tree, t: _Tree, piece, n_detached, owner, ctx: _LiverCrop) -> tuple[list[VesselPiece], float]:
    """Each piece's size, diameter, centroid, territory (mL) and segment, largest territory first;
    and the total territory (mL)."""
    spacing, unit_ml = ctx.spacing_mm, ctx.unit_ml
    n_pieces = int(piece.max())
    territory = owner > 0
    own = owner[territory].astype(np.int64)
    terr_ml = np.bincount(own, weights=ctx.kept_at_liver[territory], minlength=n_pieces + 1) * unit_ml
    seg_counts = None
    if ctx.segment_at_liver is not None:
        seg_counts = np.bincount(own * 256 + ctx.segment_at_liver[territory].astype(np.int64),
                                 minlength=(n_pieces + 1) * 256).reshape(n_pieces + 1, 256)
        seg_counts[:, 0] = 0
    pieces = []
    for k in range(1, n_pieces + 1):
        m = piece == k
        full_idx = t.ijk[m].mean(axis=0) + ctx.offset
        segment = None
        if seg_counts is not None and seg_counts[k].any():
            segment = int(seg_counts[k].argmax())
        count = int(np.count_nonzero(m))
        pieces.append(VesselPiece(
            tree=tree, kind="detached" if k <= n_detached else "transected", voxels=count,
            volume_ml=float(count) * unit_ml,
            max_diameter_mm=round(max(0.0, 2.0 * float(t.wall_mm[m].max()) - min(spacing)), 3),
            centroid_index=tuple(round(float(v), 2) for v in full_idx),
            centroid_mm=tuple(round(float(v * s), 2) for v, s in zip(full_idx, spacing)),
            territory_ml=float(terr_ml[k]), segment=segment,
        ))
    pieces.sort(key=lambda p: -p.territory_ml)
    return pieces, float(terr_ml[1:].sum())


def _portal_root(t: _Tree, intra, notes) -> np.ndarray:
    """The largest 26-connected piece of the extrahepatic portal voxels; without any, the ball of
    the portal's largest inscribed sphere."""
    extra = ~intra
    if extra.any():
        lab = t.labels(extra)
        counts = np.bincount(lab)
        counts[0] = 0
        root = lab == int(np.argmax(counts))
        notes.append(f"portal: root = the extrahepatic portal vein ({int(np.count_nonzero(root))} voxels)")
        return root
    k = int(np.argmax(t.wall_mm))
    r = float(t.wall_mm[k])
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip(t.ijk.T, t.ijk[k], t.spacing_mm))
    notes.append("portal: no extrahepatic portal voxel; root = the portal's thickest point "
                 f"(radius {r:.1f} mm); give portal_root to be sure")
    return d2 <= r * r


def _ivc_core(t: _Tree, wall_mm, params: VascularParams, notes) -> np.ndarray:
    """Largest piece of the opening of the hepatic mask with a ball (the IVC); ``wall_mm`` on the tree's box."""
    spacing = t.spacing_mm
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
    # its pieces labelled in that box only: none reaches beyond it, and C order within the box
    # numbers them as on the whole tree's box (the same piece wins a tie in size)
    opening = (edt_mm(~centres[box], spacing_mm=spacing) <= r) & (wall_mm[box] > 0)
    largest = cc3d.largest_k(opening, k=1, connectivity=26) > 0
    rel = t.ijk - [t.box[a].start + box[a].start for a in range(3)]
    inside = np.all((rel >= 0) & (rel < largest.shape), axis=1)
    root = np.zeros(t.n, bool)
    root[inside] = largest[tuple(rel[inside].T)]
    notes.append(f"hepatic: root = IVC core, the hepatic mask's opening with a {r:.1f} mm ball "
                 f"({int(np.count_nonzero(root))} voxels)")
    return root


def _resected_fraction(resected) -> np.ndarray:
    arr = np.asarray(resected)
    if arr.dtype == bool:
        return arr
    if not np.issubdtype(arr.dtype, np.number):
        raise InputError(f"resected: expected a boolean mask or fractions 0-1, found dtype {arr.dtype}")
    lo, hi = float(arr.min()), float(arr.max())  # NaN propagates into both, and fails the test
    if not (lo >= 0.0 and hi <= 1.0):
        raise InputError(
            f"resected: fractions must lie in 0-1, found {lo:g} to {hi:g}; pass the resection's "
            "resected_fraction or a boolean mask."
        )
    return arr




