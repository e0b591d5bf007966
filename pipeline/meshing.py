"""Surface meshes of the plan's structures, in RAS world millimetres.

Meshes are computed as TotalSegmentator does: in (spacing-scaled) voxel index space (vtk flying
edges at 0.5 on the binary mask, quadric edge-collapse decimation with ``fast-simplification``,
vtk windowed-sinc smoothing), then mapped to world coordinates by the affine; triangle winding is
flipped when the affine mirrors (its determinant is negative), so normals always point outwards.
Masks are zero-padded before meshing, so a structure touching the volume border still gives a
closed surface.

A :class:`Mesh` holds **RAS** world millimetres, the pipeline's canonical convention; the files
(:mod:`hepatoplan.pipeline.mesh_files`) convert to LPS, the PNG previews
(:mod:`hepatoplan.pipeline.rendering`) draw RAS meshes as they are.
"""

from __future__ import annotations

import atexit
import logging
import os
import struct
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Collection, Mapping, NamedTuple

import numpy as np

from hepatoplan.arrays import bounding_box
from hepatoplan.checks import check_affine_ras
from hepatoplan.errors import HepatoplanError, InputError

from .labels import PARENCHYMA_KINDS, LabelStructures, structure_kind

log = logging.getLogger(__name__)

#: Threads meshing structures at once (:func:`structure_meshes`).
MESHING_THREADS = 2
#: Zero voxels added around a structure's bounding box before meshing.
PAD_VOXELS = 2
#: A structure is meshed from blocks (``block_voxels``) only if the block contour's enclosed
#: volume is within this fraction of the mask's (else from the full grid).
BLOCK_VOLUME_TOLERANCE = 0.01
#: Vessels meshed from blocks (:func:`vessel_block_voxels`): the field value of a block that holds some of the
#: vessel's voxels but at most half of them (0.5 from the blocks' fractions), so that it lies inside the surface
#: and no branch thinner than a block is lost (see :func:`_crop_mesh`'s ``keep_thin``). Chosen on IRCADb 01-11's
#: 22 vessels: leave-one-case-out (no vessel in more pieces than from the full grid, then the mean |volume - voxels'|)
#: picks 0.53 (0.52 without 09, whose portal vein then breaks in 4 pieces): 0.55 keeps a margin; mean |volume error|
#: 2.3 % (the full grid's 5.2 %); bench/RESULTS.md, mesh20.
THIN_BLOCK_VALUE = 0.55

class Mesh(NamedTuple):
    """A triangle surface in world coordinates.

    Attributes
    ----------
    vertices_mm : ndarray of float32, shape (N, 3)
        Vertex positions, RAS world millimetres.
    faces : ndarray of int32, shape (M, 3)
        Vertex indices of each triangle, counter-clockwise seen from outside.
    """

    vertices_mm: np.ndarray
    faces: np.ndarray


def mesh_volume_mm3(mesh: Mesh) -> float:
    """Signed enclosed volume (mm³) of a closed mesh; positive when the normals point outwards."""
    # a · (b × c) per triangle on coordinate columns: half the time of np.cross on (M, 3) rows
    x, y, z = np.ascontiguousarray(np.asarray(mesh.vertices_mm, dtype=np.float64).T)
    f0, f1, f2 = np.ascontiguousarray(np.asarray(mesh.faces).T)
    xb, yb, zb, xc, yc, zc = x[f1], y[f1], z[f1], x[f2], y[f2], z[f2]
    return float((x[f0] * (yb * zc - zb * yc) + y[f0] * (zb * xc - xb * zc) + z[f0] * (xb * yc - yb * xc)).sum() / 6.0)


