"""Surface meshes of the plan's structures, mesh files, and offscreen-rendered PNG previews.

Meshes are computed as TotalSegmentator does: in (spacing-scaled) voxel index space (vtk flying
edges at 0.5 on the binary mask, quadric edge-collapse decimation with ``fast-simplification``,
vtk windowed-sinc smoothing), then mapped
to world coordinates by the affine; triangle winding is flipped when the affine mirrors (its
determinant is negative), so normals always point outwards. Masks are zero-padded before meshing,
so a structure touching the volume border still gives a closed surface.

Coordinate conventions
----------------------
* In memory (:class:`Mesh`): **RAS** world millimetres, the pipeline's canonical convention.
* STL and OBJ files: **LPS** world millimetres (x and y negated), as 3D Slicer and ITK expect;
  each file says so in its header (``SPACE=LPS``), which Slicer (≥ 4.11) reads, so the meshes
  overlay the CT when dragged into Slicer.
* GLB (``plan.glb``): mesh vertex data in LPS millimetres as well; one parent node
  ``patient_LPS_mm`` carries the matrix that maps LPS mm to glTF's convention (metres, +Y up =
  Superior, +Z towards the viewer = Anterior, +X = patient Left), so generic glTF viewers show the
  patient upright from the front.

Rendering is offscreen through vtk (EGL with Mesa's software renderer on headless machines).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Mapping, NamedTuple, Sequence

import numpy as np

from hepatoplan.errors import HepatoplanError, InputError, NotComputableError
from hepatoplan.pipeline.export import RAS_TO_LPS, structure_colour

log = logging.getLogger(__name__)

#: Zero voxels added around a structure's bounding box before meshing.
PAD_VOXELS = 2
#: A structure is meshed from blocks (``block_voxels``) only if the block contour's enclosed
#: volume is within this fraction of the mask's (else from the full grid).
BLOCK_VOLUME_TOLERANCE = 0.01

#: Maps LPS millimetres to glTF scene units (metres, Y up = Superior, Z = Anterior, X = Left).
LPS_MM_TO_GLTF = np.array([
    [0.001, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.001, 0.0],
    [0.0, -0.001, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
])


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
    v = np.asarray(mesh.vertices_mm, dtype=np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def mesh_centroid_mm(mesh: Mesh) -> np.ndarray:
    """Centroid (RAS mm) of the solid a closed mesh encloses (not of its vertices)."""
    v = np.asarray(mesh.vertices_mm, dtype=np.float64)
    a, b, c = v[mesh.faces[:, 0]], v[mesh.faces[:, 1]], v[mesh.faces[:, 2]]
    vol6 = np.einsum("ij,ij->i", a, np.cross(b, c))
    return (vol6[:, None] * (a + b + c)).sum(axis=0) / (4.0 * vol6.sum())


def _vtk(*, rendering: bool = False) -> SimpleNamespace:
    """The vtk classes this module uses, imported from their own ``vtkmodules``.

    ``import vtk`` loads every vtk module (about 0.5 s more CPU per process than the few needed
    here); ``rendering`` adds the OpenGL render window (its factory picks EGL or X), FreeType
    text and the PNG writer.
    """
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkImageData, vtkPolyData
    from vtkmodules.vtkFiltersCore import (vtkFlyingEdges3D, vtkPolyDataNormals,
                                           vtkWindowedSincPolyDataFilter)

    classes = dict(vtkPoints=vtkPoints, vtkCellArray=vtkCellArray, vtkImageData=vtkImageData,
                   vtkPolyData=vtkPolyData, vtkFlyingEdges3D=vtkFlyingEdges3D,
                   vtkPolyDataNormals=vtkPolyDataNormals,
                   vtkWindowedSincPolyDataFilter=vtkWindowedSincPolyDataFilter)
    if rendering:
        import vtkmodules.vtkRenderingFreeType  # noqa: F401  (text actors)
        import vtkmodules.vtkRenderingOpenGL2  # noqa: F401  (the OpenGL implementations)
        from vtkmodules.vtkIOImage import vtkPNGWriter
        from vtkmodules.vtkRenderingCore import (vtkActor, vtkPolyDataMapper, vtkRenderer,
                                                 vtkRenderWindow, vtkTextActor,
                                                 vtkWindowToImageFilter)

        classes |= dict(vtkActor=vtkActor, vtkPolyDataMapper=vtkPolyDataMapper,
                        vtkRenderer=vtkRenderer, vtkRenderWindow=vtkRenderWindow,
                        vtkTextActor=vtkTextActor, vtkWindowToImageFilter=vtkWindowToImageFilter,
                        vtkPNGWriter=vtkPNGWriter)
    return SimpleNamespace(**classes)


def _check_affine(affine_ras) -> np.ndarray:
    affine = np.asarray(affine_ras, dtype=float)
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)) \
            or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise InputError(f"affine_ras must be a finite, invertible 4x4 matrix, got {affine!r}")
    return affine


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


def _simplify(points: np.ndarray, faces: np.ndarray, target_reduction: float):
    """Quadric edge-collapse decimation (fast-simplification); keeps closed meshes closed."""
    import fast_simplification

    new_points, new_faces = fast_simplification.simplify(
        np.ascontiguousarray(points, dtype=np.float32), np.ascontiguousarray(faces, dtype=np.int32),
        target_reduction=float(target_reduction))
    return _compact(np.asarray(new_points, np.float64), np.asarray(new_faces, np.int32))


def _compact(points: np.ndarray, faces: np.ndarray):
    """Drop collapsed (repeated-vertex) triangles and the vertices no triangle uses."""
    keep = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    faces = faces[keep]
    used, inverse = np.unique(faces, return_inverse=True)
    return points[used], inverse.reshape(faces.shape).astype(np.int32)


def _arrays_polydata(points: np.ndarray, faces: np.ndarray):
    vtk = _vtk()
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
        :data:`BLOCK_VOLUME_TOLERANCE` (thin slivers) is meshed from the full grid.

    Returns
    -------
    Mesh
        Empty (0 vertices) when the mask is empty.
    """
    affine = _check_affine(affine_ras)
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise InputError(f"mask must be 3D, got shape {mask.shape}")
    from hepatoplan.arrays import bounding_box

    mask = mask.astype(bool, copy=False)
    box = bounding_box(mask)
    return _crop_mesh(mask[box], [sl.start for sl in box], affine,
                      smoothing_iterations=smoothing_iterations,
                      smoothing_passband=smoothing_passband, target_reduction=target_reduction,
                      block_voxels=block_voxels)


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
    smooth.SetInputData(_arrays_polydata(points, faces))
    smooth.SetNumberOfIterations(int(iterations))
    smooth.SetPassBand(float(passband))
    smooth.BoundarySmoothingOff()
    smooth.FeatureEdgeSmoothingOff()
    smooth.NonManifoldSmoothingOn()
    smooth.NormalizeCoordinatesOn()
    smooth.Update()
    return _polydata_arrays(smooth.GetOutput())


