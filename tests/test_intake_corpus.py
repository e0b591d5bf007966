"""The intake corpus (issue 14): real studies, lightly damaged or unusual, each answered right or refused.

Built in ``tmp_path`` from ``../shared/data`` (never copied into the repository): IRCADb 01's CT and
masks, cropped to the liver and subsampled (3 × 3 × 2) so a plan takes a fraction of a second,
edited with nibabel; the TotalSegmentator DICOM series ``ct_contrast_dicom`` (real Siemens
headers, JPEG 2000 pixels) edited with pydicom; command-line numbers and batch manifests.

Every case asserts one outcome, run through ``hepatoplan.pipeline.cli.main`` as a user runs it:

- ``same``: exit 0 and the same volumes as the clean input (liver, tumours, functional liver,
  Couinaud segments), inputs unchanged;
- ``refused``: exit 2, exactly one line on stderr naming the file or flag and saying what is wrong
  (the case's words), nothing written (``--out`` absent) and inputs unchanged (SHA-256 before and
  after).

The output side (phase 2): ``--out`` checked before any work (an input's folder, the empty string,
an earlier run's files), and the DICOM-SEG and SR of series without FrameOfReferenceUID or with
empty UIDs pass dciodvfy.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cc3d
import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from hepatoplan.pipeline.cli import main

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
IRCADB_01 = DATA / "ircadb" / "01"
TOTALSEG = DATA / "totalsegmentator"
MASKS = ("liver", "tumours", "segments", "portal", "hepatic")
_SOURCES = {"ct": "ct", "liver": "liver", "tumours": "tumours", "segments": "couinaud_reference",
            "portal": "portal_vein", "hepatic": "hepatic_veins"}


# --------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Base:
    """A clean study on disk and the volumes its clean plan gives."""

    folder: Path
    files: dict[str, Path]
    volumes: dict


@pytest.fixture(scope="module")
def nifti_base(tmp_path_factory) -> Base:
    if not IRCADB_01.is_dir():
        pytest.skip(f"real data not found at {IRCADB_01} (see ../shared/data/README.md)")
    folder = tmp_path_factory.mktemp("ircadb01_small")
    liver = np.asanyarray(nib.load(IRCADB_01 / "liver.nii.gz").dataobj)
    where = np.argwhere(liver > 0)
    lo, hi = np.maximum(where.min(0) - 4, 0), np.minimum(where.max(0) + 5, liver.shape)
    files = {}
    for key, source in _SOURCES.items():
        img = nib.load(IRCADB_01 / f"{source}.nii.gz").slicer[lo[0]:hi[0]:3, lo[1]:hi[1]:3, lo[2]:hi[2]:2]
        files[key] = folder / f"{key}.nii.gz"
        small = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, header=img.header)
        small.set_qform(img.affine, code=1)  # both forms, as the scanner's conversion wrote them
        small.set_sform(img.affine, code=1)
        small.to_filename(files[key])
    out = tmp_path_factory.mktemp("clean_out") / "out"
    assert main(_plan(files) + ["--out", str(out)]) == 0
    return Base(folder, files, _volumes(out))


@pytest.fixture(scope="module")
def dicom_base(tmp_path_factory) -> Base:
    series = TOTALSEG / "ct_contrast_dicom"
    if not series.is_dir():
        pytest.skip(f"real data not found at {series} (see ../shared/data/README.md)")
    folder = tmp_path_factory.mktemp("dicom_clean")
    shutil.copytree(series, folder / "series")
    labels = nib.load(TOTALSEG / "ct_contrast_dicom_totalseg.nii.gz")
    liver = folder / "liver.nii.gz"
    nib.Nifti1Image((np.asanyarray(labels.dataobj) == 5).astype(np.uint8), labels.affine).to_filename(liver)
    out = tmp_path_factory.mktemp("dicom_clean_out") / "out"
    assert main(_dicom_plan(folder / "series", liver) + ["--out", str(out)]) == 0
    return Base(folder, {"series": folder / "series", "liver": liver, "seg": out / "labels_seg.dcm"}, _volumes(out))


def _plan(files: dict, *extra: str) -> list[str]:
    return ["plan", str(files["ct"]), *(a for k in ("liver", "tumours", "segments") if k in files
                                        for a in (f"--{k}", str(files[k]))), "--no-auto", "--no-preview", *extra]


def _dicom_plan(series: Path, liver: Path, *extra: str) -> list[str]:
    return ["plan", str(series), "--liver", str(liver), "--resample-masks", "--no-auto", "--no-preview", *extra]


def _volumes(out: Path) -> dict:
    v = json.loads((out / "report.json").read_text(encoding="utf-8"))["volumes_ml"]
    return {k: v.get(k) for k in ("liver", "functional_liver", "tumours_total", "tumours", "segments")}


def _digest(paths) -> dict[str, str]:
    out = {}
    for path in map(Path, paths):
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def _run(argv: list[str], capsys) -> tuple[int, str, list[str]]:
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, [line for line in err.splitlines() if line.strip()]


def assert_refused(status: int, err: list[str], out: Path | None, names: tuple[str, ...], words: tuple[str, ...]):
    assert status == 2, f"expected a refusal (exit 2), got {status}: {err}"
    assert len(err) == 1, f"expected one line on stderr, got {len(err)}: {err}"
    line = err[0]
    assert line.startswith("hepatoplan: error: "), line
    for word in (*names, *words):
        assert word.lower() in line.lower(), f"{word!r} not in {line!r}"
    if out is not None:
        assert not out.exists(), f"{out} was written"


# --------------------------------------------------------------------------- NIfTI editing helpers


def _raw(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _put(path: Path, raw: bytes) -> Path:
    path.write_bytes(gzip.compress(raw, compresslevel=1) if path.name.endswith(".gz") else raw)
    return path


def edit_header(src: Path, dst: Path, edit: Callable) -> Path:
    """Copy a NIfTI-1 file with header fields changed in place (nibabel would 'fix' them on save)."""
    raw = _raw(src)
    header = nib.Nifti1Header.from_fileobj(io.BytesIO(raw), check=False)
    edit(header)
    return _put(dst, header.binaryblock + raw[348:])


def save(dst: Path, array, affine, **kwargs) -> Path:
    nib.Nifti1Image(array, affine, **kwargs).to_filename(dst)
    return dst


def _array(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _affine(path: Path) -> np.ndarray:
    return nib.load(path).affine


def _fields(**values):
    def edit(header):
        for key, value in values.items():
            if isinstance(value, dict):
                for index, v in value.items():
                    header[key][index] = v
            else:
                header[key] = value
    return edit


def _shifted(affine, mm):
    out = affine.copy()
    out[:3, 3] += mm
    return out


@dataclass(frozen=True)
class Case:
    """One corpus case: ``build(tmp, base)`` returns the files replacing the clean ones (or extra
    arguments); ``expect`` is "same" or "refused" (with the file or flag the message names and
    the words it holds)."""

    name: str
    build: Callable
    expect: str = "refused"
    words: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    segments_rel: float = 1e-9  # relative tolerance on Couinaud segment volumes


def _replace(key: str, make: Callable) -> Callable:
    """A builder writing a new ``key`` file (``make(tmp, base) -> path``) in place of the clean one."""
    return lambda tmp, base: {key: make(tmp, base)}


def ct(make):
    return _replace("ct", make)


def mask(key, make):
    return _replace(key, make)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(key, fraction, suffix=".nii.gz"):
    def make(tmp, base):
        src = base.files[key]
        data = src.read_bytes() if suffix == ".nii.gz" else _raw(src)
        return _write(tmp / f"{key}{suffix}", data[: int(len(data) * fraction)])
    return mask(key, make)


def _corrupt_gzip(tmp, base):
    data = bytearray(base.files["ct"].read_bytes())
    for offset in range(len(data) // 2, len(data) // 2 + 64):
        data[offset] ^= 0x5A
    return _write(tmp / "ct.nii.gz", bytes(data))


def _size_mod_2_32(tmp, base):
    """A uint8 CT whose header announces 4096 × 4096 × 256 voxels: 2³² bytes more than its data."""
    path = save(tmp / "ct.nii.gz", np.zeros((64, 64, 64), np.uint8), np.diag([0.7, 0.7, 0.7, 1.0]))
    return edit_header(path, path, _fields(dim={1: 4096, 2: 4096, 3: 256}))


def _reoriented(path: Path, dst: Path, codes="PIR") -> Path:
    img = nib.load(path)
    ornt = nib.orientations.ornt_transform(nib.orientations.io_orientation(img.affine),
                                           nib.orientations.axcodes2ornt(codes))
    return save(dst, np.ascontiguousarray(img.as_reoriented(ornt).dataobj), img.as_reoriented(ornt).affine)


def _all_reoriented(tmp, base):
    return {k: _reoriented(base.files[k], tmp / f"{k}.nii.gz") for k in ("ct", "liver", "tumours", "segments")}


def _multimember(tmp, base):
    raw = _raw(base.files["ct"])
    half = len(raw) // 2
    return _write(tmp / "ct.nii.gz", gzip.compress(raw[:half]) + gzip.compress(raw[half:]))


def _with_extension(tmp, base):
    img = nib.load(base.files["ct"])
    img = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, header=img.header)
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", b"hepatoplan corpus: an extension"))
    img.to_filename(tmp / "ct.nii.gz")
    return tmp / "ct.nii.gz"


def _big_endian(tmp, base):
    img = nib.load(base.files["ct"])
    header = img.header.as_byteswapped(">")
    return save(tmp / "ct.nii.gz", np.asanyarray(img.dataobj).astype(">i2"), img.affine, header=header)


def _scaled(tmp, base):
    """The CT stored as (HU + 1024) / 2 with scl_slope 2, scl_inter -1024."""
    src = base.files["ct"]
    img = nib.Nifti1Image(((_array(src).astype(np.int32) + 1024) // 2).astype(np.int16), _affine(src))
    img.header.set_slope_inter(2.0, -1024.0)
    img.to_filename(tmp / "ct.nii.gz")
    return tmp / "ct.nii.gz"


def _form_only(which):
    def make(tmp, base):
        other = "sform" if which == "qform" else "qform"
        return edit_header(base.files["ct"], tmp / "ct.nii.gz", _fields(**{f"{other}_code": 0}))
    return make


def _binary_tumours(value, dtype=np.uint8):
    def make(tmp, base):
        t = _array(base.files["tumours"])
        return save(tmp / "tumours.nii.gz", np.where(t > 0, value, 0).astype(dtype), _affine(base.files["tumours"]))
    return mask("tumours", make)


def _retyped(key, dtype, factor=1):
    def make(tmp, base):
        src = base.files[key]
        return save(tmp / f"{key}.nii.gz", (_array(src).astype(np.float64) * factor).astype(dtype), _affine(src),
                    dtype=dtype)
    return mask(key, make)


def _with_value(key, value, dtype):
    def make(tmp, base):
        src = base.files[key]
        a = _array(src).astype(dtype)
        a[tuple(np.argwhere(a > 0)[0])] = value
        return save(tmp / f"{key}.nii.gz", a, _affine(src), dtype=dtype)
    return mask(key, make)


def _itk_format(suffix):
    def make(tmp, base):
        path = tmp / f"ct{suffix}"
        sitk.WriteImage(sitk.ReadImage(str(base.files["ct"])), str(path), True)
        return path
    return ct(make)


def _ct_data(make_array, dtype=None, name="ct.nii.gz"):
    def make(tmp, base):
        src = base.files["ct"]
        return save(tmp / name, make_array(_array(src)), _affine(src), **({"dtype": dtype} if dtype else {}))
    return ct(make)


def _ct_header(edit):
    return ct(lambda tmp, base: edit_header(base.files["ct"], tmp / "ct.nii.gz", edit))


def _one_nan(a):
    a = a.astype(np.float32)
    a[5, 5, 5] = np.nan
    return a


def _liver_shifted(tmp, base):
    src = base.files["liver"]
    return {"liver": save(tmp / "liver.nii.gz", _array(src), _shifted(_affine(src), [0, 0, 5.0]))}


def _scaled_affine(factor):
    def make(tmp, base):
        src = base.files["ct"]
        affine = _affine(src).copy()
        affine[:3, :3] *= factor
        return {k: save(tmp / f"{k}.nii.gz", _array(base.files[k]), affine) for k in ("ct", "liver", "tumours", "segments")}
    return make


NIFTI_CASES = [
    # ---- refused: damaged files
    Case("ct_gz_truncated_90pc", _truncated("ct", 0.9), words=("truncated",), names=("ct.nii.gz",)),
    Case("ct_gz_truncated_in_header", _truncated("ct", 0.0005), words=("truncated",), names=("ct.nii.gz",)),
    Case("ct_nii_truncated", _truncated("ct", 0.9, ".nii"), words=("truncated",), names=("ct.nii",)),
    Case("ct_gz_corrupt_stream", ct(_corrupt_gzip), words=("corrupt",), names=("ct.nii.gz",)),
    Case("ct_header_size_2pow32_more", ct(_size_mod_2_32), words=("truncated", "announces"), names=("ct.nii.gz",)),
    Case("ct_empty_file", ct(lambda tmp, base: _write(tmp / "ct.nii.gz", b"")), words=("empty",),
         names=("ct.nii.gz",)),
    Case("ct_gzip_named_nii", ct(lambda tmp, base: Path(shutil.copy(base.files["ct"], tmp / "ct.nii"))),
         words=("gzip", "rename"), names=("ct.nii",)),
    Case("ct_not_nifti", ct(lambda tmp, base: _put(tmp / "ct.nii.gz", b"{'not': 'an image'}" * 40)),
         words=("not a NIfTI",), names=("ct.nii.gz",)),
    Case("ct_unsupported_suffix", ct(lambda tmp, base: Path(shutil.copy(base.files["ct"], tmp / "ct.img"))),
         words=("unsupported",), names=("ct.img",)),
    Case("ct_missing", ct(lambda tmp, base: tmp / "nowhere.nii.gz"), words=("no such file",), names=("nowhere",)),
    Case("ct_empty_folder", ct(lambda tmp, base: (tmp / "empty").mkdir() or tmp / "empty"),
         words=("no DICOM",), names=("empty",)),
    # ---- refused: voxel sizes and geometry
    Case("ct_pixdim_0_no_forms", _ct_header(_fields(pixdim={1: 0, 2: 0, 3: 0}, qform_code=0, sform_code=0)),
         words=("pixdim", "voxel size"), names=("ct.nii.gz",)),
    Case("ct_pixdim_nan_no_forms", _ct_header(_fields(pixdim={1: np.nan, 2: np.nan, 3: np.nan}, qform_code=0,
                                                      sform_code=0)), words=("pixdim", "nan"), names=("ct.nii.gz",)),
    Case("ct_pixdim_0_with_forms", _ct_header(_fields(pixdim={1: 0, 2: 0, 3: 0})), words=("pixdim",),
         names=("ct.nii.gz",)),
    Case("ct_pixdim_negative", _ct_header(_fields(pixdim={1: -1.71})), words=("pixdim", "positive"),
         names=("ct.nii.gz",)),
    Case("ct_pixdim_inf_slice", _ct_header(_fields(pixdim={3: np.inf})), words=("pixdim",), names=("ct.nii.gz",)),
    Case("study_voxels_of_kilometres", _scaled_affine(1e6), words=("voxel size", "expected"), names=("ct.nii.gz",)),
    Case("ct_no_qform_no_sform", _ct_header(_fields(qform_code=0, sform_code=0)), words=("neither",),
         names=("ct.nii.gz",)),
    Case("ct_qform_sform_50mm_apart",
         _ct_header(lambda h: h.set_sform(_shifted(h.get_sform(), [0, 0, 50.0]), code=1)),
         words=("qform", "sform", "50"), names=("ct.nii.gz",)),
    Case("ct_pixdim_disagrees_with_sform", _ct_header(lambda h: (_fields(pixdim={1: 1, 2: 1, 3: 1})(h),
                                                                  h.__setitem__("qform_code", 0))),
         words=("inconsistent", "sform"), names=("ct.nii.gz",)),
    Case("ct_damaged_dims", _ct_header(_fields(dim={2: 0})), words=("dimensions",), names=("ct.nii.gz",)),
    Case("ct_vox_offset_nan", _ct_header(_fields(vox_offset=np.nan)), words=("vox_offset",), names=("ct.nii.gz",)),
    Case("ct_scaling_inter_nan", _ct_header(_fields(scl_slope=2.0, scl_inter=np.nan)), words=("scl_inter",),
         names=("ct.nii.gz",)),
    # ---- refused: voxel types
    Case("ct_complex64", _ct_data(lambda a: a.astype(np.complex64)), words=("complex",), names=("ct.nii.gz",)),
    Case("ct_rgb", ct(lambda tmp, base: save(tmp / "ct.nii.gz", np.zeros(_array(base.files["ct"]).shape, [
        ("R", "u1"), ("G", "u1"), ("B", "u1")]), _affine(base.files["ct"]))), words=("RGB",), names=("ct.nii.gz",)),
    Case("ct_4d_two_volumes", _ct_data(lambda a: np.stack([a, a], axis=-1)), words=("4D",), names=("ct.nii.gz",)),
    Case("ct_float_with_nan", _ct_data(_one_nan), words=("NaN",), names=("ct.nii.gz",)),
    # ---- refused: label maps
    Case("liver_non_integer", _retyped("liver", np.float32, 0.5), words=("non-integer",), names=("liver.nii.gz",)),
    Case("liver_negative", _with_value("liver", -1, np.int16), words=("negative",), names=("liver.nii.gz",)),
    Case("tumours_label_2pow32", _with_value("tumours", 2**32, np.uint64), words=("above",),
         names=("tumours.nii.gz",)),
    Case("tumours_float32_label_2pow25", _with_value("tumours", 2.0**25, np.float32), words=("above",),
         names=("tumours.nii.gz",)),
    Case("segments_label_9", _with_value("segments", 9, np.uint8), words=("Couinaud",), names=("segments.nii.gz",)),
    Case("liver_all_zero", _retyped("liver", np.uint8, 0), words=("empty",), names=("liver.nii.gz",)),
    Case("liver_gz_truncated", _truncated("liver", 0.5), words=("truncated",), names=("liver.nii.gz",)),
    Case("liver_on_another_grid", _liver_shifted, words=("--resample-masks", "origin"), names=("liver.nii.gz",)),
    Case("liver_empty_file", mask("liver", lambda tmp, base: _write(tmp / "liver.nii.gz", b"")),
         words=("empty",), names=("liver.nii.gz",)),
    # ---- answered right
    Case("ct_float32", _ct_data(lambda a: a.astype(np.float32), np.float32), expect="same"),
    Case("ct_uncompressed", ct(lambda tmp, base: _put(tmp / "ct.nii", _raw(base.files["ct"]))), expect="same"),
    Case("ct_uncompressed_named_gz", ct(lambda tmp, base: _write(tmp / "ct.nii.gz", _raw(base.files["ct"]))),
         expect="same"),
    Case("ct_big_endian", ct(_big_endian), expect="same"),
    Case("ct_scaled_slope_intercept", ct(_scaled), expect="same"),
    Case("ct_gzip_two_members", ct(_multimember), expect="same"),
    Case("ct_header_extension", ct(_with_extension), expect="same"),
    Case("ct_sform_only", ct(_form_only("sform")), expect="same"),
    Case("ct_qform_only", ct(_form_only("qform")), expect="same"),
    Case("ct_4d_single_volume", _ct_data(lambda a: a[..., None]), expect="same"),
    # NRRD stores spacing × direction: ITK splits it back with a last-bit difference (1.7100000381469724
    # for 1.7100000381469727), which moves a few tied voxels of the segment fill; the masks' volumes are exact
    Case("ct_nrrd", _itk_format(".nrrd"), expect="same", segments_rel=1e-3),
    Case("ct_metaimage", _itk_format(".mha"), expect="same"),
    Case("ct_only_in_PIR_axes", ct(lambda tmp, base: _reoriented(base.files["ct"], tmp / "ct.nii.gz")), expect="same"),
    Case("study_in_PIR_axes", _all_reoriented, expect="same"),
    Case("tumours_binary_0_255", _binary_tumours(255), expect="same"),
    Case("tumours_binary_0_2", _binary_tumours(2), expect="same"),
    Case("tumours_binary_0_1_int16", _binary_tumours(1, np.int16), expect="same"),
    Case("tumours_float32_labels", _retyped("tumours", np.float32), expect="same"),
    Case("tumours_uint16", _retyped("tumours", np.uint16), expect="same"),
    Case("liver_0_255", _retyped("liver", np.uint8, 255), expect="same"),
    Case("liver_int64", _retyped("liver", np.int64), expect="same"),
    Case("segments_float64", _retyped("segments", np.float64), expect="same"),
    Case("liver_4d_singleton", mask("liver", lambda tmp, base: save(
        tmp / "liver.nii.gz", _array(base.files["liver"])[..., None], _affine(base.files["liver"]))), expect="same"),
]


def _expected_binary(base: Base) -> dict:
    """A binary tumour mask is split into 26-connected lesions, numbered by decreasing size (mL
    rounded to 0.01 as report.json writes them)."""
    t = _array(base.files["tumours"]) > 0
    voxel_ml = abs(np.linalg.det(_affine(base.files["tumours"])[:3, :3])) / 1000.0
    sizes = np.sort(np.bincount(cc3d.connected_components(t.astype(np.uint8), connectivity=26).ravel())[1:])[::-1]
    return {str(i + 1): round(float(n) * voxel_ml, 2) for i, n in enumerate(sizes)}


@pytest.mark.parametrize("case", NIFTI_CASES, ids=lambda c: c.name)
def test_nifti_case(case, nifti_base, tmp_path, capsys):
    changed = case.build(tmp_path, nifti_base)
    files = {**nifti_base.files, **changed}
    out = tmp_path / "out"
    before = _digest(files.values())
    status, _, err = _run(_plan(files, *case.extra) + ["--out", str(out)], capsys)
    assert _digest(files.values()) == before, "an input was modified"
    if case.expect == "refused":
        assert_refused(status, err, out, case.names, case.words)
        return
    assert status == 0, err
    got, want = _volumes(out), dict(nifti_base.volumes)
    if case.name.startswith("tumours_binary"):
        want["tumours"] = _expected_binary(nifti_base)
    for key, value in want.items():
        if isinstance(value, dict):
            assert got[key].keys() == value.keys(), key
            rel = case.segments_rel if key == "segments" else 1e-9
            for k in value:
                assert got[key][k] == pytest.approx(value[k], rel=rel, abs=1e-9), (key, k)
        else:
            assert got[key] == pytest.approx(value, rel=1e-9), key


def test_portal_without_hepatic_plans(nifti_base, tmp_path, capsys):
    """A portal mask without a hepatic one (a TypeError in the summary before): answered, same volumes."""
    out = tmp_path / "out"
    argv = _plan(nifti_base.files, "--portal", str(nifti_base.files["portal"]), "--resect", "right-hepatectomy")
    status, stdout, err = _run(argv + ["--out", str(out)], capsys)
    assert status == 0, err
    assert "devascularised" in stdout and "congested -" in stdout
    assert {k: v for k, v in _volumes(out).items()} == nifti_base.volumes


# --------------------------------------------------------------------------- DICOM


def _dicom_series(tmp: Path, base: Base, edit: Callable, name="series") -> Path:
    """The clean series' slices (sorted along the normal), edited by ``edit(list) -> list | None``
    and written as NNN.dcm (None entries dropped)."""
    slices = sorted((pydicom.dcmread(f) for f in base.files["series"].iterdir()),
                    key=lambda ds: float(ds.ImagePositionPatient[2]))
    result = edit(slices)
    folder = tmp / name
    folder.mkdir()
    for i, ds in enumerate(slices if result is None else result):
        if ds is not None:
            ds.save_as(folder / f"{i:03d}.dcm")
    return folder


def _set(index, **values):
    def edit(slices):
        for key, value in values.items():
            if value is None:
                delattr(slices[index], key)
            else:
                setattr(slices[index], key, value)
    return edit


def _all(**values):
    def edit(slices):
        for i in range(len(slices)):
            _set(i, **values)(slices)
    return edit


def _tilted_row(degrees):
    t = math.radians(degrees)
    return [1, 0, 0, 0, math.cos(t), math.sin(t)]


def _gantry_tilt(slices):
    for i, ds in enumerate(slices):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + i * 2.0 * math.tan(math.radians(10)), z]
        ds.GantryDetectorTilt = 10


def _uneven(slices):
    return [ds for i, ds in enumerate(slices) if i % 3 != 1 or i == len(slices) - 1]


def _with_localizer(slices):
    loc = copy.deepcopy(slices[0])
    loc.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    loc.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    return [*slices, loc]


def _with_reformat(slices):
    sag = copy.deepcopy(slices[3])
    sag.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    return [*slices, sag]


def _with_other_series(slices):
    other = [copy.deepcopy(ds) for ds in slices[:3]]
    for ds in other:
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    return [*slices, *other]


def _duplicate(slices):
    return [*slices, copy.deepcopy(slices[4])]


def _truncate(folder: Path, index: int, fraction: float) -> Path:
    f = sorted(folder.iterdir())[index]
    f.write_bytes(f.read_bytes()[: int(f.stat().st_size * fraction)])
    return folder


@dataclass(frozen=True)
class DicomCase:
    name: str
    build: Callable  # (tmp, base) -> series folder
    expect: str = "refused"
    words: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()


def _edited(edit):
    return lambda tmp, base: _dicom_series(tmp, base, edit)


def _then(edit, after):
    return lambda tmp, base: after(_dicom_series(tmp, base, edit), tmp, base)


def _beside(folder: Path, tmp, base) -> Path:
    (folder / "README.txt").write_text("exported by a PACS")
    (folder / "._000.dcm").write_bytes(b"\0" * 300)
    return folder


def _in_subfolder(tmp, base) -> Path:
    (tmp / "top").mkdir()
    _dicom_series(tmp / "top", base, lambda s: None)
    return tmp / "top"


DICOM_CASES = [
    # ---- refused, naming the slice and the problem
    DicomCase("missing_slice", _edited(lambda s: s[:7] + s[8:]), words=("missing", "--interpolate-slices")),
    DicomCase("truncated_slice", _then(lambda s: None, lambda f, tmp, base: _truncate(f, 9, 0.6)),
              words=("009.dcm", "truncated")),
    DicomCase("slice_cut_in_header", _then(lambda s: None, lambda f, tmp, base: _truncate(f, 9, 0.003)),
              words=("009.dcm", "damaged")),
    DicomCase("uneven_spacing", _edited(_uneven), words=("uneven",)),
    DicomCase("duplicate_position", _edited(_duplicate), words=("one position",)),
    DicomCase("all_slices_at_one_position", _edited(lambda s: [setattr(ds, "ImagePositionPatient",
                                                                        list(s[0].ImagePositionPatient)) for ds in s]
                                                     and None), words=("one position",)),
    DicomCase("one_slice_1_degree_off", _edited(_set(6, ImageOrientationPatient=_tilted_row(1.0))),
              words=("006.dcm", "1.00 degrees")),
    DicomCase("gantry_tilt_10_degrees", _edited(_gantry_tilt), words=("gantry tilt",)),
    DicomCase("no_pixel_spacing", _edited(_all(PixelSpacing=None)), words=("PixelSpacing",)),
    DicomCase("slice_without_position", _edited(_set(3, ImagePositionPatient=None)),
              words=("003.dcm", "ImagePositionPatient")),
    DicomCase("slice_without_orientation", _edited(_set(3, ImageOrientationPatient=None)),
              words=("ImageOrientationPatient",)),
    DicomCase("frame_of_reference_differs", _edited(_set(5, FrameOfReferenceUID="1.2.826.0.1.3680043.8.498.2")),
              words=("frames of reference",)),
    DicomCase("frame_of_reference_missing_in_one", _edited(_set(5, FrameOfReferenceUID=None)),
              words=("frames of reference",)),
    DicomCase("multi_frame_object", _edited(_set(2, NumberOfFrames=2)), words=("multi-frame",)),
    DicomCase("pixel_spacing_differs", _edited(_set(8, PixelSpacing=[0.5, 0.5])), words=("PixelSpacing",)),
    DicomCase("rows_differ", _edited(_set(8, Rows=256)), words=("image size",)),
    DicomCase("orientation_not_perpendicular", _edited(_all(ImageOrientationPatient=[1, 0, 0, 0.5, 0.866, 0])),
              words=("perpendicular",)),
    DicomCase("single_slice", _edited(lambda s: s[:1]), words=("single slice",)),
    DicomCase("series_in_a_subfolder", _in_subfolder, words=("subfolders",)),
    DicomCase("series_uid_not_there", _edited(lambda s: None), words=("--series-uid",),
              extra=("--series-uid", "1.2.3.4")),
    # ---- answered right
    DicomCase("clean_copy", _edited(lambda s: None), expect="same"),
    DicomCase("localizer_in_folder", _edited(_with_localizer), expect="same"),
    DicomCase("reformat_in_another_plane", _edited(_with_reformat), expect="same"),
    DicomCase("second_smaller_series", _edited(_with_other_series), expect="same"),
    DicomCase("non_dicom_files_beside", _then(lambda s: None, _beside), expect="same"),
    DicomCase("earlier_dicom_seg_in_folder", _then(lambda s: None, lambda f, tmp, base: Path(shutil.copy(
        base.files["seg"], f / "labels_seg.dcm")).parent), expect="same"),
    DicomCase("files_renamed_out_of_order", _edited(lambda s: s[::-1]), expect="same"),
    DicomCase("missing_slice_interpolated", _edited(lambda s: s[:7] + s[8:]), expect="same",
              extra=("--interpolate-slices",)),
    DicomCase("truncated_slice_interpolated", _then(lambda s: None, lambda f, tmp, base: _truncate(f, 9, 0.6)),
              expect="same", extra=("--interpolate-slices",)),
    DicomCase("uneven_spacing_interpolated", _edited(_uneven), expect="same", extra=("--interpolate-slices",)),
    DicomCase("gantry_tilt_interpolated", _edited(_gantry_tilt), expect="same", extra=("--interpolate-slices",)),
    DicomCase("no_frame_of_reference", _edited(_all(FrameOfReferenceUID=None)), expect="same"),
]


def _slow_if_planned(case):
    """The DICOM cases answered (GDCM decodes the JPEG 2000 slices, highdicom writes the SEG) are slow."""
    if isinstance(case, DicomCase) and case.expect == "same":
        return pytest.param(case, marks=pytest.mark.slow, id=case.name)
    return case


@pytest.mark.parametrize("case", [_slow_if_planned(c) for c in DICOM_CASES], ids=lambda c: c.name)
def test_dicom_case(case, dicom_base, tmp_path, capsys):
    series = case.build(tmp_path, dicom_base)
    out = tmp_path / "out"
    inputs = [series, dicom_base.files["liver"]]
    before = _digest(inputs)
    status, _, err = _run(_dicom_plan(series, dicom_base.files["liver"], *case.extra) + ["--out", str(out)], capsys)
    assert _digest(inputs) == before, "an input was modified"
    if case.expect == "refused":
        assert_refused(status, err, out, (series.name,), case.words)
        return
    assert status == 0, err
    assert _volumes(out) == dicom_base.volumes
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    if case.extra == ("--interpolate-slices",):
        assert any("resampled onto a regular grid" in w for w in report["warnings"])
        assert not (out / "labels_seg.dcm").exists()
    elif case.name == "no_frame_of_reference":
        assert any("no FrameOfReferenceUID" in w and "derived" in w for w in report["warnings"]), report["warnings"]
        assert (out / "labels_seg.dcm").is_file() and (out / "measurements_sr.dcm").is_file()
    elif case.name not in ("clean_copy", "files_renamed_out_of_order"):
        assert any("aside" in w for w in report["warnings"]), report["warnings"]


@pytest.mark.slow
def test_named_pipes_never_hang(nifti_base, dicom_base, tmp_path):
    """A named pipe as the CT is refused at once; one inside a DICOM folder is set aside (a real
    process, with a timeout: a pipe opened for reading would block forever)."""
    fifo = tmp_path / "ct.nii.gz"
    os.mkfifo(fifo)
    cli = [sys.executable, "-m", "hepatoplan.pipeline.cli"]
    out = tmp_path / "out"
    proc = subprocess.run(cli + _plan({**nifti_base.files, "ct": fifo})[0:] + ["--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert_refused(proc.returncode, [ln for ln in proc.stderr.splitlines() if ln.strip()], out, ("ct.nii.gz",),
                   ("named pipe",))
    series = _dicom_series(tmp_path, dicom_base, lambda s: None)
    os.mkfifo(series / "zz_pipe.dcm")
    proc = subprocess.run(cli + _dicom_plan(series, dicom_base.files["liver"]) + ["--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _volumes(out) == dicom_base.volumes
    assert "special files" in proc.stderr


def test_resampled_slices_are_interpolated_linearly():
    """resample_slices: a ramp along the normal is rebuilt exactly over a gap; a tilted stack is
    shifted back so that a vertical line through the slices lands in one column."""
    from hepatoplan.pipeline.io_dicom import SeriesPlan, resample_slices

    positions = [0.0, 2.0, 6.0, 8.0]  # one slice missing at 4 mm
    slices = [np.full((4, 5), 10 * p, np.int16) for p in positions]
    plan = SeriesPlan(files=("a",) * 4, shape=(5, 4, 5), origin_lps_mm=(0, 0, 0), spacing_mm=(1, 1, 2),
                      direction=tuple(np.eye(3).ravel()), resample=True, positions_mm=tuple(positions),
                      offsets_pixels=((0, 0),) * 4)
    out = resample_slices(slices, plan)
    assert out.dtype == np.int16 and np.array_equal(out[:, 0, 0], [0, 20, 40, 60, 80])
    # a tilted stack: slice k is shifted by k columns on the output grid
    stack = [np.zeros((3, 4), np.float32) for _ in range(3)]
    for k, s in enumerate(stack):
        s[:, 1] = 100.0  # a line at column 1 of every slice
    tilted = SeriesPlan(files=("a",) * 3, shape=(6, 3, 3), origin_lps_mm=(0, 0, 0), spacing_mm=(1, 1, 1),
                        direction=tuple(np.eye(3).ravel()), resample=True, positions_mm=(0.0, 1.0, 2.0),
                        offsets_pixels=((0, 0), (1, 0), (2, 0)))
    out = resample_slices(stack, tilted)
    assert [int(np.argmax(out[k, 0])) for k in range(3)] == [1, 2, 3]
    assert out[0, 0, 5] == 0.0  # pixels no slice covers take the darkest value


# --------------------------------------------------------------------------- numbers, manifests, other commands


def _manifest(tmp: Path, text: str | bytes, name="m.csv") -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@dataclass(frozen=True)
class CliCase:
    name: str
    argv: Callable  # (tmp, base) -> (argv, out path that must not appear, files that must not change)
    expect: str = "refused"
    words: tuple[str, ...] = ()


def _growth(*args):
    return lambda tmp, base: (["growth", *args], tmp / "g.json", [])


def _batch(text, *extra):
    def build(tmp, base):
        m = _manifest(tmp, text)
        return ["batch", str(m), "--out", str(tmp / "cohort"), "--no-preview", *extra], tmp / "cohort", [m]
    return build


def _couinaud(**override):
    def build(tmp, base):
        args = {"--liver": base.files["liver"], "--portal": base.files["portal"], "--hepatic": base.files["hepatic"],
                "--out": tmp / "seg.nii.gz", **{f"--{k}": v(tmp, base) for k, v in override.items()}}
        return (["couinaud", *(str(x) for kv in args.items() for x in kv)], tmp / "seg.nii.gz",
                [base.files["liver"], base.files["portal"], base.files["hepatic"]])
    return build


def _plan_numbers(*extra):
    return lambda tmp, base: (_plan(base.files, *extra) + ["--out", str(tmp / "out")], tmp / "out",
                              list(base.files.values()))


CLI_CASES = [
    CliCase("ablation_radius_1e300", _plan_numbers("--resect", "ablate:1@1e300"), words=("ablate:1@1e300", "radius")),
    CliCase("margin_infinite", _plan_numbers("--margin-mm", "inf"), words=("--margin-mm",)),
    CliCase("growth_days_1e-300_apart", _growth("--days", "0,1e-300", "--flr-ml", "380,520"),
            words=("days", "strictly increasing")),
    CliCase("growth_day_1e300", _growth("--days", "0,1e300", "--flr-ml", "380,520"), words=("days[1]", "3650")),
    CliCase("growth_volumes_1e200_json", lambda tmp, base: (
        ["growth", "--days", "0,21", "--flr-ml", "1e200,1e201", "--json", str(tmp / "g.json")], tmp / "g.json", []),
        words=("flr_ml[0]", "50000 mL")),
    CliCase("growth_negative_volume", _growth("--days", "0,21", "--flr-ml=-5,520"), words=("flr_ml[0]",)),
    CliCase("stage_doubling_1e-300", lambda tmp, base: (
        ["stage", "--flr-ml", "200", "--functional-liver-ml", "1500", "--parenchyma", "normal", "--tumour-ml", "40",
         "--doubling-days", "1e-300"], tmp / "none", []), words=("doubling_days",)),
    CliCase("stage_technique_1e300", lambda tmp, base: (
        ["stage", "--flr-ml", "200", "--functional-liver-ml", "1500", "--parenchyma", "normal", "--technique",
         "PVE:1e300:28"], tmp / "none", []), words=("hypertrophy_percent",)),
    CliCase("stage_volume_1e300", lambda tmp, base: (
        ["stage", "--flr-ml", "1e300", "--functional-liver-ml", "1e301", "--parenchyma", "normal"], tmp / "none", []),
        words=("remnant_ml",)),
    CliCase("stage_window_of_years", lambda tmp, base: (
        ["stage", "--flr-ml", "200", "--functional-liver-ml", "1500", "--parenchyma", "normal", "--tumour-ml", "40",
         "--doubling-days", "1", "--technique", "PVE:40:28:21:3000"], tmp / "none", []), words=("tumour",)),
    CliCase("couinaud_json_is_a_folder", _couinaud(json=lambda tmp, base: tmp), words=("--json", "folder")),
    CliCase("couinaud_out_is_the_liver", _couinaud(out=lambda tmp, base: base.files["liver"]),
            words=("--out", "--liver")),
    CliCase("segment_truncated_ct", lambda tmp, base: (
        ["segment", str(_truncated("ct", 0.8)(tmp, base)["ct"]), "--out", str(tmp / "seg")], tmp / "seg", []),
        words=("IMAGE", "truncated")),
    CliCase("batch_row_longer_than_header", _batch("id,ct\na,x.nii.gz,extra\n"), words=("line 2", "3 cells")),
    CliCase("batch_id_cohort_csv", _batch("id,ct\ncohort.csv,x.nii.gz\n"), words=("line 2", "reserved")),
    CliCase("batch_latin1_text", _batch("id,ct,resect\ncafé,x.nii.gz,\n".encode("latin-1")),
            words=("line 2", "UTF-8")),
    CliCase("batch_nul_byte", _batch("id,ct\na,x.nii\0.gz\n"), words=("line",)),
    CliCase("batch_bad_resection", _batch("id,ct,resect\na,x.nii.gz,left-kidney\n"), words=("line 2", "left-kidney")),
    CliCase("batch_ids_differ_only_in_case", _batch("id,ct\nP1,x.nii.gz\np1,y.nii.gz\n"), words=("line 3", "twice")),
    CliCase("batch_column_twice", _batch("id,ct,ct\na,x.nii.gz,y.nii.gz\n"), words=("appear twice",)),
    CliCase("batch_too_many_workers", _batch("id,ct\na,x.nii.gz\n", "--workers", "100000"), words=("--workers",)),
    CliCase("batch_unreachable_scheduler", _batch("id,ct\na,x.nii.gz\n", "--scheduler", "tcp://127.0.0.1:9"),
            words=("--scheduler", "cannot connect")),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=lambda c: c.name)
def test_cli_case(case, nifti_base, tmp_path, capsys):
    argv, out, inputs = case.argv(tmp_path, nifti_base)
    before = _digest(inputs)
    start = time.perf_counter()
    status, _, err = _run(argv, capsys)
    assert time.perf_counter() - start < 60, "a refusal must come before any long work"
    assert _digest(inputs) == before, "an input was modified"
    assert_refused(status, err, out, (), case.words)


def test_growth_near_zero_growth_is_bounded(capsys):
    """Near-zero growth puts the target decades away: the table stays short, t* is 'not computable'."""
    status, stdout, err = _run(["growth", "--days", "0,21,42", "--flr-ml", "380,380.000001,380.000002",
                                "--target-ml", "600"], capsys)
    assert status == 0, err
    assert "t*: not computable" in stdout and len(stdout.splitlines()) < 200


def test_utf16_manifest_reads_as_utf8(tmp_path):
    """A manifest saved as UTF-16 (with its byte-order mark) gives the same jobs as in UTF-8."""
    from hepatoplan.pipeline.batch import read_manifest

    text = "id,ct,resect,margin_mm\nP1,ct.nii.gz,wedge:all,2\n"
    utf8 = read_manifest(_manifest(tmp_path, text), out_dir=tmp_path / "o")
    utf16 = read_manifest(_manifest(tmp_path, text.encode("utf-16"), "m16.csv"), out_dir=tmp_path / "o")
    assert utf16 == utf8 and utf8[0].options.resect == ("wedge:all",)


# --------------------------------------------------------------------------- phase 2 (output side)


def test_out_is_an_input_folder(nifti_base, tmp_path, capsys):
    study = tmp_path / "P1"
    shutil.copytree(nifti_base.folder, study)
    files = {k: study / p.name for k, p in nifti_base.files.items()}
    before = _digest([study])
    status, _, err = _run(_plan(files) + ["--out", str(study)], capsys)
    assert _digest([study]) == before
    assert_refused(status, err, None, ("--out",), ())


def test_out_empty_string(nifti_base, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, _, err = _run(_plan(nifti_base.files) + ["--out", ""], capsys)
    assert_refused(status, err, None, ("--out",), ())
    assert not list(tmp_path.iterdir())


def test_rerun_leaves_no_stale_outputs(nifti_base, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(_plan(nifti_base.files, "--resect", "right-hepatectomy") + ["--out", str(out)], capsys)[0] == 0
    assert (out / "remnant.nii.gz").exists()
    assert _run(_plan(nifti_base.files) + ["--out", str(out)], capsys)[0] == 0
    assert not (out / "remnant.nii.gz").exists()


DCIODVFY = shutil.which("dciodvfy")


@pytest.mark.skipif(DCIODVFY is None, reason="needs dciodvfy (apt-get install dicom3tools; .ci/run installs it)")
@pytest.mark.parametrize("variant", ["clean_series_with_empty_uids", "no_frame_of_reference"])
def test_dicom_seg_passes_dciodvfy(variant, dicom_base, tmp_path, capsys):
    """The DICOM-SEG and the SR of the real series (its Study/SeriesInstanceUIDs are empty) and of a
    copy without FrameOfReferenceUID: written, dciodvfy reports no Error, they read back with
    highdicom, and the SR references the DICOM-SEG's (derived) UIDs."""
    import highdicom as hd

    out = dicom_base.files["seg"].parent
    if variant == "no_frame_of_reference":
        series = _dicom_series(tmp_path, dicom_base, _all(FrameOfReferenceUID=None))
        status, _, err = _run(_dicom_plan(series, dicom_base.files["liver"]) + ["--out", str(tmp_path / "out")],
                              capsys)
        assert status == 0, err
        out = tmp_path / "out"
    for name in ("labels_seg.dcm", "measurements_sr.dcm"):
        proc = subprocess.run([DCIODVFY, str(out / name)], capture_output=True, text=True, timeout=120)
        errors = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (name, errors)
    seg, sr = hd.seg.segread(out / "labels_seg.dcm"), hd.sr.srread(out / "measurements_sr.dcm")
    assert sr.StudyInstanceUID == seg.StudyInstanceUID != ""
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.SeriesInstanceUID == seg.SeriesInstanceUID
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == seg.SOPInstanceUID
