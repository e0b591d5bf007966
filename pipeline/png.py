"""PNG files of RGB images (the previews, the QC montage), coded here with numpy and a zlib-format deflate.

libpng (vtk's PNG writer) and Pillow try PNG's five row filters on every row and keep the one that looks
best, then deflate with zlib; one filter for the whole image, chosen by the kind of picture, is several
times cheaper for about the same size (IRCADb 01's default plan, CPU per image, bench/RESULTS.md, mesh17):

* shaded renders (:func:`png_bytes` ``up_filter=True``): every row stored as its difference from the
  row above ("Up", modulo 256), deflated by ISA-L at level 1: 3-4 ms instead of 27-28 ms (vtk, zlib
  level 1) for files 2 % larger (1000 × 800 previews: 421 vs 413 kB, 397 vs 388 kB);
* the QC montage (``up_filter=False``): grey slices, flat label colours and one-pixel outlines, rows as
  they are, deflated by zlib at level 1: 17 ms instead of 42 ms (Pillow, zlib level 1), and smaller
  (605 vs 673 kB). (ISA-L on it: 822 kB unfiltered, 965 kB with Up; zlib with Up: 689 kB in 20 ms.)

The pixels are the same in every case.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from isal import isal_zlib

from hepatoplan.errors import InputError

from .outputs import write_atomic

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_NO_FILTER, _UP_FILTER = 0, 2


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bytes(rgb: np.ndarray, *, up_filter: bool = True) -> bytes:
    """The PNG file of an 8-bit RGB image.

    Parameters
    ----------
    rgb : ndarray of uint8, shape (height, width, 3)
        Rows from the top of the image down.
    up_filter : bool
        Rows as differences from the row above, deflated by ISA-L (shaded renders); else rows as they
        are, deflated by zlib (flat colours and outlines): see the module's docstring.

    Returns
    -------
    bytes
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or not rgb.shape[0] or not rgb.shape[1]:
        raise InputError(f"a PNG image must be uint8 of shape (height, width, 3); got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    rows = rgb.reshape(height, 3 * width)
    filtered = np.empty((height, 3 * width + 1), np.uint8)  # each row: its filter's byte, then the row
    if up_filter:
        filtered[:, 0] = _UP_FILTER
        filtered[0, 1:] = rows[0]
        np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256
        data = isal_zlib.compress(filtered.data, 1)
    else:
        filtered[:, 0] = _NO_FILTER
        filtered[:, 1:] = rows
        data = zlib.compress(filtered.data, 1)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bits, RGB, deflate, no interlace
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def write_png(path: str | Path, rgb: np.ndarray, *, up_filter: bool = True) -> Path:
    """Write :func:`png_bytes` of ``rgb`` to ``path`` (atomically); return ``path``."""
    return write_atomic(path, png_bytes(rgb, up_filter=up_filter))