def parenchyma_block_voxels(spacing_mm) -> tuple[int, int, int]:
    """Blocks for meshing liver parenchyma: each axis coarsened up to the coarsest spacing.

    A 0.57×0.57×1.6 mm grid gives (2, 2, 1): blocks of 1.14×1.14×1.6 mm, still finer than the
    slices. Isotropic grids give (1, 1, 1) (nothing coarsened).
    """
    spacing = np.asarray(spacing_mm, dtype=float)
    return tuple(max(1, int(spacing.max() / s + 1e-6)) for s in spacing)


def _crop_mesh(crop: np.ndarray, start, affine: np.ndarray, *, smoothing_iterations: int,
               smoothing_passband: float, target_reduction: float,
               block_voxels: tuple[int, int, int]) -> Mesh:
    """Mesh of ``crop`` (a bool mask), whose voxel [0, 0, 0] is voxel ``start`` of ``affine``'s grid."""
    from vtkmodules.util.numpy_support import numpy_to_vtk

    block = _check_mesh_options(smoothing_iterations, smoothing_passband, target_reduction,
                                block_voxels)
    vtk = _vtk()
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
        # just below 0.5: a level equal to a block fraction puts surface points on grid points,
        # and the degenerate triangles that makes are ones quadric decimation cannot collapse
        # (70 % reduction stalled at 52 % and took 3x longer)
        level = 0.5 - 1e-3
    else:
        field = crop.astype(np.uint8)
        level = 0.5
    padded = np.zeros(tuple(s + 2 * PAD_VOXELS for s in field.shape), field.dtype)
    padded[tuple(slice(PAD_VOXELS, PAD_VOXELS + s) for s in field.shape)] = field

    # index space scaled by the voxel sizes, so smoothing and decimation act in millimetres
    spacing_mm = np.linalg.norm(affine[:3, :3], axis=0) * np.asarray(block, float)
    image = vtk.vtkImageData()
    image.SetDimensions(*padded.shape)
    image.SetSpacing(*spacing_mm)
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_to_vtk(padded.ravel(order="F"), deep=True)
    image.GetPointData().SetScalars(scalars)

    contour = vtk.vtkFlyingEdges3D()
    contour.SetInputData(image)
    contour.SetValue(0, level)
    contour.ComputeNormalsOff()
    contour.ComputeGradientsOff()
    contour.ComputeScalarsOff()
    contour.Update()
    points, faces = _polydata_arrays(contour.GetOutput())
    if block != (1, 1, 1):
        # blocks lose what is thinner than half a block (slivers, notches): when that is more
        # than BLOCK_VOLUME_TOLERANCE of the structure, mesh it from the full grid instead
        raw_mm3 = abs(mesh_volume_mm3(Mesh(points, faces)))
        mask_mm3 = float(np.count_nonzero(crop)) * float(np.prod(spacing_mm)) / float(np.prod(block))
        if abs(raw_mm3 / mask_mm3 - 1) > BLOCK_VOLUME_TOLERANCE:
            log.debug("blocks %s keep %.2f %% of a structure's volume: full grid instead", block,
                      100 * raw_mm3 / mask_mm3)
            return _crop_mesh(crop, start, affine, smoothing_iterations=smoothing_iterations,
                              smoothing_passband=smoothing_passband,
                              target_reduction=target_reduction, block_voxels=(1, 1, 1))
    # full grid: decimate first (quadric, fast-simplification: ~10x faster than
    # vtkQuadricDecimation; the staircase's coplanar triangles collapse cheaply), then smooth
    # the smaller mesh, as 3D Slicer does. Blocks: the contour is already smooth in-plane;
    # smoothing first and then decimating loses less volume (an ellipsoid from 2x2x1 blocks:
    # -0.1 to -0.4 % instead of -0.6 to -1.4 %)
    smooth_first = block != (1, 1, 1)
    if smooth_first:
        points, faces = _smooth(vtk, points, faces, smoothing_iterations, smoothing_passband)
    if target_reduction > 0 and len(faces) > 64:
        points, faces = _simplify(points, faces, target_reduction)
    if not smooth_first:
        points, faces = _smooth(vtk, points, faces, smoothing_iterations, smoothing_passband)

    # block j (padded: j + PAD) covers voxels start + b*j ... start + b*j + b-1: centre b*j + (b-1)/2
    b = np.asarray(block, float)
    index = (points / spacing_mm - PAD_VOXELS) * b + (b - 1) / 2 + np.asarray(start, float)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    # flying edges' winding in index space is fixed; the affine may mirror it
    mesh = Mesh(world.astype(np.float32), faces)
    if mesh_volume_mm3(mesh) < 0:
        mesh = Mesh(mesh.vertices_mm, np.ascontiguousarray(faces[:, ::-1]))
    return mesh


