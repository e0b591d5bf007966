"""Tests of the MR liver segmentation (segmentation/mr_liver.py) and of ``plan``/``segment --modality mr``.

A synthetic T2-weighted abdomen with a known liver (anisotropic 1.5 x 1.5 x 6 mm voxels, a bias
field, Rician-like noise) tests behaviour; CHAOS T2-SPIR and the TotalSegmentator MR example
(../shared/data) test accuracy. The full benchmark is bench/bench_mr.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage as ndi

from hepatoplan.errors import InputError, NotComputableError
from hepatoplan.pipeline import io
from hepatoplan.pipeline.cli import main
from hepatoplan.segmentation import segment_liver, segment_study
from hepatoplan.segmentation.mr_liver import MRLiverParams, fragmented_slice_fraction, segment_liver_mr

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CHAOS = DATA_DIR / "chaos_mr"
TOTALSEG = DATA_DIR / "totalsegmentator"


def _dice(a, b) -> float:
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def mr_phantom(seed: int = 0, *, fat_to_liver: float = 0.3, left_lobe: bool = True):
    """T2-weighted fat-suppressed abdomen (canonical RAS+, 1.5 x 1.5 x 6 mm) and its liver mask.

    Subcutaneous fat at ``fat_to_liver`` times the liver's intensity, textured bowel at most 2/3 of the
    liver's intensity, a spleen and a kidney brighter than it (their ranks on T2), a liver ellipsoid on the
    patient's right (high axis-0 index), a bias field of +-25 % and noise.
    """
    rng = np.random.default_rng(seed)
    sp = (1.5, 1.5, 6.0)
    shape = (200, 160, 40)
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sp)), indexing="ij")
    cx, cy = shape[0] * sp[0] / 2, shape[1] * sp[1] / 2
    img = np.zeros(shape, np.float32)
    body = ((x - cx) / 140) ** 2 + ((y - cy) / 105) ** 2 <= 1
    inner = ((x - cx) / 125) ** 2 + ((y - cy) / 90) ** 2 <= 1
    img[body] = 300 * fat_to_liver
    bowel = 130 + 60 * ndi.gaussian_filter(rng.normal(0, 1, shape), (3, 3, 0.7)) / 0.05
    img[inner] = np.clip(bowel, 50, 200)[inner]
    img[((x - cx) / 18) ** 2 + ((y - (cy - 65)) / 18) ** 2 <= 1] = 80
    lx, ly, lz = cx + 60, cy + 5, 130
    rx = 77 if left_lobe else 62  # its left edge 32 mm left of the body's centre, or 2 mm right of it
    liver = (((x - (lx + 62 - rx)) / rx) ** 2 + ((y - ly) / 65) ** 2 + ((z - lz) / 70) ** 2 <= 1) & inner
    img[liver] = 300
    spleen = (((x - (cx - 85)) / 30) ** 2 + ((y - (cy - 25)) / 40) ** 2 + ((z - 130) / 45) ** 2 <= 1) & inner
    img[spleen & ~liver] = 520
    kidney = (((x - (cx + 55)) / 22) ** 2 + ((y - (cy - 45)) / 28) ** 2 + ((z - 50) / 40) ** 2 <= 1) & inner
    img[kidney & ~liver] = 650
    bias = 1.0 + 0.25 * (x - cx) / 140 - 0.2 * (y - cy) / 105
    img = np.hypot(img * bias + rng.normal(0, 12, shape), rng.normal(0, 12, shape))
    return img.astype(np.int16), sp, liver


@pytest.fixture(scope="module")
def phantom():
    return mr_phantom()


@pytest.fixture(scope="module")
def phantom_result(phantom):
    img, sp, _ = phantom
    return segment_liver(img, spacing_mm=sp, modality="mr")


@pytest.fixture(scope="module")
def phantom_without_left_lobe():
    """The phantom whose liver ends 2 mm right of the body's centre (read only by the tests)."""
    return mr_phantom(left_lobe=False)


