"""Meshes in world coordinates, mesh files (GLB/STL/OBJ) and offscreen PNG previews."""

import json
import os
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from output_phantom import phantom_structures
from hepatoplan.pipeline.io import LPS_TO_RAS
from hepatoplan.pipeline.labels import structures_from_labels
from hepatoplan.pipeline.mesh_files import LPS_MM_TO_GLTF, write_meshes
from hepatoplan.pipeline.meshing import (Mesh, decimate_mesh, mesh_centroid_mm, mesh_volume_mm3,
                                         structure_meshes, surface_mesh)
from hepatoplan.pipeline.rendering import default_scenes, render_previews

# flipped (det < 0), anisotropic, permuted and off-origin: mesh must still be right
AFFINES = {
    "flipped_x_z": np.array([[-0.8, 0, 0, 40.0], [0, 0.7, 0, -60.0], [0, 0, -2.5, 100.0], [0, 0, 0, 1]]),
    "permuted_flipped_y": np.array([[0, 0, 2.0, -30.0], [-0.9, 0, 0, 70.0], [0, 0.75, 0, -20.0],
                                    [0, 0, 0, 1]]),
    "plain": np.diag([1.2, 1.0, 3.0, 1.0]),
    # oblique acquisition: grid rotated 20 degrees about z (and mirrored in y)
    "oblique_20deg": np.array([
        [0.9 * np.cos(0.349), 0.8 * np.sin(0.349), 0, 0.0],
        [0.9 * np.sin(0.349), -0.8 * np.cos(0.349), 0, 0.0],
        [0, 0, 2.5, 0.0],
        [0, 0, 0, 1]]),
}


def _ellipsoid_mask(affine, shape=(120, 130, 60), centre=(-5.0, 10.0, 20.0), axes=(40.0, 30.0, 35.0)):
    idx = np.indices(shape).reshape(3, -1).T.astype(float)
    world = idx @ affine[:3, :3].T + affine[:3, 3]
    inside = (((world - centre) / axes) ** 2).sum(axis=1) < 1
    return inside.reshape(shape), world[inside].mean(axis=0)


def _fit_shape(affine):
    """A grid shape that covers the ellipsoid whatever the axis order (and rotation)."""
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return tuple(int(np.ceil(125 / s)) for s in spacing)


@pytest.mark.parametrize("block", [(1, 1, 1), (2, 2, 1), (1, 3, 2)])
@pytest.mark.parametrize("name", sorted(AFFINES))
def test_mesh_volume_centroid_and_outward_normals(name, block):
    affine = AFFINES[name].copy()
    shape = _fit_shape(affine)
    # put the grid's centre at the world origin region so the ellipsoid is inside
    affine[:3, 3] = -affine[:3, :3] @ (np.array(shape) / 2.0) + np.array([-5.0, 10.0, 20.0])
    mask, centroid_mm = _ellipsoid_mask(affine, shape=shape)
    voxel_ml = abs(np.linalg.det(affine[:3, :3]))
    mask_mm3 = mask.sum() * voxel_ml

    mesh = surface_mesh(mask, affine_ras=affine, block_voxels=block)
    assert mesh.vertices_mm.dtype == np.float32 and mesh.faces.dtype == np.int32
    volume = mesh_volume_mm3(mesh)
    assert volume > 0, "normals point inwards"
    assert abs(volume / mask_mm3 - 1) < 0.01
    np.testing.assert_allclose(mesh_centroid_mm(mesh), centroid_mm, atol=0.3)
    # every face normal points away from the (convex) solid's centre
    tri = mesh.vertices_mm[mesh.faces].astype(float)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = np.einsum("ij,ij->i", normals, tri.mean(axis=1) - centroid_mm)
    assert (outward > 0).mean() > 0.99


def test_mask_touching_the_border_gives_a_closed_mesh():
    import trimesh

    mask = np.zeros((20, 20, 10), bool)
    mask[:12, 5:15, :] = True  # touches three faces of the array
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    mesh = surface_mesh(mask, affine_ras=affine, smoothing_iterations=0, target_reduction=0)
    assert trimesh.Trimesh(mesh.vertices_mm, mesh.faces, process=False).is_watertight
    assert mesh_volume_mm3(mesh) == pytest.approx(mask.sum() * 2.0, rel=0.1)


