"""hepatoplan.arrays and hepatoplan.units: the shared box and voxel-volume helpers."""

import numpy as np
import pytest

from hepatoplan.arrays import bounding_box, is_empty_box, label_boxes, padded_box
from hepatoplan.units import voxel_volume_ml


def test_bounding_box_with_per_axis_padding_is_clipped():
    mask = np.zeros((10, 12, 14), bool)
    mask[2:4, 5:9, 0:3] = True
    assert bounding_box(mask) == (slice(2, 4), slice(5, 9), slice(0, 3))
    assert bounding_box(mask, pad=(1, 2, 3)) == (slice(1, 5), slice(3, 11), slice(0, 6))
    assert bounding_box(mask, pad=20) == (slice(0, 10), slice(0, 12), slice(0, 14))
    assert padded_box(bounding_box(mask), (1, 1, 1), mask.shape) == bounding_box(mask, pad=1)


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