# ----------------------------------------------------------------------------- phantoms


def test_phantom_liver_found_with_its_volume(phantom, phantom_result):
    _, sp, liver = phantom
    mask, info = phantom_result
    assert info["qc_passed"], info["qc_flags"]
    assert _dice(mask, liver) >= 0.97
    expected_ml = np.count_nonzero(liver) * np.prod(sp) / 1000.0
    assert info["liver_volume_ml"] == pytest.approx(expected_ml, rel=0.03)
    assert info["mr_contrast"]["kind"].startswith("fat-suppressed T2")
    assert info["liver_centre_right_of_body_mm"] > 20  # its centre lies 30 mm right of the body's
    assert not info["qc_flags"]


def test_self_check_values_on_the_phantom(phantom_result):
    """The left lobe reaches 32 mm left of the body's centre (2.5 mm working grid)."""
    _, info = phantom_result
    checks = {c["name"]: c for c in info["self_check"]["checks"]}
    assert info["self_check"]["passed"] and all(c["passed"] for c in checks.values())
    assert checks["liver_candidate"]["value"] == 1 and checks["liver_stability_dice"]["value"] >= 0.95
    assert checks["left_lobe_reach_mm"]["value"] == pytest.approx(32.0, abs=4.0)
    assert checks["fragmented_slice_fraction"]["value"] == 0.0  # an ellipsoid: one piece on every slice
    assert checks["side_section_fraction"]["value"] == 0.0  # the field of view holds the whole body


def test_fragmented_slice_fraction_counts_slices_in_pieces():
    """10 slices of a box on a 2 x 2 x 1 working grid, 3 with a second piece beside it (not touching,
    4-connected), 1 with a piece touching only by a corner (two pieces): 4 / 10."""
    mask = np.zeros((40, 40, 12), bool)
    mask[4:20, 4:20, 1:11] = True
    mask[24:30, 4:10, 2:5] = True
    mask[20:24, 20:24, 8] = True  # meets the box at one corner only
    assert fragmented_slice_fraction(mask, (2, 2, 1)) == pytest.approx(0.4)


def test_the_watershed_floods_only_beside_the_unlabelled_voxels_with_the_same_labels():
    """Markers covering most of the volume (as in the region competition and the snap): the watershed that
    leaves out the markers with no unlabelled neighbour gives skimage's labels, voxel for voxel."""
    from skimage.segmentation import watershed

    from hepatoplan.segmentation.mr_liver import _watershed

    rng = np.random.default_rng(3)
    elevation = ndi.gaussian_filter(rng.random((40, 36, 12)), 1.5)
    markers = np.zeros(elevation.shape, np.uint32)
    markers[:, :, :] = 1
    markers[8:32, 6:30, 2:10] = 0  # the band to flood
    markers[14:26, 12:24, 4:8] = 2
    markers[28:31, 6:9, 2:10] = 3  # a competing organ touching the outside
    expected = watershed(elevation, markers, connectivity=1)
    got = _watershed(elevation, markers)
    assert len(np.unique(expected[markers == 0])) == 3  # every label floods some of the band
    np.testing.assert_array_equal(got, expected)


