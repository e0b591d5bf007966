"""hepatoplan.pipeline.io: orientation, round trips, grid checks, resampling, DICOM series."""

import io as io_module
import locale
import logging

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from hepatoplan.errors import GeometryMismatchError, InputError, InputFileError, LabelError
from hepatoplan.pipeline import io

# A non-identity, flipped, anisotropic, slightly oblique RAS affine.
THETA = np.deg2rad(7.0)
ROT = np.array([[np.cos(THETA), -np.sin(THETA), 0], [np.sin(THETA), np.cos(THETA), 0], [0, 0, 1]])
AFFINE = np.eye(4)
AFFINE[:3, :3] = ROT @ np.diag([-0.8, 1.1, -2.5])  # x flipped (L), z flipped (I)
AFFINE[:3, 3] = [120.0, -80.0, 300.0]


def _save_nifti(array, affine, path):
    nib.Nifti1Image(array, affine).to_filename(str(path))
    return path


def _marked(shape=(20, 16, 12), where=(3, 11, 8)):
    a = np.zeros(shape, np.uint8)
    a[where] = 7
    return a


def test_marked_voxel_lands_on_the_same_world_point(tmp_path):
    """nibabel's affine and SimpleITK's LPS geometry agree with our canonical affine."""
    where = (3, 11, 8)
    path = _save_nifti(_marked(where=where), AFFINE, tmp_path / "m.nii.gz")
    vol = io.read_labels(path)
    world_nib = (AFFINE @ [*where, 1])[:3]
    itk = sitk.ReadImage(str(path))
    world_itk_lps = np.array(itk.TransformIndexToPhysicalPoint(where))
    assert np.allclose(world_itk_lps * [-1, -1, 1], world_nib, atol=1e-4)
    canonical_index = np.argwhere(vol.array == 7)[0]
    assert np.allclose((vol.affine_ras @ [*canonical_index, 1])[:3], world_nib, atol=1e-4)
    # canonical means axis 0 increases to the Right, 1 Anterior, 2 Superior
    assert nib.aff2axcodes(vol.affine_ras) == ("R", "A", "S")
    assert np.allclose(vol.spacing_mm, [0.8, 1.1, 2.5], atol=1e-5)


@pytest.mark.parametrize("codes", ["LPS", "PIR", "SAL", "RAS"])
def test_any_axis_order_gives_the_same_canonical_array(tmp_path, codes):
    rng = np.random.default_rng(0)
    canon = rng.integers(0, 5, (12, 10, 8)).astype(np.uint8)
    affine = np.diag([0.7, 0.9, 2.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes)
    )
    data = nib.orientations.apply_orientation(canon, ornt)
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, canon.shape)
    path = _save_nifti(data, new_affine, tmp_path / f"{codes}.nii.gz")
    vol = io.read_labels(path)
    assert np.array_equal(vol.array, canon)
    assert np.allclose(vol.affine_ras, affine, atol=1e-5)


