"""The ``.nii.gz`` inputs named on the command line inflated while the modules load.

A command such as ``hepatoplan plan CT --liver M ...`` first imports numpy, SimpleITK, scipy and
hepatoplan's own modules: ~0.3 s on one core, the other idle. Meanwhile :func:`start` inflates the
gzip streams of the ``.nii.gz`` files named in its arguments in a thread (ISA-L inflates outside the
GIL), and :func:`hepatoplan.pipeline.io_nifti.read_voxels` takes the inflated bytes (:func:`take`)
instead of inflating the file itself. Only the inflated chunks are kept, and the read goes through
them as through the stream it inflates itself: every check (the exact length, the values) is made
the same way, and a file only checked (the CT of a ``--no-preview`` plan) is never copied. A stream
that is corrupt or cut short is not kept, so the read inflates it again and refuses it with its own
message. Stdlib and ``isal`` only: importing this module costs nothing before the imports it
overlaps.

Each file is taken once, by the first read that asks, and only if the file is the one inflated
(same device, inode, size and modification time); a read arriving before its file was started
inflates it itself. :func:`clear` drops what was not taken (``cli.main``, after every command).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from isal import isal_zlib

_CHUNK = 1 << 22
#: Deflate inflates at most about 1032-fold: a stream announcing more is cut short or hostile.
MAX_DEFLATE_RATIO = 1032
#: Files inflated ahead hold at most this many bytes each, and this many files at most (larger or
#: more are read as usual, when the command reads them).
MAX_BYTES = 1 << 30
MAX_FILES = 16

_lock = threading.Lock()
_entries: dict[str, _Entry] = {}


class _Entry:
    def __init__(self, path: str, identity: tuple):
        self.path, self.identity = path, identity
        self.started = self.taken = False
        self.done = threading.Event()
        self.data: list[bytes] | None = None


def inflated(path):
    """Inflate every gzip member of the file, at most ``_CHUNK`` bytes at a time (a small file that
    inflates to terabytes is read only as far as needed); EOFError when the last member is cut short,
    ``isal_zlib.error`` when a stream is corrupt."""
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


def _identity(stat: os.stat_result) -> tuple:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _named_files(argv) -> list[str]:
    """The existing ``.nii.gz`` files among the arguments (``--opt=PATH`` included; not ``--out``,
    which a command writes), in order, once each."""
    found: list[str] = []
    for before, arg in zip([None, *argv], argv):
        if before == "--out" or arg.startswith("--out="):
            continue
        value = arg.split("=", 1)[1] if arg.startswith("-") and "=" in arg else arg
        if value.lower().endswith(".nii.gz") and os.path.isfile(value):
            path = os.path.realpath(value)
            if path not in found:
                found.append(path)
    return found[:MAX_FILES]


def start(argv) -> None:
    """Inflate the ``.nii.gz`` files named in ``argv`` in a daemon thread, the largest first (the
    CT: a read finds its file being inflated and waits for it, or not started and inflates it
    itself, so the longest is the one to start early); nothing when none is named."""
    found = []
    for path in _named_files(argv):
        try:
            found.append((path, os.stat(path)))
        except OSError:
            continue
    entries = []
    with _lock:
        for path, stat in sorted(found, key=lambda item: -item[1].st_size):
            if path not in _entries and stat.st_size > 0:
                _entries[path] = entry = _Entry(path, _identity(stat))
                entries.append(entry)
    if entries:
        threading.Thread(target=_inflate_all, args=(entries,), name="hepatoplan-prefetch", daemon=True).start()


def _inflate_all(entries: list[_Entry]) -> None:
    for entry in entries:
        with _lock:
            if entry.taken or _entries.get(entry.path) is not entry:
                continue
            entry.started = True
        try:
            entry.data = _inflate(entry.path, entry.identity[2])
        except Exception:  # noqa: BLE001 - the read itself meets and reports whatever went wrong
            entry.data = None
        finally:
            entry.done.set()


def _inflate(path: str, size: int) -> list[bytes] | None:
    """The whole inflated file in chunks of at most ``_CHUNK`` bytes (as :func:`inflated` yields
    them: the read copies them where it keeps them, or only counts them), or None when the file
    would exceed its bound or its stream is bad."""
    limit, total, chunks = min(size * MAX_DEFLATE_RATIO, MAX_BYTES), 0, []
    try:
        for chunk in inflated(path):
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
    except (isal_zlib.error, EOFError):
        return None
    return chunks


def take(path) -> list[bytes] | None:
    """The inflated chunks of ``path`` when they were inflated ahead from this very file (waiting
    for them if they are being inflated), else None; either way the entry is dropped."""
    key = os.path.realpath(path)
    with _lock:
        entry = _entries.pop(key, None)
        if entry is None:
            return None
        entry.taken = True
        started = entry.started
    if not started:
        return None
    entry.done.wait()
    try:
        same = _identity(os.stat(key)) == entry.identity
    except OSError:
        same = False
    return entry.data if same else None


def clear() -> None:
    """Drop every entry not taken (a thread still inflating one finishes it for nobody)."""
    with _lock:
        for entry in _entries.values():
            entry.taken = True
        _entries.clear()


def pending() -> list[Path]:
    """The files inflated ahead and not taken yet (for tests)."""
    with _lock:
        return [Path(p) for p in _entries]
