"""TotalSegmentator outputs read as they come (pipeline.totalseg): multilabel and per-structure files."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.errors import InputError
from hepatoplan.pipeline import io
from hepatoplan.pipeline.totalseg import multilabel_task, read_totalsegmentator

TS_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalsegmentator"


@pytest.fixture(scope="module")
def total_file():
    path = TS_DIR / "ct_plain_totalseg.nii.gz"
    if not path.exists():
        pytest.skip(f"real TotalSegmentator outputs not found at {TS_DIR} (see ../shared/data/README.md)")
    return path


def test_real_total_multilabel_maps_liver_and_veins(total_file):
    ref = io.read_labels(total_file, name="total")
    found = read_totalsegmentator(total_file, reference=ref)
    assert np.array_equal(found["liver"] > 0, ref.array == 5)
    for name, label in (("portal", 64), ("ivc", 63)):
        assert (name in found) == bool((ref.array == label).any())
        if name in found:
            assert np.array_equal(found[name] > 0, ref.array == label)


def test_folder_of_per_structure_files_and_task_files(total_file, tmp_path):
    """A folder as TotalSegmentator writes it (one file per structure, liver_vessels with vessel 1 and
    tumour 2, liver_segment_1..8) maps to the same masks, whatever the file orientation."""
    img = nib.load(str(total_file))
    labels = np.asanyarray(img.dataobj).astype(np.uint8)
    liver = labels == 5
    folder = tmp_path / "ts"
    folder.mkdir()

    def save(name, data):  # the files stored flipped along the first axis: read in physical space
        flip = img.affine @ np.diag([-1.0, 1.0, 1.0, 1.0])
        flip[:3, 3] = img.affine[:3, 3] + img.affine[:3, 0] * (data.shape[0] - 1)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data[::-1]).astype(np.uint8), flip), str(folder / f"{name}.nii.gz"))

    save("liver", liver)
    save("spleen", labels == 1)  # not used
    vessels = np.zeros_like(labels)
    vessels[liver & (np.indices(labels.shape)[0] % 7 == 0)] = 1
    vessels[liver & (np.indices(labels.shape)[1] % 11 == 0)] = 2
    save("liver_vessels", vessels)
    x = np.indices(labels.shape)[0]
    edges = np.quantile(x[liver], np.linspace(0, 1, 9))
    seg = np.where(liver, np.clip(np.searchsorted(edges, x, side="right"), 1, 8), 0)
    for k in range(1, 9):
        save(f"liver_segment_{k}", seg == k)
    ref = io.read_labels(total_file, name="total")
    found = read_totalsegmentator(folder, reference=ref)
    canon = nib.as_closest_canonical(img)
    to_canon = lambda a: np.asanyarray(nib.as_closest_canonical(nib.Nifti1Image(a.astype(np.uint8), img.affine)).dataobj)
    assert np.array_equal(found["liver"] > 0, to_canon(liver) > 0)
    assert np.array_equal(found["vessels"] > 0, to_canon(vessels == 1) > 0)
    assert np.array_equal(found["tumours"] > 0, to_canon(vessels == 2) > 0)
    assert np.array_equal(found["segments"], to_canon(seg))
    assert set(found) == {"liver", "vessels", "tumours", "segments"}
    assert canon.shape == found["liver"].shape


def test_multilabel_task_by_name_or_largest_label():
    assert multilabel_task(Path("x/total.nii.gz"), np.array([0, 1])) == "total"
    assert multilabel_task(Path("liver_segments.nii.gz"), np.array([0, 1])) == "liver_segments"
    assert multilabel_task(Path("seg.nii.gz"), np.array([0, 64])) == "total"
    assert multilabel_task(Path("seg.nii.gz"), np.array([0, 8])) == "liver_segments"
    assert multilabel_task(Path("seg.nii.gz"), np.array([0, 2])) == "liver_vessels"


def test_missing_or_unusable_paths_are_refused(total_file, tmp_path):
    ref = io.read_labels(total_file, name="total")
    with pytest.raises(InputError, match="no such file"):
        read_totalsegmentator(tmp_path / "nope", reference=ref)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no TotalSegmentator file"):
        read_totalsegmentator(tmp_path / "empty", reference=ref)
