"""NIfTI intake for :mod:`hepatoplan.pipeline.io`: the header checks ITK's reader skips, and one
full decode of the voxels.

ITK's NIfTI reader (what SimpleITK uses) is lenient where a volumetry tool must not be:

- it reads voxel sizes from ``pixdim`` only: 0, NaN or infinity become 1 mm, a negative size flips
  the axis, and a ``pixdim`` that disagrees with the sform is used anyway (a liver of 1594 mL
  measured as 85 mL);
- it fills a truncated file with zeros and reads only the header when asked for the geometry, so
  a ``.nii.gz`` cut short passes when the CT serves as the reference grid;
- with both a qform and an sform it picks one by their codes; other tools (nibabel, FSL) prefer the
  sform, so when the two disagree the label maps land elsewhere in those tools.

So hepatoplan parses the header itself (nibabel's header classes, ``check=False`` so nothing is
"fixed" silently), refuses what is inconsistent (:func:`read_header`), takes the grid from ITK's
header reading and checks it against the header (:func:`check_itk_grid`), and decodes the voxel
data itself, exactly once (:func:`read_voxels`): the whole gzip stream is inflated (its CRC and
length checked) by ISA-L (``isal.isal_zlib``, zlib's interface: on IRCADb 01's CT and four masks
0.29 s of CPU against zlib's 0.69-0.83 s), its length must be exactly ``vox_offset + voxels × bytes
per voxel``, and ``scl_slope``/``scl_inter`` are applied as the NIfTI standard says (a slope of 0
or NaN means no scaling). The array is handed over in ITK's ``[k, j, i]`` order as a view,
without a copy.

The rules, with the fix each message gives, are listed in the README ("What hepatoplan refuses").
"""

from __future__ import annotations

import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
from isal import isal_zlib

from hepatoplan.errors import InputError, InputFileError

#: NIfTI datatype codes hepatoplan reads (numpy dtypes as nibabel maps them).
SUPPORTED_DATATYPES = {2: "uint8", 4: "int16", 8: "int32", 16: "float32", 64: "float64", 256: "int8",
                       512: "uint16", 768: "uint32", 1024: "int64", 1280: "uint64"}
#: Datatypes refused, with what they hold.
REFUSED_DATATYPES = {1: "1-bit (binary)", 32: "complex", 1792: "complex", 2048: "complex", 128: "RGB colour",
                     2304: "RGBA colour", 1536: "128-bit float"}
#: sform and qform "agree" when they place every corner of the volume within this distance (mm):
#: far below a voxel, far above the float32 rounding of the two forms (~1e-4 mm).
QFORM_SFORM_TOLERANCE_MM = 0.1
#: ITK's grid and the header's geometry must agree within this (mm, at the volume's corners).
HEADER_TOLERANCE_MM = 0.1
#: Spatial units ITK converts to mm (``xyzt_units & 7``: 1 metre, 3 micrometre; 0 and 2 mean mm).
_UNIT_TO_MM = {0: 1.0, 1: 1000.0, 2: 1.0, 3: 1e-3}
_CHUNK = 1 << 22
#: Deflate inflates at most about 1032-fold: a .nii.gz announcing more is cut short.
_MAX_DEFLATE_RATIO = 1032


_NIBABEL_IMPORT = threading.Lock()


def _nibabel():
    """nibabel, imported on first use (only when a NIfTI file is read) and, when pydicom is not
    loaded yet, without it: ``nibabel.nifti1`` imports pydicom (and pydicom requests, urllib3, ...)
    only to decode DICOM header extensions, which hepatoplan never reads; they then stay raw bytes.
    That import was ~0.3 s of CPU in every plan of a NIfTI study."""
    with _NIBABEL_IMPORT:
        if "nibabel" not in sys.modules and "pydicom" not in sys.modules:
            sys.modules["pydicom"] = None  # ``import pydicom`` raises ImportError meanwhile
            try:
                import nibabel
            finally:
                del sys.modules["pydicom"]
    import nibabel

    return nibabel


