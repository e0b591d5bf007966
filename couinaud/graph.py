"""Skeleton graphs of vessel masks: voxel-level graph, radii, rooted subtree weights.

Everything here works in the array frame of the (cropped) canonical RAS+ volume: index axis 0
increases toward the patient's Right, axis 1 toward Anterior, axis 2 toward Superior. Positions are
returned in millimetres of that frame (``index * spacing_mm``); nothing here knows world
coordinates.

The graph is built directly on skeleton voxels (26-neighbourhood, edge weight = Euclidean step in
mm) and analysed with :mod:`scipy.sparse.csgraph`; this avoids ``skan``'s numba compilation (several
seconds on the first call), which would dominate the runtime of one study.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from skimage.morphology import skeletonize

from hepatoplan.arrays import bounding_box, is_empty_box, voxel_indices
from hepatoplan.nearest_voxel import edt_mm

log = logging.getLogger(__name__)

# 13 "forward" offsets of the 26-neighbourhood (the other 13 are their negatives).
_OFFSETS = np.array(
    [(di, dj, dk) for di in (-1, 0, 1) for dj in (-1, 0, 1) for dk in (-1, 0, 1)
     if (di, dj, dk) > (0, 0, 0)],
    dtype=np.int64,
)


@dataclass
class SkeletonGraph:
    """A vessel skeleton as a weighted graph.

    Attributes
    ----------
    ijk : ndarray of int, shape (n, 3)
        Skeleton voxel indices in the (cropped) canonical RAS+ array.
    xyz_mm : ndarray of float, shape (n, 3)
        The same positions in mm of the array frame (``ijk * spacing_mm``).
    radius_mm : ndarray of float, shape (n,)
        Distance from each skeleton voxel to the vessel wall (mm), a radius estimate.
    adjacency : scipy.sparse.csr_matrix, shape (n, n)
        Symmetric; entries are step lengths in mm.
    """

    ijk: np.ndarray
    xyz_mm: np.ndarray
    radius_mm: np.ndarray
    adjacency: sparse.csr_matrix

    @property
    def n(self) -> int:
        return len(self.ijk)


def skeleton_graph(mask: np.ndarray, spacing_mm, *, distance_mm: np.ndarray | None = None) -> SkeletonGraph:
    """Skeletonize a vessel mask and return its voxel graph.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        Vessel mask, canonical RAS+ (axis 0 Right, 1 Anterior, 2 Superior).
    spacing_mm : sequence of 3 float
        Voxel spacing along the three axes (mm).
    distance_mm : ndarray of float, optional
        Precomputed distance map of ``mask`` (mm); computed with :mod:`edt` if omitted.

    Returns
    -------
    SkeletonGraph
    """
    sp = np.asarray(spacing_mm, float)
    # thinning scans the whole array on every pass: work on the mask's box (+1 voxel of background,
    # which the thinning adds anyway): the same skeleton and distances at a fraction of the cost
    box = bounding_box(mask, pad=1)
    if is_empty_box(box):
        return SkeletonGraph(np.zeros((0, 3), int), np.zeros((0, 3)), np.zeros(0), sparse.csr_matrix((0, 0)))
    crop = np.ascontiguousarray(mask[box], dtype=bool)
    local = voxel_indices(skeletonize(crop))
    ijk = local + [b.start for b in box]
    if distance_mm is None:
        radius = edt_mm(crop, spacing_mm=sp)[tuple(local.T)]
    else:
        radius = distance_mm[tuple(ijk.T)]
    n = len(ijk)
    if n == 0:
        return SkeletonGraph(ijk.reshape(0, 3), np.zeros((0, 3)), np.zeros(0), sparse.csr_matrix((0, 0)))
    lo = ijk.min(axis=0)
    shape = ijk.max(axis=0) - lo + 1
    loc = ijk - lo
    index = np.full(tuple(shape), -1, dtype=np.int32)
    index[tuple(loc.T)] = np.arange(n, dtype=np.int32)
    rows, cols, w = [], [], []
    for off in _OFFSETS:
        nb = loc + off
        ok = np.all((nb >= 0) & (nb < shape), axis=1)
        j = np.full(n, -1, dtype=np.int64)
        j[ok] = index[tuple(nb[ok].T)]
        has = j >= 0
        rows.append(np.nonzero(has)[0])
        cols.append(j[has])
        w.append(np.full(has.sum(), float(np.linalg.norm(off * sp))))
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    ww = np.concatenate(w)
    adj = sparse.coo_matrix((np.r_[ww, ww], (np.r_[r, c], np.r_[c, r])), shape=(n, n)).tocsr()
    return SkeletonGraph(ijk, ijk * sp, radius.astype(float), adj)


def largest_component(graph: SkeletonGraph, weight: np.ndarray) -> np.ndarray:
    """Boolean node mask of the connected component with the largest total ``weight``."""
    if graph.n == 0:
        return np.zeros(0, bool)
    ncomp, lab = csgraph.connected_components(graph.adjacency, directed=False)
    tot = np.bincount(lab, weights=weight, minlength=ncomp)
    return lab == int(np.argmax(tot))


@dataclass
class RootedTree:
    """Shortest-path tree of a skeleton graph from one root node.

    Attributes
    ----------
    root : int
    dist_mm : ndarray (n,)  geodesic distance from the root (inf if unreachable)
    parent : ndarray (n,)   parent node (-1 for the root and unreachable nodes)
    subtree : ndarray (n,)  total node weight of the subtree hanging from each node
    order : ndarray         reachable nodes sorted by distance from the root
    """

    root: int
    dist_mm: np.ndarray
    parent: np.ndarray
    subtree: np.ndarray
    order: np.ndarray

    def children(self, node: int) -> np.ndarray:
        return np.nonzero(self.parent == node)[0]

    def path_to_root(self, node: int) -> list[int]:
        out = [int(node)]
        while self.parent[out[-1]] >= 0:
            out.append(int(self.parent[out[-1]]))
        return out

    @cached_property
    def kids_of(self) -> dict[int, list[int]]:
        """The children of each node with any, in the order of ``order`` (made once: :func:`main_split`
        and :func:`heaviest_path` walk it)."""
        kids: dict[int, list[int]] = {}
        parent = self.parent.tolist()
        for v in self.order.tolist():
            if parent[v] >= 0:
                kids.setdefault(parent[v], []).append(v)
        return kids

    def descendants(self, node: int) -> np.ndarray:
        """Boolean mask of ``node`` and every node below it."""
        inside = np.zeros(len(self.parent), bool)
        inside[node] = True
        for v in self.order:
            p = self.parent[v]
            if p >= 0 and inside[p]:
                inside[v] = True
        return inside


def rooted_tree(graph: SkeletonGraph, root: int, weight: np.ndarray) -> RootedTree:
    """Shortest-path tree from ``root`` with subtree sums of ``weight``."""
    dist, pred = csgraph.dijkstra(graph.adjacency, directed=False, indices=int(root), return_predecessors=True)
    pred = np.where(pred < 0, -1, pred).astype(np.int64)
    reach = np.isfinite(dist)
    order = np.nonzero(reach)[0]
    order = order[np.argsort(dist[order], kind="stable")]
    sub = np.where(reach, weight, 0.0).astype(float)
    for v in order[::-1]:
        p = pred[v]
        if p >= 0:
            sub[p] += sub[v]
    return RootedTree(int(root), dist, pred, sub, order)


def main_split(tree: RootedTree, *, min_fraction: float) -> tuple[int, list[int]]:
    """Walk from the root into the heaviest child until the tree splits into big subtrees.

    Returns the split node and its children whose subtree holds at least ``min_fraction`` of the
    total weight below the root (heaviest first). If no such split exists, the last node reached
    and an empty list are returned.
    """
    total = tree.subtree[tree.root]
    kids_of = tree.kids_of
    node = tree.root
    while True:
        kids = sorted(kids_of.get(node, []), key=lambda k: -tree.subtree[k])
        if not kids:
            return node, []
        big = [k for k in kids if tree.subtree[k] >= min_fraction * total]
        if len(big) >= 2:
            return node, big
        node = kids[0]


def heaviest_path(tree: RootedTree, start: int, *, max_length_mm: float = np.inf) -> list[int]:
    """Nodes from ``start`` downward, always into the heaviest child, up to ``max_length_mm``."""
    kids_of = tree.kids_of
    path = [int(start)]
    d0 = tree.dist_mm[start]
    while True:
        kids = kids_of.get(path[-1], [])
        if not kids:
            break
        k = max(kids, key=lambda q: tree.subtree[q])
        if tree.dist_mm[k] - d0 > max_length_mm:
            break
        path.append(int(k))
    return path
