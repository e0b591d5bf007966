"""hepatoplan.resection.surface: signed distance to a mask's smooth surface, and partial-voxel shares."""

import numpy as np
import pytest

from hepatoplan.resection.surface import surface_distance

SPACING = (0.75, 0.75, 2.0)


def _sphere_grid(radius_mm, extent_mm, offset_mm):
    n = [int(2 * extent_mm / s) for s in SPACING]
    axes = [np.arange(k) * s - (k - 1) / 2 * s + o for k, s, o in zip(n, SPACING, offset_mm)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    return np.sqrt(x * x + y * y + z * z)


def test_grid_aligned_slab_distances_are_exact():
    mask = np.zeros((20, 20, 20), bool)
    mask[:, :, 8:12] = True  # voxel centres z = 16 … 22 mm: faces at 15 and 23 mm
    sd = surface_distance(mask, spacing_mm=SPACING, band_mm=6.0)
    z_mm = np.arange(20) * 2.0
    expected = np.clip(np.maximum(15.0 - z_mm, z_mm - 23.0), -6.0, 6.0)
    np.testing.assert_allclose(sd.distance_mm[10, 10], expected, atol=1e-3)
    np.testing.assert_allclose(sd.width_mm[10, 10, 6:14], 2.0, atol=1e-3)


@pytest.mark.parametrize("radius_mm", [10.0, 20.0])
def test_sphere_distances_match_the_analytic_ones(radius_mm):
    rho = _sphere_grid(radius_mm, radius_mm + 12, (0.21, -0.13, 0.66))
    sd = surface_distance(rho < radius_mm, spacing_mm=SPACING, band_mm=8.0)
    true_mm = rho - radius_mm
    near = np.abs(true_mm) < 7.0
    error = sd.distance_mm[near] - true_mm[near]
    assert abs(error.mean()) < 0.04
    assert np.percentile(np.abs(error), 90) < 0.3
    # beyond the band: ±band
    assert np.all(sd.distance_mm[true_mm > 9.5] == 8.0) and np.all(sd.distance_mm[true_mm < -9.5] == -8.0)
    # curvature of the offset surfaces: 2 / ρ
    ring = np.abs(true_mm - 3.0) < 0.5
    assert np.median(sd.curvature_per_mm[ring]) == pytest.approx(2 / (radius_mm + 3), rel=0.15)


def test_the_smooth_surface_encloses_the_mask_volume():
    """Shares within 0 mm sum to the voxel count, also for a voxel or two and at the array border."""
    for mask in (_sphere_grid(6.0, 14, (0.3, 0.1, -0.4)) < 6.0, np.zeros((9, 9, 5), bool)):
        if not mask.any():
            mask[4, 4, 2] = True
        sd = surface_distance(mask, spacing_mm=SPACING, band_mm=5.0)
        assert sd.fraction_within(0.0).sum() == pytest.approx(np.count_nonzero(mask), rel=1e-3)
    edge = np.zeros((30, 30, 10), bool)
    edge[:12, :, :] = True  # cut by the field of view on five sides
    sd = surface_distance(edge, spacing_mm=SPACING, band_mm=4.0)
    assert sd.fraction_within(0.0).sum() == pytest.approx(edge.sum(), rel=1e-3)
    np.testing.assert_allclose(sd.distance_mm[12:16, 15, 5], [0.375, 1.125, 1.875, 2.625], atol=0.01)


def test_empty_mask_is_everywhere_beyond_the_band():
    sd = surface_distance(np.zeros((5, 6, 7), bool), spacing_mm=SPACING, band_mm=3.0)
    assert np.all(sd.distance_mm == 3.0) and np.all(sd.fraction_within(1.0) == 0.0)
