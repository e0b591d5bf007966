"""hepatoplan.resection.ablation: zone volume and coverage on spheres, heat sinks on the phantom, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.errors import InputError
from hepatoplan.resection.ablation import AblationParams, ablation_zone

SPACING = (0.7, 0.9, 2.0)


def _sphere(radius_mm, shape=(90, 80, 34), centre=(45.3, 40.2, 17.1), spacing=SPACING):
    g = np.indices(shape).astype(float)
    d = np.sqrt(sum(((g[i] - centre[i]) * spacing[i]) ** 2 for i in range(3)))
    return d <= radius_mm


@pytest.mark.parametrize("radius_mm", [None, 12.0, 20.0])
def test_zone_volume_and_coverage_on_a_sphere_tumour(radius_mm):
    tumour = _sphere(10.0)
    liver = np.ones(tumour.shape, bool)
    z = ablation_zone(tumour=tumour, spacing_mm=SPACING, radius_mm=radius_mm, margin_mm=5.0, liver=liver)
    # the voxelised tumour reaches up to half a voxel beyond r along the coarse axis
    assert 10.0 <= z.tumour_extent_mm <= 10.0 + max(SPACING) / 2
    if radius_mm is None:
        assert z.radius_fitted and z.radius_mm == pytest.approx(z.tumour_extent_mm + 5.0)
    assert z.zone_ml == pytest.approx(4 / 3 * math.pi * z.radius_mm**3 / 1000)
    # the partial-voxel zone inside an all-liver box has the sphere's volume (1 %)
    assert z.ablated_liver_ml == pytest.approx(z.zone_ml, rel=0.01)
    assert z.min_coverage_margin_mm == pytest.approx(z.radius_mm - z.tumour_extent_mm)
    assert z.covers_tumour
    assert z.covers_tumour_and_margin == (radius_mm != 12.0)
    assert z.heat_sink_warning is False and z.heat_sink_vessels == []


def test_an_off_centre_zone_misses_part_of_the_tumour():
    tumour = _sphere(8.0)
    z = ablation_zone(tumour=tumour, spacing_mm=SPACING, radius_mm=10.0, margin_mm=2.0,
                      centre_index=(45.3 + 6 / SPACING[0], 40.2, 17.1))
    assert not z.covers_tumour and z.min_coverage_margin_mm < 0
    assert z.ablated_liver_ml is None
    assert z.fraction.max() == 1.0 and z.fraction.dtype == np.float32


@pytest.fixture(scope="module")
def ph():
    return make_phantom(spacing_mm=(1.5, 1.5, 2.5), scale=1.0, noise_hu=0.0)


def test_heat_sink_next_to_a_large_vein_and_not_far_from_vessels(ph):
    near = {t["id"]: min(t["min_distance_to_portal_mm"], t["min_distance_to_hepatic_mm"]) for t in ph.truth["tumours"]}
    assert near[2] < 3.0 and near[1] > 8.0  # tumour 2 abuts the right hepatic vein; 1 lies free
    kw = dict(spacing_mm=ph.spacing_mm, margin_mm=5.0, liver=ph.liver > 0, portal=ph.portal > 0,
              hepatic=ph.hepatic > 0)
    z2 = ablation_zone(tumour=ph.tumours == 2, **kw)
    assert z2.heat_sink_warning
    (vein,) = [v for v in z2.heat_sink_vessels if v.tree == "hepatic"]
    assert vein.max_diameter_mm >= 3.0
    assert vein.min_distance_to_tumour_mm <= near[2] + max(ph.spacing_mm)
    z1 = ablation_zone(tumour=ph.tumours == 1, **kw)
    assert not z1.heat_sink_warning and z1.heat_sink_vessels == []
    # a 3 mm threshold raised above the vein's size silences the warning
    bigger = AblationParams(heat_sink_diameter_mm=vein.max_diameter_mm + 3)
    z2_big = ablation_zone(tumour=ph.tumours == 2, params=bigger, **kw)
    assert not z2_big.heat_sink_warning


@pytest.mark.parametrize("radius", [0, -3.0, float("nan"), float("inf")])
def test_radius_must_be_positive(radius):
    with pytest.raises(InputError, match="radius_mm must be a distance > 0"):
        ablation_zone(tumour=_sphere(5.0), spacing_mm=SPACING, radius_mm=radius)


def test_other_bad_input():
    t = _sphere(5.0)
    with pytest.raises(InputError, match="margin_mm"):
        ablation_zone(tumour=t, spacing_mm=SPACING, margin_mm=-1)
    with pytest.raises(InputError, match="tumour mask is empty"):
        ablation_zone(tumour=np.zeros_like(t), spacing_mm=SPACING)
    with pytest.raises(InputError, match="liver: shape"):
        ablation_zone(tumour=t, spacing_mm=SPACING, liver=t[1:])
    with pytest.raises(InputError, match="centre_index"):
        ablation_zone(tumour=t, spacing_mm=SPACING, centre_index=(1e4, 0, 0))
    for bad in (0.0, -3.0, float("nan")):
        with pytest.raises(InputError, match="heat_sink_diameter_mm must be a distance > 0"):
            AblationParams(heat_sink_diameter_mm=bad)


def test_parse_ablation():
    from hepatoplan.resection.ablation import parse_ablation

    s = parse_ablation("ablate:2@15")
    assert (s.tumour_id, s.radius_mm) == (2, 15.0)
    assert parse_ablation(" Ablate:3 ").radius_mm is None
    for bad, match in (("ablate:2@0", "> 0"), ("ablate:2@-4", "> 0"), ("ablate:2@nan", "> 0"),
                       ("ablate:0@5", "start at 1"), ("ablate:x", "expected"), ("ablate:2@5mm", "expected")):
        with pytest.raises(InputError, match=match):
            parse_ablation(bad)