def test_is_closed_manifold():
    from hepatoplan.pipeline.meshing import is_closed_manifold

    tetrahedron = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]])
    assert is_closed_manifold(tetrahedron)
    assert is_closed_manifold(np.r_[tetrahedron, tetrahedron + 4])  # two pieces
    assert not is_closed_manifold(tetrahedron[1:])  # open
    assert not is_closed_manifold(np.r_[tetrahedron[:1, ::-1], tetrahedron[1:]])  # one triangle wound the other way
    assert not is_closed_manifold(np.r_[tetrahedron, tetrahedron[:1]])  # a triangle twice
    # a second tetrahedron on the edge (0, 1): four triangles share it
    assert not is_closed_manifold(np.r_[tetrahedron, np.array([[1, 0, 4], [0, 5, 4], [1, 4, 5], [0, 1, 5]])])
    assert not is_closed_manifold(np.array([[0, 0, 1]]))  # a repeated vertex
    assert not is_closed_manifold(np.zeros((0, 3), int))
    mask = np.zeros((12, 12, 8), bool)
    mask[2:9, 3:10, 2:6] = True
    assert is_closed_manifold(surface_mesh(mask, affine_ras=np.diag([0.7, 0.7, 1.6, 1.0])).faces)


def test_parenchyma_block_voxels():
    from hepatoplan.pipeline.meshing import parenchyma_block_voxels

    assert parenchyma_block_voxels((0.57, 0.57, 1.6)) == (3, 3, 1)  # 1.71 mm blocks, nearest 1.6
    assert parenchyma_block_voxels((0.75, 0.75, 2.0)) == (3, 3, 1)
    assert parenchyma_block_voxels((0.8, 0.8, 1.0)) == (1, 1, 1)  # 1.25 rounds down
    assert parenchyma_block_voxels((1.5, 1.5, 2.5)) == (2, 2, 1)
    assert parenchyma_block_voxels((1.0, 1.0, 1.0)) == (1, 1, 1)
    assert parenchyma_block_voxels((3.0, 0.5, 1.0)) == (1, 6, 3)


def test_label_structures_meshed_in_their_boxes_with_parenchyma_blocks():
    """Meshes from a label map (boxes, blocks for parenchyma and tumours) are closed, outward, accurate."""
    import trimesh

    # 0.6 x 0.6 x 1.8 mm, mirrored in x: parenchyma is meshed from 3x3x1 blocks
    affine = np.array([[-0.6, 0, 0, 50.0], [0, 0.6, 0, -40.0], [0, 0, 1.8, 10.0], [0, 0, 0, 1]])
    shape = (200, 180, 60)
    liver, _ = _ellipsoid_mask(affine, shape=shape, centre=(-10.0, 15.0, 60.0), axes=(45, 38, 40))
    tumour, tumour_centroid = _ellipsoid_mask(affine, shape=shape, centre=(-20.0, 15.0, 60.0),
                                              axes=(16, 14, 15))
    world_x = (np.arange(shape[0]) * -0.6 + 50.0)[:, None, None]
    labels = np.where(liver, np.where(world_x > -10.0, 15, 3), 0).astype(np.uint8)
    labels[tumour] = 21
    structures = structures_from_labels(labels)
    meshes = structure_meshes(structures, affine_ras=affine)
    assert list(meshes) == list(structures)  # made largest box first, returned in the labels' order
    voxel_mm3 = 0.6 * 0.6 * 1.8
    for name in ("segment 3", "segment 5", "remnant", "resected", "tumour 1"):
        mesh = meshes[name]
        mask_mm3 = np.asarray(structures[name]).sum() * voxel_mm3
        # parenchyma and the 14 mL tumour (blocks) within 1 %
        assert abs(mesh_volume_mm3(mesh) / mask_mm3 - 1) < 0.01, name
        assert trimesh.Trimesh(mesh.vertices_mm, mesh.faces, process=False).is_watertight, name
    np.testing.assert_allclose(mesh_centroid_mm(meshes["tumour 1"]), tumour_centroid, atol=0.3)
    # the same tumour mask meshed from the full array gives the same mesh (box offsets right), from
    # the parenchyma's blocks (this one keeps its volume there), coarser than the full grid's
    whole = surface_mesh(labels == 21, affine_ras=affine, block_voxels=(3, 3, 1))
    np.testing.assert_allclose(whole.vertices_mm, meshes["tumour 1"].vertices_mm, atol=1e-4)
    assert len(whole.faces) < len(surface_mesh(labels == 21, affine_ras=affine).faces) / 2
    # parenchyma: coarser than the tumour's full-grid mesh, but in the same place
    liver_centroid = (np.argwhere(labels == 15) @ affine[:3, :3].T + affine[:3, 3]).mean(axis=0)
    np.testing.assert_allclose(mesh_centroid_mm(meshes["resected"]), liver_centroid, atol=0.3)


