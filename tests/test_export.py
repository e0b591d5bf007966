"""Label exports: colour table, Slicer .seg.nrrd, DICOM-SEG referencing its source series.

Names, colours and codes themselves are tested in test_labels.py."""

import hashlib
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.errors import GeometryMismatchError, LabelError
from output_phantom import write_ct_series
from hepatoplan.pipeline.dicom_seg import write_dicom_seg
from hepatoplan.pipeline.io import LPS_TO_RAS
from hepatoplan.pipeline.seg_nrrd import write_colour_table, write_seg_nrrd

TS_DICOM_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "totalsegmentator" \
    / "ct_contrast_dicom"
DCIODVFY = shutil.which("dciodvfy")


def _canonical(array, affine):
    """Reorient (array, affine) to canonical RAS+ like the pipeline does (independent path)."""
    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(array, ornt)
    new_affine = affine @ nib.orientations.inv_ornt_aff(ornt, array.shape)
    return np.ascontiguousarray(out), new_affine


def _plan_labels(shape):
    """A small plan-like label map: kept and resected segments, a tumour, liver without label."""
    labels = np.zeros(shape, np.uint8)
    x, y, z = np.indices(shape)
    inside = ((x - shape[0] / 2) / (shape[0] / 2.6)) ** 2 + ((y - shape[1] / 2) / (shape[1] / 2.6)) ** 2 \
        + ((z - shape[2] / 2) / (shape[2] / 2.4)) ** 2 < 1
    labels[inside & (x < shape[0] // 2)] = 5
    labels[inside & (x >= shape[0] // 2)] = 12
    labels[inside & (y < shape[1] // 3)] = 9
    labels[(x - shape[0] // 2 - 3) ** 2 + (y - shape[1] // 2) ** 2 < 9] = 21  # a tumour column
    return labels


def test_colour_table(tmp_path):
    labels = _plan_labels((20, 22, 12))
    path = write_colour_table(labels, path=tmp_path / "labels.ctbl")
    rows = [l.split() for l in path.read_text().splitlines() if not l.startswith("#")]
    values = [int(r[0]) for r in rows]
    assert values == [0, 5, 9, 12, 21]
    assert rows[-1][1] == "tumour_1" and len(rows[-1]) == 6


def _seg_affine():
    # anisotropic, flipped (x and z) and permuted-free; origin off zero
    return np.array([[-0.8, 0, 0, 40.0], [0, 0.7, 0, -60.0], [0, 0, -2.5, 100.0], [0, 0, 0, 1]])


def _box(mask):
    idx = np.argwhere(mask)
    return tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(axis=0), idx.max(axis=0)))


@pytest.mark.parametrize("crop", [True, False])
def test_seg_nrrd_pynrrd_and_simpleitk(tmp_path, crop):
    import nrrd
    import SimpleITK as sitk

    labels = np.zeros((26, 28, 16), np.uint8)
    labels[3:23, 3:25, 2:14] = _plan_labels((20, 22, 12))
    affine = _seg_affine()
    path = write_seg_nrrd(labels, affine_ras=affine, path=tmp_path / "labels.seg.nrrd", crop=crop)
    data, header = nrrd.read(str(path))
    box = _box(labels > 0) if crop else tuple(slice(0, n) for n in labels.shape)
    np.testing.assert_array_equal(data, labels[box])
    offset = [sl.start for sl in box]
    assert header["Segmentation_ReferenceImageExtentOffset"] == " ".join(map(str, offset))
    assert header["space"] == "left-posterior-superior" and header["encoding"] == "gzip"
    names = {header[f"Segment{i}_Name"]: int(header[f"Segment{i}_LabelValue"]) for i in range(4)}
    assert names == {"segment 5 kept": 5, "liver kept": 9, "segment 2 resected": 12, "tumour 1": 21}
    assert "Segment4_Name" not in header
    assert "SCT^277959000^Couinaud hepatic segment V" in header["Segment0_Tags"]  # segment 5 kept
    assert "SCT^10200004^Liver" in header["Segment1_Tags"]  # liver kept
    assert "SCT^49755003^Morphologically Abnormal Structure~SCT^108369006^Neoplasm" \
        in header["Segment3_Tags"]
    colours = {header[f"Segment{i}_Color"] for i in range(4)}
    assert len(colours) == 4
    # extents are in the stored image's voxels
    tumour_box = _box(data == 21)
    assert header["Segment3_Extent"] == " ".join(f"{sl.start} {sl.stop - 1}" for sl in tumour_box)

    img = sitk.ReadImage(str(path))
    assert img.GetMetaData("Segment3_Name") == "tumour 1"
    arr = sitk.GetArrayFromImage(img).transpose(2, 1, 0)
    np.testing.assert_array_equal(arr, labels[box])
    # a stored voxel lies where the RAS affine puts the same voxel of the input (SimpleITK: LPS)
    ijk = (3, 7, 5)
    lps = np.array(img.TransformIndexToPhysicalPoint(ijk))
    ras = (affine @ [*(np.add(ijk, offset)), 1])[:3]
    np.testing.assert_allclose(lps, (LPS_TO_RAS @ ras), atol=1e-6)  # its own inverse


def test_seg_nrrd_with_overlapping_extra_layer(tmp_path):
    import nrrd

    labels = _plan_labels((20, 22, 12))
    vessel = np.zeros(labels.shape, bool)
    vessel[10, :, 6] = True  # crosses several labels
    path = write_seg_nrrd(labels, affine_ras=_seg_affine(), path=tmp_path / "x.seg.nrrd",
                          extra_structures={"portal vein": vessel, "hepatic veins": np.zeros_like(vessel)})
    data, header = nrrd.read(str(path))
    box = _box((labels > 0) | vessel)
    assert data.shape == (2,) + tuple(sl.stop - sl.start for sl in box)
    assert header["kinds"] == ["list", "domain", "domain", "domain"]
    np.testing.assert_array_equal(data[0], labels[box])
    np.testing.assert_array_equal(data[1], vessel[box])
    assert header["Segment4_Name"] == "portal vein" and header["Segment4_Layer"] == "1"
    assert "Segment5_Name" not in header  # the empty structure is skipped


def test_seg_nrrd_refused_when_pynrrd_writes_its_header_otherwise(tmp_path, monkeypatch):
    """write_seg_nrrd stops pynrrd at its header's blank line; a pynrrd that writes the header in one
    piece (or none) gives an error and no file, not a file with raw data before the gzip stream."""
    import nrrd

    from hepatoplan.errors import NotComputableError

    def one_piece(file, data, header, **_):
        file.write(b"NRRD0004\nencoding: raw\n\n" + np.asarray(data).tobytes())

    monkeypatch.setattr(nrrd, "write", one_piece)
    with pytest.raises(NotComputableError, match="unexpected NRRD header"):
        write_seg_nrrd(_plan_labels((20, 22, 12)), affine_ras=_seg_affine(), path=tmp_path / "x.seg.nrrd")
    assert not any(tmp_path.iterdir())


def test_dicom_seg_reads_back_and_references_series(tmp_path):
    import highdicom as hd

    src = tmp_path / "ct"
    src.mkdir()
    files, affine_native, shape_native, series_uid = write_ct_series(src)
    native = _plan_labels(shape_native)
    vessel = np.zeros(shape_native, bool)
    vessel[5, 3:15, 1:5] = True
    labels, affine = _canonical(native, affine_native)
    vessel_c, _ = _canonical(vessel, affine_native)
    assert not np.allclose(affine, affine_native)  # the test exercises a reorientation

    path = write_dicom_seg(labels, affine_ras=affine, source_dicom_files=files,
                           path=tmp_path / "labels_seg.dcm", extra_structures={"portal vein": vessel_c})
    seg = hd.seg.segread(path)
    assert seg.SeriesInstanceUID != series_uid
    refs = seg.ReferencedSeriesSequence
    assert [r.SeriesInstanceUID for r in refs] == [series_uid]
    labels_by_number = {d.SegmentNumber: d.SegmentLabel for d in seg.SegmentSequence}
    assert list(labels_by_number.values()) == ["segment 5 kept", "liver kept", "segment 2 resected",
                                               "tumour 1", "portal vein"]
    types = [d.SegmentedPropertyTypeCodeSequence[0].CodeValue for d in seg.SegmentSequence]
    # Couinaud V, Liver, Couinaud II (CID 7170), Neoplasm, Portal vein
    assert types == ["277959000", "10200004", "277956007", "108369006", "32764006"]
    categories = [d.SegmentedPropertyCategoryCodeSequence[0].CodeValue for d in seg.SegmentSequence]
    assert categories == ["91723000", "91723000", "91723000", "49755003", "91723000"]

    # pixel content: frames cropped to the labelled window (rows r0.., columns c0.. of the source
    # grid, found from the first frame's plane position); per source slice, the frame equals the
    # native labels in that window, and nothing is labelled outside it
    import pydicom
    by_uid = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in files}
    uids = list(by_uid)
    first = seg.PerFrameFunctionalGroupsSequence[0]
    src = pydicom.dcmread(by_uid[first.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID],
                          stop_before_pixels=True)
    iop, (dr, dc) = np.asarray(src.ImageOrientationPatient, float), (float(v) for v in src.PixelSpacing)
    shift = np.asarray(first.PlanePositionSequence[0].ImagePositionPatient, float) - np.asarray(src.ImagePositionPatient, float)
    r0, c0 = int(round(shift @ iop[3:] / dr)), int(round(shift @ iop[:3] / dc))
    rows, cols = int(seg.Rows), int(seg.Columns)
    assert (rows, cols) < (int(src.Rows), int(src.Columns)) and (r0, c0) != (0, 0)  # cropped
    arr = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=uids, segment_numbers=[1, 2, 3, 4, 5],
        ignore_spatial_locations=True, assert_missing_frames_are_empty=True)
    window = (slice(r0, r0 + rows), slice(c0, c0 + cols))
    for i, uid in enumerate(uids):
        k = int(pydicom.dcmread(by_uid[uid], stop_before_pixels=True).InstanceNumber) - 1
        expected = native[:, :, k].T  # (rows, cols)
        assert np.count_nonzero(expected[window]) == np.count_nonzero(expected)
        for s, v in enumerate([5, 9, 12, 21]):
            np.testing.assert_array_equal(arr[i, :, :, s], expected[window] == v)
        np.testing.assert_array_equal(arr[i, :, :, 4], vessel[:, :, k].T[window])


def test_dicom_seg_rejects_other_grid(tmp_path):
    src = tmp_path / "ct"
    src.mkdir()
    files, affine_native, shape_native, _ = write_ct_series(src)
    shifted = affine_native.copy()
    shifted[:3, 3] += [0.3, 0, 0]
    with pytest.raises(GeometryMismatchError, match="grid"):
        write_dicom_seg(_plan_labels(shape_native), affine_ras=shifted, source_dicom_files=files,
                        path=tmp_path / "x.dcm")
    assert not (tmp_path / "x.dcm").exists()


def _dciodvfy_errors(path) -> list[str]:
    proc = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    assert "Segmentation" in proc.stdout + proc.stderr or "SR" in proc.stdout + proc.stderr, proc.stderr
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def _sha256(files) -> dict:
    return {str(f): hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files}


def test_dicom_seg_on_real_series(tmp_path):
    """The TotalSegmentator DICOM series (read-only): the anonymiser blanked its Study and Series
    UIDs, so the DICOM-SEG carries UIDs derived from the series (the same on a rerun, one warning
    each), references the source images by their SOP Instance UIDs and is valid DICOM."""
    import highdicom as hd
    import pydicom

    if not TS_DICOM_DIR.is_dir():
        pytest.skip(f"real DICOM series not found at {TS_DICOM_DIR} (see ../shared/data/README.md)")
    files = sorted(TS_DICOM_DIR.iterdir())
    before = _sha256(files)
    dss = sorted((pydicom.dcmread(f, stop_before_pixels=True) for f in files),  # file meta kept
                 key=lambda d: float(d.ImagePositionPatient[2]))
    assert str(dss[0].SeriesInstanceUID) == "" == str(dss[0].StudyInstanceUID)  # the data's quirk
    rows, cols = int(dss[0].Rows), int(dss[0].Columns)
    dr, dc = (float(v) for v in dss[0].PixelSpacing)
    iop = np.asarray(dss[0].ImageOrientationPatient, float)
    p0, p1 = (np.asarray(d.ImagePositionPatient, float) for d in dss[:2])
    affine_lps = np.eye(4)
    affine_lps[:3, 0], affine_lps[:3, 1], affine_lps[:3, 2], affine_lps[:3, 3] = \
        iop[:3] * dc, iop[3:] * dr, p1 - p0, p0
    native = np.zeros((cols, rows, len(dss)), np.uint8)
    native[200:300, 150:260, 3:15] = 9
    labels, affine = _canonical(native, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps)
    uids = []
    for run in ("a", "b"):
        warnings = []
        path = write_dicom_seg(labels, affine_ras=affine, source_dicom_files=files,
                               path=tmp_path / f"{run}.dcm", warnings=warnings)
        assert len(warnings) == 2 and "StudyInstanceUID" in warnings[1] and "SeriesInstanceUID" in warnings[0]
        seg = hd.seg.segread(path)
        source_series = seg.ReferencedSeriesSequence[0]
        uids.append((seg.StudyInstanceUID, source_series.SeriesInstanceUID, seg.FrameOfReferenceUID))
    assert uids[0] == uids[1] and all(uids[0])  # derived, and the same on a rerun
    assert seg.FrameOfReferenceUID == dss[0].FrameOfReferenceUID  # present: kept
    refs = {r.ReferencedSOPInstanceUID for r in source_series.ReferencedInstanceSequence}
    assert refs == {d.file_meta.MediaStorageSOPInstanceUID for d in dss[3:15]}
    assert _sha256(files) == before
    if DCIODVFY:
        assert _dciodvfy_errors(path) == []


@pytest.mark.skipif(DCIODVFY is None, reason="needs dciodvfy (apt-get install dicom3tools; .ci/run installs it)")
@pytest.mark.parametrize("blank", [(), ("FrameOfReferenceUID",),
                                   ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")],
                         ids=["clean", "no_frame_of_reference", "empty_uids"])
def test_dicom_seg_passes_dciodvfy(blank, tmp_path):
    """A clean series, one without FrameOfReferenceUID, one with every UID empty: the DICOM-SEG is
    written, reads back with highdicom, dciodvfy reports no Error; derived UIDs are warned and
    the source files are untouched."""
    import highdicom as hd

    (tmp_path / "ct").mkdir()
    files, affine_native, shape_native, series_uid = write_ct_series(tmp_path / "ct", blank_uids=blank)
    before = _sha256(files)
    labels, affine = _canonical(_plan_labels(shape_native), affine_native)
    warnings = []
    path = write_dicom_seg(labels, affine_ras=affine, source_dicom_files=files, path=tmp_path / "x.dcm",
                           warnings=warnings)
    assert [w.split(" (")[0].rsplit(" ", 1)[-1] for w in warnings] == \
        [kw for kw in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID") if kw in blank]
    seg = hd.seg.segread(path)
    assert seg.FrameOfReferenceUID and seg.StudyInstanceUID
    assert (seg.ReferencedSeriesSequence[0].SeriesInstanceUID == series_uid) == ("SeriesInstanceUID" not in blank)
    assert _dciodvfy_errors(path) == []
    assert _sha256(files) == before


def test_dicom_seg_private_code_is_declared(tmp_path):
    """A structure without a standard code carries hepatoplan's private code (scheme 99...),
    declared in the Coding Scheme Identification Sequence; tumours differ in colour."""
    import highdicom as hd

    src = tmp_path / "ct"
    src.mkdir()
    files, affine_native, shape_native, _ = write_ct_series(src)
    native = _plan_labels(shape_native)
    native[2:4, 2:4, 1] = 22
    extra = np.zeros(shape_native, bool)
    extra[12:14, 3:6, 2:4] = True
    labels, affine = _canonical(native, affine_native)
    extra_c, _ = _canonical(extra, affine_native)
    seg = hd.seg.segread(write_dicom_seg(labels, affine_ras=affine, source_dicom_files=files,
                                         path=tmp_path / "x.dcm", extra_structures={"gall bladder": extra_c}))
    last = seg.SegmentSequence[-1]
    assert last.SegmentLabel == "gall bladder"
    code = last.SegmentedPropertyTypeCodeSequence[0]
    assert (code.CodingSchemeDesignator, code.CodeValue) == ("99HEPATOPLAN", "GALL_BLADDER")
    assert [s.CodingSchemeDesignator for s in seg.CodingSchemeIdentificationSequence] == ["99HEPATOPLAN"]
    lab = {d.SegmentLabel: tuple(d.RecommendedDisplayCIELabValue) for d in seg.SegmentSequence}
    assert lab["tumour 1"] != lab["tumour 2"]
