"""``plan`` with vessels: vascular consequences, sparing options, ablation, function map, bad input."""

import json

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.data_samples.write import write_study
from hepatoplan.pipeline.cli import main


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("sparing")
    ph = make_phantom(spacing_mm=(2.0, 2.2, 3.0), scale=0.7, seed=1)
    write_study(ph, d, axcodes="LPS")
    return d, ph


def _args(d, out, *extra):
    return ["plan", str(d / "ct.nii.gz"), "--out", str(out), "--no-preview", "--no-auto",
            "--liver", str(d / "liver.nii.gz"), "--tumours", str(d / "tumours.nii.gz"),
            "--segments", str(d / "segments.nii.gz"), "--portal", str(d / "portal_vein.nii.gz"),
            "--hepatic", str(d / "hepatic_veins.nii.gz"), *extra]


def test_vascular_consequences_and_sparing_options_reach_the_report(study, tmp_path):
    d, ph = study
    out = tmp_path / "o"
    assert main(_args(d, out, "--resect", "wedge:1,2", "--margin-mm", "5", "--near-vessel-margin-mm", "1",
                      "--resect", "ablate:3")) == 0
    r = json.loads((out / "report.json").read_text(encoding="utf-8"))["resection"]
    assert r["devascularised_ml"] is not None and r["congested_ml"] is not None
    assert r["remnant_ml"] == pytest.approx(r["remnant_volumetric_ml"] - r["devascularised_ml"], abs=0.015)
    assert {t["id"] for t in r["sparing"]} == {1, 2}
    status = {t["id"]: t["status"] for t in r["tumours"]}
    assert status[3] in ("ablated", "incompletely ablated")
    assert r["ablations"][0]["tumour_id"] == 3 and r["ablations"][0]["zone_ml"] > 0


def test_function_weighted_flr_on_a_uniform_map_equals_the_volumetric_flr(study, tmp_path):
    d, ph = study
    img = nib.load(d / "liver.nii.gz")
    nib.Nifti1Image(np.ones(img.shape, np.float32) * 3.0, img.affine).to_filename(d / "function.nii.gz")
    out = tmp_path / "o"
    assert main(_args(d, out, "--resect", "left-lateral-sectionectomy", "--function-map",
                      str(d / "function.nii.gz"))) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["function"]["functional_flr_percent"] == pytest.approx(report["resection"]["flr_percent"], abs=0.01)


BAD = {
    "function map on another grid": ("function_shifted.nii.gz", "--resample-masks"),
    "negative function values": ("function_negative.nii.gz", "negative"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_function_maps_exit_2(study, tmp_path, capsys, case):
    d, _ = study
    img = nib.load(d / "liver.nii.gz")
    shifted = img.affine.copy()
    shifted[2, 3] += 9.0
    nib.Nifti1Image(np.ones(img.shape, np.float32), shifted).to_filename(d / "function_shifted.nii.gz")
    neg = np.ones(img.shape, np.float32)
    neg[np.asanyarray(img.dataobj) > 0] = -1.0
    nib.Nifti1Image(neg, img.affine).to_filename(d / "function_negative.nii.gz")
    name, expected = BAD[case]
    out = tmp_path / "o"
    assert main(_args(d, out, "--resect", "wedge:all", "--function-map", str(d / name))) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and not out.exists()


@pytest.mark.parametrize("spec", ["ablate:1@0", "ablate:1@-3"])
def test_ablation_radius_must_be_positive(study, tmp_path, capsys, spec):
    d, _ = study
    assert main(_args(d, tmp_path / "o", "--resect", spec)) == 2
    assert "radius" in capsys.readouterr().err and not (tmp_path / "o").exists()