def test_thin_structures_fall_back_from_blocks_to_the_full_grid():
    """A sheet one voxel thin is not kept by 2x2 blocks: such a structure uses the full grid."""
    affine = np.diag([0.6, 0.6, 1.8, 1.0])
    mask = np.zeros((80, 80, 30), bool)
    mask[10:40, 10:40, 5:25] = True  # a thick box ...
    mask[45, 10:70, 5:25] = True  # ... and a sheet one voxel thin in-plane
    full = surface_mesh(mask, affine_ras=affine)
    blocks = surface_mesh(mask, affine_ras=affine, block_voxels=(2, 2, 1))
    np.testing.assert_array_equal(blocks.faces, full.faces)
    thick = mask.copy()
    thick[45] = False
    assert len(surface_mesh(thick, affine_ras=affine, block_voxels=(2, 2, 1)).faces) < \
        len(surface_mesh(thick, affine_ras=affine).faces)


def test_vessel_block_voxels():
    from hepatoplan.pipeline.meshing import vessel_block_voxels

    assert vessel_block_voxels((0.57, 0.57, 1.6)) == (2, 2, 1)  # IRCADb 01: 1.14 mm blocks
    assert vessel_block_voxels((0.78, 0.78, 1.6)) == (2, 2, 1)  # IRCADb 07: 1.56 mm, not wider than a slice
    assert vessel_block_voxels((0.82, 0.82, 1.6)) == (1, 1, 1)
    assert vessel_block_voxels((1.0, 1.0, 1.0)) == (1, 1, 1)
    assert vessel_block_voxels((0.5, 1.0, 2.5)) == (2, 2, 1)


def test_vessels_from_blocks_keep_their_thin_branches():
    """A vessel tree on a 0.6 x 0.6 x 1.8 mm grid is meshed from 2x2x1 blocks: a branch one voxel wide,
    running diagonally in-plane (a quarter of each block it crosses), stays joined to the trunk; the mesh is
    closed, in one piece, coarser than the full grid's and within a few percent of the voxels' volume."""
    import trimesh

    affine = np.diag([0.6, 0.6, 1.8, 1.0])
    mask = np.zeros((90, 90, 24), bool)
    i, j = np.indices(mask.shape[:2])
    mask[(i - 30) ** 2 + (j - 30) ** 2 < 36, 2:22] = True  # a trunk 7 mm wide, along z
    for k in range(35, 80):  # a diagonal branch one voxel wide, from the trunk, in slices 10-12
        mask[k, k, 10:13] = mask[k - 1, k, 10:13] = True
    mesh = structure_meshes({"portal vein": mask}, affine_ras=affine)["portal vein"]
    full = surface_mesh(mask, affine_ras=affine)
    tri = trimesh.Trimesh(mesh.vertices_mm, mesh.faces, process=False)
    assert tri.is_watertight and len(tri.split(only_watertight=False)) == 1
    assert len(mesh.faces) < 0.6 * len(full.faces)
    assert abs(mesh_volume_mm3(mesh) / (mask.sum() * 0.6 * 0.6 * 1.8) - 1) < 0.1
    # the branch's far end is in the mesh (not cut off): a vertex within a voxel of it
    end_mm = np.array([79, 79, 11]) * [0.6, 0.6, 1.8]
    assert np.linalg.norm(mesh.vertices_mm - end_mm, axis=1).min() < 1.0


