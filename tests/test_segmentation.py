"""Tests of the automatic segmentation (segmentation/, ``hepatoplan segment``).

Phantoms whose answers are known by construction test behaviour and orientation; IRCADb and the
TotalSegmentator examples (../shared/data) test accuracy at the thresholds of issue 4. The full
benchmark (all cases, time, memory) is bench/bench_segmentation.py.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.errors import HepatoplanError, InputError
from hepatoplan.pipeline.cli import main
from hepatoplan.segmentation import segment_liver, segment_study, segment_tumours, segment_vessels
from hepatoplan.segmentation import _morph as morph


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def abdomen_phantom(seed: int = 0):
    """Synthetic portal-venous CT (HU, canonical RAS+, 1.5 x 1.5 x 2.5 mm) with known masks.

    Body with fat and a muscle wall, spine, a liver on the patient's right (high axis-0 index,
    110 HU), a spleen of almost the same density on the left (115 HU), a bright right kidney, a
    30 mm hypodense tumour (60 HU) inside the liver and a 10 mm enhancing vessel (180 HU); Gaussian
    noise of 12 HU.
    """
    rng = np.random.default_rng(seed)
    sp = (1.5, 1.5, 2.5)
    shape = (200, 160, 60)
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sp)), indexing="ij")
    cx, cy = shape[0] * sp[0] / 2, shape[1] * sp[1] / 2
    img = np.full(shape, -1000.0, np.float32)
    body = ((x - cx) / 140) ** 2 + ((y - cy) / 105) ** 2 <= 1
    inner = ((x - cx) / 128) ** 2 + ((y - cy) / 93) ** 2 <= 1
    img[body] = -100
    img[body & ~inner] = 50
    img[((x - cx) / 18) ** 2 + ((y - (cy - 65)) / 18) ** 2 <= 1] = 400
    lx, ly, lz = cx + 60, cy + 5, 85
    liver = (((x - lx) / 62) ** 2 + ((y - ly) / 65) ** 2 + ((z - lz) / 55) ** 2 <= 1) & inner
    img[liver] = 110
    spleen = (((x - (cx - 85)) / 30) ** 2 + ((y - (cy - 25)) / 40) ** 2 + ((z - 95) / 35) ** 2 <= 1) & inner & ~liver
    img[spleen] = 115
    kidney = (((x - (cx + 55)) / 22) ** 2 + ((y - (cy - 45)) / 28) ** 2 + ((z - 30) / 30) ** 2 <= 1) & inner & ~liver
    img[kidney] = 170
    tumour = (((x - (lx + 10)) ** 2 + (y - (ly + 20)) ** 2 + (z - (lz + 5)) ** 2) <= 15**2) & liver
    img[tumour] = 60
    vessel = (((x - (lx - 10)) ** 2 + (y - (ly - 25)) ** 2) <= 5**2) & liver
    img[vessel] = 180
    img += rng.normal(0.0, 12.0, shape).astype(np.float32)
    return img.astype(np.int16), sp, {"liver": liver, "tumour": tumour, "vessel": vessel, "spleen": spleen}


@pytest.fixture(scope="module")
def phantom():
    return abdomen_phantom()


@pytest.fixture(scope="module")
def phantom_segment_run(phantom, tmp_path_factory):
    """``hepatoplan segment`` run in-process on the phantom, once for the module: its exit status,
    what it printed on stdout, its output folder, and the ``StudySegmentation`` it wrote (recorded
    on its way out of ``segment_study``): the phantom's tests and the CLI's test share one
    segmentation."""
    import contextlib
    import io as _io

    import hepatoplan.segmentation as seg

    img, sp, _ = phantom
    tmp = tmp_path_factory.mktemp("segment")
    _write_nifti(tmp / "ct.nii.gz", img, sp)
    made = []
    study = seg.segment_study
    stdout = _io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(stdout):
        mp.setattr(seg, "segment_study", lambda *a, **k: made.append(study(*a, **k)) or made[-1])
        status = main(["segment", str(tmp / "ct.nii.gz"), "--out", str(tmp / "seg")])
    return status, stdout.getvalue(), tmp / "seg", made


@pytest.fixture(scope="module")
def phantom_study(phantom_segment_run):
    (result,) = phantom_segment_run[3]
    return result


# ----------------------------------------------------------------------------- phantoms


def test_liver_on_phantom_found_on_the_right_not_the_spleen(phantom_study, phantom):
    _, sp, truth = phantom
    liver = phantom_study.liver
    assert liver.dtype == np.uint8
    assert _dice(liver, truth["liver"]) >= 0.93
    assert not np.any(liver.astype(bool) & truth["spleen"])
    info = phantom_study.report["liver"]
    truth_ml = np.count_nonzero(truth["liver"]) * np.prod(sp) / 1000.0
    assert info["liver_volume_ml"] == pytest.approx(truth_ml, rel=0.07)  # boundary at 1.5 mm, 12 HU noise
    assert info["liver_centre_right_of_body_mm"] > 30
    assert info["contrast_phase_guess"] == "portal-venous"
    json.dumps(phantom_study.report)  # JSON-ready


def test_tumour_on_phantom_is_one_instance_with_its_volume(phantom_study, phantom):
    _, sp, truth = phantom
    tum = phantom_study.tumours
    assert tum.dtype == np.uint16 and int(tum.max()) == 1
    assert _dice(tum, truth["tumour"]) >= 0.95
    truth_ml = np.count_nonzero(truth["tumour"]) * np.prod(sp) / 1000.0
    (lesion,) = phantom_study.report["tumours"]["lesions"]
    assert lesion["volume_ml"] == pytest.approx(truth_ml, rel=0.05)  # measured 0.1 % (edge snapping)
    assert np.all(phantom_study.liver[tum > 0] == 1)  # lesions lie inside the liver


@pytest.mark.parametrize("contrast_hu", [-20.0, -70.0])
def test_lesion_edges_snap_to_the_half_way_contour(contrast_hu):
    """A blurred sphere (r 8 mm, 0.7 x 0.7 x 2 mm voxels, noise 8 HU) found 2 mm too small (as
    hysteresis finds faint lesions): the boundary moves out to the half-way contour of the
    noise-free blurred and smoothed sphere (within 4 %), which lies about sigma^2 / r inside the
    surface (7 % of the volume here)."""
    from hepatoplan.segmentation import TumourParams, _grid
    from hepatoplan.segmentation.tumours import _snap_edges
    from scipy import ndimage as ndi

    sp = np.array([0.7, 0.7, 2.0])
    shape = (80, 80, 28)
    x, y, z = (np.indices(shape).T * sp).T
    r_mm = np.sqrt((x - 28.0) ** 2 + (y - 27.5) ** 2 + (z - 27.0) ** 2)
    sphere = r_mm <= 8.0
    img = ndi.gaussian_filter(np.where(sphere, 110.0 + contrast_hu, 110.0), 1.0 / sp)
    half_way = _grid.gaussian(img.astype(np.float32), tuple(sp), TumourParams().edge_smoothing_mm) < 110.0 + contrast_hu / 2
    img = img + np.random.default_rng(3).normal(0.0, 8.0, shape)
    labels = (r_mm <= 6.0).astype(np.uint16)
    _snap_edges(labels, img.astype(np.float32), np.ones(shape, bool), sp, TumourParams())
    assert labels.sum() == pytest.approx(half_way.sum(), rel=0.04)
    assert _dice(labels > 0, sphere) >= 0.93


@pytest.mark.parametrize("radius_mm, depth_mm", [(8.0, 9.0), (8.0, 11.0), (9.0, 10.0)])
def test_tumour_in_a_notch_of_the_liver_mask_is_found_whole(phantom, radius_mm, depth_mm):
    """A lesion under the posterior surface whose outer half, and the slot from it to the surface,
    the liver mask leaves out (as the automatic liver did on IRCADb 01) is found, notch part included."""
    img, sp, truth = phantom
    shape = img.shape
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sp)), indexing="ij")
    lx, ly, lz = shape[0] * sp[0] / 2 + 60, shape[1] * sp[1] / 2 + 5, 85  # the phantom liver's centre
    yc = ly - 65 + depth_mm  # 65 mm: its posterior semi-axis
    lesion = ((x - lx) ** 2 + (y - yc) ** 2 + (z - lz) ** 2 <= radius_mm**2) & truth["liver"]
    img = img.copy()
    img[lesion] = (60 + np.random.default_rng(1).normal(0.0, 12.0, np.count_nonzero(lesion))).astype(np.int16)
    slot = ((x - lx) ** 2 + (z - lz) ** 2 <= radius_mm**2) & (y < yc)
    liver = truth["liver"] & ~slot
    tum, info = segment_tumours(img, liver, spacing_mm=sp)
    hit = np.bincount(tum[lesion]).argmax()
    assert hit > 0 and _dice(tum == hit, lesion) >= 0.8
    assert np.any((tum == hit) & ~liver)  # the notch part
    assert _dice(tum > 0, truth["tumour"] | lesion) >= 0.9
    assert info["n_lesions"] == 2


def test_faint_hyperdense_lesion_found_and_a_vessel_as_bright_is_not(phantom):
    """A 2.1 mL sphere 25 HU brighter than the parenchyma is found as a hyperdense lesion, by the
    bright-region step on its own too; a 3 mm vessel as bright, and the phantom's 180 HU vessel, are
    tubes and are not lesions (1.5 x 1.5 x 2.5 mm voxels, RAS+)."""
    from hepatoplan.segmentation import TumourParams
    from hepatoplan.segmentation.tumours import _bright_region_lesions, _lesion_grid

    img, sp, truth = phantom
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(img.shape, sp)), indexing="ij")
    lx, ly, lz = img.shape[0] * sp[0] / 2 + 60, img.shape[1] * sp[1] / 2 + 5, 85  # the phantom liver's centre
    rng = np.random.default_rng(2)
    sphere = ((x - (lx - 30)) ** 2 + (y - (ly + 15)) ** 2 + (z - (lz - 20)) ** 2 <= 8.0**2) & truth["liver"]
    tube = ((x - (lx + 25)) ** 2 + (z - (lz - 25)) ** 2 <= 3.0**2) & truth["liver"]
    img = img.copy()
    for m in (sphere, tube):
        img[m] = (135 + rng.normal(0.0, 12.0, np.count_nonzero(m))).astype(np.int16)
    tum, info = segment_tumours(img, truth["liver"], spacing_mm=sp)
    hit = np.bincount(tum[sphere]).argmax()
    assert hit > 0 and info["lesions"][hit - 1]["kind"] == "hyperdense"
    assert _dice(tum == hit, sphere) >= 0.7
    assert not np.any(tum[tube | truth["vessel"]])
    assert info["n_lesions"] == 2  # the sphere and the phantom's hypodense tumour
    grid = _lesion_grid(img, truth["liver"], sp, TumourParams(), {})
    (region,) = _bright_region_lesions(grid, TumourParams())  # the sphere only, on the search grid
    on_grid = np.zeros(grid.liver.shape, bool)
    on_grid[region[0]] = region[1]
    sphere_grid = sphere[grid.box][:: grid.factors[0], :: grid.factors[1], :: grid.factors[2]]
    assert _dice(on_grid, sphere_grid) >= 0.5  # the region at 12 HU, before the edge is snapped


def test_hyperdense_lesion_beside_a_vessel_found_without_the_lumen(phantom):
    """A 2.1 mL sphere 25 HU brighter than a textured parenchyma (SD 12 HU, correlated over ~1.5 mm),
    touching the phantom's 10 mm, 180 HU vessel: smoothed with the vessel it is part of a tube at
    every level; without the voxels 3.5 SDs above the parenchyma (the lumen) it is a region of its own,
    reaching no further into the vessel than its edge."""
    from dataclasses import replace

    from scipy import ndimage as ndi

    from hepatoplan.segmentation import TumourParams
    from hepatoplan.segmentation.tumours import _bright_region_lesions, _lesion_grid

    img, sp, truth = phantom
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(img.shape, sp)), indexing="ij")
    lx, ly, lz = img.shape[0] * sp[0] / 2 + 60, img.shape[1] * sp[1] / 2 + 5, 85  # the phantom liver's centre
    sphere = ((x - (lx + 3)) ** 2 + (y - (ly - 25)) ** 2 + (z - (lz - 20)) ** 2 <= 8.0**2) & truth["liver"]
    rng = np.random.default_rng(3)
    texture = ndi.gaussian_filter(rng.normal(0.0, 1.0, img.shape), 1.0)
    img = img.astype(np.float32) + 25.0 * sphere
    img[truth["liver"]] += (12.0 / texture.std()) * texture[truth["liver"]]
    grid = _lesion_grid(img.astype(np.int16), truth["liver"], sp, TumourParams(), {})
    on_grid = sphere[grid.box][:: grid.factors[0], :: grid.factors[1], :: grid.factors[2]]
    vessel = truth["vessel"][grid.box][:: grid.factors[0], :: grid.factors[1], :: grid.factors[2]]

    def regions(params):
        found = np.zeros(on_grid.shape, bool)
        for win, comp in _bright_region_lesions(grid, params):
            found[win] |= comp
        return found

    assert not np.any(regions(replace(TumourParams(), bright_region_vessel_k_sd=np.inf)) & on_grid)
    found = regions(TumourParams())
    assert _dice(found, on_grid) >= 0.7  # 0.80
    assert np.count_nonzero(found & vessel) <= 0.05 * np.count_nonzero(found)  # 6 of 449 voxels


def test_a_core_near_miss_with_a_coarse_edge_near_miss_over_it_is_a_lesion():
    """The fine search's candidate rejected by the core test alone and a coarse part over it rejected by
    the edge test alone, each within ``joint_near_miss_margin``, are a lesion together; one of them alone,
    either past the margin, another rule, a coarse-scale core miss or a candidate over a lesion found is not."""
    from dataclasses import replace

    from hepatoplan.segmentation import TumourParams
    from hepatoplan.segmentation.tumours import _near_misses_judged_together

    p = TumourParams()
    shape = (20, 20, 20)
    blob = np.zeros(shape, bool)
    blob[4:10, 4:10, 4:10] = True
    win = (slice(0, 20),) * 3

    def miss(rule, margin, mask, scale_mm=p.smoothing_mm):
        return {"rule": rule, "margin": margin, "scale_mm": scale_mm, "_where": (win, mask)}

    beside = np.roll(blob, 3, axis=0)  # overlaps the blob
    apart = np.roll(blob, 10, axis=1)  # does not
    none = np.zeros(shape, bool)

    def judged(near, dark=none, **kw):
        return [m for _, m in _near_misses_judged_together(near, dark, replace(p, **kw))]

    (got,) = judged([miss("core", 0.01, blob), miss("edge", 0.08, beside, 5.0)])
    assert np.array_equal(got, blob)
    assert judged([miss("core", 0.01, blob), miss("edge", 0.08, apart, 5.0)]) == []
    assert judged([miss("core", 0.01, blob)]) == []
    assert judged([miss("core", 0.01, blob), miss("edge", 0.12, beside, 5.0)]) == []
    assert judged([miss("core", 0.12, blob), miss("edge", 0.05, beside, 5.0)]) == []
    assert judged([miss("shape", 0.01, blob), miss("edge", 0.05, beside, 5.0)]) == []
    assert judged([miss("core", 0.01, blob, 2.5), miss("edge", 0.05, beside, 5.0)]) == []
    assert judged([miss("core", 0.01, blob), miss("edge", 0.05, beside, 5.0)], dark=beside) == []
    assert judged([miss("core", 0.01, blob), miss("edge", 0.08, beside, 5.0)], joint_near_miss_margin=0.05) == []


def test_vessel_on_phantom_detected_and_inside_roi(phantom_study, phantom):
    _, _, truth = phantom
    ves = (phantom_study.portal_vein > 0) | (phantom_study.hepatic_veins > 0)
    assert np.count_nonzero(ves & truth["vessel"]) >= 0.5 * np.count_nonzero(truth["vessel"])
    assert not np.any(phantom_study.portal_vein.astype(bool) & phantom_study.hepatic_veins.astype(bool))


def test_mirrored_phantom_is_not_a_confident_liver(phantom):
    """Orientation matters: with the axes mirrored the liver lies on the patient's left; the search
    (on the patient's right) finds only the 159 mL spleen there, which fails the volume check: the
    scan is refused with the reason and the fix, never answered with the spleen as the liver."""
    img, sp, _ = phantom
    with pytest.raises(HepatoplanError, match=r"failed its quality checks: liver volume .* mL outside.*--liver FILE"):
        segment_study(np.ascontiguousarray(img[::-1]), spacing_mm=sp)


def test_head_like_scan_is_rejected():
    """A skull around 35 HU brain, centred: no right-sided abdominal organ -> error, not a mask."""
    sp = (1.5, 1.5, 2.5)
    shape = (160, 160, 40)
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, sp)), indexing="ij")
    r = ((x - 120) / 85) ** 2 + ((y - 120) / 100) ** 2 + ((z - 50) / 70) ** 2
    img = np.full(shape, -1000.0, np.float32)
    img[r <= 1] = 1000
    img[r <= 0.85] = 35
    img += np.random.default_rng(1).normal(0, 8, shape).astype(np.float32)
    with pytest.raises(HepatoplanError):
        segment_study(img.astype(np.int16), spacing_mm=sp)


def test_liver_rejects_non_hu_intensities():
    img = np.random.default_rng(0).integers(0, 4000, size=(64, 64, 20)).astype(np.int16)
    with pytest.raises(InputError, match="Hounsfield"):
        segment_liver(img, spacing_mm=(2.0, 2.0, 3.0))


def test_liver_rejects_tiny_volume():
    with pytest.raises(InputError, match="too small"):
        segment_liver(np.full((10, 10, 4), -1000, dtype=np.int16), spacing_mm=(1.0, 1.0, 1.0))


@pytest.mark.parametrize("spacing", [(1.0, -1.0, 1.0), (1.0, 1.0), (0.0, 1.0, 1.0)])
def test_liver_rejects_bad_spacing(spacing):
    with pytest.raises(InputError, match="spacing_mm"):
        segment_liver(np.full((64, 64, 20), -1000, dtype=np.int16), spacing_mm=spacing)


def test_tumours_and_vessels_need_matching_liver_grid(phantom):
    img, sp, truth = phantom
    with pytest.raises(InputError, match="shape"):
        segment_tumours(img, truth["liver"][:-1], spacing_mm=sp)
    with pytest.raises(InputError, match="shape"):
        segment_vessels(img, truth["liver"][:, :-1], spacing_mm=sp)


def test_empty_liver_gives_no_lesions_or_vessels(phantom):
    img, sp, truth = phantom
    empty = np.zeros_like(truth["liver"])
    tum, tinfo = segment_tumours(img, empty, spacing_mm=sp)
    portal, hepatic, vinfo = segment_vessels(img, empty, spacing_mm=sp)
    assert not tum.any() and not portal.any() and not hepatic.any()
    assert vinfo["qc_flags"]


def test_portal_trunk_followed_below_the_liver_thin_vessels_not():
    """A 10 mm vessel leaving the liver's lower half is followed outside it (to TRUNK_MARGIN_MM,
    as manual references include the portal trunk and Couinaud reads its root there); a 3 mm one
    leaving it the same way is not followed beyond the ordinary vessel margin, and nothing is kept
    beyond the trunk margin."""
    from hepatoplan.segmentation import VesselParams

    p = VesselParams()
    img, sp, truth = abdomen_phantom(seed=1)
    liver = truth["liver"]
    x, y, z = np.meshgrid(*(np.arange(n) * s for n, s in zip(img.shape, sp)), indexing="ij")
    cx, cy = img.shape[0] * sp[0] / 2 + 60, img.shape[1] * sp[1] / 2 + 5  # liver centre (x, y)
    trunk = ((x - (cx - 10)) ** 2 + (y - (cy - 25)) ** 2 <= 5**2) & (z < 85)
    thin = ((x - (cx + 5)) ** 2 + (y - (cy + 5)) ** 2 <= 1.5**2) & (z < 85)
    img = img.copy()
    img[trunk | thin] = 180
    portal, hepatic, info = segment_vessels(img, liver, spacing_mm=sp)
    ves = (portal > 0) | (hepatic > 0)
    out_mm = morph._dist_inside(~liver, sp)
    beyond_roi = trunk & (out_mm > p.roi_margin_mm + 0.5) & (out_mm <= p.trunk_margin_mm - 1.0)
    assert beyond_roi.sum() > 20
    assert np.count_nonzero(ves & beyond_roi) >= 0.8 * np.count_nonzero(beyond_roi)
    thin_beyond = thin & (out_mm > p.roi_margin_mm + 0.5)
    assert np.count_nonzero(thin_beyond & (out_mm <= p.trunk_margin_mm)) >= 3
    assert not np.any(ves & thin_beyond)
    assert not np.any(ves & (out_mm > p.trunk_margin_mm + 3.0))
    assert info["extrahepatic_trunk_ml"] > 0


def test_morphology_is_in_millimetres():
    sp = (0.5, 1.0, 2.0)
    m = np.zeros((81, 41, 21), bool)
    m[40, 20, 10] = True
    ball = morph.dilate(m, 10.0, sp)
    idx = np.argwhere(ball)
    extent_mm = (idx.max(0) - idx.min(0)) * np.array(sp)
    assert np.allclose(extent_mm, 20.0, atol=2.0)


def test_morphology_in_the_masks_box_equals_the_whole_grid():
    """Distance maps and dilations computed in the mask's box (widened by one voxel, or by the
    radius) equal those of the whole grid, bit for bit: boxes at the grid's edge, boxes in the
    middle, empty masks, anisotropic spacing."""
    import edt

    rng = np.random.default_rng(7)
    for _ in range(60):
        shape, sp = tuple(rng.integers(6, 30, 3)), tuple(rng.uniform(0.5, 5.0, 3))
        m = np.zeros(shape, bool)
        for _ in range(rng.integers(0, 3)):
            lo = [rng.integers(0, n) for n in shape]
            m[tuple(slice(a, a + rng.integers(1, 8)) for a in lo)] = True
        whole = lambda a: edt.edt(a.astype(np.uint8), anisotropy=sp, black_border=False)  # noqa: E731
        assert np.array_equal(morph._dist_inside(m, sp), whole(m))
        r_mm = rng.uniform(0.5, 12.0)
        assert np.array_equal(morph.dilate(m, r_mm, sp), (whole(~m) <= r_mm) if m.any() else m)


def test_small_balls_by_shifted_ands_equal_the_distance_maps():
    """erode and dilate by a ball of few rows (shifted ANDs) give the voxels of the distance map's
    threshold, bit for bit: random and blobby masks, anisotropic and thick-slice spacings, radii at
    and below a voxel, arrays thinner than the ball, boxes at the grid's edge."""
    import edt

    rng = np.random.default_rng(11)
    used = 0
    for _ in range(150):
        shape = tuple(int(n) for n in rng.integers(2, 26, 3))
        sp = tuple(float(s) for s in rng.choice([0.5703125, 0.78, 1.0, 1.6, 2.5, 1e6], 3))
        r_mm = float(rng.choice([0.5, 1.0, 1.5, 2.0, 3.0, 4.5]))
        m = rng.random(shape) < rng.random()
        if rng.random() < 0.5:  # a blob away from the edges
            m[:] = False
            lo = [int(rng.integers(0, n)) for n in shape]
            m[tuple(slice(a, a + int(rng.integers(1, 12))) for a in lo)] = True
        used += morph._ball_rows(r_mm, sp) is not None
        whole = lambda a: edt.edt(a.astype(np.uint8), anisotropy=sp, black_border=False)  # noqa: E731
        assert np.array_equal(morph.erode(m, r_mm, sp), whole(m) > r_mm)
        assert np.array_equal(morph.dilate(m, r_mm, sp), (whole(~m) <= r_mm) if m.any() else m)
    assert used > 100
    assert morph._ball_rows(1.0, (0.5, 0.5, 0.5)) is None  # offsets (2, 0, 0) on the sphere: the distance map decides


