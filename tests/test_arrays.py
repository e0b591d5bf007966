"""hepatoplan.arrays and hepatoplan.units: the shared box and voxel-volume helpers."""

import numpy as np
import pytest

from hepatoplan.arrays import bounding_box, is_empty_box, joint_box, label_boxes, padded_box, voxel_indices
from hepatoplan.units import voxel_volume_ml


def test_bounding_box_with_per_axis_padding_is_clipped():
    mask = np.zeros((10, 12, 14), bool)
    mask[2:4, 5:9, 0:3] = True
    assert bounding_box(mask) == (slice(2, 4), slice(5, 9), slice(0, 3))
    assert bounding_box(mask, pad=(1, 2, 3)) == (slice(1, 5), slice(3, 11), slice(0, 6))
    assert bounding_box(mask, pad=20) == (slice(0, 10), slice(0, 12), slice(0, 14))
    assert padded_box(bounding_box(mask), (1, 1, 1), mask.shape) == bounding_box(mask, pad=1)


@pytest.mark.parametrize("seed", range(3))
def test_bounding_box_is_the_extent_of_the_nonzero_voxels(seed):
    """Random masks of 1-4 dimensions, several dtypes, sparse to dense, contiguous or strided views,
    padded: the box of ``np.argwhere``'s extremes, or the empty box."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 12, rng.integers(1, 5)))
        values = (rng.random(shape) < rng.choice([0.0, 0.005, 0.05, 0.5])) * rng.integers(1, 4, shape)
        mask = values.astype(rng.choice([bool, np.uint8, np.int16, np.float32]))
        if rng.random() < 0.4:
            mask = mask[(slice(None, None, -1),) + (slice(None),) * (mask.ndim - 1)][..., ::2]
        pad = int(rng.integers(0, 3))
        hits = np.argwhere(mask)
        expected = (tuple(slice(max(int(lo) - pad, 0), min(int(hi) + 1 + pad, n))
                          for lo, hi, n in zip(hits.min(axis=0), hits.max(axis=0), mask.shape)) if len(hits)
                    else tuple(slice(0, 0) for _ in mask.shape))
        assert bounding_box(mask, pad=pad) == expected


def test_voxel_indices_are_argwheres():
    """Random masks of 1-4 dimensions, several dtypes, empty to dense, strided views (reversed, every other
    voxel): the same indices, order and dtype as ``np.argwhere``."""
    rng = np.random.default_rng(5)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 9, rng.integers(1, 5)))
        mask = ((rng.random(shape) < rng.choice([0.0, 0.05, 0.5, 1.0])) * rng.integers(1, 4, shape)).astype(
            rng.choice([bool, np.uint8, np.int16, np.float32]))
        if rng.random() < 0.4:
            mask = mask[::-1][..., ::2]
        got, want = voxel_indices(mask), np.argwhere(mask)
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want)


def test_empty_mask_has_an_empty_box():
    box = bounding_box(np.zeros((4, 4, 4), np.uint8))
    assert is_empty_box(box) and np.zeros((4, 4, 4))[box].size == 0


def test_label_boxes_one_per_value_present():
    labels = np.zeros((8, 8, 8), np.uint16)
    labels[1:3, 1:2, 1:4] = 3
    labels[5, 6, 7] = 300
    assert label_boxes(labels) == {3: (slice(1, 3), slice(1, 2), slice(1, 4)),
                                   300: (slice(5, 6), slice(6, 7), slice(7, 8))}
    assert label_boxes(np.zeros((3, 3, 3), np.uint8)) == {}


def test_voxel_volume_ml():
    assert voxel_volume_ml((0.5, 0.8, 2.5)) == pytest.approx(0.001)


def test_joint_box_holds_every_box_and_is_empty_for_none():
    boxes = {1: (slice(2, 5), slice(7, 9), slice(0, 3)), 4: (slice(3, 8), slice(1, 2), slice(2, 6))}
    assert joint_box(boxes.values()) == (slice(2, 8), slice(1, 9), slice(0, 6))
    assert joint_box(b for b in boxes.values()) == joint_box(list(boxes.values()))  # any iterable, read once
    assert joint_box([]) == ()