def test_blocks_whose_smoothed_mesh_drifts_fall_back_to_the_full_grid(monkeypatch):
    """The blocks' contour keeps the volume, but the mesh after smoothing and decimation is checked
    too: a smoothing that shrinks it by ~3 % gives the full grid's mesh instead."""
    from hepatoplan.pipeline import meshing

    affine = np.diag([0.6, 0.6, 1.8, 1.0])
    mask = np.zeros((80, 80, 30), bool)
    mask[10:60, 10:60, 5:25] = True
    kept = surface_mesh(mask, affine_ras=affine, block_voxels=(3, 3, 1))
    smooth = meshing._smooth
    monkeypatch.setattr(meshing, "_smooth", lambda *a: (lambda p, f: (p * 0.99, f))(*smooth(*a)))
    shrunk_blocks = surface_mesh(mask, affine_ras=affine, block_voxels=(3, 3, 1))
    shrunk_full = surface_mesh(mask, affine_ras=affine)
    assert len(kept.faces) < len(shrunk_full.faces)
    np.testing.assert_array_equal(shrunk_blocks.faces, shrunk_full.faces)
    np.testing.assert_array_equal(shrunk_blocks.vertices_mm, shrunk_full.vertices_mm)


def test_empty_structures_are_left_out(caplog):
    mask = np.zeros((10, 10, 10), bool)
    full = mask.copy()
    full[3:7, 3:7, 3:7] = True
    meshes = structure_meshes({"a": mask, "b": full}, affine_ras=np.eye(4))
    assert list(meshes) == ["b"]
    assert "'a' is empty" in caplog.text


def test_decimate_keeps_orientation():
    mask, _ = _ellipsoid_mask(np.eye(4), shape=(100, 80, 90), centre=(50, 40, 45), axes=(30, 25, 28))
    mesh = surface_mesh(mask, affine_ras=np.eye(4), target_reduction=0)
    small = decimate_mesh(mesh, max_triangles=2000)
    assert len(small.faces) <= 2100
    assert mesh_volume_mm3(small) == pytest.approx(mesh_volume_mm3(mesh), rel=0.02)


@pytest.fixture(scope="module")
def phantom_meshes():
    structures, _, affine = phantom_structures()
    return structure_meshes(structures, affine_ras=affine, target_reduction=0.3), structures, affine


def _glb_json(path):
    data = path.read_bytes()
    assert data[:4] == b"glTF"
    length = struct.unpack("<I", data[12:16])[0]
    return json.loads(data[20:20 + length])


def test_write_meshes_glb_stl_obj_in_lps(phantom_meshes, tmp_path):
    import trimesh

    meshes, _, _ = phantom_meshes
    files = write_meshes(meshes, tmp_path)
    assert files[0] == tmp_path / "plan.glb"
    assert len(files) == 1 + 2 * len(meshes)

    gltf = _glb_json(files[0])
    nodes = gltf["nodes"]
    root = nodes[gltf["scenes"][0]["nodes"][0]]
    assert root["name"] == "patient_LPS_mm"
    np.testing.assert_allclose(np.reshape(root["matrix"], (4, 4)).T, LPS_MM_TO_GLTF)
    assert sorted(nodes[i]["name"] for i in root["children"]) == sorted(meshes)
    colour = {m["name"]: m["pbrMetallicRoughness"]["baseColorFactor"] for m in gltf["materials"]}
    # sRGB (255, 225, 0) as glTF linear-light
    assert colour["tumour 1"][:3] == pytest.approx([1.0, ((225 / 255 + 0.055) / 1.055) ** 2.4, 0.0],
                                                   abs=1e-12)

    assert all("NORMAL" in m["primitives"][0]["attributes"] for m in gltf["meshes"])

    scene = trimesh.load(files[0])
    tm = scene.geometry["tumour 1"]
    lps = meshes["tumour 1"].vertices_mm * np.float32([-1, -1, 1])  # RAS -> LPS
    np.testing.assert_allclose(tm.vertices, lps, atol=1e-3)

    stl = tmp_path / "meshes" / "tumour_1.stl"
    assert stl.read_bytes()[:9] == b"SPACE=LPS"
    st = trimesh.load(stl)
    assert st.volume == pytest.approx(mesh_volume_mm3(meshes["tumour 1"]), rel=1e-4)  # LPS flip keeps it outward
    np.testing.assert_allclose(st.center_mass, mesh_centroid_mm(meshes["tumour 1"]) * [-1, -1, 1], atol=1e-2)

    obj = (tmp_path / "meshes" / "portal_vein.obj").read_text()
    assert "# SPACE=LPS" in obj
    assert obj.count("\nv ") == len(meshes["portal vein"].vertices_mm)
    assert obj.count("\nf ") == len(meshes["portal vein"].faces)