def mesh_centroid_mm(mesh: Mesh) -> np.ndarray:
    """Centroid (RAS mm) of the solid a closed mesh encloses (not of its vertices)."""
    v = np.asarray(mesh.vertices_mm, dtype=np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    vol6 = np.einsum("ij,ij->i", a, np.cross(b, c))
    return (vol6[:, None] * (a + b + c)).sum(axis=0) / (4.0 * vol6.sum())


def vtk_classes() -> SimpleNamespace:
    """The vtk classes meshing uses, imported from their own ``vtkmodules``.

    ``import vtk`` loads every vtk module (about 0.5 s more CPU per process than the few needed
    here); :func:`hepatoplan.pipeline.rendering.vtk_classes` adds those of rendering.
    """
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPolyData
    from vtkmodules.vtkFiltersCore import (vtkFlyingEdges3D, vtkPolyDataNormals,
                                           vtkWindowedSincPolyDataFilter)

    return SimpleNamespace(vtkPoints=vtkPoints, vtkCellArray=vtkCellArray,
                           vtkImageData=vtkImageData, vtkPolyData=vtkPolyData,
                           vtkFlyingEdges3D=vtkFlyingEdges3D, vtkPolyDataNormals=vtkPolyDataNormals,
                           vtkWindowedSincPolyDataFilter=vtkWindowedSincPolyDataFilter)


def _polydata_arrays(polydata) -> tuple[np.ndarray, np.ndarray]:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if polydata.GetNumberOfPoints() == 0 or polydata.GetNumberOfPolys() == 0:
        return np.zeros((0, 3), np.float64), np.zeros((0, 3), np.int32)
    points = vtk_to_numpy(polydata.GetPoints().GetData()).astype(np.float64)
    polys = polydata.GetPolys()
    offsets = vtk_to_numpy(polys.GetOffsetsArray())
    conn = vtk_to_numpy(polys.GetConnectivityArray())
    if not np.all(np.diff(offsets) == 3):
        raise HepatoplanError("vtk returned non-triangle polygons (internal error)")
    return points, conn.reshape(-1, 3).astype(np.int32)


#: fast-simplification keeps the mesh being decimated in global C++ state, loaded and read back
#: in separate calls: one decimation at a time per process (here: per helper, see below).
_SIMPLIFY_LOCK = threading.Lock()
#: fast-simplification 0.2 holds the GIL for the whole decimation (~1 s per default plan of IRCADb 01): every
#: other thread of the plan (its main thread's analysis, the vtk contouring of the other meshes) stood still
#: meanwhile. The decimations therefore run in one helper process per plan process, fed through pipes
#: (the same library and input arrays: the same output); a thread waiting on the pipe leaves the GIL free.
#: ``plan`` starts its own at its beginning, which also writes report.pdf (:mod:`~hepatoplan.pipeline.helper_process`).
_SIMPLIFIER = r"""
import os, struct, sys
import numpy as np, fast_simplification
read, write = sys.stdin.buffer.read, sys.stdout.buffer.write
while len(head := read(24)) == 24:
    n_points, n_faces, reduction = struct.unpack("<qqd", head)
    points = np.frombuffer(bytearray(read(12 * n_points)), np.float32).reshape(n_points, 3)  # writable,
    faces = np.frombuffer(bytearray(read(12 * n_faces)), np.int32).reshape(n_faces, 3)  # as nanobind wants
    points, faces = fast_simplification.simplify(points, faces, target_reduction=reduction)
    points, faces = np.ascontiguousarray(points, np.float64), np.ascontiguousarray(faces, np.int32)
    write(struct.pack("<qq", len(points), len(faces)) + points.tobytes() + faces.tobytes())
    sys.stdout.buffer.flush()
os._exit(0)  # every answer flushed; the interpreter's teardown (fpdf2's modules, in plan's helper) was 0.2 s
"""
_simplifier: subprocess.Popen | None = None


def _helper_environment() -> dict[str, str]:
    """A decimation helper's environment: this process's, with OpenBLAS on one thread (the helper calls no BLAS; its
    numpy import then starts no idle BLAS worker: ~0.03 core-s less per helper, bench/RESULTS.md, child19)."""
    return {**os.environ, "OPENBLAS_NUM_THREADS": "1"}


def _start_simplifier() -> subprocess.Popen | None:
    """This process's decimation helper, started on first use (again after a fork, or when it ended);
    ``None`` when it cannot be started (the decimation then runs in this process). Call under the lock."""
    global _simplifier
    if _simplifier is None or _simplifier.pid_of_parent != os.getpid() or _simplifier.poll() is not None:
        try:
            _simplifier = subprocess.Popen([sys.executable, "-c", _SIMPLIFIER], env=_helper_environment(),
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        except OSError as exc:
            log.debug("decimation helper not started (%s): decimating in this process", exc)
            return None
        _simplifier.pid_of_parent = os.getpid()
        atexit.register(_stop_simplifier, _simplifier)
    return _simplifier


def _use_simplifier(helper: subprocess.Popen) -> None:
    """Decimate in ``helper`` from now on (a child that runs ``_SIMPLIFIER`` beside other work, e.g. the plan's
    :class:`~hepatoplan.pipeline.helper_process.PlanHelper`); the previous helper is ended."""
    global _simplifier
    helper.pid_of_parent = os.getpid()
    atexit.register(_stop_simplifier, helper)
    with _SIMPLIFY_LOCK:
        previous, _simplifier = _simplifier, helper
    if previous is not None:
        _stop_simplifier(previous)


def _stop_simplifier(helper: subprocess.Popen) -> None:
    """At exit: end the helper (its input closed; one that died with input unsent is only reaped)."""
    if helper.pid_of_parent == os.getpid():
        try:
            helper.stdin.close()
        except OSError:  # a broken pipe flushing what a dead helper did not read
            pass
        helper.wait()
        helper.stdout.close()


def _decimate(points: np.ndarray, faces: np.ndarray, target_reduction: float) -> tuple[np.ndarray, np.ndarray]:
    """``fast_simplification.simplify`` in the helper (in this process when the helper fails); call under the lock."""
    helper = _start_simplifier()
    if helper is not None:
        try:
            helper.stdin.write(struct.pack("<qqd", len(points), len(faces), target_reduction)
                               + points.tobytes() + faces.tobytes())
            helper.stdin.flush()
            n_points, n_faces = struct.unpack("<qq", helper.stdout.read(16))
            return (np.frombuffer(bytearray(helper.stdout.read(24 * n_points)), np.float64).reshape(n_points, 3),
                    np.frombuffer(bytearray(helper.stdout.read(12 * n_faces)), np.int32).reshape(n_faces, 3))
        except (OSError, ValueError, struct.error) as exc:
            log.warning("decimation helper failed (%s): decimating in this process", exc)
            helper.kill()
    import fast_simplification

    return fast_simplification.simplify(points, faces, target_reduction=target_reduction)


def _simplify(points: np.ndarray, faces: np.ndarray, target_reduction: float):
    """Quadric edge-collapse decimation (fast-simplification) that keeps a closed 2-manifold
    surface closed and 2-manifold.

    fast-simplification's collapses sometimes fold two triangles onto each other (the same three
    vertices, a zero-volume fin) or pinch an edge between four triangles: 4 of IRCADb 01's 19
    meshes. Fins are removed (both triangles), pinched edges split
    (:func:`_split_pinched_edges`); a surface still not :func:`is_closed_manifold` is returned
    undecimated: larger, never broken.
    """
    with _SIMPLIFY_LOCK:
        new_points, new_faces = _decimate(np.ascontiguousarray(points, dtype=np.float32),
                                          np.ascontiguousarray(faces, dtype=np.int32), float(target_reduction))
    new_points, new_faces = _compact(np.asarray(new_points, np.float64), np.asarray(new_faces, np.int32))
    fins = _row_counts(_sorted_rows(new_faces), len(new_points)) > 1
    new_points, new_faces = _compact(new_points, new_faces[~fins])
    if is_closed_manifold(new_faces):  # no edge in more than two triangles: none to split
        return new_points, new_faces
    new_points, new_faces = _split_pinched_edges(new_points, new_faces)
    if not is_closed_manifold(new_faces) and is_closed_manifold(faces):  # the smaller mesh first
        log.debug("decimation left a non-manifold edge: %d triangles kept undecimated", len(faces))
        return points, faces
    return new_points, new_faces


def _sorted_rows(rows: np.ndarray) -> np.ndarray:
    """``np.sort(rows, axis=1)`` for 2 or 3 columns, by minimum and maximum (~30x faster than numpy's row sorts)."""
    low, high = np.minimum(rows[:, 0], rows[:, 1]), np.maximum(rows[:, 0], rows[:, 1])
    if rows.shape[1] == 2:
        return np.stack([low, high], axis=1)
    third = rows[:, 2]
    return np.stack([np.minimum(low, third), np.maximum(low, np.minimum(high, third)), np.maximum(high, third)], axis=1)


def _row_keys(rows: np.ndarray, n: int) -> np.ndarray:
    """One int64 per row of vertex indices in ``[0, n)`` (2 or 3 columns), equal for equal rows."""
    rows = np.asarray(rows, np.int64)
    if n ** rows.shape[1] >= 2 ** 63:
        raise HepatoplanError(f"a mesh of {n} vertices is too large to index its edges and triangles")
    keys = rows[:, 0]
    for column in range(1, rows.shape[1]):
        keys = keys * n + rows[:, column]
    return keys


def _row_counts(rows: np.ndarray, n: int) -> np.ndarray:
    """How often each row of ``rows`` (vertex indices in ``[0, n)``) occurs in ``rows``: one sort."""
    keys = _row_keys(rows, n)
    order = np.argsort(keys)
    ordered = keys[order]
    run_sizes = np.diff(np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1], True]))
    counts = np.empty(len(keys), np.int64)
    counts[order] = np.repeat(run_sizes, run_sizes)
    return counts


