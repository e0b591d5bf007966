"""Atomic writes: every output file, and the output folder of a command, appear whole or not at all.

One mechanism for both: write into a temporary sibling (a hidden folder ``.NAME.XXXX`` beside the
target, on the same file system), then rename into place. A run killed or failing midway leaves
at most a hidden temporary folder (``batch`` removes those of its studies on a rerun), never a
truncated file under the final name.

* :func:`atomic_file` hands a writer a path under the target's own name (writers that choose the
  format from the file ending, or that write a second file beside the first such as MetaImage's
  ``.mhd`` + ``.raw``, work unchanged); :func:`write_atomic` writes bytes or text through it.
* :func:`output_folder` does the same for a command's whole output folder: the new folder
  replaces an earlier one as a whole (no file of an earlier run stays beside the new ones).
* :func:`check_output_folder` checks ``--out`` before any work (every command that writes a
  folder calls it first): not empty, writable, not a folder holding an input, no other content
  replaced unless it is hepatoplan's own output (:data:`OWN_OUTPUT_MARKERS`) or ``--overwrite``.
  :func:`out_argument` is argparse's type for ``--out`` (an empty string is refused there, as
  ``Path("")`` would silently be the current folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from hepatoplan.errors import InputError

#: Files whose presence marks a folder as hepatoplan's own output, which a rerun may replace:
#: ``report.json`` (plan, demo), ``segmentation.json`` (segment), ``error.txt`` (a study of
#: ``batch`` that failed).
OWN_OUTPUT_MARKERS = ("report.json", "segmentation.json", "error.txt")


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
def output_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder of ``out``; it becomes ``out`` when the block succeeds.

    An existing ``out`` is replaced as a whole: it is renamed aside (``.<name>.old-XXXX``), the
    new folder renamed to ``out``, then the old one removed, so no file of an earlier run is
    left beside the new ones (check first with :func:`check_output_folder` that ``out`` may be
    replaced). Missing parent folders are created.

    Parameters
    ----------
    out : str or Path
        The output folder (a symbolic link to a folder: the folder it points to is replaced).

    Yields
    ------
    Path
        The temporary folder ``<parent>/.<out name>.XXXX``; removed afterwards, also on error
        (then ``out`` is left as it was, and the parent folders made for it are removed).
    """
    out = Path(os.path.realpath(out))
    created = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # deepest first
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    old, done = None, False
    try:
        yield tmp
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        done = True
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        if not done:  # nothing written: the parent folders made for it go too
            for parent in created:
                try:
                    parent.rmdir()
                except OSError:
                    break


def out_argument(text: str) -> Path:
    """argparse ``type`` of ``--out``: a path that is not empty."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "an empty path; expected the output folder's name (e.g. --out plan_out)")
    return Path(text)


def check_output_folder(out: str | Path, *, inputs: Iterable[str | Path | None], overwrite: bool = False,
                        flag: str = "--out") -> Path:
    """Check an output folder before any work; return it.

    Rules (each refusal names ``flag``, the folder and the fix):

    - not the empty string (``Path("")`` is the current folder), nor the current folder or a
      folder containing it (it would be replaced under the user's feet);
    - not a file, not a dangling symbolic link; its nearest existing folder is writable (a
      temporary folder is made and removed there: read-only file systems and permissions);
    - not an input's folder (the folder of an input file, or an input DICOM folder), nor a folder
      containing an input, nor a folder inside an input DICOM folder: the output replaces
      ``out`` as a whole and must never touch an input. A subfolder of an input file's folder
      (``study/ct.nii.gz --out study/plan``) is fine;
    - an existing non-empty folder is replaced only when it is hepatoplan's own output (it holds
      one of :data:`OWN_OUTPUT_MARKERS`) or with ``overwrite``.

    Parameters
    ----------
    out : str or Path
        The output folder.
    inputs : iterable of path or None
        Every input file or folder of the command (``None`` and URLs are skipped).
    overwrite : bool
        Replace an existing folder that is not hepatoplan's output (``--overwrite``).
    flag : str
        The option's name, for messages.

    Returns
    -------
    Path

    Raises
    ------
    InputError
        When ``out`` breaks a rule.
    """
    if not str(out).strip():
        raise InputError(f"{flag}: an empty path; expected the output folder's name (e.g. {flag} plan_out)")
    out = Path(out)
    if out.is_symlink() and not out.exists():
        raise InputError(f"{flag} {out}: a symbolic link to {os.readlink(out)}, which does not exist; remove "
                         "the link or choose another folder")
    real = Path(os.path.realpath(out))
    if real.exists() and not real.is_dir():
        raise InputError(f"{flag} {out}: exists and is not a folder; choose a folder path")
    cwd = Path.cwd().resolve()
    if real == cwd or real in cwd.parents:
        raise InputError(f"{flag} {out}: is the current folder or contains it, and the output replaces it as "
                         f"a whole; choose a new subfolder, e.g. {flag} plan_out")
    _check_not_an_input(out, real, inputs, flag)
    check_writable(out, flag=flag)
    if real.is_dir() and any(real.iterdir()) and not overwrite and not is_own_output(real):
        raise InputError(f"{flag} {out}: an existing folder that is not hepatoplan's output (no "
                         f"{' or '.join(OWN_OUTPUT_MARKERS)}); its content would be replaced. Choose a new "
                         "folder, or pass --overwrite to replace it")
    return out


def is_own_output(folder: str | Path) -> bool:
    """``folder`` holds one of :data:`OWN_OUTPUT_MARKERS`: an earlier run of hepatoplan wrote it."""
    return any((Path(folder) / name).is_file() for name in OWN_OUTPUT_MARKERS)


def _check_not_an_input(out: Path, real: Path, inputs, flag: str) -> None:
    for given in inputs:
        if given is None or "://" in str(given):
            continue
        path = Path(os.path.realpath(given))
        folder = path if path.is_dir() else path.parent
        if real == folder or real in path.parents:
            what = "the input folder" if path.is_dir() else "the folder of the input"
            raise InputError(f"{flag} {out}: is or contains {what} {given}, and the output replaces it as a "
                             f"whole; choose a folder outside the inputs, e.g. {flag} {folder.name}_plan")
        if path.is_dir() and path in real.parents:
            raise InputError(f"{flag} {out}: lies inside the input folder {given} (it would become part of "
                             f"the series); choose a folder outside it")


def check_writable(target: str | Path, *, flag: str) -> None:
    """Refuse (``InputError`` naming ``flag``) when ``target`` (a file or folder to be written)
    cannot be created: its nearest existing folder must let a temporary folder be made (checks
    permissions and read-only file systems before any work)."""
    real = Path(os.path.realpath(target))
    existing = next(p for p in real.parents if p.exists())  # where the new entry is made and renamed
    if not existing.is_dir():
        raise InputError(f"{flag} {target}: {existing} is a file, not a folder; choose another path")
    try:
        Path(tempfile.mkdtemp(prefix=".hepatoplan-write-test.", dir=existing)).rmdir()
    except OSError as exc:
        raise InputError(f"{flag} {target}: cannot write in {existing} ({exc.strerror or exc}); choose a "
                         "writable folder") from exc