def test_default_scenes():
    names = ["segment 1", "segment 5", "remnant", "resected", "tumour 1", "portal vein"]
    scenes = default_scenes(names)
    assert set(scenes["before"]) == {"segment 1", "segment 5", "tumour 1", "portal vein"}
    assert scenes["after"]["resected"] < scenes["after"]["remnant"] < scenes["after"]["tumour 1"]
    assert list(default_scenes(["liver", "tumour 1"])) == ["before"]


def test_render_previews_not_blank_and_oriented(phantom_meshes, tmp_path):
    import matplotlib.image as mpimg

    meshes, _, _ = phantom_meshes
    seen = {}  # on_written: each file, complete, and its pixels, in the writing thread
    files = render_previews(meshes, tmp_path, size_px=(500, 400),
                            on_written=lambda p, rgb: seen.setdefault(p, (p.read_bytes(), rgb.copy())))
    assert [f.name for f in files] == ["preview_before_anterior.png", "preview_before_superior.png",
                                       "preview_after_anterior.png", "preview_after_superior.png"]
    assert {f: data for f, (data, _) in seen.items()} == {f: f.read_bytes() for f in files}
    images = {f.stem: mpimg.imread(f)[..., :3] for f in files}
    for f in files:  # the pixels handed on are the file's
        assert np.array_equal(seen[f][1], np.round(images[f.stem] * 255).astype(np.uint8))
    for name, img in images.items():
        assert img.shape == (400, 500, 3)
        covered = (np.abs(img - 1.0).max(axis=2) > 0.05)[40:-40, 40:390].mean()  # model area
        assert 0.15 < covered < 0.9, (name, covered)
    assert not np.allclose(images["preview_before_anterior"], images["preview_after_anterior"])
    # anterior view: patient's right (the resected, reddish half) on the image's left,
    # the remnant (green) on the image's right
    img = images["preview_after_anterior"][60:340, 40:390]
    red = (img[..., 0] > img[..., 1] + 0.08)
    green = (img[..., 1] > img[..., 0] + 0.08)
    half = img.shape[1] // 2
    assert red[:, :half].sum() > 3 * red[:, half:].sum()
    assert green[:, half:].sum() > 3 * green[:, :half].sum()


def test_render_rejects_nothing():
    from hepatoplan.errors import InputError

    with pytest.raises(InputError):
        render_previews({}, "/nonexistent")
    mesh = Mesh(np.zeros((3, 3), np.float32), np.array([[0, 1, 2]], np.int32))
    with pytest.raises(InputError, match="unknown views"):
        render_previews({"x": mesh}, "/nonexistent", views=("left",))


DEMO_LIVER = Path(__file__).resolve().parents[1] / "data_samples" / "demo" / "liver.nii.gz"


def test_demo_phantom_liver_mesh_volume_and_centroid():
    """The shipped demo phantom's liver mask (LPS file, anisotropic grid), via nibabel's RAS."""
    import nibabel as nib

    if not DEMO_LIVER.is_file():
        pytest.skip(f"demo phantom not found at {DEMO_LIVER}")
    img = nib.as_closest_canonical(nib.load(DEMO_LIVER))
    mask = np.asarray(img.dataobj) > 0
    affine = img.affine
    mesh = surface_mesh(mask, affine_ras=affine)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    assert abs(mesh_volume_mm3(mesh) / (mask.sum() * voxel_mm3) - 1) < 0.02
    idx = np.argwhere(mask)
    centroid = (idx @ affine[:3, :3].T + affine[:3, 3]).mean(axis=0)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    np.testing.assert_allclose(mesh_centroid_mm(mesh), centroid, atol=0.1 * spacing.min())