def test_orientation_is_nibabels():
    """io chooses axes and flips as nibabel.orientations does (obliques and 45° ties included)."""
    rng = np.random.default_rng(0)
    for trial in range(400):
        linear = np.eye(3)[:, rng.permutation(3)] * rng.choice([-1, 1], 3)
        if trial % 3 == 1:
            linear = np.linalg.qr(rng.normal(size=(3, 3)))[0]  # fully oblique
        elif trial % 3 == 2:
            c = s = np.sqrt(0.5)  # a 45° tie between two axes
            linear = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])[:, rng.permutation(3)]
        linear = linear * rng.uniform(0.3, 3.0, 3)
        lps = np.diag([-1.0, -1.0, 1.0]) @ linear
        spacing = np.linalg.norm(lps, axis=0)
        grid = io.Grid(tuple(int(n) for n in rng.integers(2, 6, 3)), tuple(spacing),
                       tuple(rng.normal(size=3) * 100), tuple((lps / spacing).ravel()))
        ornt = nib.orientations.io_orientation(grid.affine_ras())
        assert np.array_equal(grid.orientation(), ornt)
        assert f"axes {''.join(nib.orientations.aff2axcodes(grid.affine_ras()))}," in grid.describe()
        array_kji = rng.integers(0, 9, grid.size[::-1]).astype(np.uint8)
        vol = io._to_canonical(array_kji, grid, None, ())
        assert np.array_equal(vol.array, nib.orientations.apply_orientation(array_kji.T, ornt))
        assert np.array_equal(vol.affine_ras, grid.affine_ras() @ nib.orientations.inv_ornt_aff(ornt, grid.size))
        assert np.array_equal(io.native_array(vol.array, reference=vol), array_kji.T)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_write_round_trip_keeps_the_native_grid(tmp_path, suffix):
    src = _save_nifti(_marked(), AFFINE, tmp_path / "src.nii.gz")
    ref = io.read_labels(src)
    out = io.write_labels(ref.array, reference=ref, path=tmp_path / f"out{suffix}")
    back = sitk.ReadImage(str(out))
    orig = sitk.ReadImage(str(src))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(orig))
    assert np.allclose(back.GetDirection(), orig.GetDirection(), atol=1e-6)
    assert np.allclose(back.GetOrigin(), orig.GetOrigin(), atol=1e-4)
    again = io.read_labels(out)
    assert np.array_equal(again.array, ref.array)
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_grid_mismatch_names_both_geometries_and_the_fix(tmp_path):
    ct = io.read_image(_save_nifti(np.zeros((20, 16, 12), np.int16), AFFINE, tmp_path / "ct.nii.gz"))
    shifted = AFFINE.copy()
    shifted[:3, 3] += [0, 0, 5.0]
    mask = _save_nifti(_marked(), shifted, tmp_path / "liver.nii.gz")
    with pytest.raises(GeometryMismatchError) as err:
        io.read_labels(mask, name="--liver", reference=ct)
    text = str(err.value)
    assert "--liver" in text and "--resample-masks" in text and "origin" in text
    resampled = io.read_labels(mask, name="--liver", reference=ct, resample=True)
    assert resampled.shape == ct.shape
    # the marked voxel moved by 5 mm in world z: 2 slices of 2.5 mm
    got = np.argwhere(resampled.array == 7)[0]
    world_got = (ct.affine_ras @ [*got, 1])[:3]
    world_want = (shifted @ [3, 11, 8, 1])[:3]
    assert np.allclose(world_got, world_want, atol=1e-3)


def test_flipped_mask_header_matches_without_resampling(tmp_path):
    """Same world grid stored with another axis order is not a mismatch."""
    canon = _marked()
    ct = io.read_image(_save_nifti(canon.astype(np.int16), AFFINE, tmp_path / "ct.nii.gz"))
    flipped = canon[:, ::-1, :]
    flip_affine = AFFINE @ nib.orientations.inv_ornt_aff([[0, 1], [1, -1], [2, 1]], canon.shape)
    mask = io.read_labels(_save_nifti(np.ascontiguousarray(flipped), flip_affine, tmp_path / "m.nii.gz"),
                          reference=ct)
    assert np.array_equal(mask.array, io.read_labels(tmp_path / "ct.nii.gz").array)