def test_above_the_widest_slice_one_piece_rises():
    """Nesting on a 2.5 x 2.5 x 7.7 mm grid: a 40 x 40 voxel widest slice (z = 1) narrowing by 2
    voxels a side a slice above and below it, with a 6 x 6 voxel piece 2 voxels (5 mm) left of the liver on
    z = 0, 2, 3 (within the 10 mm reach of the slice below, apart in-plane: the heart above the left lobe):
    the piece is dropped above the widest slice, dropped below it too by the wider caudal opening (15 mm
    wide, apart from the liver), kept there (where in reach) in the mask nested without the caudal cleaning
    (the one the fragmentation check reads), and kept above the widest slice with ``dome_one_piece`` off."""
    from hepatoplan.segmentation.mr_liver import _nest

    mask = np.zeros((60, 60, 5), bool)
    for z, inset in ((0, 2), (1, 0), (2, 2), (3, 4)):
        mask[10 + inset:50 - inset, 10:50, z] = True
    mask[4:10, 20:26, [0, 2, 3]] = True
    sp = (2.5, 2.5, 7.7)
    kept = _nest(mask, sp, MRLiverParams())
    assert kept[20:40, 20:40, :4].all()  # the liver
    assert not kept[:10].any()
    # without the caudal cleaning what lies within the slice above's reach is kept: half the piece below
    plain = _nest(mask, sp, MRLiverParams(), caudal=False)
    assert plain[4:10, 20:26, 0].sum() == 18 and not plain[:10, :, 2:].any()
    kept_off = _nest(mask, sp, MRLiverParams(dome_one_piece=False))
    assert kept_off[4:10, 20:26, 2].sum() == 18 and kept_off[4:10, 20:26, 3].sum() == 24


def test_below_the_widest_slice_thin_parts_come_back_under_the_liver_above():
    """Nesting on a 2.5 x 2.5 x 7.7 mm grid: below the widest slice (z = 1, 40 x 40 voxels) a 32 x 32 voxel
    slice with two 7.5 mm wide tongues, which the 10 mm caudal opening shaves off: the one under the widest
    slice's liver comes back whole (the tip of a lobe narrows within the slice above), the other only as far
    as it lies under it (beyond, a leak creeps out of the liver)."""
    from hepatoplan.segmentation.mr_liver import _nest

    mask = np.zeros((60, 60, 2), bool)
    mask[10:50, 10:50, 1] = True
    mask[14:46, 14:46, 0] = True
    mask[28:31, 46:50, 0] = True  # under the liver above
    mask[28:31, 4:14, 0] = True  # reaching 15 mm beyond it
    kept = _nest(mask, (2.5, 2.5, 7.7), MRLiverParams())
    assert kept[14:46, 14:46, 0].all() and kept[28:31, 46:50, 0].all() and kept[28:31, 10:14, 0].all()
    assert not kept[:, :10, 0].any()


def test_the_graph_cut_puts_the_border_on_the_dark_plane():
    """Graph cut on a 2.5 x 2.5 x 7.7 mm grid: the liver (log-intensity 0, in fat at -1) meets tissue as
    bright as it across a one-voxel plane 26 % darker (log -0.3); the mask took 5 mm of that tissue (2 voxels, within the
    7.5 mm core's reach, so the cut may move there). The cheapest surface is the plane: the tissue beyond it
    goes, the liver stays whole; with the cut off the mask is returned as it is."""
    from hepatoplan.segmentation.mr_liver import _graph_cut, _WorkGrid

    shape, sp = (60, 60, 6), (2.5, 2.5, 7.7)
    log_image = np.full(shape, -1.0, np.float32)  # fat around: certainly not liver
    log_image[10:, 10:50] = 0.0
    log_image[40] = -0.3
    grid = _WorkGrid(log_image, np.ones(shape, bool), (1, 1, 1), sp, 0.0, 1.0)
    mask = np.zeros(shape, bool)
    mask[10:43, 10:50] = True
    seed = np.zeros(shape, bool)
    cut = _graph_cut(mask, grid, np.zeros(shape, np.float32), seed, MRLiverParams())
    assert cut[10:40, 10:50].all() and not cut[41:].any()
    same = _graph_cut(mask, grid, np.zeros(shape, np.float32), seed, MRLiverParams(cut_contrast_log=0))
    assert np.array_equal(same, mask)

