"""Mesh files: one GLB scene of the plan (``plan.glb``) and an STL and OBJ per structure.

Coordinate conventions
----------------------
* In memory (:class:`hepatoplan.pipeline.meshing.Mesh`): **RAS** world millimetres.
* STL and OBJ files: **LPS** world millimetres (x and y negated), as 3D Slicer and ITK expect;
  each file says so in its header (``SPACE=LPS``), which Slicer (≥ 4.11) reads, so the meshes
  overlay the CT when dragged into Slicer.
* GLB: mesh vertex data in LPS millimetres as well; one parent node ``patient_LPS_mm`` carries
  the matrix that maps LPS mm to glTF's convention (metres, +Y up = Superior, +Z towards the
  viewer = Anterior, +X = patient Left), so generic glTF viewers show the patient upright from
  the front.

Colours come from :mod:`hepatoplan.pipeline.labels`; every file is written atomically
(:mod:`hepatoplan.pipeline.outputs`).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from hepatoplan.errors import InputError

from .io import LPS_TO_RAS
from .labels import default_colours
from .meshing import Mesh
from .outputs import atomic_file, write_atomic

log = logging.getLogger(__name__)

#: Maps LPS millimetres to glTF scene units (metres, Y up = Superior, Z = Anterior, X = Left).
LPS_MM_TO_GLTF = np.array([
    [0.001, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.001, 0.0],
    [0.0, -0.001, 0.0, 0.0],
    [0.0, 0.0, 0.0, 1.0],
])


def _srgb_to_linear(c: float) -> float:
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


def _vertex_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit, area-weighted vertex normals; where they cancel (pinched voxel corners), the
    normal of a non-degenerate incident triangle, else +z (glTF requires unit normals)."""
    tri = points[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    # per vertex, the incident faces' normals summed in np.add.at's order (corner 0 of every
    # face, then corner 1, then corner 2), by one bincount per axis
    corners = faces.T.ravel()
    normals = np.stack([np.bincount(corners, weights=np.tile(face_n[:, a], 3), minlength=len(points))
                        for a in range(3)], axis=1)
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
    return np.asarray(mesh.vertices_mm, np.float64) @ LPS_TO_RAS.T  # the flip is its own inverse


def _write_stl(path: Path, vertices_lps: np.ndarray, faces: np.ndarray, name: str) -> Path:
    tri = vertices_lps[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    normals = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    header = f"SPACE=LPS hepatoplan mesh {name} (mm)".encode("ascii", "replace")[:80]
    record = np.zeros(len(faces), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    record["n"] = normals
    record["v"] = tri
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(header.ljust(80, b" "))
        f.write(np.uint32(len(faces)).tobytes())
        f.write(record.tobytes())
    return path


def _write_obj(path: Path, vertices_lps: np.ndarray, faces: np.ndarray, name: str,
               colour: tuple[float, float, float]) -> Path:
    lines = [f"# hepatoplan mesh {name}: world millimetres", "# SPACE=LPS",
             f"# colour {colour[0]:.4f} {colour[1]:.4f} {colour[2]:.4f}", f"o {_safe_filename(name)}"]
    head = ("\n".join(lines) + "\n").encode("utf-8")
    return write_atomic(path, head + _obj_lines(b"v", _four_decimals(vertices_lps))
                        + _obj_lines(b"f", [(column, None) for column in np.asarray(faces, np.int64).T.copy() + 1]))


#: Row v: the four ASCII digits of v (0000-9999), as one little-endian uint32.
_DIGITS4 = np.ascontiguousarray(np.indices((10,) * 4).reshape(4, -1).T + 48, np.uint8).view("<u4").ravel()


def _four_decimals(values: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per column of ``values`` (float, (N, 3)): (``round(|v| * 10**4)`` as ``"%.4f" % v`` rounds it, its sign bit)."""
    columns = []
    for v in np.asarray(values, np.float64).T.copy():
        scaled = np.abs(v) * 1e4
        rounded = np.rint(scaled).astype(np.int64)
        # a tie, or too near one for the float product to tell: rounded as Python's "%.4f" rounds it
        for i in np.flatnonzero(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6):
            rounded[i] = int(("%.4f" % abs(v[i])).replace(".", ""))
        columns.append((rounded, np.signbit(v)))
    return columns


def _obj_lines(prefix: bytes, columns: list[tuple[np.ndarray, np.ndarray | None]]) -> bytes:
    """OBJ lines ``prefix`` + one number per column + newline, the text of ``"%.4f"`` (a column with its sign
    bits: non-negative int64 ``round(|v| * 10**4)``, see :func:`_four_decimals`) or ``"%d"`` (sign ``None``:
    non-negative int64), written by numpy into one byte array (Python's ``%`` formatting took ~2x the CPU
    and held the GIL throughout; the same bytes, bench/RESULTS.md, mesh17)."""
    n = len(columns[0][0])
    widths = []
    for values, sign in columns:
        whole = values // 10000 if sign is not None else values
        digits = len(str(int(whole.max(initial=0))))
        widths.append((digits, 2 + digits + 5 * (sign is not None)))  # " " [-] digits [. 4 digits]
    chars = np.empty((n, len(prefix) + sum(w for _, w in widths) + 1), np.uint8)
    keep = np.ones(chars.shape, bool)
    chars[:, :len(prefix)] = np.frombuffer(prefix, np.uint8)
    chars[:, -1] = ord("\n")
    at = len(prefix)
    for (values, sign), (digits, width) in zip(columns, widths):
        whole = values // 10000 if sign is not None else values
        chars[:, at], chars[:, at + 1] = ord(" "), ord("-")
        keep[:, at + 1] = False if sign is None else sign
        field = slice(at + 2, at + 2 + digits)
        chunks = -(-digits // 4)  # the whole part in groups of four digits, then its leading zeros dropped
        groups = np.empty((n, chunks), "<u4")
        rest = whole
        for k in range(chunks - 1, -1, -1):
            rest, groups[:, k] = rest // 10000, _DIGITS4[rest % 10000]
        chars[:, field] = groups.view(np.uint8).reshape(n, 4 * chunks)[:, 4 * chunks - digits:]
        keep[:, field] = whole[:, None] >= 10 ** np.arange(digits - 1, -1, -1, dtype=np.int64)
        keep[:, field.stop - 1] = True
        if sign is not None:
            chars[:, field.stop] = ord(".")
            chars[:, field.stop + 1:field.stop + 5] = _DIGITS4[values % 10000].view(np.uint8).reshape(n, 4)
        at += width
    return chars[keep].tobytes()


def write_meshes(
    meshes: Mapping[str, Mesh],
    out_dir: str | Path,
    *,
    colours: Mapping[str, Sequence[float]] | None = None,
    opacities: Mapping[str, float] | None = None,
    formats: Sequence[str] = ("glb", "stl", "obj"),
    glb_name: str = "plan.glb",
    written: Mapping[str, Mesh] | None = None,
) -> list[Path]:
    """Write the meshes: one GLB scene (named nodes, coloured), and one STL and OBJ per structure.

    Parameters
    ----------
    meshes : mapping of str to Mesh
        RAS world mm (as from :func:`hepatoplan.pipeline.meshing.structure_meshes`).
    out_dir : str or Path
        Created if needed. Per-structure files go to ``out_dir/meshes/<name>.stl|.obj``.
    colours : mapping of str to (r, g, b), optional
        sRGB floats in [0, 1]; default :func:`hepatoplan.pipeline.labels.default_colours`. Written to the GLB as glTF's
        linear ``baseColorFactor`` and to the OBJ as a ``# colour`` comment (sRGB).
    opacities : mapping of str to float, optional
        GLB material alpha per structure (default opaque; < 1 uses glTF alpha blending).
    formats : sequence of {"glb", "stl", "obj"}
        Which files to write.
    glb_name : str
        File name of the GLB scene in ``out_dir``.
    written : mapping of str to Mesh, optional
        Meshes whose STL and OBJ files an earlier call wrote (the same objects as in ``meshes``): listed, not
        written again (``plan`` writes those of the segments, tumours and vessels while the resection's are made).

    Returns
    -------
    list of Path
        The files written (GLB first).
    """
    unknown = set(formats) - {"glb", "stl", "obj"}
    if unknown:
        raise InputError(f"unknown mesh formats {sorted(unknown)}; known: glb, stl, obj")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = dict(default_colours(list(meshes))) | dict(colours or {})
    glb = []
    if "glb" in formats:
        glb.append(write_glb(meshes, out_dir / glb_name, colours=colours, opacities=opacities or {}))
    per_structure = [f for f in ("stl", "obj") if f in formats]
    if per_structure and meshes:
        (out_dir / "meshes").mkdir(exist_ok=True)
    before = written or {}
    files: list[Path] = []
    for name, mesh in meshes.items():
        stem = out_dir / "meshes" / _safe_filename(name)
        if before.get(name) is mesh:
            files += [stem.with_suffix(f".{f}") for f in per_structure]
            continue
        lps = _lps(mesh)
        if "stl" in per_structure:
            files.append(_write_stl(stem.with_suffix(".stl"), lps, mesh.faces, name))
        if "obj" in per_structure:
            files.append(_write_obj(stem.with_suffix(".obj"), lps, mesh.faces, name, tuple(colours[name])))
    log.info("wrote %d mesh files to %s", len(files) + len(glb), out_dir)
    return glb + files


def write_glb(meshes: Mapping[str, Mesh], path: Path, *, colours: Mapping[str, Sequence[float]],
              opacities: Mapping[str, float]) -> Path:
    """One glTF 2.0 binary scene: a named, coloured node per structure under ``patient_LPS_mm``.

    ``colours`` are sRGB floats (written as glTF's linear ``baseColorFactor``); ``opacities``
    below 1 use glTF alpha blending (default opaque). Each mesh has float32 positions (LPS mm),
    smooth unit vertex normals (glTF viewers draw flat facets without them) and uint32 indices,
    one buffer view each, in one binary chunk. Written here with numpy and json (the layout
    trimesh wrote before; trimesh's import alone took ~0.9 s of CPU per plan).
    """
    nodes: list[dict] = [{"name": "patient_LPS_mm", "children": [], "matrix": LPS_MM_TO_GLTF.T.ravel().tolist()}]
    gltf: dict = {"scene": 0, "scenes": [{"nodes": [0]}], "asset": {"version": "2.0", "generator": "hepatoplan"},
                  "accessors": [], "meshes": [], "materials": [], "nodes": nodes, "bufferViews": []}
    chunks: list[bytes] = []
    offset = 0
    for name, mesh in meshes.items():
        lps = _lps(mesh)
        arrays = (np.ascontiguousarray(mesh.faces, np.uint32).ravel(), lps.astype(np.float32),
                  _vertex_normals(lps, mesh.faces).astype(np.float32))
        first = len(gltf["accessors"])
        for (component, kind), array in zip(((5125, "SCALAR"), (5126, "VEC3"), (5126, "VEC3")), arrays):
            data = array.tobytes()  # every array is 4-byte aligned: uint32 and float32
            gltf["bufferViews"].append({"buffer": 0, "byteOffset": offset, "byteLength": len(data)})
            gltf["accessors"].append({
                "bufferView": len(gltf["bufferViews"]) - 1, "componentType": component, "type": kind,
                "count": len(array), "max": np.atleast_1d(array.max(axis=0)).tolist(),
                "min": np.atleast_1d(array.min(axis=0)).tolist()})
            chunks.append(data)
            offset += len(data)
        rgba = [_srgb_to_linear(float(c)) for c in colours[name]] + [float(opacities.get(name, 1.0))]
        gltf["materials"].append({
            "name": name, "pbrMetallicRoughness": {"baseColorFactor": rgba, "metallicFactor": 0.0,
                                                   "roughnessFactor": 0.8},
            "alphaMode": "BLEND" if rgba[3] < 1 else "OPAQUE", "doubleSided": False})
        gltf["meshes"].append({"name": name, "primitives": [{
            "attributes": {"POSITION": first + 1, "NORMAL": first + 2}, "indices": first, "mode": 4,
            "material": len(gltf["materials"]) - 1}]})
        nodes[0]["children"].append(len(nodes))
        nodes.append({"name": name, "mesh": len(gltf["meshes"]) - 1})
    gltf["buffers"] = [{"byteLength": offset}]
    text = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned: JSON padded with spaces
    binary = b"".join(chunks)
    size = 12 + 8 + len(text) + 8 + len(binary)
    return write_atomic(path, b"".join([
        struct.pack("<4sII", b"glTF", 2, size), struct.pack("<I4s", len(text), b"JSON"), text,
        struct.pack("<I4s", len(binary), b"BIN\x00"), binary]))