def test_offscreen_rendering_probe(monkeypatch):
    import hepatoplan.pipeline.rendering as preview
    from hepatoplan.errors import NotComputableError

    monkeypatch.setattr(preview, "_render_backend", None)
    assert preview.check_offscreen_rendering().startswith("vtk")
    # without any usable EGL vendor (and no display) the probe fails cleanly, no crash
    monkeypatch.setattr(preview, "_render_backend", None)
    monkeypatch.setenv("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent/egl_vendor.json")
    monkeypatch.setenv("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    monkeypatch.delenv("DISPLAY", raising=False)
    with pytest.raises(NotComputableError, match="apt-get install libegl1"):
        preview.check_offscreen_rendering()


def _fresh_probe_state(monkeypatch, tmp_path):
    import hepatoplan.pipeline.rendering as preview

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for name, value in (("_render_backend", None), ("_probe", None), ("_render_verified", False)):
        monkeypatch.setattr(preview, name, value)
    return preview


def test_probe_answer_kept_per_machine_and_its_key(monkeypatch, tmp_path):
    preview = _fresh_probe_state(monkeypatch, tmp_path)
    backend = preview.check_offscreen_rendering()
    kept = json.loads(preview.probe_cache_path().read_text())
    assert kept["backend"] == backend and any("libEGL" in p or "libGL" in p for p in kept["libraries"])
    assert kept["key"]["files"]["/etc/ld.so.cache"] is not None

    def no_probe():
        raise AssertionError("probed although the kept answer holds")

    monkeypatch.setattr(preview, "_render_backend", None)
    monkeypatch.setattr(preview, "_start_probe", no_probe)
    preview.start_offscreen_check()
    assert preview._render_backend == backend and preview._probe is None
    # what decides the answer changed: the environment, a library's modification time
    monkeypatch.setenv("MESA_LOADER_DRIVER_OVERRIDE", "zink")
    assert preview._cached_backend() is None
    monkeypatch.delenv("MESA_LOADER_DRIVER_OVERRIDE")
    assert preview._cached_backend() == backend
    kept["key"]["files"][kept["libraries"][0]][1] -= 1
    preview.probe_cache_path().write_text(json.dumps(kept))
    assert preview._cached_backend() is None


def test_a_crashed_first_render_drops_the_kept_answer(monkeypatch, tmp_path):
    """A render that crashes the interpreter on the kept answer is an error (a fatal signal with the
    traceback), and the next check probes again instead of trusting the answer."""
    preview = _fresh_probe_state(monkeypatch, tmp_path)
    backend = preview.check_offscreen_rendering()
    crash = ("import os, signal; import hepatoplan.pipeline.rendering as r\n"
             "with r._verified_render():\n    os.kill(os.getpid(), signal.SIGSEGV)")
    proc = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == -signal.SIGSEGV and "Fatal Python error: Segmentation fault" in proc.stderr
    assert list(tmp_path.glob("hepatoplan/*.rendering-*"))
    assert preview._cached_backend() is None
    assert not preview.probe_cache_path().exists() and not list(tmp_path.glob("hepatoplan/*.rendering-*"))
    monkeypatch.setattr(preview, "_render_backend", None)
    assert preview.check_offscreen_rendering() == backend  # probed again, kept again
    with preview._verified_render():  # a render that ends leaves no marker, and is not checked again
        pass
    assert preview._render_verified and not list(tmp_path.glob("hepatoplan/*.rendering-*"))
    assert preview._cached_backend() == backend


def test_structures_from_labels():
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[0] = 5
    labels[1] = 15
    labels[2] = 9
    labels[3] = 19
    labels[4, :2] = 21
    labels[4, 2:] = 23
    vessel = np.zeros(labels.shape, bool)
    vessel[5, 0, 0] = True
    structures = structures_from_labels(labels, vessels={"portal vein": vessel,
                                                         "hepatic veins": np.zeros_like(vessel)})
    assert list(structures) == ["segment 5", "remnant", "resected", "tumour 1", "tumour 3",
                                "portal vein"]
    np.testing.assert_array_equal(structures["segment 5"], np.isin(labels, [5, 15]))
    np.testing.assert_array_equal(structures["remnant"], np.isin(labels, [5, 9]))
    np.testing.assert_array_equal(structures["resected"], np.isin(labels, [15, 19]))
    np.testing.assert_array_equal(structures["tumour 3"], labels == 23)
    assert structures["portal vein"] is not None and "segment 1" not in structures
    assert structures.box_voxels("portal vein") == labels.size  # a vessel is cropped by its own mask
    # no resection: the kept liver is the liver, not a "remnant"
    unresected = np.where(labels > 10, labels - 10, labels).astype(np.uint8)
    unresected[4] = 21
    assert list(structures_from_labels(unresected, segments=False)) == ["liver", "tumour 1"]
    # crops (mask inside the box of its label values) from found or given boxes
    from hepatoplan.arrays import label_boxes

    given = structures_from_labels(labels, boxes=label_boxes(labels))
    assert list(given) == list(structures)[:-1]
    for name in given:
        crop, start = given.crop(name)
        np.testing.assert_array_equal(crop, structures.crop(name)[0])
        assert given.box_voxels(name) == crop.size
        full = np.zeros(labels.shape, bool)
        full[tuple(slice(a, a + n) for a, n in zip(start, crop.shape))] = crop
        np.testing.assert_array_equal(full, structures[name])


def test_vertex_normals_unit_and_outward():
    from hepatoplan.pipeline.mesh_files import _vertex_normals

    mask, centroid = _ellipsoid_mask(np.eye(4), shape=(60, 50, 40), centre=(30, 25, 20), axes=(20, 15, 12))
    mesh = surface_mesh(mask, affine_ras=np.eye(4))
    v = mesh.vertices_mm.astype(float)
    normals = _vertex_normals(v, mesh.faces)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert (np.einsum("ij,ij->i", normals, v - centroid) > 0).mean() > 0.99
    # a pinched vertex (two tetrahedra touching at one point) still gets a unit normal
    pts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3], [0, 1, 2]])
    assert np.allclose(np.linalg.norm(_vertex_normals(pts, faces), axis=1), 1.0)