def test_the_graph_cut_takes_off_a_tail_below_the_liver_as_bright_as_it():
    """Caudal core (``cut_core_caudal_mm``) on a 2.5 x 2.5 x 7.7 mm grid: a 100 mm wide liver in fat on slices 3-8;
    below it bowel as bright as the liver, of which the mask took a 40 mm wide tail on slices 1-2 (CHAOS 02's
    leak below the tip of its right lobe). Cutting across the tail's section is cheaper than around it: the tail
    goes, the liver stays whole. With the core in-plane only (0) the tail lies in the core and stays. A real
    tip, in fat, keeps its own edges and is kept."""
    from hepatoplan.segmentation.mr_liver import _graph_cut, _WorkGrid

    shape, sp = (60, 60, 9), (2.5, 2.5, 7.7)
    log_image = np.full(shape, -1.0, np.float32)
    log_image[10:50, 10:50, 3:] = 0.0
    log_image[:, :, :3] = 0.0
    mask = np.zeros(shape, bool)
    mask[10:50, 10:50, 3:] = True
    mask[22:38, 22:38, 1:3] = True
    seed, field = np.zeros(shape, bool), np.zeros(shape, np.float32)
    grid = _WorkGrid(log_image, np.ones(shape, bool), (1, 1, 1), sp, 0.0, 1.0)
    cut = _graph_cut(mask, grid, field, seed, MRLiverParams())
    assert np.array_equal(cut, mask & (np.arange(9) >= 3))
    assert _graph_cut(mask, grid, field, seed, MRLiverParams(cut_core_caudal_mm=0))[22:38, 22:38, 1:3].all()
    tip = np.where(mask, 0.0, -1.0).astype(np.float32)
    assert np.array_equal(_graph_cut(mask, _WorkGrid(tip, grid.body, (1, 1, 1), sp, 0.0, 1.0), field, seed,
                                     MRLiverParams()), mask)


def test_a_liver_without_its_left_lobe_is_unverified(phantom_without_left_lobe):
    """The liver ends 2 mm right of the body's centre: segmented as it is, but not vouched for."""
    img, sp, liver = phantom_without_left_lobe
    mask, info = segment_liver_mr(img, spacing_mm=sp)
    assert info["qc_passed"] and _dice(mask, liver) >= 0.95
    check = next(c for c in info["self_check"]["checks"] if c["name"] == "left_lobe_reach_mm")
    assert not check["passed"] and check["value"] < 5.0
    assert any(f.startswith("unverified: the mask reaches only") for f in info["qc_flags"])


def test_the_dark_dome_is_taken_and_partial_coverage_flagged_not_refused(phantom):
    """The phantom's top two liver slices at 60 % of the liver's brightness (partial volume with the lung on
    thick slices): the dome step takes them; without it (``dome_min_fraction`` 0) they are lost. The scan
    starts four slices below the liver's widest (the dome step works above it; half the cost of the whole
    phantom, the same coverage: 0.77 with the step, 0 without), so it also cuts the liver through a wide
    section: partial coverage, flagged and not refused (a cut at the top: ``test_chaos_with_the_top_cut_off``)."""
    img, sp, liver = phantom
    start = int(np.argmax(liver.sum(axis=(0, 1)))) - 4
    liver = liver[..., start:]
    top = np.flatnonzero(liver.any(axis=(0, 1)))[-2:]
    dark = img[..., start:].astype(np.float32)
    dark[..., top] = np.where(liver[..., top], 0.6 * dark[..., top], dark[..., top])
    with_dome, info = segment_liver_mr(dark, spacing_mm=sp)
    without, _ = segment_liver_mr(dark, spacing_mm=sp, params=MRLiverParams(dome_min_fraction=0.0))
    assert info["qc_passed"] and info["self_check"]["passed"], info["qc_flags"]
    covered = [np.count_nonzero(m[..., top] & liver[..., top]) / np.count_nonzero(liver[..., top])
               for m in (with_dome > 0, without > 0)]
    assert covered[0] >= 0.7 and covered[1] <= 0.3, covered
    assert _dice(with_dome, liver) >= 0.97
    assert any("superior-inferior" in f for f in info["qc_flags"])


