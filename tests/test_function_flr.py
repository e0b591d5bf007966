"""hepatoplan.resection.function: function-weighted FLR against analytic function maps."""

from __future__ import annotations

import numpy as np
import pytest

from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.errors import InputError
from hepatoplan.resection.function import function_weighted_flr


def test_linear_function_on_a_box_matches_the_integral():
    """F(x) = x on a box x ∈ [x0, x1] mm; the remnant keeps x < xm. ∫x dx is exact on voxel centres."""
    spacing = (0.8, 1.1, 2.5)
    n = (50, 20, 8)
    x = (np.arange(n[0]) + 0.5) * spacing[0] + 10.0  # voxel centres, mm; faces at 10 and 50 mm
    fmap = np.broadcast_to(x[:, None, None], n).astype(np.float32)
    liver = np.ones(n, bool)
    remnant = np.zeros(n, bool)
    remnant[:20] = True  # x faces 10 .. 26 mm
    out = function_weighted_flr(function_map=fmap, liver=liver, remnant=remnant)
    x0, xm, x1 = 10.0, 10.0 + 20 * spacing[0], 10.0 + n[0] * spacing[0]
    expected = 100 * (xm**2 - x0**2) / (x1**2 - x0**2)
    assert out["functional_flr_percent"] == pytest.approx(expected, rel=1e-5)
    assert out["volumetric_flr_percent"] == pytest.approx(40.0)
    assert out["remnant_mean_function"] < out["liver_mean_function"]


def test_phantom_segment_function_gives_the_weighted_segment_share():
    """Segment k works k-fold; a right hepatectomy keeps Σ_{k≤4} k·V_k / Σ k·V_k (truth volumes)."""
    ph = make_phantom(spacing_mm=(1.3, 1.0, 2.2), scale=0.5, noise_hu=0.0, tumours=())
    fmap = ph.segments.astype(np.float64)  # function = segment number, 0 outside the liver
    remnant = np.isin(ph.segments, (1, 2, 3, 4))
    out = function_weighted_flr(function_map=fmap, liver=ph.liver > 0, remnant=remnant)
    vols = {int(k): v for k, v in ph.truth["segments"]["volumes_ml"].items()}
    expected = 100 * sum(k * vols[k] for k in (1, 2, 3, 4)) / sum(k * v for k, v in vols.items())
    assert out["functional_flr_percent"] == pytest.approx(expected, rel=1e-9)
    vol_expected = 100 * sum(vols[k] for k in (1, 2, 3, 4)) / sum(vols.values())
    assert out["volumetric_flr_percent"] == pytest.approx(vol_expected, rel=1e-9)
    # the left liver works less per mL here, so its functional share is below its volume share
    assert out["functional_flr_percent"] < out["volumetric_flr_percent"]


def test_fractions_and_tumours():
    n = (10, 10, 10)
    liver = np.ones(n, bool)
    fmap = np.full(n, 2.0)
    tumours = np.zeros(n, np.uint8)
    tumours[:2] = 1  # 20 % tumour, left out
    kept = np.zeros(n, np.float32)
    kept[2:6] = 1.0
    kept[6] = 0.5
    out = function_weighted_flr(function_map=fmap, liver=liver, remnant_fraction=kept, tumours=tumours)
    assert out["functional_flr_percent"] == pytest.approx(100 * 4.5 / 8)
    assert out["voxels_liver"] == 800


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda f: f - 1.0, "negative values"),
        (lambda f: np.where(f > 0.5, np.nan, f), "NaN or infinite"),
        (lambda f: np.where(f > 0.5, np.inf, f), "NaN or infinite"),
        (lambda f: f[:5], "function_map: shape"),
        (lambda f: np.zeros_like(f), "zero everywhere"),
    ],
)
def test_bad_function_maps_are_refused(bad, match):
    n = (8, 8, 8)
    rng = np.random.default_rng(5)
    fmap = rng.uniform(0.0, 1.0, n)
    liver = np.ones(n, bool)
    with pytest.raises(InputError, match=match):
        function_weighted_flr(function_map=bad(fmap), liver=liver, remnant=liver)


def test_remnant_arguments_are_checked():
    n = (4, 4, 4)
    liver = np.ones(n, bool)
    fmap = np.ones(n)
    with pytest.raises(InputError, match="exactly one"):
        function_weighted_flr(function_map=fmap, liver=liver)
    with pytest.raises(InputError, match="exactly one"):
        function_weighted_flr(function_map=fmap, liver=liver, remnant=liver, remnant_fraction=fmap)
    with pytest.raises(InputError, match="0-1"):
        function_weighted_flr(function_map=fmap, liver=liver, remnant_fraction=fmap * 2)
    # values outside the liver do not matter
    fmap2 = fmap.copy()
    liver2 = liver.copy()
    liver2[0] = False
    fmap2[0] = -5.0
    out = function_weighted_flr(function_map=fmap2, liver=liver2, remnant=liver2)
    assert out["functional_flr_percent"] == pytest.approx(100.0)