#: How far (mm) the copies of a vertex split by :func:`_split_pinched_edges` move toward their
#: own surface: far above float32 resolution at body scale (~0.03 µm at 500 mm), far below any
#: voxel, so files whose readers merge vertices by position (STL) stay manifold.
PINCH_SPLIT_MM = 1e-3


def _split_pinched_edges(points: np.ndarray, faces: np.ndarray):
    """Split the edges that more than two triangles share, where two sheets of a surface touch.

    Around each vertex of such an edge, its triangles are grouped into fans joined by edges two
    triangles share; each fan after the first gets its own copy of the vertex, moved
    :data:`PINCH_SPLIT_MM` toward the fan's centre. Triangles are neither added nor removed.
    """
    edges = _sorted_rows(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2))
    counts = _row_counts(edges, len(points))
    pinched = edges[counts > 2]
    if not len(pinched):
        return points, faces
    near = np.isin(edges, np.unique(pinched)).any(axis=1) & (counts == 2)  # the edges the fans need
    shared_twice = {tuple(e) for e in edges[near].tolist()}
    points, faces = list(points), faces.copy()
    for v in np.unique(pinched).tolist():
        around = np.flatnonzero((faces == v).any(axis=1)).tolist()
        fan = {f: f for f in around}  # union-find over the triangles around v

        def root(f):
            while fan[f] != f:
                f = fan[f]
            return f

        by_edge: dict[int, list[int]] = {}
        for f in around:
            for w in faces[f].tolist():
                if w != v and (min(v, w), max(v, w)) in shared_twice:
                    by_edge.setdefault(w, []).append(f)
        for pair in by_edge.values():
            if len(pair) == 2:
                fan[root(pair[0])] = root(pair[1])
        groups: dict[int, list[int]] = {}
        for f in around:
            groups.setdefault(root(f), []).append(f)
        for members in list(groups.values())[1:]:
            centre = np.mean([points[w] for f in members for w in faces[f].tolist()], axis=0)
            step = centre - points[v]
            points.append(points[v] + PINCH_SPLIT_MM * step / max(float(np.linalg.norm(step)), 1e-12))
            faces[members] = np.where(faces[members] == v, len(points) - 1, faces[members])
    return np.asarray(points), faces


