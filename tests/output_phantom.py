"""A small liver-like phantom for the output tests (meshes, previews, HTML report).

Canonical RAS+ arrays (axis 0 -> Right, 1 -> Anterior, 2 -> Superior) on an anisotropic grid.
Not anatomy: an ellipsoid "liver" cut into eight "segments" by planes, two spherical tumours,
tube "vessels". Kept tiny so meshing and rendering take well under a second each.
"""

import numpy as np

SPACING_MM = (1.6, 1.5, 3.0)
SHAPE = (100, 90, 44)
AFFINE_RAS = np.array([
    [SPACING_MM[0], 0, 0, -80.0],
    [0, SPACING_MM[1], 0, -70.0],
    [0, 0, SPACING_MM[2], -60.0],
    [0, 0, 0, 1.0],
])


def _world():
    idx = np.indices(SHAPE, dtype=np.float32)
    return [idx[a] * SPACING_MM[a] + AFFINE_RAS[a, 3] for a in range(3)]


def _tube(world, p0, p1, radius_mm):
    x, y, z = world
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    t = ((x - p0[0]) * d[0] + (y - p0[1]) * d[1] + (z - p0[2]) * d[2]) / (d @ d)
    t = np.clip(t, 0, 1)
    return (x - p0[0] - t * d[0]) ** 2 + (y - p0[1] - t * d[1]) ** 2 + (z - p0[2] - t * d[2]) ** 2 \
        < radius_mm ** 2


def phantom_structures():
    """Return (structures dict of bool arrays, labels uint8 in the plan's scheme, affine_ras)."""
    x, y, z = world = _world()
    liver = ((x - 10) / 70) ** 2 + (y / 55) ** 2 + (z / 50) ** 2 < 1
    liver |= ((x + 40) / 40) ** 2 + ((y - 10) / 35) ** 2 + ((z - 10) / 25) ** 2 < 1
    seg = np.zeros(SHAPE, np.uint8)
    right = x > 0
    upper = z > 0
    front = y > 0
    seg[liver & right & front & ~upper] = 5
    seg[liver & right & ~front & ~upper] = 6
    seg[liver & right & ~front & upper] = 7
    seg[liver & right & front & upper] = 8
    seg[liver & ~right & (x > -25)] = 4
    seg[liver & (x <= -25) & upper] = 2
    seg[liver & (x <= -25) & ~upper] = 3
    seg[liver & ((x - 5) ** 2 + (y + 30) ** 2 < 15 ** 2) & (np.abs(z) < 15)] = 1
    tumour1 = (x - 35) ** 2 + (y + 20) ** 2 + (z + 15) ** 2 < 12 ** 2
    tumour2 = (x + 50) ** 2 + (y - 10) ** 2 + (z - 5) ** 2 < 8 ** 2
    portal = _tube(world, (0, -10, -40), (0, -5, -5), 5) | _tube(world, (0, -5, -5), (40, 10, 5), 3.5) \
        | _tube(world, (0, -5, -5), (-50, 5, 0), 3.5)
    hepatic = _tube(world, (10, -30, 55), (30, 20, 10), 3.5) | _tube(world, (10, -30, 55), (-40, 10, 15), 3.0)
    resected_segments = (5, 6, 7, 8)
    labels = np.zeros(SHAPE, np.uint8)
    for k in range(1, 9):
        labels[seg == k] = k + (10 if k in resected_segments else 0)
    labels[tumour1 & liver] = 21
    labels[tumour2 & liver] = 22
    resected = np.isin(seg, resected_segments) | (tumour1 & liver)
    structures = {f"segment {k}": seg == k for k in range(1, 9)}
    structures |= {
        "remnant": liver & ~resected & ~tumour2,
        "resected": resected & ~tumour1,
        "tumour 1": tumour1 & liver,
        "tumour 2": tumour2 & liver,
        "portal vein": portal,
        "hepatic veins": hepatic,
    }
    return structures, labels, AFFINE_RAS.copy()


def write_ct_series(folder, *, shape_rcs=(24, 20, 6), spacing_rc=(0.7, 0.8), dz=2.5, blank_uids=()):
    """Tiny synthetic axial CT series written with pydicom; slices written in shuffled order.

    IOP is the usual (1,0,0,0,1,0): columns go to patient Left, rows to Posterior; slices go
    from superior to inferior (negative z steps), so the canonical grid is flipped.
    ``blank_uids``: attribute names to write empty (as anonymisers sometimes do).
    Returns (files, native RAS affine of a (col, row, slice) array, that shape, series UID).
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rows, cols, n = shape_rcs
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in np.random.default_rng(0).permutation(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Liver", "P1", "", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "", "1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "test"
        ds.SeriesNumber, ds.InstanceNumber = 1, int(k) + 1
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-10.0, 20.0, 50.0 - dz * float(k)]
        ds.PixelSpacing = list(spacing_rc)
        ds.SliceThickness = dz
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = np.zeros((rows, cols), np.int16).tobytes()
        for kw in blank_uids:
            setattr(ds, kw, "")
        f = folder / f"slice{k:03d}.dcm"
        ds.save_as(f, enforce_file_format=True)
        files.append(f)
    # native SimpleITK-like grid: (col, row, slice) in LPS, then RAS
    affine_lps = np.eye(4)
    affine_lps[:3, 0] = [spacing_rc[1], 0, 0]
    affine_lps[:3, 1] = [0, spacing_rc[0], 0]
    affine_lps[:3, 2] = [0, 0, -dz]
    affine_lps[:3, 3] = [-10.0, 20.0, 50.0]
    return files, np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine_lps, (cols, rows, n), series
