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


def liver_file(paths) -> Path | None:
    """The first of ``paths`` (files or folders) that holds TotalSegmentator's liver: a folder's
    ``liver`` file, a ``liver`` file, or a multilabel file of the task ``total``; None when none does."""
    for path in [Path(p) for p in paths]:
        if path.is_dir():
            hits = sorted(p for p in path.iterdir() if p.is_file() and _stem(p) in ("liver", "total"))
            if hits:
                return hits[0]
        elif path.is_file() and (_stem(path) == "liver" or "total" in _stem(path).lower()
                                 or _stem(path) not in STRUCTURE_FILES and "liver_" not in _stem(path)):
            return path
    return None


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


# --------------------------------------------------------------------------- the optional engine

#: TotalSegmentator tasks ``hepatoplan segment --engine totalsegmentator`` runs, with the nnU-Net
#: dataset folders of their weights (TotalSegmentator v2: ``total`` is five models, Dataset291-295;
#: the liver, IVC and portal vein are in Dataset291 "organs"; ``liver_vessels`` is Dataset008).
ENGINE_TASKS = {"total": "Dataset291", "liver_vessels": "Dataset008"}
#: The structures of the ``total`` task hepatoplan uses (``roi_subset``: only their models run).
ENGINE_ROI_SUBSET = ("liver", "portal_vein_and_splenic_vein", "inferior_vena_cava")


def _engine_api():
    """TotalSegmentator's Python API and its weights folder, or an InputError naming what to install.

    hepatoplan never downloads weights: TotalSegmentator would on its first call, so the weights
    folder is checked first (``TOTALSEG_WEIGHTS_PATH``, or ``TOTALSEG_HOME_DIR``/``~/.totalsegmentator``
    + ``nnunet/results``, as TotalSegmentator's ``config.get_weights_dir``).
    """
    try:
        from totalsegmentator.config import get_weights_dir
        from totalsegmentator.python_api import totalsegmentator
    except ImportError:
        raise InputError(
            "--engine totalsegmentator: TotalSegmentator is not installed; install it with "
            "'pip install TotalSegmentator' and its weights with 'totalseg_download_weights -t total' and "
            "'totalseg_download_weights -t liver_vessels' (hepatoplan never downloads weights)") from None
    weights = Path(get_weights_dir())
    missing = [task for task, dataset in ENGINE_TASKS.items()
               if not (weights.is_dir() and any(p.name.startswith(dataset) for p in weights.iterdir()))]
    if missing:
        raise InputError(
            f"--engine totalsegmentator: no weights for task(s) {', '.join(missing)} in {weights}; install them with "
            + " and ".join(f"'totalseg_download_weights -t {t}'" for t in missing)
            + " (hepatoplan never downloads weights)")
    return totalsegmentator


def run_engine(image: Path, folder: Path, *, fast: bool = False) -> Path:
    """Run TotalSegmentator (tasks ``total`` for the liver, IVC and portal vein, and ``liver_vessels``)
    on ``image`` into ``folder`` (per-structure files, as :func:`read_totalsegmentator` reads them).

    Raises
    ------
    InputError
        TotalSegmentator or its weights are not installed (nothing is downloaded).
    """
    api = _engine_api()
    folder.mkdir(parents=True, exist_ok=True)
    api(input=str(image), output=str(folder), task="total", roi_subset=list(ENGINE_ROI_SUBSET), fast=fast, quiet=True)
    api(input=str(image), output=str(folder), task="liver_vessels", quiet=True)
    return folder
