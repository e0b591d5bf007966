"""resection.vascular: devascularised and congested territories after a cut.

Phantom answers come from the generator (``truth["portal_branches"][id]["subtree_territory_ml"]``:
the liver whose nearest portal voxel belongs to the branch's subtree). A sphere cut placed right at
a branch's origin removes that branch; the liver the subtree served is then either inside the cut
or reported as devascularised, so ``devascularised_ml + (cut ∩ territory)`` must equal the truth.
Measured at 1.2 × 1.0 × 2.0 mm and 0.9 × 1.3 × 2.5 mm (scale 0.6): within 0.2 % for portal branches
5, 7, 11, 13 and hepatic tributaries 6, 7; the test allows 1 % (the issue's acceptance). Branches
whose origin lies where a ball also clips the parent or a sibling (portal 9, 14; hepatic 5, 8, 9)
are left out: the cut then legitimately takes more than one branch. Portal 8 is within 0.2 % at
the first spacing but 3 % short at the second (the ball leaves a stub of the branch connected).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from data_samples.phantom import make_phantom
from hepatoplan.errors import InputError
from resection.procedures import parse_resection
from resection.vascular import vascular_consequences
from resection.virtual import plan_resection


@pytest.fixture(scope="module", params=[(1.2, 1.0, 2.0), (0.9, 1.3, 2.5)], ids=["1.2x1.0x2.0", "0.9x1.3x2.5"])
def ph(request):
    return make_phantom(spacing_mm=request.param, scale=0.6, noise_hu=0.0)


def _axes_mm(study):
    a = study.affine_ras
    return [a[k, 3] + a[k, k] * np.arange(study.shape[k]) for k in range(3)]


def _ball(study, centre_mm, radius_mm):
    x, y, z = _axes_mm(study)
    c = np.asarray(centre_mm, float)
    return ((x[:, None, None] - c[0]) ** 2 + (y[None, :, None] - c[1]) ** 2
            + (z[None, None, :] - c[2]) ** 2) <= radius_mm**2


def _cut_at_origin(study, tree: str, branch: int):
    """A ball through the origin of ``branch``, just outside its parent's tube."""
    info = study.truth[f"{tree}_branches"][str(branch)]
    parent = study.truth[f"{tree}_branches"][str(info["parent"])]
    pts = np.asarray(info["points_mm"])
    u = (pts[1] - pts[0]) / np.linalg.norm(pts[1] - pts[0])
    radius = info["radius_start_mm"] + 2.0
    centre = pts[0] + u * (parent["radius_end_mm"] + radius)
    return _ball(study, centre, radius) & (study.liver > 0)


@pytest.mark.parametrize("branch", [5, 7, 11, 13])
def test_cutting_a_portal_branch_devascularises_its_subtree_territory(ph, branch):
    info = ph.truth["portal_branches"][str(branch)]
    cut = _cut_at_origin(ph, "portal", branch)
    res = vascular_consequences(liver=ph.liver > 0, resected=cut, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0, segments=ph.segments)
    territory = np.isin(ph.portal_territories, info["subtree"])
    unit_ml = np.prod(ph.spacing_mm) / 1000
    inside_cut_ml = np.count_nonzero(territory & cut) * unit_ml
    assert res.devascularised_ml + inside_cut_ml == pytest.approx(info["subtree_territory_ml"], rel=0.01)
    # nothing outside the branch's territory is reported
    assert np.count_nonzero(res.devascularised & ~territory) * unit_ml < 0.002 * info["subtree_territory_ml"]
    assert res.devascularised_ml == pytest.approx(sum(p.territory_ml for p in res.portal_pieces))
    kinds = {p.kind for p in res.portal_pieces}
    assert kinds == {"detached", "transected"}
    detached = [p for p in res.portal_pieces if p.kind == "detached"]
    # the piece's segment is the one the branch feeds (5, 8 … for terminals; 8 or 5 for the sector)
    assert detached[0].segment in info["segments_fed"]
    # its diameter: at most the branch's start diameter, at least its end diameter, ± one voxel
    voxel = max(ph.spacing_mm)
    assert 2 * info["radius_end_mm"] - voxel <= detached[0].max_diameter_mm <= 2 * info["radius_start_mm"] + voxel


def test_a_cut_as_fractions_gives_the_same_answer_as_the_mask(ph):
    cut = _cut_at_origin(ph, "portal", 7)
    fraction = np.where(cut, 0.8, 0.0).astype(np.float32)
    fraction[ndimage.binary_dilation(cut) & ~cut & (ph.liver > 0)] = 0.3  # a partial rim, kept
    a = vascular_consequences(liver=ph.liver > 0, resected=cut, spacing_mm=ph.spacing_mm, portal=ph.portal > 0)
    b = vascular_consequences(liver=ph.liver > 0, resected=fraction, spacing_mm=ph.spacing_mm, portal=ph.portal > 0)
    assert np.array_equal(a.devascularised, b.devascularised)
    # the rim keeps 70 % of its voxels: the fractional answer is a little smaller, never larger
    assert b.devascularised_ml <= a.devascularised_ml
    rim_ml = np.count_nonzero(a.devascularised & (fraction == 0.3)) * np.prod(ph.spacing_mm) / 1000
    assert a.devascularised_ml - b.devascularised_ml == pytest.approx(0.3 * rim_ml, abs=1e-6)


