"""The synthetic phantom: answers known by construction, orientation-safe writing, the shipped demo.

Tolerances (measured, see the report of the phantom's author):
- tumour sphere voxel volume vs 4/3*pi*r^3: within 2 % for r = 10 mm at 0.75 x 0.75 x 2.0 mm and
  within 4 % for r >= 6 mm at 1.5 x 1.5 x 2.5 mm;
- segment volumes at two spacings (scale 0.5; 1.5x1.5x2.5 vs 0.8x1.1x2.0 mm): within 3 % per segment.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest

from hepatoplan.data_samples.phantom import DEEP_POINT_MM, DEFAULT_TUMOURS, TumourSpec, make_phantom
from hepatoplan.data_samples.write import reorient_from_ras, write_study
from hepatoplan.errors import InputError
from hepatoplan.units import MM3_PER_ML

DEMO_DIR = Path(__file__).resolve().parents[1] / "data_samples" / "demo"


@pytest.fixture(scope="module")
def ph():
    return make_phantom(spacing_mm=(1.5, 1.5, 2.5), scale=0.5, seed=1)


@pytest.fixture(scope="module")
def ph_other_spacing():
    return make_phantom(spacing_mm=(0.8, 1.1, 2.0), scale=0.5, seed=2)


def _centroid_mm(study, mask):
    return study.world_mm(np.argwhere(mask).mean(axis=0))


def test_segments_partition_the_liver_exactly(ph):
    assert ph.segments.dtype == np.uint8
    assert np.array_equal(ph.segments > 0, ph.liver > 0)
    assert set(np.unique(ph.segments)) == set(range(9))
    counts = np.bincount(ph.segments.ravel(), minlength=9)
    assert counts[1:].sum() == ph.liver.sum()
    vml = ph.voxel_volume_mm3 / MM3_PER_ML
    for k in range(1, 9):
        assert ph.truth["segments"]["volumes_ml"][str(k)] == pytest.approx(counts[k] * vml, rel=1e-9)
    split = ph.truth["segments"]["segment_4_split_ml"]
    assert split["4a"] + split["4b"] == pytest.approx(ph.truth["segments"]["volumes_ml"]["4"])
    assert split["4a"] > 0 and split["4b"] > 0


@pytest.mark.parametrize("connectivity", [6, 26])
def test_each_segment_is_one_connected_piece(ph, ph_other_spacing, connectivity):
    for study in (ph, ph_other_spacing):
        for k in range(1, 9):
            _, n = cc3d.connected_components(study.segments == k, connectivity=connectivity, return_N=True)
            assert n == 1, f"segment {k} has {n} pieces"


def test_vessel_trees_are_one_6_connected_piece(ph, ph_other_spacing):
    for study in (ph, ph_other_spacing):
        for name in ("portal", "hepatic"):
            _, n = cc3d.connected_components(getattr(study, name), connectivity=6, return_N=True)
            assert n == 1, f"{name} tree has {n} pieces at spacing {study.spacing_mm}"


def test_segment_sides_in_ras(ph):
    c = {k: _centroid_mm(ph, ph.segments == k) for k in range(1, 9)}
    lm = ph.truth["landmarks"]
    # II/III on the patient's left (-x) of VI/VII, and of IV; V..VIII on the right of IV
    for left in (2, 3):
        for right in (4, 5, 6, 7, 8):
            assert c[left][0] < c[right][0]
    # cranial/caudal pairs split by the transverse portal plane
    z_b = lm["transverse_portal_plane_z_mm"]
    for cranial, caudal in ((7, 6), (8, 5), (2, 3)):
        assert c[cranial][2] > z_b > c[caudal][2]
    # right posterior (6/7) behind right anterior (5/8)
    assert c[7][1] < c[8][1] and c[6][1] < c[5][1]
    # caudate posterior to the portal bifurcation, beside the IVC, a small fraction of the liver
    assert c[1][1] < lm["portal_bifurcation_mm"][1]
    assert c[1][0] < lm["ivc_axis"]["point_mm"][0]
    frac = (ph.segments == 1).sum() / ph.liver.sum()
    assert 0.03 <= frac <= 0.06


def test_full_size_liver_volume_and_caudate():
    full = make_phantom(spacing_mm=(2.0, 2.0, 3.0), noise_hu=0.0, tumours=())
    liver_ml = full.truth["volumes_ml"]["liver"]
    assert 1400 <= liver_ml <= 1700
    # the right lobe (5-8) is the bigger part
    v = full.truth["segments"]["volumes_ml"]
    assert sum(v[k] for k in "5678") > 0.5 * liver_ml


def test_tumour_volume_matches_sphere():
    r_mm = 10.0  # 20 mm at scale 1, halved by scale=0.5 (a small, fast grid)
    study = make_phantom(spacing_mm=(0.75, 0.75, 2.0), scale=0.5, noise_hu=0.0,
                         tumours=(TumourSpec((35.0, 4.0, -44.0), 2 * r_mm),))
    t = study.truth["tumours"][0]
    assert t["volume_ml_analytic"] == pytest.approx(4 / 3 * math.pi * r_mm ** 3 / MM3_PER_ML)
    assert t["volume_ml_voxels"] == pytest.approx(t["volume_ml_analytic"], rel=0.02)
    assert t["voxel_count"] == int((study.tumours == 1).sum())


def test_big_sphere_at_the_deep_point_stays_inside_the_liver():
    study = make_phantom(spacing_mm=(1.5, 1.5, 2.5), scale=0.5, noise_hu=0.0,
                         tumours=(TumourSpec(DEEP_POINT_MM, 45.0),))
    t = study.truth["tumours"][0]
    assert t["radius_mm"] == pytest.approx(22.5)
    assert not t["clipped_to_liver"]
    assert t["volume_ml_voxels"] == pytest.approx(t["volume_ml_analytic"], rel=0.01)


def test_default_tumours_labelled_in_liver_and_separate_segments(ph):
    ids = np.unique(ph.tumours)
    assert list(ids) == list(range(len(DEFAULT_TUMOURS) + 1))
    assert (ph.liver[ph.tumours > 0] == 1).all()
    segs = [t["segment"] for t in ph.truth["tumours"]]
    assert len(set(segs)) == len(segs)
    for t in ph.truth["tumours"]:
        if t["radius_mm"] >= 6:
            assert t["volume_ml_voxels"] == pytest.approx(t["volume_ml_analytic"], rel=0.04)
        centre_idx = ph.index_of(t["centre_mm"])
        assert ph.tumours[tuple(centre_idx)] == t["id"]
    gaps = [min(t["min_distance_to_portal_mm"], t["min_distance_to_hepatic_mm"]) for t in ph.truth["tumours"]]
    assert min(gaps) < 2.0 and max(gaps) > 4.0  # one close to a major vessel, one far (scale 0.5)


def test_segment_volumes_agree_across_spacings(ph, ph_other_spacing):
    a = ph.truth["segments"]["volumes_ml"]
    b = ph_other_spacing.truth["segments"]["volumes_ml"]
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=0.03), k
    assert ph_other_spacing.truth["volumes_ml"]["liver"] == pytest.approx(ph.truth["volumes_ml"]["liver"], rel=0.01)


def test_portal_terminals_lie_in_the_segment_they_feed(ph, ph_other_spacing):
    for study in (ph, ph_other_spacing):
        branches = study.truth["portal_branches"]
        terminals = {int(k): b for k, b in branches.items() if b["terminal"]}
        assert {b["segment"] for b in terminals.values()} == set(range(1, 9))
        for bid, b in terminals.items():
            vox = study.portal_branches == bid
            assert vox.sum() > 0
            assert (study.segments[vox] == b["segment"]).all(), (bid, b["name"])


def test_portal_tree_labels_and_territories(ph):
    pb, br = ph.portal_branches, ph.truth["portal_branches"]
    assert np.array_equal(pb > 0, ph.portal > 0)
    assert set(np.unique(pb)) - {0} == {int(k) for k in br}
    root = [k for k, b in br.items() if b["parent"] is None]
    assert root == ["1"]
    # territories partition the liver; the root's subtree is the whole liver
    assert np.array_equal(ph.portal_territories > 0, ph.liver > 0)
    assert br["1"]["subtree_territory_voxels"] == int(ph.liver.sum())
    for k, b in br.items():
        assert b["territory_voxels"] == int((ph.portal_territories == int(k)).sum())
        assert b["subtree_territory_voxels"] == sum(br[str(c)]["subtree_territory_voxels"] for c in b["children"]) + b["territory_voxels"]
    # the extrahepatic trunk is outside the liver; the other branches are inside
    assert (ph.liver[pb == 1] == 0).any()
    assert (ph.liver[(pb > 1)] == 1).mean() > 0.99


@pytest.mark.parametrize("tree", ["portal", "hepatic"])
def test_territories_are_exact_nearest_branch(ph, tree):
    import edt

    study = ph
    br = getattr(study, f"{tree}_branches")
    ter = getattr(study, f"{tree}_territories")
    liver = study.liver > 0
    assert np.array_equal(ter > 0, liver)
    nearest_any = edt.edt(br == 0, anisotropy=study.spacing_mm)
    for bid in np.unique(br[br > 0]):
        mine = liver & (ter == bid)
        d_mine = edt.edt(br != bid, anisotropy=study.spacing_mm)
        np.testing.assert_allclose(d_mine[mine], nearest_any[mine], atol=1e-4)
    info = study.truth[f"{tree}_branches"]
    assert sum(b["territory_voxels"] for b in info.values()) == int(liver.sum())


def test_hepatic_includes_ivc_beyond_the_liver(ph):
    hb = ph.hepatic_branches
    ivc = hb == 1
    assert ivc[:, :, 0].any() and ivc[:, :, -1].any()
    assert not (ph.liver[ivc]).any()  # the IVC lumen is not liver
    for bid in (2, 3, 4):
        assert (ph.liver[hb == bid] == 1).mean() > 0.95


def test_ct_intensities(ph):
    ct = ph.ct_hu
    assert ct.dtype == np.int16
    med = lambda m: float(np.median(ct[m]))  # noqa: E731
    interior = ph.liver.astype(bool) & (ph.portal == 0) & (ph.hepatic == 0) & (ph.tumours == 0)
    assert 95 <= med(interior) <= 115
    assert 150 <= med(ph.portal > 0) <= 200
    assert 150 <= med(ph.hepatic_branches == 1) <= 200
    assert 35 <= med(ph.tumours > 0) <= 60
    assert med(np.s_[0, 0, :]) < -900
    assert 8 <= float(np.std(ct[interior].astype(float))) <= 16


def test_same_anatomy_at_two_spacings_in_world_mm(ph, ph_other_spacing):
    for t in ph.truth["tumours"]:
        for study in (ph, ph_other_spacing):
            assert study.tumours[tuple(study.index_of(t["centre_mm"]))] == t["id"]


def test_rotated_body_same_answers_in_world_mm(ph):
    rot = make_phantom(spacing_mm=(1.5, 1.5, 2.5), scale=0.5, seed=1, rotation_deg=15.0)
    a, b = ph.truth["segments"]["volumes_ml"], rot.truth["segments"]["volumes_ml"]
    for k in a:
        assert b[k] == pytest.approx(a[k], rel=0.03), k
    for k in range(1, 9):
        _, n = cc3d.connected_components(rot.segments == k, connectivity=6, return_N=True)
        assert n == 1
    lm = rot.truth["landmarks"]
    c, s = math.cos(math.radians(15.0)), math.sin(math.radians(15.0))
    bif0 = np.array(ph.truth["landmarks"]["portal_bifurcation_mm"])
    np.testing.assert_allclose(lm["portal_bifurcation_mm"], [c * bif0[0] - s * bif0[1], s * bif0[0] + c * bif0[1], bif0[2]], atol=1e-3)
    assert rot.portal[tuple(rot.index_of(lm["portal_bifurcation_mm"]))] == 1
    assert rot.hepatic_branches[tuple(rot.index_of(lm["ivc_axis"]["point_mm"]))] == 1
    assert lm["scissurae"]["right"]["azimuth_deg"] == pytest.approx(ph.truth["landmarks"]["scissurae"]["right"]["azimuth_deg"] + 15.0)
    for t in rot.truth["tumours"]:
        assert rot.tumours[tuple(rot.index_of(t["centre_mm"]))] == t["id"]
    for bid, br in rot.truth["portal_branches"].items():
        if br["terminal"]:
            assert (rot.segments[rot.portal_branches == int(bid)] == br["segment"]).all()


def test_reproducible_with_seed():
    a = make_phantom(spacing_mm=(2.0, 2.0, 3.0), scale=0.4, seed=3)
    b = make_phantom(spacing_mm=(2.0, 2.0, 3.0), scale=0.4, seed=3)
    c = make_phantom(spacing_mm=(2.0, 2.0, 3.0), scale=0.4, seed=4)
    assert np.array_equal(a.ct_hu, b.ct_hu)
    assert not np.array_equal(a.ct_hu, c.ct_hu)
    assert np.array_equal(a.segments, c.segments)


@pytest.mark.parametrize("axcodes", ["LPS", "PIR", "ASL"])
def test_write_study_axcodes_keep_world_positions(ph, tmp_path, axcodes):
    marked_ras = (7, 11, 13)
    tum = ph.tumours.copy()
    tum[marked_ras] = 200
    study = dataclasses.replace(ph, tumours=tum)
    expected_world = ph.world_mm(marked_ras)
    for codes in ("RAS", axcodes):
        out = tmp_path / codes
        write_study(study, out, axcodes=codes)
        img = nib.load(out / "tumours.nii.gz")
        assert nib.aff2axcodes(img.affine) == tuple(codes)
        data = np.asanyarray(img.dataobj)
        assert data.dtype == np.uint8
        ijk = np.argwhere(data == 200)
        assert len(ijk) == 1
        world = nib.affines.apply_affine(img.affine, ijk[0])
        np.testing.assert_allclose(world, expected_world, atol=1e-6)
        # back to canonical: identical arrays
        canon = nib.as_closest_canonical(nib.load(out / "segments.nii.gz"))
        assert np.array_equal(np.asanyarray(canon.dataobj), ph.segments)
        np.testing.assert_allclose(canon.affine, ph.affine_ras, atol=1e-6)
        ct = nib.load(out / "ct.nii.gz")
        assert ct.get_data_dtype() == np.int16
        truth = json.loads((out / "truth.json").read_text())
        assert truth["files"]["axcodes"] == codes
        assert truth["tumours"] == json.loads(json.dumps(ph.truth["tumours"]))


def test_write_study_world_point_through_simpleitk(ph, tmp_path):
    sitk = pytest.importorskip("SimpleITK")
    marked_ras = (5, 9, 4)
    tum = ph.tumours.copy()
    tum[marked_ras] = 201
    write_study(dataclasses.replace(ph, tumours=tum), tmp_path, axcodes="PIR")
    img = sitk.ReadImage(str(tmp_path / "tumours.nii.gz"))
    arr = sitk.GetArrayFromImage(img)  # [k, j, i]
    k, j, i = np.argwhere(arr == 201)[0]
    lps = np.array(img.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
    ras = lps * np.array([-1, -1, 1])
    np.testing.assert_allclose(ras, ph.world_mm(marked_ras), atol=1e-4)


def test_reorient_rejects_bad_axcodes():
    with pytest.raises(InputError, match="axcodes"):
        reorient_from_ras(np.zeros((2, 2, 2), np.uint8), np.eye(4), "RRS")
    with pytest.raises(InputError, match="axcodes"):
        reorient_from_ras(np.zeros((2, 2, 2), np.uint8), np.eye(4), "XYZ")


@pytest.mark.parametrize("kwargs", [
    {"spacing_mm": (1.0, 0.0, 1.0)}, {"spacing_mm": (1.0, 1.0)}, {"scale": 0.0}, {"noise_hu": -1.0},
    {"tumours": (TumourSpec((0, 0, 0), -2.0),)}, {"shape": (10, 10)},
    {"tumours": (TumourSpec((0, 0), 5.0),)}, {"tumours": ((0, 0, 0),)}, {"rotation_deg": 45.0},
    {"tumours": (TumourSpec((400.0, 0.0, 0.0), 5.0),), "scale": 0.3},  # no voxel inside the liver
])
def test_bad_parameters_raise_input_error(kwargs):
    with pytest.raises(InputError):
        make_phantom(**kwargs)


def test_truth_is_json_ready_with_documented_keys(ph):
    t = json.loads(json.dumps(ph.truth))
    for key in ("generator", "geometry", "volumes_ml", "segments", "tumours", "portal_branches",
                "hepatic_branches", "landmarks", "conventions"):
        assert key in t
    lm = t["landmarks"]
    for key in ("portal_bifurcation_mm", "portal_root_mm", "transverse_portal_plane_z_mm", "ivc_axis",
                "hepatic_vein_trunks", "umbilical_portion", "scissurae", "caudate"):
        assert key in lm
    assert set(lm["hepatic_vein_trunks"]) == {"right", "middle", "left"}
    assert t["geometry"]["shape"] == list(ph.shape)


def test_cli_writes_a_study(tmp_path):
    from hepatoplan.data_samples.__main__ import main

    rc = main(["--out", str(tmp_path / "s"), "--spacing-mm", "2,2,3", "--scale", "0.4", "--axcodes", "LPS", "--extras"])
    assert rc == 0
    names = {p.name for p in (tmp_path / "s").iterdir()}
    assert {"ct.nii.gz", "segments.nii.gz", "portal_branches.nii.gz", "truth.json"} <= names
    assert main(["--out", str(tmp_path / "bad"), "--axcodes", "QQQ", "--scale", "0.3"]) == 2
    assert not (tmp_path / "bad").exists()


def test_cli_as_a_subprocess(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "p"
    res = subprocess.run([sys.executable, "-m", "data_samples", "--out", str(out), "--scale", "0.3",
                          "--spacing-mm", "2,2,3", "--no-tumours"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""  # logs go to stderr
    truth = json.loads((out / "truth.json").read_text())
    assert truth["tumours"] == []
    assert truth["files"]["axcodes"] == "RAS"


def test_shipped_demo_is_small_and_regenerates_identically(tmp_path):
    from hepatoplan.data_samples.__main__ import DEMO_AXCODES, main

    files = sorted(DEMO_DIR.glob("*"))
    assert {p.name for p in files} >= {"ct.nii.gz", "liver.nii.gz", "tumours.nii.gz", "portal_vein.nii.gz",
                                       "hepatic_veins.nii.gz", "segments.nii.gz", "truth.json"}
    assert sum(p.stat().st_size for p in files) < 2_000_000
    ct = nib.load(DEMO_DIR / "ct.nii.gz")
    assert nib.aff2axcodes(ct.affine) == tuple(DEMO_AXCODES)
    zooms = ct.header.get_zooms()
    assert len(set(np.round(zooms, 3))) > 1  # anisotropic
    assert main(["--demo", "--out", str(tmp_path)]) == 0
    for p in files:
        if p.suffix == ".json":
            assert json.loads(p.read_text()) == json.loads((tmp_path / p.name).read_text())
        else:
            a, b = nib.load(p), nib.load(tmp_path / p.name)
            assert np.array_equal(np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)), p.name
            np.testing.assert_allclose(a.affine, b.affine)