def is_closed_manifold(faces: np.ndarray) -> bool:
    """Every edge is shared by exactly two triangles, in opposite directions: the surface is
    closed (watertight), 2-manifold along its edges and consistently wound.

    Parameters
    ----------
    faces : ndarray of int, shape (M, 3)

    Returns
    -------
    bool
        False for an empty mesh, and for one with a triangle that repeats a vertex.
    """
    faces = np.asarray(faces, np.int64)
    if not len(faces):
        return False
    n = int(faces.max()) + 1
    if 2 * n * n >= 2 ** 63:
        raise HepatoplanError(f"a mesh of {n} vertices is too large to index its edges")
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
    # one sort: each edge's key (its two vertices, smaller first) doubled, + 1 when it runs from the larger
    # vertex to the smaller; closed and 2-manifold when the sorted keys come in pairs 2k, 2k + 1 (each
    # edge once in each direction) with k rising from pair to pair (no edge in a third triangle)
    keys = np.sort(_row_keys(_sorted_rows(edges), n) * 2 + (edges[:, 0] > edges[:, 1]))
    first, second = keys[0::2], keys[1::2]
    return (len(keys) % 2 == 0 and bool(np.all(first % 2 == 0)) and bool(np.array_equal(first + 1, second))
            and bool(np.all(first[1:] > first[:-1])))


def _compact(points: np.ndarray, faces: np.ndarray):
    """Drop collapsed (repeated-vertex) triangles and the vertices no triangle uses."""
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    used = np.zeros(len(points), bool)
    used[faces] = True
    new_index = np.cumsum(used, dtype=np.int64) - 1
    return points[used], new_index[faces].astype(np.int32)