def test_label_checks(tmp_path):
    a = np.zeros((6, 6, 6), np.float32)
    a[2, 2, 2] = 0.5
    with pytest.raises(LabelError, match="non-integer"):
        io.read_labels(_save_nifti(a, AFFINE, tmp_path / "f.nii.gz"), name="--tumours")
    a[2, 2, 2] = -1
    with pytest.raises(LabelError, match="negative"):
        io.read_labels(_save_nifti(a.astype(np.int16), AFFINE, tmp_path / "n.nii.gz"))
    a[2, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        io.read_labels(_save_nifti(a, AFFINE, tmp_path / "nan.nii.gz"))
    a[2, 2, 2] = 3.0
    ok = io.read_labels(_save_nifti(a, AFFINE, tmp_path / "ok.nii.gz"))
    assert ok.array.dtype == np.uint8 and ok.array.max() == 3


def test_bad_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        io.read_image(tmp_path / "missing.nii.gz", name="CT")
    good = _save_nifti(np.zeros((20, 20, 20), np.int16), AFFINE, tmp_path / "g.nii.gz")
    truncated = tmp_path / "t.nii.gz"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        io.read_image(truncated, name="CT")
    with pytest.raises(InputError, match="2D|single slice"):
        io.read_image(_save_nifti(np.zeros((20, 20, 1), np.int16), AFFINE, tmp_path / "2d.nii.gz"))
    with pytest.raises(InputError, match="4D"):
        io.read_image(_save_nifti(np.zeros((8, 8, 8, 3), np.int16), AFFINE, tmp_path / "4d.nii.gz"))
    with pytest.raises(InputFileError, match="unsupported"):
        io.read_image(_touch(tmp_path / "x.txt"))
    nan = np.zeros((6, 6, 6), np.float32)
    nan[1, 1, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        io.read_image(_save_nifti(nan, AFFINE, tmp_path / "nan.nii.gz"), name="CT")


def _touch(path):
    path.write_text("not an image")
    return path


def _write_dicom_series(folder, array_kji, *, spacing, origin, uid_suffix):
    """A small CT series written with SimpleITK (one file per slice)."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = f"1.2.826.0.1.3680043.2.1125.{uid_suffix}"
    for k in range(array_kji.shape[0]):
        sl = sitk.GetImageFromArray(array_kji[k : k + 1])
        sl.SetSpacing(spacing)
        sl.SetOrigin((origin[0], origin[1], origin[2] + k * spacing[2]))
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        for tag, value in {
            "0020|000e": series_uid, "0008|0060": "CT", "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:g}" for v in (origin[0], origin[1], origin[2] + k * spacing[2])),
            "0020|0037": "1\\0\\0\\0\\1\\0", "0018|0050": f"{spacing[2]:g}",
            "0028|0030": f"{spacing[1]:g}\\{spacing[0]:g}",
        }.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{uid_suffix}_{k:03d}.dcm"))
        with io.keep_locale():
            writer.Execute(sl)
    return series_uid


def test_dicom_folder_with_two_series_takes_the_largest_or_the_one_asked(tmp_path, caplog):
    big = np.arange(6 * 8 * 10, dtype=np.int16).reshape(6, 8, 10)
    small = np.zeros((3, 8, 10), np.int16)
    uid_big = _write_dicom_series(tmp_path / "d", big, spacing=(0.7, 0.7, 2.0), origin=(-5, -3, 10), uid_suffix=1)
    uid_small = _write_dicom_series(tmp_path / "d", small, spacing=(0.7, 0.7, 2.0), origin=(-5, -3, 10), uid_suffix=2)
    encoding = locale.getpreferredencoding(False)
    with caplog.at_level(logging.WARNING):
        vol = io.read_image(tmp_path / "d")
    assert locale.getpreferredencoding(False) == encoding  # GDCM must not leave the "C" locale
    assert vol.shape == (10, 8, 6) and len(vol.dicom_files) == 6
    assert "--series-uid" in caplog.text and uid_big in caplog.text
    # LPS input: canonical RAS flips x and y
    assert np.array_equal(vol.array, big.T[::-1, ::-1, :])
    assert io.read_image(tmp_path / "d", series_uid=uid_small).shape == (10, 8, 3)
    with pytest.raises(InputError, match="--series-uid"):
        io.read_image(tmp_path / "d", series_uid="1.2.3")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="no DICOM series"):
        io.read_image(tmp_path / "empty")


def test_totalsegmentator_flipped_header_lines_up_with_the_dicom_series(ircadb_dir):
    folder = ircadb_dir.parent / "totalsegmentator"
    ct = io.read_image(folder / "ct_contrast_dicom")
    labels = io.read_labels(folder / "ct_contrast_dicom_totalseg.nii.gz", reference=ct, resample=True)
    liver = labels.array == 5
    assert liver.sum() > 100_000

    def share_of_liver_hu(mask):  # portal-venous liver parenchyma: 50-180 HU
        hu = ct.array[mask]
        return float(np.mean((hu > 50) & (hu < 180)))

    assert share_of_liver_hu(liver) > 0.9
    # a deliberately mirrored copy does not line up (so the test can fail)
    assert share_of_liver_hu(liver[:, ::-1, :]) < 0.75


def _edited_header(src, dst, **fields):
    """An uncompressed NIfTI file with raw header fields changed (nibabel would repair them on save)."""
    raw = src.read_bytes()
    header = nib.Nifti1Header.from_fileobj(io_module.BytesIO(raw), check=False)
    for key, value in fields.items():
        header[key] = value
    dst.write_bytes(header.binaryblock + raw[348:])
    return dst


def _translation(x, y, z):
    t = np.zeros((4, 4))
    t[:3, 3] = x, y, z
    return t


def test_nifti_header_checks_refuse_what_itk_would_misread(tmp_path):
    src = _save_nifti(np.zeros((8, 7, 6), np.int16), AFFINE, tmp_path / "src.nii")
    pixdim = nib.load(src).header["pixdim"].copy()
    zero = pixdim.copy()
    zero[1:4] = 0
    with pytest.raises(InputError, match=r"pixdim\[1:4\]"):
        io.read_image(_edited_header(src, tmp_path / "zero.nii", pixdim=zero), name="CT")
    with pytest.raises(InputError, match="neither a qform nor an sform"):
        io.read_image(_edited_header(src, tmp_path / "noform.nii", qform_code=0, sform_code=0), name="CT")
    apart = nib.load(src).header.copy()
    apart.set_qform(AFFINE, code=1)
    apart.set_sform(AFFINE + _translation(0, 0, 50), code=1)
    path = tmp_path / "apart.nii"
    path.write_bytes(apart.binaryblock + src.read_bytes()[348:])
    with pytest.raises(InputError, match="qform and sform disagree by up to 50 mm"):
        io.read_image(path, name="CT")
    # the whole stream is decoded: a header-only read still finds a truncated file
    gz = _save_nifti(np.arange(40 * 30 * 20, dtype=np.int16).reshape(40, 30, 20), AFFINE, tmp_path / "t.nii.gz")
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gz.read_bytes()[:-64])
    with pytest.raises(InputFileError, match="truncated"):
        io.read_image(cut, name="CT", header_only=True)


def test_labels_beyond_what_their_type_holds_are_refused(tmp_path):
    a = np.zeros((6, 6, 6), np.uint64)
    a[1, 1, 1] = 2**32  # would wrap to 0 in uint32
    nib.Nifti1Image(a, AFFINE, dtype=np.uint64).to_filename(tmp_path / "big.nii.gz")
    with pytest.raises(LabelError, match="above 4294967295"):
        io.read_labels(tmp_path / "big.nii.gz", name="--tumours")
    f = np.zeros((6, 6, 6), np.float32)
    f[1, 1, 1] = 2.0**25
    with pytest.raises(LabelError, match="above 16777216"):
        io.read_labels(_save_nifti(f, AFFINE, tmp_path / "f32.nii.gz"), name="--tumours")


def test_named_pipe_is_refused_without_being_opened(tmp_path):
    import os

    fifo = tmp_path / "ct.nii.gz"
    os.mkfifo(fifo)
    with pytest.raises(InputFileError, match="named pipe"):
        io.read_image(fifo, name="CT")
    with pytest.raises(InputFileError, match="named pipe"):
        io.sha256_of(fifo)


def test_dicom_gap_is_refused_or_interpolated(tmp_path):
    """A series with one slice missing: refused naming the gap; with interpolate_slices the slice is
    rebuilt linearly (a ramp along z) on the complete grid, and no DICOM files are referenced."""
    ramp = np.repeat((np.arange(6, dtype=np.int16) * 100)[:, None, None], 8 * 10, axis=1).reshape(6, 8, 10)
    _write_dicom_series(tmp_path / "d", ramp, spacing=(0.7, 0.7, 2.0), origin=(-5, -3, 10), uid_suffix=3)
    (sorted((tmp_path / "d").iterdir())[2]).unlink()
    with pytest.raises(InputError, match="1 slice.s. missing.*--interpolate-slices"):
        io.read_image(tmp_path / "d", name="CT")
    vol = io.read_image(tmp_path / "d", name="CT", interpolate_slices=True)
    assert vol.shape == (10, 8, 6) and vol.dicom_files == () and vol.spacing_mm[2] == pytest.approx(2.0)
    assert np.array_equal(vol.array[0, 0, :], np.arange(6) * 100)
    assert any("resampled onto a regular grid" in note for note in vol.notes)


@pytest.mark.parametrize("codes", ["LPS", "PIR", "SAL", "RAS"])
def test_labels_in_a_corner_give_the_same_canonical_array(tmp_path, codes):
    """A label map is copied only within its labelled voxels' box (the rest left zero), read and
    written: the box is found in one axis order and flips, and lands where the labels are in the other."""
    rng = np.random.default_rng(1)
    canon = np.zeros((12, 10, 8), np.uint8)
    canon[1:4, 6:9, 5:7] = rng.integers(0, 3, (3, 3, 2))
    canon[2, 7, 5] = 2
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt("RAS"), nib.orientations.axcodes2ornt(codes)
    )
    data = nib.orientations.apply_orientation(canon, ornt)
    affine = np.diag([0.7, 0.9, 2.0, 1.0]) @ nib.orientations.inv_ornt_aff(ornt, canon.shape)
    path = _save_nifti(data, affine, tmp_path / f"{codes}.nii.gz")
    assert np.array_equal(io.read_labels(path).array, canon)
    mask = io.read_labels(path, binary=True).array
    assert mask.flags.c_contiguous and np.array_equal(mask, canon > 0)
    empty = _save_nifti(np.zeros_like(data), affine, tmp_path / f"{codes}0.nii.gz")
    assert not io.read_labels(empty, binary=True).array.any()
    ref = io.read_labels(path)
    for array, expected in ((canon, data), (canon > 0, (data > 0).astype(np.uint8)), (0 * canon, 0 * data)):
        out = io.write_labels(array, reference=ref, path=tmp_path / f"{codes}_out.nii.gz")
        assert np.array_equal(np.asanyarray(nib.load(out).dataobj), expected)


def test_binary_masks_are_the_labels_above_zero(tmp_path):
    """``binary=True`` (a 0/1 map read through its boolean view, others compared with 0) gives
    ``read_labels(...).array > 0`` on a flipped oblique grid, for 0/1, 0/255 and 16-bit maps."""
    rng = np.random.default_rng(3)
    for dtype, values in ((np.uint8, (0, 1)), (np.uint8, (0, 255)), (np.uint16, (0, 1, 300)), (np.int16, (0, 1))):
        array = rng.choice(np.array(values, dtype), size=(9, 7, 5))
        path = _save_nifti(array, AFFINE, tmp_path / f"m{np.dtype(dtype).name}{max(values)}.nii.gz")
        mask = io.read_labels(path, binary=True).array
        assert mask.dtype == bool and mask.flags.c_contiguous
        assert np.array_equal(mask, io.read_labels(path).array > 0)


def test_nifti_intake_leaves_pydicom_out_yet_importable(tmp_path):
    """Reading a NIfTI file imports nibabel without pydicom (and the requests it pulls); pydicom
    still imports afterwards, for DICOM studies in the same process."""
    import subprocess
    import sys

    path = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.uint8), np.diag([0.7, 0.7, 2.0, 1.0])), path)
    code = ("import sys; from pathlib import Path; from hepatoplan.pipeline import io; "
            f"volume = io.read_labels(Path({str(path)!r}), name='--liver', binary=True); "
            "print(volume.array.shape, 'pydicom' in sys.modules, 'requests' in sys.modules); "
            "import pydicom; print(pydicom.Dataset.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["(4, 5, 6) False False", "Dataset"]


def test_cli_turns_numpys_huge_pages_off_unless_the_environment_says(monkeypatch):
    from numpy._core import multiarray

    from hepatoplan.pipeline import cli

    before = multiarray._set_madvise_hugepage(True)
    try:
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
        cli.keep_freed_memory()
        assert multiarray._set_madvise_hugepage(True) is True  # left as the environment set it
        monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE")
        cli.keep_freed_memory()
        assert multiarray._set_madvise_hugepage(True) is False
    finally:
        multiarray._set_madvise_hugepage(before)


def test_cli_freezes_the_objects_left_at_exit_once():
    """``main`` registers ``gc.freeze`` at exit (Python's finalization then skips its full collections),
    once however often it runs; in-process the collector is untouched until the interpreter exits."""
    import subprocess
    import sys

    code = ("import atexit, gc; from hepatoplan.pipeline import cli; "
            "atexit.register(lambda: print('frozen at exit', gc.get_freeze_count() > 0)); "
            "n = atexit._ncallbacks(); cli.main([]); cli.main([]); "
            "print('registered', atexit._ncallbacks() - n, 'frozen now', gc.get_freeze_count() > 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-2:] == ["registered 1 frozen now False", "frozen at exit True"]


def test_an_uncompressed_nifti_cut_short_while_read_is_refused(tmp_path):
    """The voxel buffer is not zeroed first: a .nii that holds less data when read than its size said when it was
    checked (cut meanwhile) is refused, not read with whatever the buffer held."""
    from pathlib import Path

    from hepatoplan.pipeline import io_nifti

    path = tmp_path / "ct.nii"
    nib.save(nib.Nifti1Image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), np.eye(4)), path)
    header = io_nifti.read_header(path, "CT")
    assert np.array_equal(io_nifti.read_voxels(path, header, "CT"), np.arange(60, dtype=np.int16).reshape(3, 4, 5).T)

    class CutAfterItsSizeWasRead(type(Path())):
        def stat(self, **kwargs):
            size = super().stat(**kwargs)
            with open(self, "r+b") as fh:
                fh.truncate(size.st_size - 10)
            return size

    with pytest.raises(InputFileError, match="truncated"):
        io_nifti.read_voxels(CutAfterItsSizeWasRead(path), header, "CT")