def read_header(path: Path, name: str):
    """Parse and check a NIfTI-1/2 header; return it (a nibabel header, nothing altered).

    Raises
    ------
    InputFileError
        Not a NIfTI file, or a header cut short.
    InputError
        Unsupported datatype (complex, RGB, 1-bit), more than 3 dimensions of data, voxel sizes
        missing, not finite or negative, unknown spatial units, unreadable qform/sform, or a
        qform and an sform that disagree.
    """
    nibabel = _nibabel()
    if not path.name.lower().endswith(".gz") and _is_gz(path):
        raise InputFileError(f"{name} {path}: is gzip-compressed but named .nii; expected .nii.gz for a compressed "
                             "NIfTI file. Rename it.")
    try:
        with _open(path) as fh:
            block = fh.read(540)
            klass = next((k for k in (nibabel.Nifti1Header, nibabel.Nifti2Header)
                          if len(block) >= k.template_dtype.itemsize and k.may_contain_header(block)), None)
            if klass is None:
                raise InputFileError(
                    f"{name} {path}: is not a NIfTI file (no NIfTI header at its start); expected a .nii or "
                    ".nii.gz image. Check the file, or give it the ending of its real format."
                )
            fh.seek(0)
            header = klass.from_fileobj(fh, check=False)
    except InputFileError:
        raise
    except Exception as exc:  # gzip, zlib and nibabel raise several types on a damaged or cut header
        raise InputFileError(
            f"{name} {path}: its NIfTI header cannot be read ({exc}); the file is truncated or damaged. "
            "Copy or export it again."
        ) from None
    where = f"{name} {path}"
    code = int(header["datatype"])
    if code in REFUSED_DATATYPES:
        raise InputError(
            f"{where}: holds {REFUSED_DATATYPES[code]} voxels (NIfTI datatype {code}); expected one real "
            "value per voxel. Save the magnitude (or grey-level) image as integers or floats."
        )
    if code not in SUPPORTED_DATATYPES:
        raise InputError(f"{where}: unknown NIfTI datatype {code}; the header is damaged. Export the image again.")
    dims = [int(d) for d in header["dim"]]
    if not 1 <= dims[0] <= 7 or min(dims[1:dims[0] + 1]) < 1:
        raise InputError(f"{where}: header dimensions {dims} are invalid; the header is damaged. Export it again.")
    if dims[0] > 3 and math.prod(dims[4:dims[0] + 1]) > 1:
        raise InputError(
            f"{where}: is {dims[0]}D with size {tuple(dims[1:dims[0] + 1])}; expected a 3D volume. Split 4D "
            "series into 3D volumes."
        )
    zooms = [float(z) for z in header["pixdim"][1:4]]
    if not all(math.isfinite(z) and z > 0 for z in zooms):
        raise InputError(
            f"{where}: voxel size pixdim[1:4] = {_fmt(zooms)} mm; expected three positive finite sizes "
            "(ITK would read 1 mm or flip the axis, a wrong volume). Write the scanner's voxel size into "
            "the header (e.g. nibabel: img.header.set_zooms(...)) or convert the scan again."
        )
    offset = float(header["vox_offset"])
    if not (math.isfinite(offset) and 0 <= offset < 2**40):
        raise InputError(f"{where}: vox_offset {offset:g} is not a byte offset; the header is damaged. Export it again.")
    slope, inter = float(header["scl_slope"]), float(header["scl_inter"])
    if math.isinf(slope) or (slope and math.isfinite(slope) and not math.isfinite(inter)):
        raise InputError(
            f"{where}: intensity scaling scl_slope {slope:g}, scl_inter {inter:g} is not finite; expected finite "
            "numbers (or a slope of 0 or NaN: no scaling). Fix the header."
        )
    units = int(header["xyzt_units"]) & 7
    if units not in _UNIT_TO_MM:
        raise InputError(f"{where}: unknown spatial unit code {units} in xyzt_units; expected mm. Fix the header.")
    qform, sform = _form(header, "qform", where), _form(header, "sform", where)
    if qform is None and sform is None:
        raise InputError(
            f"{where}: has neither a qform nor an sform (both codes 0), so its position and orientation are "
            "unknown (ITK, nibabel and the NIfTI standard place such a file differently: left and right may be "
            "swapped); expected the scanner's geometry. Convert the scan again (e.g. dcm2niix) or set its sform."
        )
    if qform is not None and sform is not None:
        gap_mm = _corner_distance_mm(qform, sform, dims[1:4]) * _UNIT_TO_MM[units]
        if gap_mm > QFORM_SFORM_TOLERANCE_MM:
            raise InputError(
                f"{where}: its qform and sform disagree by up to {gap_mm:.3g} mm; expected one geometry "
                "(tools differ in which they use, so the label maps would not line up). Keep the right "
                "one in both (e.g. nibabel: img.set_qform(img.get_sform()), or fslorient -copysform2qform)."
            )
    return header