def test_render_from_two_threads(phantom_meshes, tmp_path):
    """Plans run in threads of one dask worker: rendering is serialised, both succeed."""
    from concurrent.futures import ThreadPoolExecutor

    meshes, _, _ = phantom_meshes
    small = {k: meshes[k] for k in ("remnant", "resected", "tumour 1")}
    with ThreadPoolExecutor(2) as pool:
        jobs = [pool.submit(render_previews, small, tmp_path / str(i), size_px=(200, 160),
                            views=("anterior",)) for i in range(2)]
        results = [job.result(timeout=120) for job in jobs]
    assert all(len(r) == 2 and all(p.stat().st_size > 1000 for p in r) for r in results)


def test_without_a_home_folder_the_probe_runs_and_nothing_is_kept(monkeypatch, tmp_path):
    """No $XDG_CACHE_HOME and no home folder (a user without a password entry): the probe runs as
    it did before answers were kept, and the render guard makes no marker."""
    from pathlib import Path as PathClass

    preview = _fresh_probe_state(monkeypatch, tmp_path)
    monkeypatch.delenv("XDG_CACHE_HOME")

    def no_home(cls=None):
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(PathClass, "home", classmethod(no_home))
    assert preview.probe_cache_path() is None and preview._cached_backend() is None
    assert preview.check_offscreen_rendering()  # probed
    with preview._verified_render() as guard:
        assert guard.marker is None
    assert not list(tmp_path.rglob("*render-probe*"))


