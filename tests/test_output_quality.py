"""What ``plan`` writes, checked with the readers users have (issue 14, output side).

- ``report.json``: every number rounded to its meaning (0.01 mL, mm, %; fractions 4 significant
  digits; the grid's spacing 6), on the demo and on IRCADb 01 with its masks;
- meshes: every STL, OBJ and GLB mesh of the demo and of IRCADb 01 (segments, remnant, resected,
  tumours, vessels) is closed and 2-manifold as trimesh reads it (watertight, consistently wound,
  no duplicate triangle, each edge shared by exactly two triangles);
- the GLB passes the Khronos glTF validator (npm ``gltf-validator``; skipped without node or it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hepatoplan.pipeline.cli import main
from hepatoplan.pipeline.report import DIMENSIONLESS, GEOMETRY_KEYS, rounded

IRCADB_01 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ircadb" / "01"


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ircadb01_out(tmp_path_factory) -> Path:
    """IRCADb 01 planned from its masks (right hepatectomy + every wedge, as bench/compare_outputs.py)."""
    if not (IRCADB_01 / "ct.nii.gz").is_file():
        pytest.skip(f"real data not found at {IRCADB_01} (see ../shared/data/README.md)")
    out = tmp_path_factory.mktemp("ircadb01") / "out"
    masks = {"--liver": "liver", "--tumours": "tumours", "--portal": "portal_vein", "--hepatic": "hepatic_veins"}
    assert main(["plan", str(IRCADB_01 / "ct.nii.gz"), *(a for flag, name in masks.items()
                                                         for a in (flag, str(IRCADB_01 / f"{name}.nii.gz"))),
                 "--resect", "right-hepatectomy", "--resect", "wedge:all", "--out", str(out)]) == 0
    return out


# --------------------------------------------------------------------------- report.json numbers


def _numbers(node, path=()):
    """(path of keys, float) of every float outside ``provenance``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "provenance":
                yield from _numbers(value, (*path, str(key)))
    elif isinstance(node, list):
        for value in node:
            yield from _numbers(value, path)
    elif isinstance(node, float):
        yield path, node


def _decimals(value: float) -> int:
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def _significant(value: float) -> int:
    """Significant digits of the shortest text that reads back as ``value`` (as JSON writes it)."""
    return len(repr(abs(value)).split("e")[0].replace(".", "").strip("0"))


def test_rounding_rule():
    report = {"volumes_ml": {"liver": 699.4400024414062, "segments": {"1": 12.345678}},
              "resection": {"flr_percent": 7.199999999999999, "tumours": [{"resected_fraction": 0.123456789,
                                                                          "min_margin_mm": 1.23456}]},
              "criteria": [{"value": 1.30666, "unit": "%"}, {"value": 1.30666}],
              "geometry": {"spacing_mm": [0.5703125, 1.600000023841858]},
              "provenance": {"options": {"margin_mm": 1.23456}}, "count": 3, "none": None}
    assert rounded(report) == {
        "volumes_ml": {"liver": 699.44, "segments": {"1": 12.35}},
        "resection": {"flr_percent": 7.2, "tumours": [{"resected_fraction": 0.1235, "min_margin_mm": 1.23}]},
        "criteria": [{"value": 1.31, "unit": "%"}, {"value": 1.307}],
        "geometry": {"spacing_mm": [0.570312, 1.6]},
        "provenance": {"options": {"margin_mm": 1.23456}}, "count": 3, "none": None}


@pytest.mark.slow
@pytest.mark.parametrize("which", ["demo", "ircadb01"])
def test_report_numbers_have_their_meaning_digits(which, request):
    out = request.getfixturevalue(f"{which}_out")
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    numbers = list(_numbers(report))
    assert len(numbers) > 40
    for path, value in numbers:
        named = [k for k in path if not k.isdigit()]
        if any(k in GEOMETRY_KEYS for k in path):
            assert _significant(value) <= 6, (path, value)
        elif named and named[-1].endswith(DIMENSIONLESS):
            assert _significant(value) <= 4, (path, value)
        else:
            assert _decimals(value) <= 2, (path, value)


# --------------------------------------------------------------------------- meshes


def _row_keys(rows, n_vertices):
    """One int64 per row of vertex indices, the same for the same vertices in any order: ``np.unique``
    of these counts what ``np.unique(np.sort(rows, axis=1), axis=0)`` counts, without its slow sort of
    rows as void records (a quarter of this file's CPU on IRCADb 01's meshes)."""
    assert n_vertices ** rows.shape[1] < 2**63, "too many vertices for int64 row keys"
    keys = np.zeros(len(rows), np.int64)
    for column in np.sort(rows, axis=1).astype(np.int64).T:
        keys = keys * n_vertices + column
    return keys