def header_affine_mm(header) -> tuple[np.ndarray, str]:
    """The RAS affine the header declares, in mm, and which form gave it ("sform" or "qform")."""
    scale = np.diag([_UNIT_TO_MM[int(header["xyzt_units"]) & 7]] * 3 + [1.0])
    which = "sform" if int(header["sform_code"]) > 0 else "qform"
    return scale @ getattr(header, f"get_{which}")(), which


def check_itk_grid(header, affine_ras: np.ndarray, path: Path, name: str) -> None:
    """Check the grid ITK read against the header's own geometry.

    Raises
    ------
    InputError
        ITK's grid and the header's geometry differ (e.g. ``pixdim`` against the sform's voxel
        sizes) by more than :data:`HEADER_TOLERANCE_MM` at a corner of the volume.
    """
    declared, which = header_affine_mm(header)
    dims = [int(d) for d in header["dim"][1:4]]
    gap_mm = _corner_distance_mm(declared, affine_ras, dims)
    if gap_mm > HEADER_TOLERANCE_MM:
        sizes, pixdim = np.linalg.norm(declared[:3, :3], axis=0), header["pixdim"][1:4]
        problem = (f"the {which} gives voxel sizes {_fmt(sizes)} mm but pixdim {_fmt(pixdim)}"
                   if not np.allclose(sizes, pixdim, rtol=1e-3) else f"ITK reads it {gap_mm:.3g} mm away from its {which}")
        raise InputError(
            f"{name} {path}: its header is inconsistent: {problem}, so readers place the image up to "
            f"{gap_mm:.3g} mm apart; expected one geometry. Make pixdim match the {which} (or convert the scan again)."
        )


def read_voxels(path: Path, header, name: str, *, keep: bool = True) -> np.ndarray | None:
    """Decode the whole voxel payload once and check its size; return it in ``[k, j, i]`` order.

    Parameters
    ----------
    keep : bool
        False only checks the data (complete stream, exact length, finite floats) and returns None.

    Raises
    ------
    InputFileError
        Stream cut short or corrupt (gzip CRC), or data longer or shorter than the header says.
    InputError
        Float data holding NaN or infinite values.
    """
    dtype = header.get_data_dtype()
    dims = [int(d) for d in header["dim"]]
    shape = tuple(dims[axis] if axis <= dims[0] else 1 for axis in (1, 2, 3))
    offset = int(header["vox_offset"]) or int(header.single_vox_offset)
    expected = math.prod(shape) * dtype.itemsize
    check_memory(expected, path, name)
    floats = dtype.kind == "f"
    data = _payload(path, offset, expected, name, keep=keep or floats)
    if data is None:
        return None
    voxels = np.frombuffer(data, dtype).reshape(shape[::-1])  # C order [k, j, i] == Fortran [i, j, k]
    if not dtype.isnative:
        voxels = voxels.astype(dtype.newbyteorder("="))
    if floats and not np.isfinite(voxels).all():
        raise InputError(
            f"{name} {path}: {int((~np.isfinite(voxels)).sum())} voxels are NaN or infinite; expected finite "
            "values. Fix or mask those voxels before running hepatoplan."
        )
    if not keep:
        return None
    slope, inter = header.get_slope_inter()
    if slope is not None and (slope, inter) != (1.0, 0.0):
        voxels = voxels.astype(np.result_type(voxels.dtype, np.float32)) * np.float32(slope) + np.float32(inter)
    return voxels