def test_thick_slices_a_side_cut_and_an_unstable_border_are_flagged_not_refused(phantom):
    """Three self-checks in one run, each failed by its own limit, all delivered unverified (not refused), each
    flag naming its check and the fix (``--liver FILE``):

    - thick slices: the same voxels read as 12 mm slices (developed on 3-7.7 mm, limit 10 mm);
    - the field of view's side: cut 80 mm right of the body's centre (through the right lobe, 70 % of the
      liver's width kept); the liver touches the side, and the body's centre the shape priors measure from
      moves left with the cut, so the left lobe's reach (measured from it) fails too, as the side flag says;
    - an unstable border: demanding more agreement than any mask has (``min_stability_dice`` 1.01), while
      the two masks agree as well as the default limit asks (so the raised limit alone fails the check).

    The candidate and fragmentation checks pass, and the mask is right (Dice >= 0.9 on what the scan holds).
    """
    img, sp, liver = phantom
    keep = int((img.shape[0] * sp[0] / 2 + 80) / sp[0])
    mask, info = segment_liver_mr(np.ascontiguousarray(img[:keep]), spacing_mm=(sp[0], sp[1], 12.0),
                                  params=MRLiverParams(min_stability_dice=1.01))
    checks = {c["name"]: c for c in info["self_check"]["checks"]}
    assert info["qc_passed"] and not info["self_check"]["passed"] and _dice(mask, liver[:keep]) >= 0.9
    assert {n for n, c in checks.items() if not c["passed"]} == {
        "slice_thickness_mm", "liver_stability_dice", "side_section_fraction", "left_lobe_reach_mm"}
    assert checks["slice_thickness_mm"]["value"] == 12.0
    assert checks["liver_stability_dice"]["value"] >= MRLiverParams().min_stability_dice
    assert checks["side_section_fraction"]["value"] >= 0.25
    for start in ("slices 12.0 mm apart", "the liver's border is unstable", "the field of view's side cuts the liver"):
        assert any(f.startswith(f"unverified: {start}") and "--liver FILE" in f for f in info["qc_flags"]), start


def test_a_candidate_near_the_skin_is_not_a_liver(phantom, phantom_result):
    """The phantom's liver lies 18 mm and more under the skin: none of it within 15 mm, 40 % within 60 mm
    (a liver is not in the abdominal wall). One candidate tried: when none passes, the first one's result is
    returned, so the other candidates' runs change nothing here."""
    assert phantom_result[1]["liver_near_skin_fraction"] == 0.0
    img, sp, _ = phantom
    _, info = segment_liver_mr(img, spacing_mm=sp, params=MRLiverParams(skin_depth_mm=60.0, max_candidates=1))
    assert not info["qc_passed"] and info["liver_near_skin_fraction"] > 0.3
    assert any("within 60 mm of the skin" in f for f in info["qc_flags"])


def test_segment_liver_dispatches_mr_and_reports_its_params(phantom_result):
    _, info = phantom_result
    assert info["modality"] == "MR"
    assert info["params"] == dataclasses.asdict(MRLiverParams())
    json.dumps(info)


def test_mirrored_phantom_is_not_a_confident_liver(phantom):
    """The liver on the patient's left (a mirrored scan): no candidate passes the checks."""
    img, sp, _ = phantom
    with pytest.raises(NotComputableError, match="--liver FILE"):
        segment_study(np.ascontiguousarray(img[::-1]), spacing_mm=sp, modality="MR")


def test_unrecognised_contrast_fails_the_checks():
    """Fat as bright as the liver (neither fat-suppressed T2 nor T1 with bright fat): refused (one candidate
    tried: when none passes, the first one's result is returned)."""
    img, sp, _ = mr_phantom(fat_to_liver=1.0)
    _, info = segment_liver_mr(img, spacing_mm=sp, params=MRLiverParams(max_candidates=1))
    assert not info["qc_passed"]
    assert any("contrast not recognised" in f for f in info["qc_flags"])