def structure_meshes(
    structures: Mapping[str, np.ndarray],
    *,
    affine_ras: np.ndarray,
    smoothing_iterations: int = 20,
    smoothing_passband: float = 0.05,
    target_reduction: float = 0.7,
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

    Returns
    -------
    dict of str to Mesh
        In the order of ``structures``.

    Notes
    -----
    Liver parenchyma (segments, remnant, resected part, liver: :data:`PARENCHYMA_KINDS`) is
    meshed from blocks of :func:`parenchyma_block_voxels` (e.g. 2×2×1 voxels on a 0.57×0.57×1.6 mm
    grid): large smooth surfaces whose detail is bounded by the slice spacing anyway. Tumours and
    vessels (small, thin) keep the full grid.
    """
    affine = _check_affine(affine_ras)
    parenchyma_block = parenchyma_block_voxels(np.linalg.norm(affine[:3, :3], axis=0))
    meshes = {}
    for name in structures:
        block = parenchyma_block if structure_kind(name) in PARENCHYMA_KINDS else (1, 1, 1)
        options = dict(smoothing_iterations=smoothing_iterations,
                       smoothing_passband=smoothing_passband, target_reduction=target_reduction,
                       block_voxels=block)
        if isinstance(structures, LabelStructures):  # the mask inside its box only
            crop, start = structures.crop(name)
            mesh = _crop_mesh(crop, start, affine, **options)
        else:
            mesh = surface_mesh(structures[name], affine_ras=affine, **options)
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


class LabelStructures(Mapping):
    """Read-only mapping name -> boolean mask, computed from a label array on each access.

    Holds no mask: meshing structure after structure then needs one mask at a time (a
    512×512×300 grid makes each mask 79 MB; the ~16 structures of a plan would need 1.3 GB).
    """

    def __init__(self, labels: np.ndarray, selectors: dict[str, tuple[int, ...]],
                 vessels: Mapping[str, np.ndarray], boxes: Mapping):
        self._labels = labels
        self._selectors = selectors
        self._boxes = boxes  # label value -> its bounding box (slices)
        self._vessels = dict(vessels)
        self._names = list(selectors) + list(self._vessels)

    def __getitem__(self, name: str) -> np.ndarray:
        if name in self._vessels:
            return self._vessels[name]
        return _select(self._labels, self._selectors[name])  # KeyError for unknown names

    def crop(self, name: str) -> tuple[np.ndarray, tuple[int, int, int]]:
        """The mask inside the bounding box of its label values, and the box's first voxel."""
        if name in self._vessels:
            from hepatoplan.arrays import bounding_box

            mask = self[name]
            box = bounding_box(mask)
            return mask[box], tuple(sl.start for sl in box)
        parts = [self._boxes[v] for v in self._selectors[name] if v in self._boxes]
        box = tuple(slice(min(p[a].start for p in parts), max(p[a].stop for p in parts)) for a in range(3))
        return _select(self._labels[box], self._selectors[name]), tuple(sl.start for sl in box)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _select(labels: np.ndarray, values: tuple[int, ...]) -> np.ndarray:
    """Mask of the voxels of ``labels`` holding any of ``values`` (a run of values: two comparisons)."""
    if len(values) > 2 and values == tuple(range(values[0], values[-1] + 1)):
        return (labels >= values[0]) & (labels <= values[-1])
    mask = labels == values[0]
    for v in values[1:]:
        mask |= labels == v
    return mask


def structures_from_labels(
    labels: np.ndarray,
    *,
    vessels: Mapping[str, np.ndarray] | None = None,
    segments: bool = True,
    boxes: Mapping[int, tuple[slice, slice, slice]] | None = None,
) -> LabelStructures:
    """Named boolean masks of the plan's label array (scheme in :mod:`hepatoplan.pipeline.export`).

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The plan's labels: 1–8 kept segment, 9 kept liver, 11–18 resected segment, 19 resected
        liver, 20 + i tumour i.
    vessels : mapping of str to bool ndarray, optional
        Extra structures to add as they are (e.g. ``{"portal vein": ..., "hepatic veins": ...}``).
    segments : bool
        Add ``segment k`` masks (kept and resected parts of Couinaud segment k together).
    boxes : mapping of int to 3 slices, optional
        Bounding box of every label value present (:func:`hepatoplan.pipeline.export.label_boxes`), to
        search ``labels`` once; found here when not given.

    Returns
    -------
    LabelStructures
        A mapping (masks computed when accessed) with keys ``segment 1``…``segment 8`` (those
        present), ``remnant`` (1–9; ``liver`` when nothing is resected), ``resected`` (11–19),
        ``tumour i`` (each present instance), then the non-empty vessels.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be a 3D integer array, got {labels.dtype} {labels.shape}")
    if boxes is None:
        from hepatoplan.arrays import label_boxes

        boxes = label_boxes(labels)
    present = set(boxes)
    selectors: dict[str, tuple[int, ...]] = {}
    if segments:
        for k in range(1, 9):
            values = tuple(v for v in (k, k + 10) if v in present)
            if values:
                selectors[f"segment {k}"] = values
    kept = tuple(v for v in range(1, 10) if v in present)
    resected = tuple(v for v in range(11, 20) if v in present)
    if kept:  # without a resection the kept liver is the whole liver
        selectors["remnant" if resected else "liver"] = tuple(range(1, 10))
    if resected:
        selectors["resected"] = tuple(range(11, 20))
    for value in sorted(v for v in present if v > 20):
        selectors[f"tumour {value - 20}"] = (value,)
    checked = {}
    for name, mask in (vessels or {}).items():
        mask = np.asarray(mask)
        if mask.shape != labels.shape:
            raise InputError(f"vessel mask {name!r} has shape {mask.shape}, labels {labels.shape}")
        mask = mask.astype(bool, copy=False)
        if mask.any():
            checked[name] = mask
    return LabelStructures(labels, selectors, checked, boxes)


def default_colours(names: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Display colours (floats in [0, 1]) by structure name, as in :mod:`hepatoplan.pipeline.export`."""
    return {name: structure_colour(name) for name in names}


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit, area-weighted vertex normals; where they cancel (pinched voxel corners), the
    normal of a non-degenerate incident triangle, else +z (glTF requires unit normals)."""
    tri = points[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals = np.zeros_like(points)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_n)
    length = np.linalg.norm(normals, axis=1)
    bad = length < 1e-9 * max(float(np.abs(face_n).max(initial=0.0)), 1e-30)
    if bad.any():
        face_len = np.linalg.norm(face_n, axis=1)
        good_faces = np.flatnonzero(face_len > 0)
        for k in range(3):
            v = faces[good_faces, k]
            sel = bad[v]
            normals[v[sel]] = face_n[good_faces[sel]] / face_len[good_faces[sel], None]
        length = np.linalg.norm(normals, axis=1)
        still = length < 1e-12
        normals[still] = (0.0, 0.0, 1.0)
        length[still] = 1.0
    return normals / length[:, None]


def _safe_filename(name: str) -> str:
    keep = "".join(c if c.isalnum() or c in "-_" else "_" for c in name.strip().lower())
    return keep or "structure"


def _lps(mesh: Mesh) -> np.ndarray:
    return (np.asarray(mesh.vertices_mm, np.float64) @ RAS_TO_LPS[:3, :3].T)


def _write_stl(path: Path, vertices_lps: np.ndarray, faces: np.ndarray, name: str) -> None:
    tri = vertices_lps[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    header = f"SPACE=LPS hepatoplan mesh {name} (mm)".encode("ascii", "replace")[:80]
    record = np.zeros(len(faces), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    record["n"] = normals
    record["v"] = tri
    with open(path, "wb") as f:
        f.write(header.ljust(80, b" "))
        f.write(np.uint32(len(faces)).tobytes())
        f.write(record.tobytes())


def _write_obj(path: Path, vertices_lps: np.ndarray, faces: np.ndarray, name: str,
               colour: tuple[float, float, float]) -> None:
    lines = [f"# hepatoplan mesh {name}: world millimetres", "# SPACE=LPS",
             f"# colour {colour[0]:.4f} {colour[1]:.4f} {colour[2]:.4f}", f"o {_safe_filename(name)}"]
    body = "\n".join(lines) + "\n"
    # one C-level formatting call per block (a Python loop per vertex is ~10x slower)
    v = ("v %.4f %.4f %.4f\n" * len(vertices_lps)) % tuple(np.asarray(vertices_lps).ravel().tolist())
    f_ = ("f %d %d %d\n" * len(faces)) % tuple((np.asarray(faces) + 1).ravel().tolist())
    path.write_text(body + v + f_)


def write_meshes(
    meshes: Mapping[str, Mesh],
    out_dir: str | Path,
    *,
    colours: Mapping[str, Sequence[float]] | None = None,
    opacities: Mapping[str, float] | None = None,
    formats: Sequence[str] = ("glb", "stl", "obj"),
    glb_name: str = "plan.glb",
) -> list[Path]:
    """Write the meshes: one GLB scene (named nodes, coloured), and one STL and OBJ per structure.

    Parameters
    ----------
    meshes : mapping of str to Mesh
        RAS world mm (as from :func:`structure_meshes`).
    out_dir : str or Path
        Created if needed. Per-structure files go to ``out_dir/meshes/<name>.stl|.obj``.
    colours : mapping of str to (r, g, b), optional
        sRGB floats in [0, 1]; default :func:`default_colours`. Written to the GLB as glTF's
        linear ``baseColorFactor`` and to the OBJ as a ``# colour`` comment (sRGB).
    opacities : mapping of str to float, optional
        GLB material alpha per structure (default opaque; < 1 uses glTF alpha blending).
    formats : sequence of {"glb", "stl", "obj"}
        Which files to write.
    glb_name : str
        File name of the GLB scene in ``out_dir``.

    Returns
    -------
    list of Path
        The files written (GLB first).
    """
    import trimesh
    from trimesh.visual.material import PBRMaterial

    unknown = set(formats) - {"glb", "stl", "obj"}
    if unknown:
        raise InputError(f"unknown mesh formats {sorted(unknown)}; known: glb, stl, obj")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = dict(default_colours(list(meshes))) | dict(colours or {})
    opacities = dict(opacities or {})
    written: list[Path] = []

    if "glb" in formats:
        scene = trimesh.Scene()
        scene.graph.update(frame_from=scene.graph.base_frame, frame_to="patient_LPS_mm",
                           matrix=LPS_MM_TO_GLTF)
        for name, mesh in meshes.items():
            # glTF's baseColorFactor is linear-light; the colour table is sRGB
            rgba = [_srgb_to_linear(float(c)) for c in colours[name]] + \
                [float(opacities.get(name, 1.0))]
            material = PBRMaterial(name=name, baseColorFactor=rgba, metallicFactor=0.0,
                                   roughnessFactor=0.8, doubleSided=False,
                                   alphaMode="BLEND" if rgba[3] < 1 else "OPAQUE")
            lps = _lps(mesh)
            tm = trimesh.Trimesh(vertices=lps, faces=mesh.faces, process=False,
                                 vertex_normals=_vertex_normals(lps, mesh.faces),
                                 visual=trimesh.visual.TextureVisuals(material=material))
            scene.add_geometry(tm, node_name=name, geom_name=name,
                               parent_node_name="patient_LPS_mm")
        path = out_dir / glb_name
        tmp = path.with_name(path.name + ".part")
        # smooth vertex normals (glTF viewers draw flat facets without them)
        tmp.write_bytes(scene.export(file_type="glb", include_normals=True))
        tmp.replace(path)
        written.append(path)

    mesh_dir = out_dir / "meshes"
    for name, mesh in meshes.items():
        if not {"stl", "obj"} & set(formats):
            break
        mesh_dir.mkdir(exist_ok=True)
        lps = _lps(mesh)
        stem = _safe_filename(name)
        if "stl" in formats:
            path = mesh_dir / f"{stem}.stl"
            _write_stl(path, lps, mesh.faces, name)
            written.append(path)
        if "obj" in formats:
            path = mesh_dir / f"{stem}.obj"
            _write_obj(path, lps, mesh.faces, name, tuple(colours[name]))
            written.append(path)
    log.info("wrote %d mesh files to %s", len(written), out_dir)
    return written


#: Structure kinds (:func:`structure_kind`) meshed from blocks (:func:`structure_meshes`).
PARENCHYMA_KINDS = ("segment", "remnant", "resected", "liver")
#: Opacity of liver parenchyma in the previews (so that tumours and vessels inside show).
PARENCHYMA_OPACITY = 0.45
#: Opacity of the resected part in the "after" previews (ghosted).
RESECTED_OPACITY = 0.2
#: zlib level of the PNG previews (vtk's default 5 took ~3x the time for ~10 % smaller files).
PNG_COMPRESSION_LEVEL = 1
#: Camera directions (from the focal point towards the camera, RAS) and view-up vectors.
VIEWS = {
    "anterior": ((0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
    "superior": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
}
_RAS_LETTERS = (("R", "L"), ("A", "P"), ("S", "I"))


def structure_kind(name: str) -> str:
    """Role of a structure by its name: segment, tumour, remnant, resected, liver or other."""
    key = name.lower()
    if key.startswith("segment"):
        return "segment"
    if key.startswith(("tumour", "tumor", "lesion")):
        return "tumour"
    if key in ("remnant", "liver remnant"):
        return "remnant"
    if key.startswith("resected"):
        return "resected"
    if key in ("liver", "functional liver"):
        return "liver"
    return "other"  # vessels and anything else: opaque in every scene


def default_scenes(names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Which structures each preview scene shows, with their opacities.

    ``before``: the Couinaud segments (else the liver, else remnant and resected together) at
    :data:`PARENCHYMA_OPACITY`, plus tumours and vessels, opaque. ``after`` (only when a
    ``remnant`` mesh exists): the remnant at :data:`PARENCHYMA_OPACITY`, the resected part ghosted
    at :data:`RESECTED_OPACITY` (so tumours and their margins are seen inside it), plus tumours
    and vessels.

    Parameters
    ----------
    names : sequence of str
        Available mesh names.

    Returns
    -------
    dict of str to dict of str to float
        Scene name -> {structure name: opacity}.
    """
    kinds = {n: structure_kind(n) for n in names}
    solid = {n: 1.0 for n, k in kinds.items() if k in ("tumour", "other")}
    segments = [n for n, k in kinds.items() if k == "segment"]
    if segments:
        parenchyma = segments
    elif "liver" in kinds.values():
        parenchyma = [n for n, k in kinds.items() if k == "liver"]
    else:
        parenchyma = [n for n, k in kinds.items() if k in ("remnant", "resected")]
    scenes = {"before": {n: PARENCHYMA_OPACITY for n in parenchyma} | solid}
    remnant = [n for n, k in kinds.items() if k == "remnant"]
    if remnant:
        after = {n: PARENCHYMA_OPACITY for n in remnant}
        after |= {n: RESECTED_OPACITY for n, k in kinds.items() if k == "resected"}
        scenes["after"] = after | solid
    return scenes


def _ensure_offscreen_backend() -> None:
    # Without a display, go straight to EGL (avoids a failed X connection attempt and warning).
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


_RENDER_PROBE = """
import vtkmodules.vtkRenderingOpenGL2
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkRenderer, vtkWindowToImageFilter
window = vtkRenderWindow()
window.SetOffScreenRendering(1)
window.SetSize(16, 16)
renderer = vtkRenderer()
renderer.SetBackground(1.0, 0.0, 0.0)
window.AddRenderer(renderer)
window.Render()
grab = vtkWindowToImageFilter()
grab.SetInput(window)
grab.Update()
value = grab.GetOutput().GetPointData().GetScalars().GetTuple(0)
assert value[0] > 200, value
print(window.GetClassName())
"""
_render_backend: str | None = None
#: The probe started ahead by :func:`start_offscreen_check` (a Popen), while it runs.
_probe: subprocess.Popen | None = None
_PROBE_LOCK = threading.Lock()
#: One render window at a time per process (OpenGL contexts and vtk's rendering are not
#: thread-safe; dask workers may run several plans in threads of one process).
_RENDER_LOCK = threading.Lock()


def _start_probe() -> subprocess.Popen:
    _ensure_offscreen_backend()
    return subprocess.Popen([sys.executable, "-c", _RENDER_PROBE], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def start_offscreen_check() -> None:
    """Start the probe of :func:`check_offscreen_rendering` in the background, if not yet done.

    Lets the probe (a Python child process, about 0.4 s) run while the meshes are computed;
    the later :func:`check_offscreen_rendering` (or :func:`render_previews`) collects it.
    """
    global _probe
    with _PROBE_LOCK:
        if _render_backend is None and _probe is None:
            _probe = _start_probe()


def check_offscreen_rendering(*, timeout_s: float = 120.0) -> str:
    """Check once per process, in a child process, that vtk can render offscreen here.

    A vtk render window without a working OpenGL (no EGL/Mesa, no display) can crash the whole
    interpreter; the probe runs in a subprocess so that this becomes a clear error instead.

    Parameters
    ----------
    timeout_s : float
        Give up after this many seconds.

    Returns
    -------
    str
        The vtk render-window class that worked (e.g. ``vtkEGLRenderWindow``).

    Raises
    ------
    NotComputableError
        If offscreen rendering does not work (with the fix in the message).
    """
    global _render_backend, _probe
    with _PROBE_LOCK:
        if _render_backend is not None:
            return _render_backend
        proc, _probe = (_probe or _start_probe()), None
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            ok = proc.returncode == 0
            detail = f"exit status {proc.returncode}: " + " ".join(stderr.strip().splitlines()[-2:])
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            ok, stdout, detail = False, "", f"no answer within {timeout_s:.0f} s"
        if not ok:
            raise NotComputableError(
                "previews cannot be rendered: vtk offscreen rendering does not work on this "
                f"machine ({detail[:300]}). Install Mesa's EGL (Debian: apt-get install libegl1 "
                "libgl1 libegl-mesa0 libgl1-mesa-dri) or skip rendering (--no-preview)")
        _render_backend = stdout.strip().splitlines()[-1] if stdout.strip() else "unknown"
        log.info("offscreen rendering through %s", _render_backend)
        return _render_backend


def _direction_letter(vector: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vector)))
    return _RAS_LETTERS[axis][0 if vector[axis] > 0 else 1]