def check_memory(nbytes: int, path: Path, name: str) -> None:
    """Refuse an image whose voxels alone would not fit in this machine's memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if nbytes > total:
        raise InputError(
            f"{name} {path}: its header announces {nbytes / 1e9:.3g} GB of voxels, more than this machine's "
            f"{total / 1e9:.3g} GB of memory; expected a body scan. Check the header's dimensions."
        )


def _payload(path: Path, offset: int, expected: int, name: str, *, keep: bool) -> np.ndarray | None:
    """The ``expected`` data bytes after ``offset``, streamed (gzip inflated) into one uint8 buffer, and
    length-checked. A size the file cannot hold (uncompressed: its length; gzip: deflate's largest
    ratio) is refused before anything is read or allocated. The buffer is not zeroed first, and the
    inflated chunks are copied into it by numpy, which releases the GIL (a ``bytearray`` was zeroed and
    filled holding it, IRCADb 01's CT 67 MB, each mask 34 MB, while the plan's other threads waited:
    bench/RESULTS.md, "nineteenth stop (start19)")."""
    size, compressed = path.stat().st_size, _is_gz(path)
    if offset + expected > (size * _MAX_DEFLATE_RATIO if compressed else size) or (
            not compressed and size != offset + expected):
        _wrong_size(path, name, offset, expected, found=None if compressed else size - offset)
    data = np.empty(expected, np.uint8) if keep else None
    if not compressed:
        if data is not None:
            with open(path, "rb") as fh:
                fh.seek(offset)
                if (got := fh.readinto(data)) != expected:  # the file shrank since its size was checked
                    _wrong_size(path, name, offset, expected, found=got)
        return data
    seen = 0  # bytes of the inflated file read so far
    got = 0   # of which voxel data
    try:
        for chunk in _inflated(path):
            start, seen = seen, seen + len(chunk)
            if seen > offset:
                part = np.frombuffer(chunk, np.uint8)[max(0, offset - start):]
                if got + len(part) > expected:
                    got += len(part)
                    break
                if data is not None:
                    data[got:got + len(part)] = part
                got += len(part)
    except isal_zlib.error as exc:
        raise InputFileError(
            f"{name} {path}: its gzip stream is corrupt ({exc}); expected a complete .nii.gz. Copy or export "
            "it again."
        ) from None
    except EOFError:
        raise InputFileError(
            f"{name} {path}: its gzip stream ends early (the file is truncated); expected a complete .nii.gz. "
            "Copy or export it again."
        ) from None
    if got != expected:
        _wrong_size(path, name, offset, expected, found=got)
    return data


def _wrong_size(path: Path, name: str, offset: int, expected: int, *, found: int | None):
    held = ("more voxel data than" if found > expected else f"{found} bytes of voxel data where") if found is not None \
        else "far less data than"
    raise InputFileError(
        f"{name} {path}: holds {held} its header announces ({expected} bytes after the {offset}-byte header); "
        f"the file is {'damaged' if found is not None and found > expected else 'truncated'}. Copy or export it again."
    )


def _raw(path: Path):
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            yield chunk


def _inflated(path: Path):
    """Inflate every gzip member of the file, at most ``_CHUNK`` bytes at a time (a small file that
    inflates to terabytes is read only as far as needed); EOFError when the last member is cut short."""
    with open(path, "rb") as fh:
        inflater, pending = isal_zlib.decompressobj(31), b""
        while chunk := pending or fh.read(_CHUNK):
            pending = b""
            yield inflater.decompress(chunk, _CHUNK)
            while inflater.unconsumed_tail and not inflater.eof:
                yield inflater.decompress(inflater.unconsumed_tail, _CHUNK)
            if inflater.eof:  # a member ended; another may follow (bgzip, pigz -i, cat a.gz b.gz)
                pending = inflater.unused_data or fh.read(_CHUNK)
                if not pending:
                    return
                inflater = isal_zlib.decompressobj(31)
        raise EOFError


def _is_gz(path: Path) -> bool:
    """Whether the file is gzip-compressed, by its magic bytes (a ``.nii.gz`` left uncompressed, or a
    ``.nii`` compressed, is read as what it is, as ITK does)."""
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def _open(path: Path):
    import gzip

    return gzip.open(path, "rb") if _is_gz(path) else open(path, "rb")


def _form(header, which: str, where: str) -> np.ndarray | None:
    """The header's qform or sform (RAS affine) when its code is set, checked; else None."""
    code = int(header[f"{which}_code"])
    if code == 0:
        return None
    if not 0 < code <= 5:
        raise InputError(f"{where}: {which}_code {code} is not a NIfTI code (0-5); the header is damaged. Export it again.")
    with np.errstate(all="ignore"):
        try:
            affine = getattr(header, f"get_{which}")()
        except Exception as exc:  # nibabel raises several types on a damaged form
            affine, problem = None, str(exc)
        else:
            problem = "" if np.isfinite(affine).all() and abs(np.linalg.det(affine[:3, :3])) > 0 else "not finite or singular"
    if affine is None or problem:
        raise InputError(
            f"{where}: its {which} cannot be used ({problem}); expected a valid {which}. Fix the header "
            f"(or set {which}_code to 0 if the other form is right)."
        )
    return affine


def _corner_distance_mm(a: np.ndarray, b: np.ndarray, dims) -> float:
    """Largest distance between where two affines put the 8 corner voxels of the volume."""
    corners = np.array([[i, j, k, 1.0] for i in (0, dims[0] - 1) for j in (0, dims[1] - 1) for k in (0, dims[2] - 1)])
    return float(np.max(np.linalg.norm((corners @ a.T - corners @ b.T)[:, :3], axis=1)))


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"
