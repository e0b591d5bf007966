"""Write a :class:`~hepatoplan.data_samples.phantom.PhantomStudy` to a folder of NIfTI files plus ``truth.json``.

The arrays of a study are in canonical RAS+ memory order. ``write_study`` can store them with any
other axis order and flips (``axcodes="LPS"``, ``"PIR"``, ...): the arrays are reoriented with
:mod:`nibabel.orientations` and the affine is changed to match, so the **same world anatomy** is
stored, only the voxel order differs. Readers that honour the affine (and reorient to canonical)
recover the identical RAS arrays; this is what orientation tests use.

Files: ``ct.nii.gz`` (int16 HU), ``liver.nii.gz``, ``tumours.nii.gz`` (instance ids),
``portal_vein.nii.gz``, ``hepatic_veins.nii.gz`` (includes the IVC), ``segments.nii.gz``
(Couinaud 1..8), all uint8; with ``extras=True`` also ``portal_branches.nii.gz``,
``hepatic_branches.nii.gz``, ``portal_territories.nii.gz`` and ``hepatic_territories.nii.gz``. ``truth.json`` holds the study's
``truth`` plus a ``files`` section (names, axcodes, the file affine and shape). World coordinates in
``truth.json`` (centres, landmarks) do not depend on ``axcodes``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from hepatoplan.errors import InputError, InputFileError

from .phantom import PhantomStudy

#: File stems always written (``<stem>.nii.gz``).
CORE_FILES = ("ct", "liver", "tumours", "portal_vein", "hepatic_veins", "segments")
#: File stems written with ``extras=True``.
EXTRA_FILES = ("portal_branches", "hepatic_branches", "portal_territories", "hepatic_territories")

#: Folder of the shipped demo study (package data).
DEMO_DIR = Path(__file__).resolve().parent / "demo"
#: Parameters of the shipped demo; regenerate with ``python -m data_samples --demo``.
DEMO_PARAMS = {"spacing_mm": (2.5, 2.5, 3.0), "scale": 1.0, "seed": 0, "noise_hu": 12.0}
#: Axis codes the demo is stored in (as a DICOM-converted scan would be: LPS, anisotropic).
DEMO_AXCODES = "LPS"


def demo_files() -> dict[str, Path]:
    """Paths of the shipped demo study: ``ct``, ``liver``, ``tumours``, ``portal_vein``,
    ``hepatic_veins``, ``segments`` (``.nii.gz``) and ``truth`` (``truth.json``).

    Raises
    ------
    hepatoplan.errors.InputFileError
        If a demo file is missing (regenerate with ``python -m data_samples --demo``).
    """
    files = {stem: DEMO_DIR / f"{stem}.nii.gz" for stem in CORE_FILES}
    files["truth"] = DEMO_DIR / "truth.json"
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise InputFileError(f"demo study incomplete, missing {missing}; regenerate with `python -m data_samples --demo`")
    return files


def reorient_from_ras(array: np.ndarray, affine_ras: np.ndarray, axcodes: str) -> tuple[np.ndarray, np.ndarray]:
    """Reorder a canonical-RAS array and its affine to the axis codes ``axcodes``.

    Parameters
    ----------
    array : ndarray, shape (nx, ny, nz)
        Array in canonical RAS+ order (as given by ``nibabel.as_closest_canonical``).
    affine_ras : ndarray, shape (4, 4)
        Its voxel -> world RAS mm affine.
    axcodes : str
        Three letters, one of R/L, A/P, S/I each, e.g. ``"LPS"`` or ``"PIR"``: the direction each
        array axis increases toward in the result.

    Returns
    -------
    array : ndarray
        The reoriented array (a contiguous copy).
    affine : ndarray, shape (4, 4)
        Affine of the result; every voxel keeps its world position.

    Raises
    ------
    hepatoplan.errors.InputError
        If ``axcodes`` is not a valid set of three axis codes.
    """
    codes = tuple(str(axcodes).upper())
    try:
        target = nio.axcodes2ornt(codes)
    except ValueError as exc:
        raise InputError(f"axcodes must be 3 letters from R/L, A/P, S/I (e.g. 'LPS'), found {axcodes!r}") from exc
    if len(codes) != 3 or np.isnan(target).any() or sorted(target[:, 0]) != [0, 1, 2]:
        raise InputError(f"axcodes must be 3 letters from R/L, A/P, S/I (e.g. 'LPS'), found {axcodes!r}")
    source = nio.io_orientation(affine_ras)
    transform = nio.ornt_transform(source, target)
    out = np.ascontiguousarray(nio.apply_orientation(array, transform))
    affine = affine_ras @ nio.inv_ornt_aff(transform, array.shape)
    return out, affine


def _save(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    if array.dtype == np.int16:
        img.header.set_slope_inter(1.0, 0.0)
    nib.save(img, str(path))


def write_study(study: PhantomStudy, out_dir, *, axcodes: str = "RAS", extras: bool = False) -> dict[str, Path]:
    """Write a phantom study as NIfTI files and ``truth.json``.

    Parameters
    ----------
    study : PhantomStudy
        From :func:`hepatoplan.data_samples.phantom.make_phantom`.
    out_dir : str or Path
        Folder to write into (created if missing; existing files of the same names are replaced).
    axcodes : str
        Axis codes of the stored arrays (``"RAS"``, ``"LPS"``, ``"PIR"``, ...). The world anatomy
        is identical for every choice.
    extras : bool
        Also write the branch label maps and portal territories.

    Returns
    -------
    dict of str to Path
        File stem -> written path (including ``"truth"``).

    Raises
    ------
    hepatoplan.errors.InputError
        On invalid ``axcodes``.
    """
    out = Path(out_dir)
    arrays = study.arrays()
    stems = CORE_FILES + (EXTRA_FILES if extras else ())
    # validate axcodes before creating anything
    _, affine = reorient_from_ras(np.zeros((1, 1, 1), np.uint8), study.affine_ras, axcodes)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    file_shape = None
    for stem in stems:
        arr, affine = reorient_from_ras(arrays[stem], study.affine_ras, axcodes)
        file_shape = arr.shape
        path = out / f"{stem}.nii.gz"
        _save(arr, affine, path)
        written[stem] = path
    truth = dict(study.truth)
    truth["files"] = {
        "axcodes": str(axcodes).upper(),
        "affine": [[float(v) for v in row] for row in affine],
        "shape": [int(v) for v in file_shape],
        "names": {stem: f"{stem}.nii.gz" for stem in stems},
        "note": "arrays are stored in these axcodes; world coordinates (mm, RAS) in this file do not depend on them",
    }
    tpath = out / "truth.json"
    tpath.write_text(json.dumps(truth, indent=1, sort_keys=False) + "\n")
    written["truth"] = tpath
    return written