def test_bowel_gas_measures_of_the_bulging_blobs():
    """The bulging blobs' bowel tests (``liver._bulging_lesions``): a block is near air when one of
    its full-resolution voxels lies within the distance of an air voxel (the distance map's answer,
    block by block, also at the crop's ragged edge); a blob's contact is its share of boundary faces
    on the liver and its outer gas share the share of its other faces on blocks near air."""
    import edt

    from hepatoplan.segmentation import liver as liver_mod

    rng = np.random.default_rng(3)
    f, fine = (3, 3, 1), (0.7, 0.7, 1.6)
    air = rng.random((31, 29, 12)) < 0.004
    coarse = tuple(-(-n // k) for n, k in zip(air.shape, f))
    scan = liver_mod._CoarseScan(None, None, np.ones(coarse, bool), None, air, tuple(s * k for s, k in zip(fine, f)),
                                 f, None, None, 0.0)
    region = np.zeros(coarse, bool)
    region[3:7, 3:7, 3:8] = True
    near = liver_mod._near_air(scan, region, 2.0)
    dist = np.pad(edt.edt((~air).astype(np.uint8), anisotropy=fine, black_border=False),
                  [(0, c * k - n) for c, k, n in zip(coarse, f, air.shape)], mode="edge")
    want = dist.reshape(coarse[0], 3, coarse[1], 3, coarse[2], 1).min(axis=(1, 3, 5)) <= 2.0
    box = (slice(2, 8), slice(2, 8), slice(2, 9))  # the region and its neighbours
    assert near[box].any() and np.array_equal(near[box], want[box]) and not near.sum() - near[box].sum()

    ws = np.zeros((12, 12, 12), np.int64)
    ws[2:8, 2:8, 2:8] = 1  # a 6-voxel cube: 6 faces of 36
    liver = np.zeros(ws.shape, bool)
    liver[:2] = True  # on its -x face
    near_air = np.zeros(ws.shape, bool)
    near_air[8:] = True  # beyond its +x face
    contact, outer = liver_mod._face_shares(ws, liver, near_air, 1)
    assert contact[1] == pytest.approx(1 / 6) and outer[1] == pytest.approx(1 / 5)
    liver[:] = False
    assert liver_mod._face_shares(ws, liver, near_air, 1)[1][1] == pytest.approx(1 / 6)


def test_the_outer_air_share_reads_in_plane_faces_across_slices_thicker_than_the_grid():
    """``liver._bulging_lesions``: a dark blob set into the liver (contact 0.4) with air in the block
    layer over its top face. On 1.6 mm slices that face counts (196 of its 504 free faces near air, and the
    14 in-plane faces of its top layer, 1.6 mm from it: kept out as bowel); on 3.2 mm slices, thicker than the 2 mm coarse grid, only the in-plane faces count
    (none of its 112 near air: joined)."""
    from hepatoplan.segmentation import liver as liver_mod

    shape, f = (36, 36, 18), (3, 3, 1)
    image = np.full(shape, 200.0)  # bright tissue: not dark, not liver
    liver = np.zeros(shape, bool)
    liver[:10] = True
    liver[10:24, :10] = liver[10:24, 24:] = True  # the liver wraps the blob's -x, -y and +y faces
    liver[:, :, :3] = liver[:, :, 15:] = False
    image[liver] = 120.0
    image[10:24, 10:24, 5:13] = 40.0  # the blob: 14 x 14 x 8 blocks
    air = np.zeros(tuple(n * k for n, k in zip(shape, f)), bool)
    air[30:72, 30:72, 13] = True  # a few full-resolution air voxels in the block layer over the blob
    for z_mm, joined, outer in ((1.6, False, (196 + 14) / 504), (3.2, True, 0.0)):
        sp = (2.1, 2.1, z_mm)
        scan = liver_mod._CoarseScan(image, None, np.ones(shape, bool), np.zeros(shape, bool), air, sp, f, None,
                                     shape, 0.0)
        out, report = liver_mod._bulging_lesions(scan, liver, 90.0, liver_mod.LiverParams())
        blob = max(report, key=lambda b: b["volume_ml"])
        assert blob["contact_fraction"] == pytest.approx(336 / 840)
        assert blob["outer_gas_fraction"] == pytest.approx(outer, abs=1e-3) and blob["joined"] is joined
        assert out[17, 17, 9] is np.bool_(joined)


def test_a_window_piece_joins_the_liver_when_it_faces_it_widely():
    """``liver._adjoining``: a piece the texture limit alone kept out joins when at least
    ``piece_min_contact_fraction`` of its boundary faces face the liver (a lobe beyond a lesion),
    not when it touches it at a small patch (an organ beside the liver), nor when it is smaller
    than a competing organ's marker."""
    from hepatoplan.segmentation import liver as liver_mod

    liver = np.zeros((24, 20, 20), bool)
    liver[:10] = True
    pieces = np.zeros_like(liver)
    pieces[10:14, 2:10, 2:10] = True  # a slab on the liver's face: 64 of its 256 faces (0.25)
    pieces[10:24, 14:16, 14:16] = True  # a rod touching it end-on: 4 of its 116 faces (0.03; the grid edge has none)
    info = {}
    joined = liver_mod._adjoining(pieces, liver, 0.19, 1, info)
    assert joined[10:14, 2:10, 2:10].all() and not joined[:, 14:, 14:].any() and info["pieces_joined"] == 1
    assert liver_mod._adjoining(pieces, liver, 0.02, 1, {}).sum() == pieces.sum()
    assert not liver_mod._adjoining(pieces, liver, 0.02, 300, {}).any()  # both smaller than 300 voxels
    assert not liver_mod._adjoining(pieces, liver, 0.3, 1, {}).any()


def test_depth_and_blob_shape_are_physical_on_thick_slices():
    """A voxel of the last 4.8 mm slice lies 2.4 mm from the surface, not 4.8 mm (as far as on a
    1 mm grid, plus half a 1 mm voxel); a blob one thick slice deep is a slab, not an infinitely
    thin disc of huge ellipsoid fill."""
    from hepatoplan.segmentation.tumours import _ellipsoid_fill

    slab = np.zeros((30, 30, 12), bool)
    slab[5:25, 5:25, 3:9] = True
    assert np.allclose(morph.surface_depth(slab, (1.0, 1.0, 4.8))[15, 15, 3:9], [2.9, 7.7, 10, 10, 7.7, 2.9], atol=0.01)
    assert np.allclose(morph.surface_depth(slab, (1.0, 1.0, 1.0))[15, 15, 3:9], [1, 2, 3, 3, 2, 1])
    disc = np.zeros((20, 20, 3), bool)
    disc[5:15, 5:15, 1] = True
    assert 0.8 < _ellipsoid_fill(disc, (1.0, 1.0, 3.0)) < 1.0  # a 10 x 10 x 3 mm box
    x, y, z = (np.indices((81, 81, 17)).T * np.array([0.6, 0.6, 5.0])).T
    ball = (x - 24) ** 2 + (y - 24) ** 2 + (z - 40) ** 2 <= 12**2
    assert _ellipsoid_fill(ball, (0.6, 0.6, 5.0)) == pytest.approx(1.0, abs=0.05)


def test_the_core_test_leaves_out_a_lesions_top_and_bottom_thick_slice():
    """A lesion three 3.2 mm slices deep, 30 HU dark in its middle slice and 10 HU in the slices above
    and below it (their partial volume with the parenchyma), has a median over all of it above the
    seed threshold: on thick slices the core test reads it without its top and bottom slice and it is
    a lesion; with the rule off (``core_cap_spacing_mm`` infinite), or the same voxels read as 1.6 mm
    slices, the core test rejects it."""
    from hepatoplan.segmentation import TumourParams
    from hepatoplan.segmentation.tumours import _lesion_grid, _search

    img = np.full((80, 80, 16), 110.0, np.float32)
    liver = np.zeros(img.shape, bool)
    liver[5:75, 5:75, 2:14] = True
    img[~liver] = -100.0
    x, y = np.indices(img.shape[:2])
    disc = (x - 40) ** 2 + (y - 40) ** 2 <= 9**2
    img[disc, 7] = 80.0
    img[disc, 6] = img[disc, 8] = 100.0

    def lesions(spacing_mm, **kw):
        p = dataclasses.replace(TumourParams(), **kw)
        grid = _lesion_grid(img, liver, spacing_mm, p, {})
        assert grid.seed_hu < 100.0 < grid.grow_hu  # the caps are candidate voxels, not seed-dark
        return [e["median_hu"] for _, _, e in _search(grid.liver, grid.depth_mm, grid, p)]

    assert lesions((1.0, 1.0, 3.2)) == [100.0]
    assert lesions((1.0, 1.0, 3.2), core_cap_spacing_mm=float("inf")) == []
    assert lesions((1.0, 1.0, 1.6)) == []


def test_itk_filters_do_not_depend_on_axis_order():
    """SimpleITK gets the canonical array as it is, its spacing reversed (ITK counts axes from the
    last): the filters match the same filters run on the axes transposed into ITK's order, on an
    anisotropic grid of unequal sides, up to float32 rounding (separable passes run in another
    order); the marker watershed and the up-sampling match exactly."""
    import SimpleITK as sitk

    from hepatoplan.segmentation import _grid

    rng = np.random.default_rng(0)
    sp = (0.7, 1.1, 2.5)
    img = _grid.gaussian(rng.normal(100.0, 30.0, (37, 29, 17)).astype(np.float32), (1, 1, 1), 1.0)

    def transposed(fn, array, spacing):  # the canonical axes handed to ITK in its own order
        im = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
        im.SetSpacing([float(s) for s in spacing])
        return sitk.GetArrayFromImage(fn(im)).transpose(2, 1, 0)

    scale = float(np.abs(img).max())
    for ours, theirs in [
        (_grid.gaussian(img, sp, 2.0), transposed(lambda i: sitk.SmoothingRecursiveGaussian(i, 2.0), img, sp)),
        (_grid.gradient_magnitude(img, sp, 1.5),
         transposed(lambda i: sitk.GradientMagnitudeRecursiveGaussian(i, 1.5), img, sp)),
        (_grid.median(img, 1), transposed(lambda i: sitk.Median(i, [1, 1, 1]), img, (1, 1, 1))),
    ]:
        assert ours.shape == img.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-5 * scale)
    # a smoothing along axis 2 only would be wrong: the spacing really follows its axis
    assert not np.allclose(_grid.gaussian(img, sp, 2.0), _grid.gaussian(img, sp[::-1], 2.0), atol=1e-2)
    markers = np.zeros(img.shape, np.uint8)
    markers[3, 4, 5], markers[30, 20, 12] = 1, 2
    ws = _grid.watershed_from_markers(img, markers, sp, fully_connected=True)
    marker_image = sitk.GetImageFromArray(np.ascontiguousarray(markers.transpose(2, 1, 0)))
    marker_image.SetSpacing(sp)
    ref = transposed(lambda i: sitk.MorphologicalWatershedFromMarkers(
        i, marker_image, markWatershedLine=False, fullyConnected=True), img, sp)
    assert np.array_equal(ws, ref) and set(np.unique(ws)) == {1, 2}
    small = rng.integers(0, 3, (5, 4, 3)).astype(np.uint8)
    up = _grid.upsample(small, (3, 2, 1), (15, 8, 3), linear=False)
    assert np.array_equal(up, np.repeat(np.repeat(small, 3, axis=0), 2, axis=1))
    lin = _grid.upsample(small.astype(np.float32), (3, 1, 1), (15, 4, 3))
    assert np.allclose(lin[1::3], small) and np.allclose(lin[2, 0, 0], small[0, 0, 0] + (small[1, 0, 0] - small[0, 0, 0]) / 3)


def test_parameters_are_used_and_recorded(phantom):
    """Each algorithm runs with the values it is given: the phantom's 60 HU tumour (50 HU below the
    parenchyma, 12 HU noise) is found with the default seed threshold and not with one 12 SDs deep
    and no dark-region levels (a compact region that dark is a lesion of its own); the parameters
    are frozen and JSON-ready."""
    import dataclasses

    from hepatoplan.segmentation import LiverParams, SegmentationParams, TumourParams

    img, sp, truth = phantom
    tum, info = segment_tumours(img, truth["liver"], spacing_mm=sp, params=TumourParams(seed_k_sd=12.0, dark_lesion_levels_hu=()))
    assert info["n_lesions"] == 0
    assert info["seed_threshold_hu"] == pytest.approx(info["parenchyma_median_hu"] - 12.0 * info["parenchyma_sd_hu"], abs=0.2)
    assert segment_tumours(img, truth["liver"], spacing_mm=sp)[1]["n_lesions"] == 1
    params = SegmentationParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.liver.window_k_sd = 1.0  # type: ignore[misc]
    record = json.loads(json.dumps(dataclasses.asdict(params)))
    assert record["liver"]["window_k_sd"] == LiverParams().window_k_sd
    assert set(record) == {"liver", "tumours", "vessels", "self_check"}


# ----------------------------------------------------------------------------- CLI


def _write_nifti(path: Path, img, sp):
    nib.save(nib.Nifti1Image(img, np.diag([*sp, 1.0])), str(path))


def test_cli_segment_writes_all_outputs_on_the_input_grid(phantom_segment_run, phantom):
    """``hepatoplan segment`` (in-process; the module entry point as a subprocess is test_plan_cli's):
    exit 0, nothing printed; the four masks on the input's grid (shape and affine), the phantom's
    liver found (Dice >= 0.93), and segmentation.json with QC passed, the input's hash, the one
    tumour, the liver's volume and the parameters that ran (the defaults)."""
    from hepatoplan.segmentation import SegmentationParams

    img, sp, truth = phantom
    status, stdout, out, made = phantom_segment_run
    assert status == 0 and len(made) == 1
    assert stdout == ""
    for name in ("liver.nii.gz", "tumours.nii.gz", "portal_vein.nii.gz", "hepatic_veins.nii.gz"):
        mask = nib.load(str(out / name))
        assert mask.shape == img.shape
        assert np.allclose(mask.affine, np.diag([*sp, 1.0]), atol=1e-4)
    liver = np.asanyarray(nib.load(str(out / "liver.nii.gz")).dataobj)
    assert _dice(liver, truth["liver"]) >= 0.93
    assert np.array_equal(liver > 0, made[0].liver > 0)  # the files are the segmentation the phantom tests read
    rec = json.loads((out / "segmentation.json").read_text())
    assert rec["qc_passed"] is True
    assert rec["inputs"]["image"]["sha256"]
    assert rec["tumours"]["n_lesions"] == 1
    assert rec["liver"]["liver_volume_ml"] > 0
    assert rec["parameters"] == json.loads(json.dumps(dataclasses.asdict(SegmentationParams())))


def test_plan_study_records_the_parameters_of_what_ran(tmp_path, phantom):
    """With a liver mask given, ``plan`` segments the tumours and vessels: the study's provenance
    holds those two algorithms' parameters (and not the liver's)."""
    from hepatoplan.pipeline.study import MaskPaths, PlanOptions, load_study
    from hepatoplan.segmentation import TumourParams, VesselParams

    img, sp, truth = phantom
    _write_nifti(tmp_path / "ct.nii.gz", img, sp)
    _write_nifti(tmp_path / "liver.nii.gz", truth["liver"].astype(np.uint8), sp)
    options = PlanOptions(ct=tmp_path / "ct.nii.gz", out=tmp_path / "out", masks=MaskPaths(liver=tmp_path / "liver.nii.gz"))
    study = load_study(options, needs_segments=False)
    assert study.parameters["segmentation"] == {
        "tumours": dataclasses.asdict(TumourParams()), "vessels": dataclasses.asdict(VesselParams())}


def test_cli_segment_bad_input_exit_2_and_no_output(tmp_path, capsys):
    bad = tmp_path / "ct.nii.gz"
    _write_nifti(bad, np.random.default_rng(0).integers(0, 4000, (64, 64, 20)).astype(np.int16), (2.0, 2.0, 3.0))
    out = tmp_path / "seg"
    assert main(["segment", str(bad), "--out", str(out)]) == 2
    assert "Hounsfield" in capsys.readouterr().err
    assert not out.exists()
    assert main(["segment", str(tmp_path / "missing.nii.gz"), "--out", str(out)]) == 2
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [bad]  # no temporary folder left behind


# ----------------------------------------------------------------------------- real data


@functools.cache
def _load(case_dir, name):
    """One IRCADb image, canonical, read once for the module's tests (read-only: they share it)."""
    img = nib.as_closest_canonical(nib.load(str(case_dir / f"{name}.nii.gz")))
    array = np.ascontiguousarray(img.dataobj)
    array.setflags(write=False)
    return array, tuple(float(z) for z in img.header.get_zooms())


@pytest.fixture(scope="module", autouse=True)
def _forget_loaded_images():
    yield
    _load.cache_clear()


def _mean_label_dice(a, b, labels=range(1, 9)):
    """Mean Dice of labels ``labels`` between label arrays ``a`` and ``b``, by one confusion count."""
    m = (a > 0) | (b > 0)
    n = max(labels) + 1
    joint = np.bincount(a[m].astype(np.int64) * n + b[m], minlength=n * n).reshape(n, n)
    return float(np.mean([2.0 * joint[k, k] / (joint[k].sum() + joint[:, k].sum()) for k in labels]))


def test_ircadb_01_study(ircadb_dir):
    """Case 01: liver Dice >= 0.93 and volume within 5 %; tumours Dice >= 0.65, 5 of 6 lesions >= 1 mL; vessels >= 0.60;
    Couinaud from the automatic masks >= 0.75."""
    ct, sp = _load(ircadb_dir / "01", "ct")
    res = segment_study(ct, spacing_mm=sp)
    liver_ref = _load(ircadb_dir / "01", "liver")[0] > 0
    assert _dice(res.liver, liver_ref) >= 0.93
    assert abs(np.count_nonzero(res.liver) / np.count_nonzero(liver_ref) - 1.0) <= 0.05
    tum_ref = _load(ircadb_dir / "01", "tumours")[0] > 0
    assert _dice(res.tumours, tum_ref) >= 0.65
    # lesions >= 1 mL found: 5 of 6 (the posterior one lies in a notch of the automatic liver mask,
    # found by the concavity search and added to the liver; the missed one is hyperdense, 2.5 mL)
    import cc3d

    ref_lab = cc3d.connected_components(tum_ref.astype(np.uint8))
    big = [i for i, c in enumerate(np.bincount(ref_lab.ravel())) if i and c * np.prod(sp) / 1000.0 >= 1.0]
    assert len(big) == 6
    assert len(set(big) & set(np.unique(ref_lab[res.tumours > 0]))) >= 5
    assert np.all(res.liver[res.tumours > 0])
    # issue 16: the 84 mL tumour, found whole, is not a near miss (its halo candidates touch it) nor
    # a lesion left cut (21 % of its boundary on the liver outline), and the liver is in the scan
    t = res.report["tumours"]
    assert all(e["touches_lesion"] for e in t["near_misses"] if e["volume_ml"] >= 20.0)
    assert [round(e["cut_fraction"], 2) for e in t["cut_lesions"]] == [0.21]
    checks = {c["name"]: c["passed"] for c in res.report["self_check"]["checks"]}
    assert checks["lesion_cut_fraction"] and checks["liver_at_scan_edge_mm2"]
    # its darker parenchyma (12-17 mL, 10 HU below the rest at 2.5 mm) is spread out, not a missed lesion
    assert checks["dark_region_ml"] and all(e["ellipsoid_fill"] < 0.6 for e in t["dark_regions"] if e["volume_ml"] >= 3.0)
    # the closed liver lies in the liver's box: closed there (padded), the same region in less time
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(liver_ref))
    region = np.zeros_like(liver_ref)
    region[box] = morph.fill_holes(morph.close(liver_ref[box], 5.0, sp, pad_vox=10), per_slice=True)
    ves_ref = (_load(ircadb_dir / "01", "portal_vein")[0] > 0) | (_load(ircadb_dir / "01", "hepatic_veins")[0] > 0)
    ves = (res.portal_vein > 0) | (res.hepatic_veins > 0)
    assert _dice(ves & region, ves_ref & region) >= 0.60
    # issue 4: Couinaud segments from the automatic masks, mean Dice over 1-8 >= 0.75 (0.69 before
    # the portal trunk below the liver was followed; 0.89 from the manual masks)
    from hepatoplan.couinaud import segment_couinaud

    ref = _load(ircadb_dir / "01", "couinaud_reference")[0]
    cou = segment_couinaud(res.liver, res.portal_vein, res.hepatic_veins, spacing_mm=sp)
    assert _mean_label_dice(cou.labels, ref) >= 0.75


