"""hepatoplan.resection.sparing: modulated margins and vascular detachment on analytic shapes.

A sphere tumour (r = 10 mm, centre off the voxel grid) at 0.7 × 0.9 × 2.0 mm beside vertical
cylinder "vessels" along axis 2 (Superior), placed on the patient's right (+axis 0) of the tumour.
"""

from __future__ import annotations

import numpy as np
import pytest

from hepatoplan.errors import InputError
from hepatoplan.resection.procedures import parse_resection
from hepatoplan.resection.sparing import sparing_wedge, sparing_wedges
from hepatoplan.resection.virtual import plan_resection

SP = (0.7, 0.9, 2.0)
SHAPE = (90, 80, 34)
C = np.array([40.3, 40.2, 17.1])  # voxel indices
G = np.indices(SHAPE).astype(float)


def _sphere(radius_mm, centre=C):
    return np.sqrt(sum(((G[i] - centre[i]) * SP[i]) ** 2 for i in range(3))) <= radius_mm


def _cylinder(offset_mm, radius_mm):
    """Vertical tube whose axis lies ``offset_mm`` to the right (+axis 0) of the tumour centre."""
    return np.sqrt(((G[0] - C[0]) * SP[0] - offset_mm) ** 2 + ((G[1] - C[1]) * SP[1]) ** 2) <= radius_mm


TUMOUR = _sphere(10.0)
LIVER = np.ones(SHAPE, bool)


@pytest.mark.parametrize("margin_mm", [1.0, 5.0])
def test_plain_sparing_wedge_is_the_lead_wedge(margin_mm):
    fraction, out = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=margin_mm)
    plan = plan_resection(liver=LIVER, tumours=TUMOUR.astype(np.uint8), segments=None,
                          resections=[parse_resection(f"wedge:1@{margin_mm:g}")], spacing_mm=SP)
    assert np.array_equal(fraction, plan.resected_fraction)
    assert out.resected_ml == pytest.approx(plan.resected_ml, rel=1e-12)
    assert out.achieved_min_margin_mm == pytest.approx(margin_mm, abs=1e-3)
    assert out.r_status == "R0" and not out.vascular_r1 and out.near_vessel_surface_percent == 0


def test_modulated_margin_shrinks_only_near_the_vessel():
    vessel = _cylinder(15.0, 3.0)  # 2 mm gap to the tumour
    kw = dict(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=5.0)
    wide, _ = sparing_wedge(**kw)
    narrow, _ = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=1.0)
    frac, out = sparing_wedge(**kw, near_vessel_margin_mm=1.0, near_vessel_distance_mm=5.0, major_vessels=vessel)
    assert out.achieved_min_margin_mm == pytest.approx(1.0, abs=0.01)
    assert 0 < out.near_vessel_surface_percent < 25
    # thinnest on the vessel's side (patient right of the tumour), between tumour and vessel
    i, j, k = out.thinnest_index
    assert (i - C[0]) * SP[0] > 8.0
    assert out.thinnest_mm == pytest.approx((i * SP[0], j * SP[1], k * SP[2]))
    assert narrow.sum() < frac.sum() < wide.sum()
    # far from the vessel the wedge is the 5 mm wedge; near it, the 1 mm one
    left = G[0] < C[0]
    assert np.array_equal(frac[left], wide[left])
    assert np.all(frac[vessel] == 0)  # a 1 mm margin does not reach the vessel 2 mm away


def test_modulation_without_a_near_vessel_changes_nothing():
    vessel = _cylinder(30.0, 2.0)  # 18 mm away
    plain, _ = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=5.0)
    frac, out = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=5.0,
                              near_vessel_margin_mm=1.0, near_vessel_distance_mm=5.0, major_vessels=vessel)
    assert np.array_equal(frac, plain)
    assert out.near_vessel_surface_percent == 0 and out.achieved_min_margin_mm == pytest.approx(5.0, abs=1e-3)


def test_detachment_keeps_the_vessel_and_its_shadow_and_reports_vascular_r1():
    vessel = _cylinder(11.2, 1.2)  # touches the tumour: 10.0 … 12.4 mm right of its centre
    plain, _ = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=5.0)
    frac, out = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=5.0, protected=vessel)
    assert out.vascular_r1 and out.r_status == "vascular R1" and out.protected_gap_mm == 0.0
    assert np.all(frac[vessel] == 0)
    behind = (int(round(C[0] + 13.5 / SP[0])), int(round(C[1])), int(round(C[2])))
    assert plain[behind] == 1.0 and frac[behind] == 0.0 and not vessel[behind]
    beside = (int(round(C[0])), int(round(C[1] + 13.0 / SP[1])), int(round(C[2])))  # other side: unchanged
    assert frac[beside] == plain[beside] == 1.0
    assert frac.sum() < plain.sum()
    # the parenchyma behind the vessel is as close as the vessel is thick (2.4 mm, ± a voxel)
    assert 1.0 < out.achieved_min_margin_mm < 3.5


def test_a_protected_vessel_that_does_not_touch_is_no_r1():
    vessel = _cylinder(15.0, 3.0)  # 2 mm gap
    _, out = sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=5.0, protected=vessel)
    assert not out.vascular_r1 and out.r_status == "R0"
    assert out.protected_gap_mm == pytest.approx(2.0, abs=max(SP) / 2)


def test_several_tumours_combine_by_union():
    second = _sphere(5.0, centre=(15.0, 15.0, 8.0))
    tumours = TUMOUR.astype(np.uint8) + 2 * second.astype(np.uint8)
    res = sparing_wedges(liver=LIVER, tumours=tumours, spacing_mm=SP, margin_mm=1.0)
    plan = plan_resection(liver=LIVER, tumours=tumours, segments=None,
                          resections=[parse_resection("wedge:all@1")], spacing_mm=SP)
    assert res["resected_ml"] == pytest.approx(plan.resected_ml, rel=1e-9)
    assert res["resected_functional_ml"] == pytest.approx(plan.resected_functional_ml, rel=1e-9)
    assert [o.id for o in res["tumours"]] == [1, 2]
    with pytest.raises(InputError, match="not in the tumour map"):
        sparing_wedges(liver=LIVER, tumours=tumours, spacing_mm=SP, tumour_ids=[3])


def test_bad_options():
    with pytest.raises(InputError, match="together"):
        sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, near_vessel_margin_mm=1.0)
    with pytest.raises(InputError, match="margin"):
        sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, margin_mm=-1.0)
    with pytest.raises(InputError, match="near-vessel-distance-mm"):
        sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, near_vessel_margin_mm=1.0,
                      near_vessel_distance_mm=-2.0, major_vessels=TUMOUR)
    with pytest.raises(InputError, match="empty"):
        sparing_wedge(tumour=np.zeros(SHAPE, bool), liver=LIVER, spacing_mm=SP)
    with pytest.raises(InputError, match="protected: shape"):
        sparing_wedge(tumour=TUMOUR, liver=LIVER, spacing_mm=SP, protected=TUMOUR[1:])
