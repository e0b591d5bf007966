"""Atomic writes: every output file, and the output folder of a command, appear whole or not at all.

One mechanism for both: write into a temporary sibling (a hidden folder ``.NAME.XXXX`` beside the
target, on the same file system), then rename into place. A run killed or failing midway leaves
at most a hidden temporary folder (``batch`` removes those of its studies on a rerun), never a
truncated file under the final name.

* :func:`atomic_file` hands a writer a path under the target's own name (writers that choose the
  format from the file ending, or that write a second file beside the first such as MetaImage's
  ``.mhd`` + ``.raw``, work unchanged); :func:`write_atomic` writes bytes or text through it.
* :func:`output_folder` does the same for a command's whole output folder: the files are moved
  in at the end, ``report.json`` (or the file named ``last``) last, so its presence marks a
  complete folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path`` to; move it into place when the block succeeds.

    Parameters
    ----------
    path : str or Path
        The target file. Its folder must exist.

    Yields
    ------
    Path
        ``<folder>/.<name>.XXXX/<name>``: write there (every file the writer puts in that folder
        is moved beside ``path``). On an exception nothing is moved and the temporary folder is
        removed, so an existing ``path`` keeps its old content.
    """
    path = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp / path.name
        for produced in sorted(tmp.iterdir()):
            os.replace(produced, path.parent / produced.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` atomically; return ``path``."""
    path = Path(path)
    with atomic_file(path) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
    return path


@contextmanager
def output_folder(out: str | Path, *, last: str = "report.json") -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out``; move its entries into ``out`` when the block succeeds.

    ``out`` is created if needed; an entry already in ``out`` under the same name is replaced
    (a folder entirely), others are kept. ``last`` is moved after every other entry.

    Parameters
    ----------
    out : str or Path
        The output folder. Its parent must exist.
    last : str
        Name of the entry moved last (its presence marks a complete output folder).

    Yields
    ------
    Path
        The temporary folder ``<parent>/.<out name>.XXXX``; removed afterwards, also on error
        (then ``out`` is left as it was).
    """
    out = Path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        out.mkdir(exist_ok=True)
        for entry in sorted(tmp.iterdir(), key=lambda p: (p.name == last, p.name)):
            target = out / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
