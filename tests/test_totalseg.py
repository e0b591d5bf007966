"""TotalSegmentator outputs read as they come (pipeline.totalseg): multilabel and per-structure files."""

import json
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


# --------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    """A phantom written as files (LPS), and TotalSegmentator-like outputs of it in two places: a
    folder with liver.nii.gz and liver_vessels.nii.gz (vessels clipped to the liver), and a
    liver_segments multilabel file (the phantom's segments)."""
    from hepatoplan.data_samples.phantom import make_phantom
    from hepatoplan.data_samples.write import write_study

    root = tmp_path_factory.mktemp("ts")
    ph = make_phantom(spacing_mm=(1.5, 1.5, 2.5), scale=0.7)
    files = write_study(ph, root / "s", axcodes="LPS")
    ref = nib.load(str(files["liver"]))
    arr = {n: np.asanyarray(nib.load(str(files[n])).dataobj) for n in ("liver", "portal_vein", "hepatic_veins", "segments")}
    folder = root / "ts_vessels"
    folder.mkdir()
    nib.save(nib.Nifti1Image((arr["liver"] > 0).astype(np.uint8), ref.affine), str(folder / "liver.nii.gz"))
    vessels = ((arr["portal_vein"] > 0) | (arr["hepatic_veins"] > 0)) & (arr["liver"] > 0)
    nib.save(nib.Nifti1Image(vessels.astype(np.uint8), ref.affine), str(folder / "liver_vessels.nii.gz"))
    segments = root / "liver_segments.nii.gz"
    nib.save(nib.Nifti1Image(arr["segments"].astype(np.uint8), ref.affine), str(segments))
    return files, folder, segments, arr


def test_couinaud_reads_a_totalsegmentator_folder_without_liver_flag(phantom_files, tmp_path):
    """``couinaud --totalsegmentator FOLDER``: the liver (and the output grid) and liver_vessels come
    from the folder, the combined mask is separated, as with --liver/--vessels."""
    from hepatoplan.pipeline.cli import main

    files, folder, _, arr = phantom_files
    out = tmp_path / "o" / "seg.nii.gz"
    out.parent.mkdir()
    assert main(["couinaud", "--totalsegmentator", str(folder), "--out", str(out), "--json", str(tmp_path / "o" / "s.json")]) == 0
    rec = json.loads((tmp_path / "o" / "s.json").read_text())
    assert rec["inputs"]["totalsegmentator"]["masks_used"] == ["vessels", "liver"]
    assert "vessel_separation" in rec["landmarks"]
    labels = np.asanyarray(nib.load(str(out)).dataobj)
    assert labels.shape == arr["liver"].shape and np.array_equal(labels > 0, arr["liver"] > 0)
    for k in (5, 6, 7):  # on the file's own (LPS) grid
        assert 2 * ((labels == k) & (arr["segments"] == k)).sum() / ((labels == k).sum() + (arr["segments"] == k).sum()) >= 0.9
    assert (tmp_path / "o" / "portal_vein.nii.gz").exists()
    assert main(["couinaud", "--totalsegmentator", str(tmp_path / "o"), "--out", str(tmp_path / "x.nii.gz")]) == 2


def test_plan_segments_from_totalsegmentator_with_repeated_option(phantom_files, tmp_path, capsys):
    """``--totalsegmentator`` twice (a folder and a liver_segments file) and ``--segments-from
    totalsegmentator``: the segments are TotalSegmentator's, said so in ``sources``; without
    liver_segments the option is refused naming the task to run."""
    from hepatoplan.pipeline.cli import main

    files, folder, segments, arr = phantom_files
    out = tmp_path / "plan"
    assert main(["plan", str(files["ct"]), "--out", str(out), "--totalsegmentator", str(folder), "--totalsegmentator",
                 str(segments), "--segments-from", "totalsegmentator", "--tumours", str(files["tumours"]),
                 "--resect", "right-hepatectomy", "--no-preview"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sources"]["segments"] == f"{folder}; {segments} (TotalSegmentator liver_segments)"
    assert "vessel_separation" not in report
    labels = np.asanyarray(nib.load(str(out / "labels.nii.gz")).dataobj) if (out / "labels.nii.gz").exists() else None
    assert labels is None or labels.shape == arr["liver"].shape
    capsys.readouterr()
    assert main(["plan", str(files["ct"]), "--out", str(tmp_path / "p2"), "--totalsegmentator", str(folder),
                 "--segments-from", "totalsegmentator", "--no-preview"]) == 2
    assert "-ta liver_segments" in capsys.readouterr().err


def test_segment_engine_totalsegmentator_absent_exits_2_naming_what_to_install(total_file, tmp_path, capsys, monkeypatch):
    from hepatoplan.pipeline.cli import main

    monkeypatch.setitem(__import__("sys").modules, "totalsegmentator", None)  # as if not installed
    assert main(["segment", str(TS_DIR / "ct_plain.nii.gz"), "--out", str(tmp_path / "o"), "--engine", "totalsegmentator"]) == 2
    err = capsys.readouterr().err
    assert "pip install TotalSegmentator" in err and "never downloads weights" in err
    assert not (tmp_path / "o").exists()


def test_segment_engine_totalsegmentator_maps_its_real_outputs(total_file, tmp_path, monkeypatch):
    """The engine's call replaced at its boundary by TotalSegmentator's real output for this scan
    (the ``total`` multilabel file): liver.nii.gz is its label 5 on the image's grid."""
    import shutil

    from hepatoplan.pipeline import totalseg
    from hepatoplan.pipeline.cli import main

    def fake_engine(image, folder, *, fast=False):
        assert Path(image) == TS_DIR / "ct_plain.nii.gz"
        folder.mkdir(parents=True)
        shutil.copy(total_file, folder / "total.nii.gz")
        return folder

    monkeypatch.setattr(totalseg, "run_engine", fake_engine)
    out = tmp_path / "o"
    assert main(["segment", str(TS_DIR / "ct_plain.nii.gz"), "--out", str(out), "--engine", "totalsegmentator"]) == 0
    rec = json.loads((out / "segmentation.json").read_text())
    assert rec["engine"] == "totalsegmentator" and set(rec["not_found"]) == {"vessels", "tumours"}
    got = nib.load(str(out / "liver.nii.gz"))
    ts = nib.load(str(total_file))
    assert np.allclose(got.affine, nib.load(str(TS_DIR / "ct_plain.nii.gz")).affine, atol=1e-3)
    assert np.array_equal(np.asanyarray(got.dataobj) > 0, np.asanyarray(ts.dataobj) == 5)
    assert not (out / "vessels.nii.gz").exists() and not list(tmp_path.glob("totalseg-*"))