@pytest.mark.parametrize("branch", [6, 7])
def test_cutting_a_hepatic_tributary_congests_its_drainage_territory(ph, branch):
    info = ph.truth["hepatic_branches"][str(branch)]
    cut = _cut_at_origin(ph, "hepatic", branch)
    res = vascular_consequences(liver=ph.liver > 0, resected=cut, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0)
    territory = ph.hepatic_territories == branch  # a terminal tributary: its subtree is itself
    inside_cut_ml = np.count_nonzero(territory & cut) * np.prod(ph.spacing_mm) / 1000
    assert info["subtree_territory_ml"] > 5
    assert res.congested_ml + inside_cut_ml == pytest.approx(info["subtree_territory_ml"], rel=0.01)
    assert res.devascularised_ml == 0.0
    assert res.hepatic_pieces and all(p.tree == "hepatic" for p in res.hepatic_pieces)


def test_a_wedge_away_from_vessels_devascularises_nothing(ph):
    # tumour 1 of the phantom lies about 9 mm (× scale) from every vessel
    plan = plan_resection(liver=ph.liver > 0, tumours=ph.tumours, segments=None,
                          resections=[parse_resection("wedge:1@1")], spacing_mm=ph.spacing_mm)
    res = vascular_consequences(liver=ph.liver > 0, resected=plan.resected_fraction, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0, tumours=ph.tumours)
    assert res.devascularised_ml == 0.0 and res.congested_ml == 0.0
    assert res.portal_pieces == [] and res.hepatic_pieces == []
    assert res.portal_cut_voxels == 0 and res.hepatic_cut_voxels == 0


def test_anatomical_resection_counts_only_what_it_detaches(ph):
    """Right hepatectomy on the phantom: the left liver keeps inflow and outflow."""
    right = np.isin(ph.segments, (5, 6, 7, 8))
    res = vascular_consequences(liver=ph.liver > 0, resected=right, anatomical=right, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0, segments=ph.segments)
    assert res.devascularised_ml == 0.0
    assert not res.devascularised.any()


def test_flipping_the_axes_does_not_change_the_answer(ph):
    cut = _cut_at_origin(ph, "portal", 11)
    kw = dict(spacing_mm=ph.spacing_mm)
    a = vascular_consequences(liver=ph.liver > 0, resected=cut, portal=ph.portal > 0, **kw)
    flip = (slice(None, None, -1), slice(None), slice(None, None, -1))
    b = vascular_consequences(liver=(ph.liver > 0)[flip], resected=cut[flip], portal=(ph.portal > 0)[flip], **kw)
    # ties between equidistant vessel voxels may break differently: a few voxels at most
    assert b.devascularised_ml == pytest.approx(a.devascularised_ml, rel=0.002)


def test_bad_input_is_refused_with_a_clear_message():
    liver = np.ones((10, 10, 10), bool)
    vessel = np.zeros_like(liver)
    with pytest.raises(InputError, match="portal-vein mask, a hepatic-vein mask"):
        vascular_consequences(liver=liver, resected=liver, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="resected: shape"):
        vascular_consequences(liver=liver, resected=liver[:5], portal=vessel, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="fractions must lie in 0-1"):
        vascular_consequences(liver=liver, resected=np.full(liver.shape, 1.5), portal=vessel, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="spacing_mm"):
        vascular_consequences(liver=liver, resected=liver, portal=vessel, spacing_mm=(1, 0, 1))
    with pytest.raises(InputError, match="liver mask is empty"):
        vascular_consequences(liver=~liver, resected=liver, portal=vessel, spacing_mm=(1, 1, 1))


def test_right_hepatectomy_on_ircadb01_leaves_the_left_liver_perfused(ircadb_dir):
    from pipeline.io import read_labels
    from resection.volumetry import fill_partition

    case = ircadb_dir / "01"
    vol = read_labels(case / "liver.nii.gz")
    liver, spacing = vol.array > 0, vol.spacing_mm
    segments, _ = fill_partition(read_labels(case / "couinaud_reference.nii.gz").array, liver, spacing_mm=spacing)
    right = np.isin(segments, (5, 6, 7, 8)) & liver
    res = vascular_consequences(
        liver=liver, resected=right, anatomical=right, spacing_mm=spacing, segments=segments,
        portal=read_labels(case / "portal_vein.nii.gz").array > 0,
        hepatic=read_labels(case / "hepatic_veins.nii.gz").array > 0,
        tumours=read_labels(case / "tumours.nii.gz").array,
    )
    left = np.isin(segments, (1, 2, 3, 4))
    assert res.devascularised_ml == 0.0
    assert not (res.devascularised & left).any()
    assert res.portal_cut_voxels > 10_000  # the right portal tree was cut, not missed
