"""Tests of the automatic segmentation (segmentation/): phantoms for behaviour, IRCADb for accuracy."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.errors import InputError
from segmentation import segment_liver


def _load(case_dir, name):
    img = nib.as_closest_canonical(nib.load(str(case_dir / f"{name}.nii.gz")))
    return np.asanyarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms())


def _dice(a, b):
    a, b = a > 0, b > 0
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_liver_rejects_non_hu_intensities():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 4000, size=(64, 64, 20)).astype(np.int16)
    with pytest.raises(InputError, match="Hounsfield"):
        segment_liver(img, spacing_mm=(2.0, 2.0, 3.0))


def test_liver_rejects_tiny_volume():
    img = np.full((10, 10, 4), -1000, dtype=np.int16)
    with pytest.raises(InputError, match="too small"):
        segment_liver(img, spacing_mm=(1.0, 1.0, 1.0))


def test_liver_rejects_bad_spacing():
    img = np.full((64, 64, 20), -1000, dtype=np.int16)
    with pytest.raises(InputError, match="spacing_mm"):
        segment_liver(img, spacing_mm=(1.0, -1.0, 1.0))


@pytest.mark.parametrize("case", ["07"])
def test_liver_dice_ircadb(ircadb_dir, case):
    ct, spacing = _load(ircadb_dir / case, "ct")
    ref, _ = _load(ircadb_dir / case, "liver")
    liver, info = segment_liver(ct, spacing_mm=spacing)
    assert liver.dtype == np.uint8 and liver.shape == ct.shape
    assert _dice(liver, ref) >= 0.93
    ref_ml = np.count_nonzero(ref) * np.prod(spacing) / 1000.0
    assert abs(info["liver_volume_ml"] / ref_ml - 1.0) <= 0.05
    assert 90 <= info["liver_median_hu"] <= 150