def test_mesh_files_written_ahead_are_listed_not_written_again(phantom_meshes, tmp_path):
    """``write_meshes(written=)``: the STL and OBJ of those very meshes are listed in place, not written again
    (plan writes the segments', tumours' and vessels' while the resection's are made); the same files in the
    same order as one call; a mesh of that name that is another object is written."""
    meshes, _, _ = phantom_meshes
    full = write_meshes(meshes, tmp_path / "one")
    names = list(meshes)
    ahead = {n: meshes[n] for n in names[:3]} | {names[3]: Mesh(meshes[names[3]].vertices_mm, meshes[names[3]].faces)}
    write_meshes(ahead, tmp_path / "two", formats=("stl", "obj"))
    kept, rewritten = (tmp_path / "two" / p.relative_to(tmp_path / "one") for p in (full[1], full[7]))
    kept.write_bytes(b"written ahead")
    rewritten.write_bytes(b"another object")
    files = write_meshes(meshes, tmp_path / "two", written=ahead)
    assert [p.relative_to(tmp_path / "two") for p in files] == [p.relative_to(tmp_path / "one") for p in full]
    assert kept.read_bytes() == b"written ahead"
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(full, files) if b != kept)


def test_render_previews_framed_by_other_meshes(phantom_meshes, tmp_path):
    """``framing``: the images frame those meshes' box, whatever the scenes draw."""
    meshes, _, _ = phantom_meshes
    scene = {"tumours": {"tumour 1": 1.0}}
    drawn = {}
    for name, kwargs in (("all", dict(meshes=meshes)), ("framed", dict(meshes=dict(list(meshes.items())[-4:]),
                                                                           framing=meshes)),
                         ("alone", dict(meshes={"tumour 1": meshes["tumour 1"]}))):
        [png] = render_previews(**kwargs, out_dir=tmp_path / name, scenes=scene, views=("anterior",),
                                size_px=(200, 160))
        drawn[name] = png.read_bytes()
    assert drawn["framed"] == drawn["all"] != drawn["alone"]


@pytest.mark.parametrize("up_filter", [True, False])
def test_png_bytes_hold_the_pixels(up_filter):
    """Both codings of pipeline/png.py decode (Pillow's reader) to the same pixels, first and last rows
    included; a wrong array is refused."""
    from io import BytesIO

    from PIL import Image

    from hepatoplan.errors import InputError
    from hepatoplan.pipeline.png import png_bytes

    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    rgb[5:20, 10:40] = (255, 255, 255)  # a flat region, as the renders' background
    with Image.open(BytesIO(png_bytes(rgb, up_filter=up_filter))) as image:
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), rgb)
    for wrong in (rgb.astype(np.uint16), rgb[..., :2], rgb[0]):
        with pytest.raises(InputError):
            png_bytes(wrong)


def test_obj_text_is_python_formatting(tmp_path):
    """The OBJ writer's numpy text is ``"v %.4f %.4f %.4f"`` / ``"f %d %d %d"``, byte for byte: signs of zero
    and of values that round to zero, ties either way, whole parts of 1 to 5 digits, float32 and float64 values."""
    from hepatoplan.pipeline.mesh_files import _write_obj

    rng = np.random.default_rng(5)
    edge = [0.0, -0.0, -1e-5, 5e-5, -5e-5, 0.03125, -0.09375, 1.00005, 0.99995, 123.45675, -999.99995, 12345.5,
            2.5, 99999.99995, 1e-9]
    for vertices in (np.c_[edge, edge[::-1], edge], rng.normal(0, 200, (3000, 3)),
                     rng.normal(0, 200, (3000, 3)).astype(np.float32).astype(np.float64),
                     rng.integers(-64000, 64000, (3000, 3)) / 32.0):
        faces = rng.integers(0, len(vertices), (2 * len(vertices), 3))
        path = _write_obj(tmp_path / "m.obj", vertices, faces, "m", (0.1, 0.2, 0.3))
        text = path.read_text()
        body = text[text.index("\nv ") + 1:]
        assert body == ("v %.4f %.4f %.4f\n" * len(vertices)) % tuple(vertices.ravel().tolist()) \
            + ("f %d %d %d\n" * len(faces)) % tuple((faces + 1).ravel().tolist())