def test_a_speck_at_the_scan_border_is_not_a_partial_liver(phantom_without_left_lobe):
    """Partial coverage excuses a small liver only where the scan cuts through a wide cross-section."""
    img, sp, liver = phantom_without_left_lobe  # the top two slices of its liver hold 21 mL
    zs = np.flatnonzero(liver.any(axis=(0, 1)))
    _, info = segment_liver_mr(np.ascontiguousarray(img[..., zs[-1] - 1:]), spacing_mm=sp)
    assert not info["qc_passed"]


def test_bad_input_is_refused(phantom):
    img, sp, _ = phantom
    with pytest.raises(InputError, match="non-finite"):
        segment_liver_mr(np.where(img > 200, np.nan, img.astype(np.float32)), spacing_mm=sp)
    with pytest.raises(InputError, match="field of view"):
        segment_liver_mr(img[:20, :20], spacing_mm=sp)
    with pytest.raises(InputError, match="no body"):
        segment_liver_mr(np.zeros_like(img), spacing_mm=sp)


def test_plan_on_mr_in_other_units_reports_tumours_and_vessels_not_assessed(tmp_path, phantom, phantom_result, capsys):
    """``plan --modality MR``: the liver is segmented; tumours and vessels are 'not assessed', in
    report.json (None, not 0, and a reason) and in the printed summary. The file's axes are stored
    flipped and permuted (L, P, S order as (A, R, S)) to go through the orientation code.

    MR units are arbitrary: the file holds the phantom times a gain plus an offset (float32), and the
    plan's liver equals the phantom's own segmentation but for rounding (Dice >= 0.99)."""
    img, sp, liver = phantom
    stored = np.transpose(img.astype(np.float32) * 7.3 + 1500.0, (1, 0, 2))[::-1]  # file axes: (A flipped -> P, R, S)
    affine = np.array([[0, sp[0], 0, -150.0], [-sp[1], 0, 0, 120.0], [0, 0, sp[2], -200.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(stored, affine), str(tmp_path / "mr.nii.gz"))
    out = tmp_path / "plan"
    assert main(["plan", str(tmp_path / "mr.nii.gz"), "--modality", "mr", "--out", str(out), "--no-preview"]) == 0
    printed = capsys.readouterr().out
    assert "not assessed" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["volumes_ml"]["tumours_total"] is None
    assert set(report["not_assessed"]) == {"tumours", "vessels"}
    assert any(w.startswith("tumours not assessed on MR") for w in report["warnings"])
    assert report["provenance"]["parameters"]["segmentation"]["mr_liver"]["window_min_log"] == MRLiverParams().window_min_log
    labels = io.read_labels(out / "labels.nii.gz", reference=io.read_image(tmp_path / "mr.nii.gz")).array
    assert _dice(labels > 0, liver) >= 0.97
    assert _dice(labels > 0, phantom_result[0]) >= 0.99


def test_plan_on_mr_with_a_given_liver_runs_no_ct_detector(tmp_path, phantom):
    img, sp, liver = phantom
    affine = np.diag([sp[0], sp[1], sp[2], 1.0])
    nib.save(nib.Nifti1Image(img, affine), str(tmp_path / "mr.nii.gz"))
    nib.save(nib.Nifti1Image(liver.astype(np.uint8), affine), str(tmp_path / "liver.nii.gz"))
    out = tmp_path / "plan"
    assert main(["plan", str(tmp_path / "mr.nii.gz"), "--modality", "mr", "--liver", str(tmp_path / "liver.nii.gz"),
                 "--out", str(out), "--no-preview"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sources"] == {"liver": str(tmp_path / "liver.nii.gz")}
    assert report["volumes_ml"]["tumours_total"] is None
    assert set(report["not_assessed"]) == {"tumours", "vessels"}


# ----------------------------------------------------------------------------- real scans


def _chaos(case: str):
    d = CHAOS / case
    if not d.is_dir():
        pytest.skip(f"CHAOS MR data not found at {d} (see ../shared/data/README.md)")
    vol = io.read_image(d / "image.nii.gz")
    return vol, io.read_labels(d / "liver.nii.gz", reference=vol).array > 0


@pytest.mark.parametrize("case", ["01", "02", "03", "05"])
def test_chaos_t2_spir(case):
    """CHAOS T2-SPIR, manual livers (bench/RESULTS.md has the figures per scan)."""
    vol, ref = _chaos(case)
    mask, info = segment_liver_mr(vol.array, spacing_mm=vol.spacing_mm)
    assert info["qc_passed"], info["qc_flags"]
    assert info["mr_contrast"]["kind"].startswith("fat-suppressed T2")
    # the acceptance, Dice >= 0.90 and volume within 7 %: 0.915-0.955 and 01 / 02 / 05 +3.6 / +5.9 / -1.4 %;
    # 03 0.901, -6.3 % (its dark dome, posterior border and caudate, bench/RESULTS.md: 0.005 of margin here)
    assert _dice(mask, ref) >= 0.895
    assert abs(np.count_nonzero(mask) / np.count_nonzero(ref) - 1.0) <= 0.07


def test_chaos_with_the_top_cut_off():
    """CHAOS 01 without the cranial 30 % of its liver: flagged as partial coverage, not refused."""
    vol, ref = _chaos("01")
    zs = np.flatnonzero(ref.any(axis=(0, 1)))
    cut = zs[0] + int(0.7 * (zs[-1] - zs[0]))
    mask, info = segment_liver_mr(np.ascontiguousarray(vol.array[..., :cut]), spacing_mm=vol.spacing_mm)
    assert info["qc_passed"] and _dice(mask, ref[..., :cut]) >= 0.85
    assert any("superior-inferior" in f for f in info["qc_flags"])


def test_chaos_cut_at_the_side_is_right_or_flagged():
    """CHAOS 03 with the field of view cut on the patient's right through 30 % of the liver's width (the
    run that scored 0.842 with QC passed before the dome step): Dice >= 0.85 or a flag, never a quiet
    miss; the side check names the cut."""
    vol, ref = _chaos("03")
    xs = np.flatnonzero(ref.any(axis=(1, 2)))  # canonical axis 0 increases toward the patient's right
    keep = xs[-1] - int(0.3 * (xs[-1] - xs[0]))
    mask, info = segment_liver_mr(np.ascontiguousarray(vol.array[:keep]), spacing_mm=vol.spacing_mm)
    assert info["qc_passed"]
    assert _dice(mask, ref[:keep]) >= 0.85 or not info["self_check"]["passed"]
    side = next(c for c in info["self_check"]["checks"] if c["name"] == "side_section_fraction")
    assert not side["passed"] and side["value"] >= 0.25
    assert any(f.startswith("unverified: the field of view's side cuts the liver") for f in info["qc_flags"])


def test_totalsegmentator_mr_example():
    """T1-weighted with bright fat; the reference (label 5) is TotalSegmentator's output, matched in
    physical space."""
    if not TOTALSEG.is_dir():
        pytest.skip(f"{TOTALSEG} not found")
    vol = io.read_image(TOTALSEG / "mr.nii.gz")
    ref = io.read_labels(TOTALSEG / "mr_totalseg.nii.gz", reference=vol, resample=True).array == 5
    mask, info = segment_liver_mr(vol.array, spacing_mm=vol.spacing_mm)
    assert info["qc_passed"], info["qc_flags"]
    assert info["mr_contrast"]["kind"].startswith("T1-weighted")
    assert _dice(mask, ref) >= 0.87