def render_previews(
    meshes: Mapping[str, Mesh],
    out_dir: str | Path,
    *,
    colours: Mapping[str, Sequence[float]] | None = None,
    scenes: Mapping[str, Mapping[str, float]] | None = None,
    views: Sequence[str] = ("anterior", "superior"),
    size_px: tuple[int, int] = (1000, 800),
    max_triangles_per_structure: int = 60_000,
) -> list[Path]:
    """Render PNG previews offscreen: ``preview_<scene>_<view>.png`` for each scene and view.

    Every image of one call shares one camera framing (the bounding box of all meshes), so
    before/after images can be compared directly. Images carry a title, orientation letters at
    the edges (R/L, A/P, S/I, patient directions) and a legend.

    Parameters
    ----------
    meshes : mapping of str to Mesh
        RAS world mm.
    out_dir : str or Path
        Created if needed.
    colours : mapping of str to (r, g, b), optional
        Floats in [0, 1]; default :func:`default_colours`.
    scenes : mapping of str to mapping of str to float, optional
        Scene name -> {structure: opacity}; default :func:`default_scenes`. Unknown structure
        names are ignored with a log message.
    views : sequence of str
        Keys of :data:`VIEWS`: ``anterior`` (camera in front of the patient, patient's right on
        the image's left, superior up) and ``superior`` (camera above the head looking down,
        anterior up).
    size_px : (int, int)
        Image width and height in pixels.
    max_triangles_per_structure : int
        Meshes are decimated to this size for rendering.

    Returns
    -------
    list of Path
        The PNG files, in scene then view order.

    Raises
    ------
    InputError
        If ``meshes`` is empty or a view is unknown.
    NotComputableError
        If offscreen rendering does not work here (see :func:`check_offscreen_rendering`).
    """
    from vtkmodules.util.numpy_support import vtk_to_numpy

    if not meshes:
        raise InputError("no meshes to render")
    unknown = [v for v in views if v not in VIEWS]
    if unknown:
        raise InputError(f"unknown views {unknown}; known: {sorted(VIEWS)}")
    check_offscreen_rendering()
    with _RENDER_LOCK:
        vtk = _vtk(rendering=True)
        try:
            return _render(vtk, vtk_to_numpy, meshes, out_dir, colours=colours, scenes=scenes,
                           views=views, size_px=size_px,
                           max_triangles_per_structure=max_triangles_per_structure)
        finally:  # the window is kept for the next call: leave nothing of this one in it,
            # and release its OpenGL context (the next call may come from another thread)
            window = _render_window(vtk)
            window.GetRenderers().RemoveAllItems()
            window.ReleaseCurrent()


