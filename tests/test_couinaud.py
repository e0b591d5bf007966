"""Couinaud segmentation: bad input, orientation, real data (IRCADb)."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from couinaud import segment_couinaud
from hepatoplan.errors import InputError


def _load(d: Path, name):
    img = nib.as_closest_canonical(nib.load(str(d / f"{name}.nii.gz")))
    return np.asanyarray(img.dataobj), tuple(float(s) for s in img.header.get_zooms()[:3])


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def case09(ircadb_dir):
    d = ircadb_dir / "09"
    liver, sp = _load(d, "liver")
    portal, _ = _load(d, "portal_vein")
    hepatic, _ = _load(d, "hepatic_veins")
    ref, _ = _load(d, "couinaud_reference")
    return liver, portal, hepatic, ref, sp


def test_real_case_09(case09):
    liver, portal, hepatic, ref, sp = case09
    res = segment_couinaud(liver, portal, hepatic, spacing_mm=sp)
    lab = res.labels
    assert lab.dtype == np.uint8 and lab.shape == liver.shape
    assert set(np.unique(lab[liver > 0])) == set(range(1, 9))
    assert not lab[liver == 0].any()
    d = [_dice(lab == k, ref == k) for k in range(1, 9)]
    assert np.mean(d) >= 0.74, d