def _manifold_problems(mesh) -> dict:
    """What keeps a trimesh mesh (vertices merged by position) from being closed and 2-manifold."""
    mesh.merge_vertices()
    n = max(len(mesh.vertices), 1)
    faces = _row_keys(mesh.faces, n)
    _, edge_counts = np.unique(_row_keys(mesh.edges, n), return_counts=True)
    problems = {"not watertight": not mesh.is_watertight,
                "winding not consistent": not mesh.is_winding_consistent,
                "duplicate faces": len(faces) - len(np.unique(faces)),
                "edges not shared by 2 faces": int(np.count_nonzero(edge_counts != 2))}
    return {k: v for k, v in problems.items() if v}


def test_manifold_problems_are_found():
    """The check can fail: a closed tetrahedron passes; a duplicated face, a missing face (open edges)
    and a flipped face (inconsistent winding) are each reported."""
    import trimesh

    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], float)
    faces = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert _manifold_problems(trimesh.Trimesh(vertices, faces, process=False)) == {}
    duplicated = _manifold_problems(trimesh.Trimesh(vertices, np.vstack([faces, faces[:1]]), process=False))
    assert duplicated["duplicate faces"] == 1
    assert _manifold_problems(trimesh.Trimesh(vertices, faces[:3], process=False))["edges not shared by 2 faces"] == 3
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]
    assert "winding not consistent" in _manifold_problems(trimesh.Trimesh(vertices, flipped, process=False))


@pytest.mark.slow
@pytest.mark.parametrize("which", ["demo", "ircadb01"])
def test_every_mesh_file_is_closed_and_manifold(which, request):
    """Every STL, OBJ and GLB mesh of the demo and of full-size IRCADb 01 as trimesh reads it: closed,
    consistently wound, no duplicate triangle, each edge shared by exactly two triangles."""
    import trimesh

    out = request.getfixturevalue(f"{which}_out")
    files = sorted((out / "meshes").glob("*.stl")) + sorted((out / "meshes").glob("*.obj"))
    assert len(files) >= 2 * (12 if which == "ircadb01" else 8), files
    problems = {f.name: _manifold_problems(trimesh.load(f, force="mesh")) for f in files}
    scene = trimesh.load(out / "plan.glb")
    problems |= {f"plan.glb {name}": _manifold_problems(g.copy()) for name, g in scene.geometry.items()}
    assert len(scene.geometry) == len(files) // 2
    assert {k: v for k, v in problems.items() if v} == {}


def _gltf_validator() -> str | None:
    """NODE_PATH holding the npm package ``gltf-validator`` (global install), or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return None
    root = subprocess.run(["npm", "root", "-g"], capture_output=True, text=True, timeout=60).stdout.strip()
    return root if root and (Path(root) / "gltf-validator").is_dir() else None


@pytest.mark.slow
def test_glb_passes_the_khronos_validator(demo_out, ircadb01_out):
    node_path = _gltf_validator()
    if node_path is None:
        pytest.skip("needs node and the Khronos glTF validator (npm i -g gltf-validator)")
    script = ("const v=require('gltf-validator'),fs=require('fs');"
              "v.validateBytes(new Uint8Array(fs.readFileSync(process.argv[1])))"
              ".then(r=>console.log(JSON.stringify(r.issues)))")
    for out in (demo_out, ircadb01_out):
        proc = subprocess.run(["node", "-e", script, str(out / "plan.glb")], capture_output=True, text=True,
                              timeout=300, env={**os.environ, "NODE_PATH": node_path})
        assert proc.returncode == 0, proc.stderr
        issues = json.loads(proc.stdout)
        assert issues["numErrors"] == 0 and issues["numWarnings"] == 0, issues["messages"][:10]


def test_decimation_helper_gives_the_library_s_answer_and_survives_its_death():
    """The decimations run in a helper process (fast-simplification holds the GIL): its answer is the
    library's own, and a helper that died is replaced (or the call made in this process)."""
    import fast_simplification
    from skimage.measure import marching_cubes

    from hepatoplan.pipeline import meshing

    grid = np.add.reduce(np.indices((24, 24, 24), dtype=np.float32) ** 2 - 2 * 11.5 * np.indices((24, 24, 24)) + 11.5**2)
    points, faces, *_ = marching_cubes(grid, level=81.0)  # a sphere of radius 9 voxels
    points, faces = np.ascontiguousarray(points, np.float32), np.ascontiguousarray(faces, np.int32)
    expected = fast_simplification.simplify(points.copy(), faces.copy(), target_reduction=0.7)
    for _ in range(2):
        with meshing._SIMPLIFY_LOCK:
            got = meshing._decimate(points, faces, 0.7)
            helper = meshing._simplifier
        assert helper is not None and helper.poll() is None
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-5)
        helper.kill()  # the next call starts another
        helper.wait()


def test_a_dead_decimation_helper_with_unsent_input_ends_quietly():
    """The exit hook reaps a helper that died with input still buffered for it: no traceback."""
    import sys

    code = ("from hepatoplan.pipeline import meshing\n"
            "with meshing._SIMPLIFY_LOCK:\n    helper = meshing._start_simplifier()\n"
            "helper.kill(); helper.wait()\nhelper.stdin.write(b'x' * 100)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