def _render(vtk, vtk_to_numpy, meshes, out_dir, *, colours, scenes, views, size_px,
            max_triangles_per_structure) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = dict(default_colours(list(meshes))) | dict(colours or {})
    scenes = dict(scenes) if scenes is not None else default_scenes(list(meshes))

    all_points = np.concatenate([m.vertices_mm for m in meshes.values()])
    lo, hi = all_points.min(axis=0), all_points.max(axis=0)
    centre = (lo + hi) / 2.0
    radius_mm = float(np.linalg.norm(hi - lo) / 2.0) or 1.0

    polydata = {}
    for name, mesh in meshes.items():
        small = decimate_mesh(mesh, max_triangles=max_triangles_per_structure)
        normals = vtk.vtkPolyDataNormals()
        normals.SetInputData(_arrays_polydata(small.vertices_mm, small.faces))
        normals.SplittingOff()
        normals.ConsistencyOff()
        normals.AutoOrientNormalsOff()
        normals.Update()
        polydata[name] = normals.GetOutput()

    window = _render_window(vtk)
    window.SetSize(int(size_px[0]), int(size_px[1]))
    written = []
    for scene_name, members in scenes.items():
        renderer = vtk.vtkRenderer()
        renderer.SetBackground(1.0, 1.0, 1.0)
        # translucency by weighted blended order-independent transparency: one geometry pass
        # (depth peeling with 6 peels took ~4x the CPU time on llvmpipe for nearly the same
        # image: mean pixel difference 1-5 of 255 on IRCADb 01, bench/RESULTS.md "## Previews")
        renderer.SetUseDepthPeeling(0)
        renderer.SetUseOIT(1)
        legend_names = []
        for name, opacity in members.items():
            if name not in polydata:
                log.info("scene %r: no mesh %r, skipped", scene_name, name)
                continue
            mapper = vtk.vtkPolyDataMapper()
            mapper.SetInputData(polydata[name])
            mapper.ScalarVisibilityOff()  # else vtk colours by scalars (black meshes)
            actor = vtk.vtkActor()
            actor.SetMapper(mapper)
            prop = actor.GetProperty()
            prop.SetColor(*[float(c) for c in colours[name]])
            prop.SetOpacity(float(opacity))
            prop.SetSpecular(0.25)
            prop.SetSpecularPower(20.0)
            prop.SetDiffuse(0.85)
            prop.SetAmbient(0.15)
            renderer.AddActor(actor)
            legend_names.append(name)
        if not legend_names:
            log.warning("scene %r has none of its structures: not rendered", scene_name)
            continue
        for actor in _legend(legend_names, colours):
            renderer.AddViewProp(actor)
        window.AddRenderer(renderer)
        for view in views:
            towards_camera, view_up = (np.asarray(v, float) for v in VIEWS[view])
            camera = renderer.GetActiveCamera()
            camera.SetViewUp(*view_up)
            camera.ParallelProjectionOn()
            # frame the bounding box of every mesh (same framing for every scene of a view)
            corners = np.array([[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1])
                                for c in (lo[2], hi[2])]) - centre
            screen_right_ = np.cross(-towards_camera, view_up)
            half_width = np.abs(corners @ screen_right_).max()
            half_height = np.abs(corners @ view_up).max()
            aspect = size_px[0] / size_px[1]
            # the model goes in the left 78 % of the image, the legend column to its right
            scale = max(half_height, half_width / (aspect * 0.78)) * 1.12
            camera.SetParallelScale(scale)
            focal = centre + screen_right_ * (0.5 - 0.39) * 2.0 * scale * aspect
            camera.SetFocalPoint(*focal)
            camera.SetPosition(*(focal + towards_camera * radius_mm * 4.0))
            renderer.ResetCameraClippingRange()
            texts = _view_texts(f"{scene_name} resection - {view} view", screen_right_, view_up)
            for t in texts:
                renderer.AddViewProp(t)
            window.Render()
            grab = vtk.vtkWindowToImageFilter()
            grab.SetInput(window)
            grab.SetInputBufferTypeToRGB()
            grab.ReadFrontBufferOff()
            grab.ShouldRerenderOff()  # just rendered: read the back buffer as it is
            grab.Update()
            image = grab.GetOutput()
            if vtk_to_numpy(image.GetPointData().GetScalars()).max() == 0:
                raise HepatoplanError(
                    "offscreen rendering produced an all-black image: no working OpenGL "
                    "(install libegl1 and libgl1-mesa-dri, or run with a display)")
            path = out_dir / f"preview_{scene_name}_{view}.png"
            tmp = path.with_name(path.stem + ".part.png")
            writer = vtk.vtkPNGWriter()
            writer.SetCompressionLevel(PNG_COMPRESSION_LEVEL)
            writer.SetFileName(str(tmp))
            writer.SetInputData(image)
            writer.Write()
            tmp.replace(path)
            written.append(path)
            for t in texts:
                renderer.RemoveViewProp(t)
        window.RemoveRenderer(renderer)
    log.info("rendered %d previews to %s", len(written), out_dir)
    return written