def arrays_polydata(points: np.ndarray, faces: np.ndarray):
    vtk = vtk_classes()
    from vtkmodules.util.numpy_support import numpy_to_vtk, numpy_to_vtkIdTypeArray

    pts = vtk.vtkPoints()
    pts.SetData(numpy_to_vtk(np.ascontiguousarray(points, dtype=np.float64), deep=True))
    cells = vtk.vtkCellArray()
    offsets = np.arange(0, 3 * len(faces) + 1, 3, dtype=np.int64)
    cells.SetData(numpy_to_vtkIdTypeArray(offsets, deep=True),
                  numpy_to_vtkIdTypeArray(np.ascontiguousarray(faces, dtype=np.int64).ravel(),
                                          deep=True))
    poly = vtk.vtkPolyData()
    poly.SetPoints(pts)
    poly.SetPolys(cells)
    return poly


def surface_mesh(
    mask: np.ndarray,
    *,
    affine_ras: np.ndarray,
    smoothing_iterations: int = 20,
    smoothing_passband: float = 0.05,
    target_reduction: float = 0.7,
    block_voxels: tuple[int, int, int] = (1, 1, 1),
    keep_thin: bool = False,
) -> Mesh:
    """Closed, smoothed, decimated surface of one binary mask, in RAS world millimetres.

    Parameters
    ----------
    mask : ndarray of bool, shape (X, Y, Z)
        The structure.
    affine_ras : ndarray, shape (4, 4)
        Voxel index -> RAS world mm (any orientation, anisotropic spacing, mirroring allowed).
    smoothing_iterations : int, optional
        Windowed-sinc iterations (0 = no smoothing).
    smoothing_passband : float, optional
        Windowed-sinc pass band in (0, 2); smaller smooths more (Slicer: 10**(-4 * factor)).
    target_reduction : float, optional
        Fraction of triangles removed by quadric decimation, in [0, 1).
    block_voxels : (int, int, int), optional
        Contour the mean of the mask over blocks of this many voxels per axis (the fraction of
        each block inside, at 0.5) instead of the mask itself: for large smooth structures on
        grids much finer in-plane than between slices (see :func:`parenchyma_block_voxels`).
        The enclosed volume stays within ~0.1 % of the mask's for thick structures; triangles
        drop ~3x for (2, 2, 1). A structure whose block contour is off by more than
        :data:`BLOCK_VOLUME_TOLERANCE` (thin slivers), whose smoothed mesh is, or whose decimation
        fails (see :func:`_simplify`), is meshed from blocks one voxel finer per axis, down to the full grid.
    keep_thin : bool, optional
        For vessels (see :func:`vessel_block_voxels`): every block holding a voxel of the mask lies inside the
        surface (:data:`THIN_BLOCK_VALUE`), so that no branch thinner than a block is lost; no volume guard.

    Returns
    -------
    Mesh
        Empty (0 vertices) when the mask is empty.
    """
    affine = check_affine_ras(affine_ras)
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"mask must be 3D, got shape {mask.shape}")
    mask = mask.astype(bool, copy=False)
    box = bounding_box(mask)
    return _crop_mesh(mask[box], [sl.start for sl in box], affine,
                      smoothing_iterations=smoothing_iterations,
                      smoothing_passband=smoothing_passband, target_reduction=target_reduction,
                      block_voxels=block_voxels, keep_thin=keep_thin)


def _check_mesh_options(smoothing_iterations, smoothing_passband, target_reduction,
                        block_voxels) -> tuple[int, int, int]:
    if not 0 <= target_reduction < 1:
        raise InputError(f"target_reduction must be in [0, 1), got {target_reduction}")
    if smoothing_iterations < 0 or not 0 < smoothing_passband < 2:
        raise InputError("smoothing_iterations must be >= 0 and smoothing_passband in (0, 2), got "
                         f"{smoothing_iterations} and {smoothing_passband}")
    block = tuple(int(b) for b in block_voxels)
    if len(block) != 3 or min(block) < 1:
        raise InputError(f"block_voxels must be 3 integers >= 1, got {block_voxels}")
    return block


