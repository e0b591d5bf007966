"""TotalSegmentator outputs read as they come: per-structure files or multilabel files.

TotalSegmentator writes either a folder of one binary file per structure (``liver.nii.gz``,
``portal_vein_and_splenic_vein.nii.gz``, ``inferior_vena_cava.nii.gz``; task ``liver_vessels``:
``liver_vessels.nii.gz``, ``liver_tumor.nii.gz``; task ``liver_segments``: ``liver_segment_1.nii.gz``
... ``liver_segment_8.nii.gz``) or, with ``--ml``, one multilabel file per task. This module maps
either to hepatoplan's masks:

===========  ==================================================  ==========================
mask         per-structure file                                  multilabel (task: label)
===========  ==================================================  ==========================
liver        liver                                               total: 5
portal       portal_vein_and_splenic_vein                        total: 64
ivc          inferior_vena_cava                                  total: 63
vessels      liver_vessels (ONE class of intrahepatic vessels)   liver_vessels: 1
tumours      liver_tumor                                         liver_vessels: 2
segments     liver_segment_1 ... liver_segment_8 (as labels 1-8) liver_segments: 1-8
===========  ==================================================  ==========================

A multilabel file's task is told by its name (``total``, ``liver_vessels``, ``liver_segments``
in it) or else by its largest label (> 8: total; 3-8: liver_segments; 1-2: liver_vessels). Labels
of the ``total`` task are those of TotalSegmentator v2 (liver 5, IVC 63, portal and splenic vein 64).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from hepatoplan.errors import InputError

from . import io

log = logging.getLogger(__name__)

#: Per-structure file stems -> hepatoplan mask name.
STRUCTURE_FILES = {
    "liver": "liver", "portal_vein_and_splenic_vein": "portal", "inferior_vena_cava": "ivc", "liver_tumor": "tumours",
}
#: Multilabel tasks: label value -> mask name.
TASK_LABELS = {
    "total": {5: "liver", 64: "portal", 63: "ivc"},
    "liver_vessels": {1: "vessels", 2: "tumours"},
}
SEGMENT_FILES = tuple(f"liver_segment_{k}" for k in range(1, 9))


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def multilabel_task(path: Path, labels: np.ndarray) -> str:
    """``"total"``, ``"liver_vessels"`` or ``"liver_segments"`` for a multilabel file."""
    stem = _stem(Path(path)).lower()
    for task in ("liver_segments", "liver_vessels", "total"):
        if task in stem:
            return task
    top = int(labels.max(initial=0))
    return "total" if top > 8 else ("liver_segments" if top > 2 else "liver_vessels")


def masks_from_multilabel(path: Path, labels: np.ndarray) -> dict[str, np.ndarray]:
    """The hepatoplan masks in one TotalSegmentator multilabel array (only those present)."""
    task = multilabel_task(path, labels)
    if task == "liver_segments":
        return {"segments": np.where(labels <= 8, labels, 0).astype(np.uint8)} if labels.any() else {}
    out = {}
    for value, name in TASK_LABELS[task].items():
        mask = labels == value
        if mask.any():
            out[name] = mask.astype(np.uint8)
    return out


def read_totalsegmentator(paths, *, reference: io.Volume, resample: bool = False,
                          flag: str = "--totalsegmentator") -> dict[str, np.ndarray]:
    """Read TotalSegmentator outputs (files or folders, any mix) onto ``reference``'s grid.

    Parameters
    ----------
    paths : Path or sequence of Path
        Multilabel files, per-structure files, or folders of per-structure files.
    reference : io.Volume
        The grid (canonical RAS+) every mask must share (or be resampled onto with ``resample``).

    Returns
    -------
    dict
        Mask name (``liver``, ``portal``, ``ivc``, ``vessels``, ``tumours``, ``segments``) ->
        canonical uint8 array. A mask found twice keeps the first.

    Raises
    ------
    InputError
        A path that does not exist, or a folder with no TotalSegmentator file hepatoplan uses.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    out: dict[str, np.ndarray] = {}

    def read(p: Path) -> np.ndarray:
        return io.read_labels(p, name=f"{flag} {p}", reference=reference, resample=resample).array

    for path in paths:
        if not path.exists():
            raise InputError(f"{flag} {path}: no such file or folder. Check the path.")
        if path.is_dir():
            found = _read_folder(path, read)
            if not found:
                raise InputError(
                    f"{flag} {path}: no TotalSegmentator file hepatoplan uses in this folder; expected e.g. "
                    f"{', '.join(f'{s}.nii.gz' for s in STRUCTURE_FILES)}, liver_vessels.nii.gz or "
                    "liver_segment_1..8.nii.gz")
        elif _stem(path) in STRUCTURE_FILES:
            found = {STRUCTURE_FILES[_stem(path)]: (read(path) > 0).astype(np.uint8)}
        else:
            found = masks_from_multilabel(path, read(path))
        for name, mask in found.items():
            out.setdefault(name, mask)
    log.info("TotalSegmentator masks read: %s", ", ".join(sorted(out)))
    return out


def _read_folder(folder: Path, read) -> dict[str, np.ndarray]:
    files = {_stem(p): p for p in folder.iterdir() if p.is_file()}
    found = {name: (read(files[stem]) > 0).astype(np.uint8) for stem, name in STRUCTURE_FILES.items() if stem in files}
    if any(s in files for s in SEGMENT_FILES):
        segments = None
        for k, stem in enumerate(SEGMENT_FILES, start=1):
            if stem in files:
                m = read(files[stem]) > 0
                segments = np.zeros(m.shape, np.uint8) if segments is None else segments
                segments[m & (segments == 0)] = k
        found["segments"] = segments
    for stem, p in files.items():  # liver_vessels (binary or multilabel) and ``--ml`` multilabel files
        if stem in TASK_LABELS or stem == "liver_segments":
            for name, mask in masks_from_multilabel(p, read(p)).items():
                found.setdefault(name, mask)
    return found