_window = None


def _render_window(vtk):
    """This process's offscreen render window, made on first use and kept (call under
    :data:`_RENDER_LOCK`): llvmpipe compiles each shader program once per OpenGL context, which
    took about a third of a plan's rendering time when every call made its own window."""
    global _window
    if _window is None:
        _window = vtk.vtkRenderWindow()
        _window.SetOffScreenRendering(1)
        _window.SetAlphaBitPlanes(1)
        _window.SetMultiSamples(0)
    return _window


def _text(text: str, x: float, y: float, *, size: int, justify: str = "left", bold=False):
    vtk = _vtk(rendering=True)

    actor = vtk.vtkTextActor()
    actor.SetInput(text)
    actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
    actor.SetPosition(x, y)
    prop = actor.GetTextProperty()
    prop.SetFontSize(size)
    prop.SetColor(0.1, 0.1, 0.1)
    prop.SetBold(bold)
    prop.SetJustification({"left": 0, "centre": 1, "right": 2}[justify])
    prop.SetVerticalJustification(1)
    return actor


def _view_texts(title: str, screen_right: np.ndarray, view_up: np.ndarray):
    right, up = _direction_letter(screen_right), _direction_letter(view_up)
    left, down = _direction_letter(-screen_right), _direction_letter(-view_up)
    return [
        _text(title, 0.02, 0.97, size=20, bold=True),
        _text(left, 0.02, 0.5, size=22, bold=True),
        _text(right, 0.98, 0.5, size=22, justify="right", bold=True),
        _text(up, 0.5, 0.93, size=22, justify="centre", bold=True),
        _text(down, 0.5, 0.03, size=22, justify="centre", bold=True),
    ]


def _legend(names: Sequence[str], colours: Mapping[str, Sequence[float]]) -> list:
    """Bottom-right legend (right of the model at the default 5:4 size): a coloured square and the structure's name in dark text."""
    # tumours share one colour: one legend line for all of them
    tumours = [n for n in names if structure_kind(n) == "tumour"]
    if len(tumours) > 1:
        first = list(names).index(tumours[0])
        rest = [n for n in names if n not in tumours]
        label = f"tumours ({len(tumours)})"
        colours = dict(colours) | {label: colours[tumours[0]]}
        names = rest[:first] + [label] + rest[first:]
    actors = []
    line = 0.035
    for i, name in enumerate(reversed(list(names))):
        y = 0.02 + line * (i + 1)
        square = _text("    ", 0.80, y, size=14)
        square.GetTextProperty().SetBackgroundColor(*[float(c) for c in colours[name]])
        square.GetTextProperty().SetBackgroundOpacity(1.0)
        actors.append(square)
        actors.append(_text(name, 0.835, y, size=16))
    return actors