def test_ircadb_01_on_thick_slices(ircadb_dir):
    """Case 01 averaged to 3.2 mm slices (as many clinical CTs are): the liver holds up, and the
    Couinaud segments from the automatic liver and vessels too (measured: liver 0.936, Couinaud
    0.810; 0.381 before a 16 mm piece of IVC at the dome stopped giving the IVC axis a slope).
    The tumour search is left out (the whole study on thick slices is the insertion benchmark's
    degraded runs): segment_study gives liver 0.939, Couinaud 0.822 for 3 s more CPU."""
    from hepatoplan.couinaud import segment_couinaud

    ct, sp = _load(ircadb_dir / "01", "ct")
    n = ct.shape[2] // 2 * 2
    thick = lambda a: a[..., :n].astype(np.float32).reshape(a.shape[:2] + (n // 2, 2)).mean(axis=3)  # noqa: E731
    sp2 = (sp[0], sp[1], 2 * sp[2])
    image = thick(ct)
    liver, _ = segment_liver(image, spacing_mm=sp2)
    assert _dice(liver, thick(_load(ircadb_dir / "01", "liver")[0] > 0) > 0.5) >= 0.93
    portal, hepatic, _ = segment_vessels(image, liver, spacing_mm=sp2)
    ref = _load(ircadb_dir / "01", "couinaud_reference")[0]
    ref2 = ref[..., :n].reshape(ref.shape[:2] + (n // 2, 2))[..., 0]  # one of each pair of slices
    cou = segment_couinaud(liver, portal, hepatic, spacing_mm=sp2)
    assert _mean_label_dice(cou.labels, ref2) >= 0.75


def test_ircadb_07_liver(ircadb_dir):
    ct, sp = _load(ircadb_dir / "07", "ct")
    ref, _ = _load(ircadb_dir / "07", "liver")
    liver, info = segment_liver(ct, spacing_mm=sp)
    assert _dice(liver, ref) >= 0.93
    ref_ml = np.count_nonzero(ref) * np.prod(sp) / 1000.0
    assert abs(info["liver_volume_ml"] / ref_ml - 1.0) <= 0.05
    assert 90 <= info["liver_median_hu"] <= 150


def test_ircadb_07_with_its_top_cut_off(ircadb_dir):
    """Case 07 with the cranial 40 % of its liver cut off: its large right renal mass (30 HU) then
    outscores the liver's remaining lower part, fails the volume check, and the runner-up organ,
    the liver, is taken (with a flag). Measured: Dice 0.944; before, the scan was refused."""
    ct, sp = _load(ircadb_dir / "07", "ct")
    ref = _load(ircadb_dir / "07", "liver")[0] > 0
    zs = np.flatnonzero(ref.any(axis=(0, 1)))
    cut = zs[0] + int(0.6 * (zs[-1] - zs[0]))
    liver, info = segment_liver(np.ascontiguousarray(ct[..., :cut]), spacing_mm=sp)
    assert info["qc_passed"] and _dice(liver, ref[..., :cut]) >= 0.90
    assert any("candidate 2 was taken" in f for f in info["qc_flags"])


@pytest.mark.parametrize(
    "image, reference, modality, min_dice",
    [
        ("ct_contrast_dicom", "ct_contrast_dicom_totalseg.nii.gz", "CT", 0.90),
        ("mr.nii.gz", "mr_totalseg.nii.gz", "MR", 0.85),
    ],
)
def test_totalsegmentator_examples(ircadb_dir, image, reference, modality, min_dice):
    """Against TotalSegmentator's liver (label 5), matched in physical space (its header is flipped)."""
    from hepatoplan.pipeline import io

    ts = ircadb_dir.parent / "totalsegmentator"
    if not ts.is_dir():
        pytest.skip(f"{ts} not found")
    vol = io.read_image(ts / image)
    ref = io.read_labels(ts / reference, reference=vol, resample=True).array == 5
    liver, info = segment_liver(vol.array, spacing_mm=vol.spacing_mm, modality=modality)
    assert info["qc_passed"]
    assert _dice(liver, ref) >= min_dice
    if modality == "CT":  # issue 16: a 185-201 mL blob joins by a contact near its limit; the self-check
        # counts it exactly when its contact lies within the margin (liver15: the lobe pieces joined move
        # it from 0.275 to 0.303, just past 0.25 + 0.05)
        from hepatoplan.segmentation import LiverParams, SelfCheckParams
        from hepatoplan.segmentation.selfcheck import bulging_join_margin

        lp, sp_ = LiverParams(), SelfCheckParams()
        share, _ = bulging_join_margin(info, info["liver_volume_ml"], lp, sp_)
        blob = max(info["bulging_blobs"], key=lambda b: b["volume_ml"])
        assert blob["joined"] and 150 <= blob["volume_ml"] <= 220
        near = blob["contact_fraction"] < lp.lesion_min_contact_fraction + sp_.bulging_contact_margin
        assert (share >= sp_.max_bulging_join_margin_fraction) == near