def _smooth(vtk, points: np.ndarray, faces: np.ndarray, iterations: int, passband: float):
    """Windowed-sinc smoothing (no-op for 0 iterations or an empty mesh)."""
    if iterations <= 0 or not len(faces):
        return points, faces
    smooth = vtk.vtkWindowedSincPolyDataFilter()
    smooth.SetInputData(arrays_polydata(points, faces))
    smooth.SetNumberOfIterations(int(iterations))
    smooth.SetPassBand(float(passband))
    smooth.BoundarySmoothingOff()
    smooth.FeatureEdgeSmoothingOff()
    smooth.NonManifoldSmoothingOn()
    smooth.NormalizeCoordinatesOn()
    smooth.Update()
    return _polydata_arrays(smooth.GetOutput())


def parenchyma_block_voxels(spacing_mm) -> tuple[int, int, int]:
    """Blocks for meshing liver parenchyma: each axis coarsened to the whole number of voxels
    nearest the coarsest spacing (the slices'), so blocks are about as wide as the slices are thick.

    A 0.57×0.57×1.6 mm grid gives (3, 3, 1): blocks of 1.71×1.71×1.6 mm (rounded down, (2, 2, 1),
    blocks of 1.14 mm gave 27 % more triangles and 0.4-0.6 s more CPU per plan for detail finer
    than the slices; bench/RESULTS.md, output15). Isotropic grids give (1, 1, 1) (nothing coarsened).
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    return tuple(max(1, int(np.floor(spacing.max() / s + 0.5))) for s in spacing)


def vessel_block_voxels(spacing_mm) -> tuple[int, int, int]:
    """Blocks for meshing vessels: two voxels along each axis whose two voxels are no wider than the coarsest
    spacing (the slices'), else one: a 0.57×0.57×1.6 mm grid gives (2, 2, 1), blocks of 1.14×1.14×1.6 mm;
    isotropic grids (1, 1, 1). Finer than :func:`parenchyma_block_voxels`: vessels are thin."""
    spacing = np.asarray(spacing_mm, dtype=float)
    return tuple(2 if 2 * s <= spacing.max() * (1 + 1e-6) else 1 for s in spacing)


def _crop_mesh(crop: np.ndarray, start, affine: np.ndarray, *, smoothing_iterations: int,
               smoothing_passband: float, target_reduction: float,
               block_voxels: tuple[int, int, int], keep_thin: bool = False) -> Mesh:
    """Mesh of ``crop`` (a bool mask), whose voxel [0, 0, 0] is voxel ``start`` of ``affine``'s grid.

    ``keep_thin`` (vessels): every block holding a voxel of ``crop`` lies inside the surface (a block at most half
    full takes :data:`THIN_BLOCK_VALUE` instead of its fraction), so that branches thinner than a block stay whole;
    the blocks are then kept whatever the volume (no finer blocks but after a failed decimation)."""
    from vtkmodules.util.numpy_support import numpy_to_vtk

    block = _check_mesh_options(smoothing_iterations, smoothing_passband, target_reduction,
                                block_voxels)
    vtk = vtk_classes()
    if not crop.any():
        return Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32))
    if block != (1, 1, 1):
        # fraction of each block inside (zero-filled to whole blocks), contoured at 0.5
        shape = [-(-n // b) * b for n, b in zip(crop.shape, block)]
        whole = np.zeros(shape, np.uint8)
        whole[tuple(slice(0, n) for n in crop.shape)] = crop
        counts = whole.reshape(shape[0] // block[0], block[0], shape[1] // block[1], block[1],
                               shape[2] // block[2], block[2]).sum(axis=(1, 3, 5), dtype=np.uint16)
        field = counts.astype(np.float32) / float(np.prod(block))
        if keep_thin:
            field[(counts > 0) & (field < THIN_BLOCK_VALUE)] = THIN_BLOCK_VALUE
        # just below 0.5: a level equal to a block fraction puts surface points on grid points,
        # and the degenerate triangles that makes are ones quadric decimation cannot collapse
        # (70 % reduction stalled at 52 % and took 3x longer)
        level = 0.5 - 1e-3
    else:
        field = crop.view(np.uint8) if crop.dtype == bool else crop.astype(np.uint8)  # bool: one byte, 0 or 1
        level = 0.5
    # Fortran order, vtk's point order: ravelled without a copy below
    padded = np.zeros(tuple(s + 2 * PAD_VOXELS for s in field.shape), field.dtype, order="F")
    padded[tuple(slice(PAD_VOXELS, PAD_VOXELS + s) for s in field.shape)] = field

    # index space scaled by the voxel sizes, so smoothing and decimation act in millimetres
    spacing_mm = np.linalg.norm(affine[:3, :3], axis=0) * np.asarray(block, float)
    image = vtk.vtkImageData()
    image.SetDimensions(*padded.shape)
    image.SetSpacing(*spacing_mm)
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_to_vtk(padded.ravel(order="F"))  # no copy: ``padded`` outlives the contouring
    image.GetPointData().SetScalars(scalars)

    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, level)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.Update()
    points, faces = _polydata_arrays(contour.GetOutput())

    def finer_blocks(why: str) -> Mesh:
        # one voxel finer per axis: (3, 3, 1) -> (2, 2, 1) -> the full grid
        log.debug("blocks %s: %s; blocks one voxel finer", block, why)
        return _crop_mesh(crop, start, affine, smoothing_iterations=smoothing_iterations,
                          smoothing_passband=smoothing_passband, target_reduction=target_reduction,
                          block_voxels=tuple(max(1, b - 1) for b in block), keep_thin=keep_thin)

    mask_mm3 = float(np.count_nonzero(crop)) * float(np.prod(spacing_mm)) / float(np.prod(block))
    if block != (1, 1, 1) and not keep_thin:
        # blocks lose what is thinner than half a block (slivers, notches): when that is more
        # than BLOCK_VOLUME_TOLERANCE of the structure, mesh it from finer blocks instead
        raw_mm3 = abs(mesh_volume_mm3(Mesh(points, faces)))
        if abs(raw_mm3 / mask_mm3 - 1) > BLOCK_VOLUME_TOLERANCE:
            return finer_blocks(f"the contour keeps {100 * raw_mm3 / mask_mm3:.2f} % of the volume")
    # full grid: decimate first (quadric, fast-simplification: ~10x faster than
    # vtkQuadricDecimation; the staircase's coplanar triangles collapse cheaply), then smooth
    # the smaller mesh, as 3D Slicer does. Blocks: the contour is already smooth in-plane;
    # smoothing first and then decimating loses less volume (an ellipsoid from 2x2x1 blocks:
    # -0.1 to -0.4 % instead of -0.6 to -1.4 %)
    smooth_first = block != (1, 1, 1)
    if smooth_first:
        points, faces = _smooth(vtk, points, faces, smoothing_iterations, smoothing_passband)
    if target_reduction > 0 and len(faces) > 64:
        contoured = len(faces)
        points, faces = _simplify(points, faces, target_reduction)
        if smooth_first and len(faces) == contoured:  # _simplify's undecimated surface
            return finer_blocks("the decimation left a non-manifold edge")
    if not smooth_first:
        points, faces = _smooth(vtk, points, faces, smoothing_iterations, smoothing_passband)

    # block j (padded: j + PAD) covers voxels start + b*j ... start + b*j + b-1: centre b*j + (b-1)/2
    b = np.asarray(block, float)
    index = (points / spacing_mm - PAD_VOXELS) * b + (b - 1) / 2 + np.asarray(start, float)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    # flying edges' winding in index space is fixed; the affine may mirror it
    mesh = Mesh(world.astype(np.float32), faces)
    volume_mm3 = mesh_volume_mm3(mesh)
    if volume_mm3 < 0:
        mesh = Mesh(mesh.vertices_mm, np.ascontiguousarray(faces[:, ::-1]))
    if smooth_first and not keep_thin and abs(abs(volume_mm3) / mask_mm3 - 1) > BLOCK_VOLUME_TOLERANCE:
        # smoothed and decimated, the blocks' surface may still drift (IRCADb 04's segment 4 from 3x3x1 blocks: -1.15 %)
        return finer_blocks(f"the mesh's volume is off by {100 * (abs(volume_mm3) / mask_mm3 - 1):+.2f} %")
    return mesh


def structure_meshes(
    structures: Mapping[str, np.ndarray],
    *,
    affine_ras: np.ndarray,
    smoothing_iterations: int = 20,
    smoothing_passband: float = 0.05,
    target_reduction: float = 0.7,
    names: Collection[str] | None = None,
) -> dict[str, Mesh]:
    """Meshes of named binary masks (see :func:`surface_mesh`); empty masks are left out (logged).

    Parameters
    ----------
    structures : mapping of str to bool ndarray
        E.g. ``{"remnant": ..., "resected": ..., "tumour 1": ..., "portal vein": ...,
        "hepatic veins": ..., "segment 5": ...}``, all on the grid of ``affine_ras``.
    affine_ras : ndarray, shape (4, 4)
        Voxel index -> RAS world mm.
    smoothing_iterations, smoothing_passband, target_reduction
        As in :func:`surface_mesh`.
    names : collection of str, optional
        Mesh only these of ``structures`` (default: all).

    Returns
    -------
    dict of str to Mesh
        In the order of ``structures``.

    Notes
    -----
    Liver parenchyma (segments, remnant, resected part, liver: :data:`PARENCHYMA_KINDS`) and tumours
    are meshed from blocks of :func:`parenchyma_block_voxels` (e.g. 3×3×1 voxels on a 0.57×0.57×1.6 mm
    grid): surfaces whose detail is bounded by the slice spacing anyway. The guards of :func:`surface_mesh`
    (``block_voxels``) keep the full grid for what the blocks would lose: on IRCADb 01-12 the blocks
    were kept for 7 of 46 tumours (7-349 mL; triangles 158 k → 98 k over all 46; their
    meshes within 0.13 mm of the full grid's on average, 95 % within 0.36 mm, the volume as close to the
    voxels' or within 0.21 % of it; bench/RESULTS.md, mesh17). Vessels (every other structure) are meshed from
    the blocks of :func:`vessel_block_voxels` (2×2×1 on that grid) with every block that holds a vessel voxel
    inside the surface (``keep_thin``): on IRCADb 01-11 no vessel in more pieces than from the full grid, 2.4x
    fewer triangles, within 0.19 mm of the full grid's mesh on average (95 % within 0.38-0.77 mm), the volume
    -1.7 to +3.5 % of the voxels' (the full grid's -2.2 to -11.1 %); bench/RESULTS.md, mesh20.
    """
    affine = check_affine_ras(affine_ras)
    spacing_mm = np.linalg.norm(affine[:3, :3], axis=0)

    def mesh_of(name: str) -> Mesh:
        vessel = structure_kind(name) not in (*PARENCHYMA_KINDS, "tumour")
        options = dict(smoothing_iterations=smoothing_iterations,
                       smoothing_passband=smoothing_passband, target_reduction=target_reduction,
                       block_voxels=vessel_block_voxels(spacing_mm) if vessel else parenchyma_block_voxels(spacing_mm),
                       keep_thin=vessel)
        if isinstance(structures, LabelStructures):  # the mask inside its box only
            return _crop_mesh(*structures.crop(name), affine, **options)
        return surface_mesh(structures[name], affine_ras=affine, **options)

    # two threads: vtk's contouring and smoothing run outside the GIL while the other thread decimates;
    # the largest boxes first, so that the two threads end together rather than one alone on the
    # remnant or resected part (made last in the label map's order)
    wanted = [name for name in structures if names is None or name in names]
    order = sorted(wanted, key=structures.box_voxels, reverse=True) \
        if isinstance(structures, LabelStructures) else wanted
    with ThreadPoolExecutor(max_workers=MESHING_THREADS) as pool:
        made = dict(zip(order, pool.map(mesh_of, order)))
    meshes = {}
    for name in wanted:
        mesh = made[name]
        if len(mesh.faces) == 0:
            log.warning("structure %r is empty: no mesh", name)
            continue
        meshes[name] = mesh
        log.info("mesh %r: %d vertices, %d triangles", name, len(mesh.vertices_mm),
                 len(mesh.faces))
    return meshes


def decimate_mesh(mesh: Mesh, *, max_triangles: int) -> Mesh:
    """Reduce a mesh to about ``max_triangles`` triangles (quadric edge collapse).

    Parameters
    ----------
    mesh : Mesh
    max_triangles : int
        Target (the decimation may stop a little above it).

    Returns
    -------
    Mesh
        ``mesh`` itself when it is already small enough.
    """
    if max_triangles < 4:
        raise InputError(f"max_triangles must be >= 4, got {max_triangles}")
    if len(mesh.faces) <= max_triangles:
        return mesh
    points, faces = _simplify(mesh.vertices_mm, mesh.faces, 1.0 - max_triangles / len(mesh.faces))
    out = Mesh(points.astype(np.float32), faces)
    if len(faces) and mesh_volume_mm3(out) * mesh_volume_mm3(mesh) < 0:
        out = Mesh(out.vertices_mm, np.ascontiguousarray(faces[:, ::-1]))
    return out

