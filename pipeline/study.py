"""One study: the CT's grid and the masks on it, checked, in canonical RAS+.

:class:`Study` is the only place where "the CT" and "its masks" meet. Loading checks that every
mask lies on the CT's grid (or resamples it nearest-neighbour on request), that labels are
integers, and that the liver is not empty; tumours and segments are restricted to the liver.
Arrays are canonical RAS+ (axis 0 → patient Right, 1 → Anterior, 2 → Superior).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from hepatoplan.arrays import bounding_box
from hepatoplan.errors import HepatoplanError, InputError
from hepatoplan.units import voxel_volume_ml

from . import io
from .dicomweb import SeriesURL
from .timing import timed

log = logging.getLogger(__name__)

#: Largest ablation zone radius accepted (mm): a thermal ablation zone is a few centimetres
#: across, so a larger radius is a typing error (and would overflow the zone's volume).
MAX_ABLATION_RADIUS_MM = 100.0


@dataclass(frozen=True)
class MaskPaths:
    """Mask files given by the user (``None`` = not given)."""

    liver: Path | None = None
    tumours: Path | None = None
    portal: Path | None = None
    hepatic: Path | None = None
    segments: Path | None = None
    #: One output of TotalSegmentator (file or folder) or several (``--totalsegmentator`` repeated).
    totalsegmentator: Path | tuple[Path, ...] | None = None
    vessels: Path | None = None

    def given(self) -> dict[str, Path | tuple[Path, ...]]:
        return {k: tuple(Path(p) for p in v) if isinstance(v, (tuple, list)) else Path(v)
                for k, v in vars(self).items() if v is not None}


def path_text(paths: Path | tuple[Path, ...]) -> str:
    """A path, or several joined with ``; `` (a repeated option), for reports."""
    return "; ".join(map(str, paths)) if isinstance(paths, (tuple, list)) else str(paths)


@dataclass(eq=False)
class Study:
    """A CT (or its grid) and its masks, all canonical RAS+ on one grid.

    Attributes
    ----------
    ct : io.Volume
        The reference image; ``ct.array`` is ``None`` when only its geometry was needed.
    liver : ndarray of bool
    tumours : ndarray of uint or None
        Instance labels inside the liver.
    portal, hepatic : ndarray of bool or None
    segments : ndarray of uint8 or None
        Couinaud labels 1-8 as given, restricted to the liver.
    sources : dict
        Mask name → where it came from (a path, ``"totalsegmentator"`` or ``"automatic"``).
    warnings : list of str
    details : dict
        Reports of the automatic steps that ran (e.g. ``segmentation``), copied into the report.
    parameters : dict
        Algorithm name → ``dataclasses.asdict`` of the parameters it ran with (e.g.
        ``CouinaudParams``), written to ``report.json``'s ``provenance.parameters``.
    """

    ct: io.Volume
    liver: np.ndarray
    tumours: np.ndarray | None = None
    portal: np.ndarray | None = None
    hepatic: np.ndarray | None = None
    segments: np.ndarray | None = None
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.ct.spacing_mm


#: Masks of which only "labelled or not" is used (read as boolean arrays).
_BINARY = frozenset({"liver", "portal", "hepatic", "vessels"})


@timed("read")
def load_masks(
    ct: io.Volume, paths: MaskPaths, *, resample: bool = False, segments_from_totalsegmentator: bool = False
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Read every given mask onto the CT grid; return name → canonical label array, and the
    intake's notes on the files.

    TotalSegmentator outputs (:mod:`hepatoplan.pipeline.totalseg`: multilabel files or folders)
    supply whichever masks were not given separately: liver, tumours, and either the combined
    ``liver_vessels`` (as ``vessels``) or, without it, the portal/splenic vein (as ``portal``) and
    the inferior vena cava (as ``hepatic``); with ``segments_from_totalsegmentator`` also its
    ``liver_segments`` (as ``segments``; an InputError when they are missing).
    """
    flags = {
        "liver": "--liver", "tumours": "--tumours", "portal": "--portal",
        "hepatic": "--hepatic", "segments": "--segments", "totalsegmentator": "--totalsegmentator",
        "vessels": "--vessels",
    }
    given = {name: path for name, path in paths.given().items() if name != "totalsegmentator"}

    def read(name):  # only whether a voxel is labelled matters for these: boolean in the one copy
        return io.read_labels(given[name], name=flags[name], reference=ct, resample=resample, binary=name in _BINARY)

    with ThreadPoolExecutor(io.worker_threads()) as pool:  # ITK and numpy's copies release the GIL
        volumes = dict(zip(given, pool.map(read, given)))
    arrays = {name: volume.array for name, volume in volumes.items()}
    notes = [note for volume in volumes.values() for note in volume.notes]
    if paths.totalsegmentator is not None:
        from .totalseg import read_totalsegmentator

        found = read_totalsegmentator(paths.totalsegmentator, reference=ct, resample=resample)
        found["hepatic"] = found.pop("ivc", None)
        if "vessels" in found or "vessels" in arrays:  # the combined tree: separated, not portal + IVC
            found.pop("portal", None), found.pop("hepatic", None)
        if segments_from_totalsegmentator and found.get("segments") is None:
            raise InputError(
                f"--segments-from totalsegmentator: no liver_segments in --totalsegmentator "
                f"{path_text(paths.totalsegmentator)}; run TotalSegmentator's task liver_segments (-ta liver_segments) "
                "and give its output too (--totalsegmentator repeats), or drop --segments-from")
        for name, mask in found.items():
            if mask is not None and name not in arrays and (name != "segments" or segments_from_totalsegmentator):
                arrays[name] = mask
    return arrays, notes


@timed("checks")
def build_study(ct: io.Volume, arrays: dict[str, np.ndarray], *, sources: dict[str, str]) -> Study:
    """Check the masks and assemble a :class:`Study`.

    Raises
    ------
    InputError
        Empty liver mask; segment labels outside 1-8.
    """
    warnings: list[str] = []
    if "liver" not in arrays:
        raise InputError("no liver mask: give --liver FILE (or --totalsegmentator FILE)")
    liver = arrays["liver"].astype(bool, copy=False)  # labels are unsigned: non-zero is > 0
    if not liver.any():
        raise InputError(
            f"--liver {sources.get('liver')}: the liver mask is empty (no voxel > 0); give the "
            "liver mask of this CT."
        )
    voxel_ml = voxel_volume_ml(ct.spacing_mm)

    def inside_liver(name: str, labels: np.ndarray) -> np.ndarray:
        outside = int(np.count_nonzero(labels)) - int(np.count_nonzero(labels[liver]))
        if outside:
            message = (
                f"{name}: {outside * voxel_ml:.2f} mL labelled outside the liver mask was ignored"
            )
            warnings.append(message)
            log.warning(message)
            labels = np.where(liver, labels, 0).astype(labels.dtype, copy=False)
        return labels

    tumours = arrays.get("tumours")
    if tumours is not None:
        tumours = inside_liver("--tumours", _binary_if_one_value(tumours, sources.get("tumours")))
    segments = arrays.get("segments")
    if segments is not None:
        if segments.max(initial=0) > 8:
            bad = np.unique(segments[segments > 8]).tolist()
            raise InputError(
                f"--segments {sources.get('segments')}: labels {bad[:5]} are not Couinaud segments; "
                "expected 0 (background) and 1-8 (1 = caudate ... 8)."
            )
        segments = inside_liver("--segments", segments)
        if not segments.any():
            raise InputError(
                f"--segments {sources.get('segments')}: no segment label inside the liver mask; "
                "is it the segment map of this study?"
            )
    return Study(
        ct=ct,
        liver=liver,
        tumours=tumours,
        portal=None if arrays.get("portal") is None else arrays["portal"].astype(bool, copy=False),
        hepatic=None if arrays.get("hepatic") is None else arrays["hepatic"].astype(bool, copy=False),
        segments=segments,
        sources=sources,
        warnings=warnings,
    )


def _binary_if_one_value(labels: np.ndarray, source) -> np.ndarray:
    """A tumour map whose only non-zero value is one number (0/1, 0/255 as 3D-IRCADb stores its
    masks, 0/2 ...) is a binary mask, to be split into lesions: returned as 0/1."""
    crop = labels[bounding_box(labels)]  # lesions fill a small box: no pass over the grid but the box search
    values = crop[crop > 0]
    if values.size and values[0] != 1 and (values == values[0]).all():
        log.info("--tumours %s: its only label is %d: read as a binary mask", source, values[0])
        return (labels > 0).view(np.uint8)
    return labels


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class PlanOptions:
    """Everything ``hepatoplan plan`` needs, validated once by :meth:`validate`.

    ``ct`` is a path or a DICOMweb series (:class:`hepatoplan.pipeline.dicomweb.SeriesURL`,
    retrieved by ``plan`` before the CT is read); ``store`` a DICOMweb root URL receiving the
    DICOM-SEG and SR (``--store``).
    """

    ct: Path | SeriesURL
    out: Path
    masks: MaskPaths = MaskPaths()
    resect: tuple[str, ...] = ()
    margin_mm: float = 1.0
    parenchyma: str = "normal"
    threshold_percent: float | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    resample_masks: bool = False
    series_uid: str | None = None
    preview: bool = True
    auto: bool = True
    modality: str = "CT"
    near_vessel_margin_mm: float | None = None
    near_vessel_distance_mm: float = 5.0
    detach_from: str | None = None
    ablation_margin_mm: float = 5.0
    function_map: Path | None = None
    interpolate_slices: bool = False
    store: str | None = None
    #: ``"couinaud"``: derived from the vessels when no --segments is given; ``"totalsegmentator"``:
    #: TotalSegmentator's liver_segments from --totalsegmentator.
    segments_from: str = "couinaud"

    def validate(self):
        """Parse resection specs and check numbers; returns ``(resections, ablations)``."""
        from hepatoplan.planning.thresholds import threshold_percent
        from hepatoplan.resection.ablation import parse_ablation
        from hepatoplan.resection.procedures import check_margin_mm, parse_resection

        check_margin_mm(self.margin_mm)
        check_margin_mm(self.ablation_margin_mm, flag="--ablation-margin-mm")
        if self.near_vessel_margin_mm is not None:
            check_margin_mm(self.near_vessel_margin_mm, flag="--near-vessel-margin-mm")
            check_margin_mm(self.near_vessel_distance_mm, flag="--near-vessel-distance-mm")
        if self.detach_from not in (None, "portal", "hepatic", "both"):
            raise InputError(f"--detach-from {self.detach_from!r}: expected portal, hepatic or both")
        threshold_percent(self.parenchyma, override_percent=self.threshold_percent)
        for flag, value in (("--height-cm", self.height_cm), ("--weight-kg", self.weight_kg)):
            if value is not None and not (0 < value < 1000):
                raise InputError(f"{flag}: expected a positive number, got {value:g}")
        if (self.height_cm is None) != (self.weight_kg is None) and self.height_cm is not None:
            raise InputError("--height-cm needs --weight-kg too (body surface area needs both)")
        ablate = [t for t in self.resect if t.strip().lower().startswith("ablate")]
        ablations = [parse_ablation(t) for t in ablate]
        for spec in ablations:
            if spec.radius_mm is not None and spec.radius_mm > MAX_ABLATION_RADIUS_MM:
                raise InputError(
                    f"--resect {spec.text}: zone radius {spec.radius_mm:g} mm; expected at most "
                    f"{MAX_ABLATION_RADIUS_MM:g} mm (a thermal ablation zone is a few centimetres across). "
                    "Give the radius in mm, e.g. ablate:2@15."
                )
        return [parse_resection(t) for t in self.resect if t not in ablate], ablations


def load_study(options: PlanOptions, *, needs_segments: bool,
               on_masks: Callable[[Study], None] | None = None,
               on_masks_read: Callable[[set[str]], None] | None = None) -> Study:
    """Read the CT grid and masks; compute what is missing.

    Masks not given are segmented automatically from the CT (``segmentation``) unless
    ``options.auto`` is false: without a liver mask, everything; with one, the tumours, and the
    portal and hepatic veins when no segment map is given. Couinaud segments are then derived from
    the vessel tree (``couinaud``). The CT's voxels are read only when something needs them (the
    automatic segmentation, or the previews: read once here rather than checked here and read again
    for them); otherwise its header is the reference grid. ``on_masks`` is called with the study
    once its masks are read (or segmented), before the Couinaud segments are derived from them;
    ``on_masks_read`` with the names of the masks read, as soon as they are read: for a NIfTI CT while its
    voxels are still being read (the masks are not checked yet).
    """
    masks = options.masks
    ts_segments = options.segments_from == "totalsegmentator"
    if ts_segments and (masks.totalsegmentator is None or masks.segments is not None):
        raise InputError("--segments-from totalsegmentator: needs --totalsegmentator PATH (its liver_segments) and "
                         "no --segments FILE")
    given = (set(masks.given()) | ({"liver", "portal", "hepatic"} if masks.totalsegmentator else set())
             | ({"portal", "hepatic"} if masks.vessels else set()) | ({"segments"} if ts_segments else set()))
    wanted = _automatic_masks(given) if options.auto else []
    read_ct = partial(io.read_image, options.ct, series_uid=options.series_uid, name="CT",
                      header_only=not wanted and not options.preview and not Path(options.ct).is_dir(),
                      interpolate_slices=options.interpolate_slices)
    ct_read = None  # a NIfTI CT's voxels being read and checked beside the masks
    if not io.is_nifti_file(options.ct) or not masks.given():
        ct = read_ct()
        arrays, notes = load_masks(ct, masks, resample=options.resample_masks,
                                   segments_from_totalsegmentator=ts_segments)
    else:  # a NIfTI CT: its voxels read and checked beside the masks, checked against its header's grid
        reading = ThreadPoolExecutor(1)
        ct_read = reading.submit(read_ct)
        reading.shutdown(wait=False)
        try:
            ct = read_ct(header_only=True, check_voxels=False)
            arrays, notes = load_masks(ct, masks, resample=options.resample_masks,
                                       segments_from_totalsegmentator=ts_segments)
        except HepatoplanError:
            ct_read.result()  # the CT's own error first
            raise
    if on_masks_read is not None:
        on_masks_read(set(arrays))
    # the study checked and its segments derived on the CT's header (the same grid, no notes: the NIfTI reader
    # makes none) while its voxels are still being read, unless the automatic segmentation needs them; the
    # CT's own error first, as when it was waited for before
    try:
        if ct_read is not None and wanted:
            ct, ct_read = _wait_read(ct_read), None
        study = _checked_study(options, ct, arrays, notes, wanted, needs_segments=needs_segments, on_masks=on_masks)
    except Exception:
        if ct_read is not None:
            ct_read.result()
        raise
    if ct_read is not None:
        study.ct = _wait_read(ct_read)
    return study


def _checked_study(options: PlanOptions, ct: io.Volume, arrays: dict[str, np.ndarray], notes: list[str],
                   wanted: list[str], *, needs_segments: bool, on_masks: Callable[[Study], None] | None) -> Study:
    """:func:`load_study` once the masks are read: the missing ones segmented, the study checked, the segments
    derived."""
    masks = options.masks
    sources = {name: path_text(path) for name, path in masks.given().items()}
    for name in ("liver", "tumours", "portal", "hepatic", "vessels", "segments"):
        if name in arrays and name not in sources:
            sources[name] = f"{path_text(masks.totalsegmentator)} (TotalSegmentator{' liver_segments' * (name == 'segments')})"
    details, parameters = {}, {}
    if wanted:
        details["segmentation"], parameters["segmentation"] = _segment_missing(
            ct, arrays, sources, wanted, modality=options.modality)
        if options.modality == "MR":  # said in report.json and in the printed summary
            details["not_assessed"] = {part: details["segmentation"][part]["reason"] for part in ("tumours", "vessels")
                                       if part in details["segmentation"]}
    if "liver" not in arrays:
        raise InputError(
            "no liver mask: give --liver FILE (or --totalsegmentator FILE), or drop --no-auto to "
            "segment it automatically"
        )
    study = build_study(ct, arrays, sources=sources)
    study.warnings[:0] = [*ct.notes, *notes]
    study.details.update(details)
    study.parameters.update(parameters)
    study.warnings.extend(f"automatic segmentation QC: {flag}"
                          for flag in details.get("segmentation", {}).get("qc_flags", []))
    study.warnings.extend(f"automatic segmentation self-check failed: {reason}"
                          for reason in details.get("segmentation", {}).get("self_check", {}).get("reasons", []))
    study.warnings.extend(f"automatic segmentation limit: {limit}"
                          for limit in details.get("segmentation", {}).get("self_check", {}).get("limits", []))
    study.warnings.extend(f"{part} {reason}" for part, reason in details.get("not_assessed", {}).items())
    if on_masks is not None:
        on_masks(study)
    if study.segments is None and study.portal is None and study.hepatic is None and "vessels" in arrays:
        _derive_segments_from_vessels(study, arrays["vessels"] > 0)
    elif study.segments is None and study.portal is not None and study.hepatic is not None:
        _derive_segments(study)
    if needs_segments and study.segments is None:
        not_found = [n for n in ("portal", "hepatic") if n in wanted and n not in arrays]
        why = (f" (the automatic segmentation found no {' and no '.join(_VESSEL_NAMES[n] for n in not_found)} "
               "in this scan)" if not_found else "")
        raise InputError(
            f"anatomical resections need Couinaud segments{why}: give --segments FILE (labels 1-8), or "
            "--portal FILE and --hepatic FILE to derive them from the vessel tree"
        )
    return study


@timed("read")
def _wait_read(future: Future) -> io.Volume:
    return future.result()


_VESSEL_NAMES = {"portal": "portal vein", "hepatic": "hepatic veins (IVC or dome veins)"}


def _automatic_masks(given: set[str]) -> list[str]:
    if "liver" not in given:
        return [name for name in ("liver", "tumours", "portal", "hepatic") if name not in given]
    wanted = [] if "tumours" in given else ["tumours"]
    if "segments" not in given:
        wanted += [name for name in ("portal", "hepatic") if name not in given]
    return wanted


@timed("segmentation")
def _segment_missing(ct: io.Volume, arrays: dict, sources: dict, wanted: list[str], *,
                     modality: str) -> tuple[dict, dict]:
    """Run the classical segmentation for the ``wanted`` masks (in place); return its report and
    the parameters of the algorithms that ran (``dataclasses.asdict``)."""
    from hepatoplan.segmentation import (SegmentationParams, segment_study, segment_tumours, segment_vessels,
                                         self_check)

    spacing = ct.spacing_mm
    params = SegmentationParams()
    found: dict[str, np.ndarray] = {}
    if "liver" in wanted:
        seg = segment_study(ct.array, spacing_mm=spacing, modality=modality, params=params)
        found = {"liver": seg.liver, "tumours": seg.tumours, "portal": seg.portal_vein,
                 "hepatic": seg.hepatic_veins}
        report = seg.report
        used = {"mr_liver": report["liver"]["params"]} if modality == "MR" else asdict(params)
    elif modality == "MR":  # a liver mask was given: nothing else is segmented on MR
        from hepatoplan.segmentation.study import MR_NOT_ASSESSED

        report, used = {"modality": "MR", "qc_flags": []}, {}
        if "tumours" in wanted:
            report["tumours"] = {"computed": False, "reason": MR_NOT_ASSESSED["tumours"]}
        if "portal" in wanted or "hepatic" in wanted:
            report["vessels"] = {"computed": False, "reason": MR_NOT_ASSESSED["vessels"]}
    else:
        liver = arrays["liver"] > 0
        report, used = {}, {}
        if "tumours" in wanted:
            found["tumours"], report["tumours"] = segment_tumours(ct.array, liver, spacing_mm=spacing,
                                                                  params=params.tumours)
            used["tumours"] = asdict(params.tumours)
        if "portal" in wanted or "hepatic" in wanted:
            found["portal"], found["hepatic"], report["vessels"] = segment_vessels(
                ct.array, liver, spacing_mm=spacing, params=params.vessels
            )
            used["vessels"] = asdict(params.vessels)
        # the parts' flags gathered as segment_study gathers them
        report["qc_flags"] = [f"{part}: {flag}" for part, info in report.items()
                              for flag in info.get("qc_flags", [])]
        report["self_check"] = self_check(ct.array, liver, report, spacing_mm=spacing, params=params.self_check)
    for name in wanted:
        if name in found and found[name].any():
            arrays[name] = found[name]
            sources[name] = "automatic (segmentation)"
    log.info("segmented automatically: %s", ", ".join(n for n in wanted if n in found))
    return report, used


@timed("couinaud")
def _derive_segments_from_vessels(study: Study, vessels: np.ndarray) -> None:
    """Couinaud segments from one combined vessel mask; the separated trees become the study's
    portal and hepatic masks (used by the vascular analysis and written with the outputs)."""
    from hepatoplan.couinaud import segment_couinaud_from_vessels

    result = segment_couinaud_from_vessels(study.liver, vessels, spacing_mm=study.spacing_mm)
    study.segments = result.labels
    study.portal, study.hepatic = result.portal, result.hepatic
    for name in ("portal", "hepatic"):
        study.sources[name] = f"separated from --vessels {study.sources.get('vessels')}"
    study.sources["segments"] = "automatic (couinaud, from the vessels separated out of --vessels)"
    study.parameters["couinaud"] = dataclasses.asdict(result.params)
    study.details["vessel_separation"] = result.landmarks["vessel_separation"]
    study.warnings.extend(result.warnings)


@timed("couinaud")
def _derive_segments(study: Study) -> None:
    try:
        from hepatoplan.couinaud import segment_couinaud
    except ImportError:
        log.warning("Couinaud segmentation is not available; give --segments FILE")
        return
    result = segment_couinaud(
        study.liver, study.portal, study.hepatic,
        spacing_mm=study.spacing_mm,
    )
    study.segments = result.labels
    study.parameters["couinaud"] = dataclasses.asdict(result.params)
    study.sources["segments"] = "automatic (couinaud, from portal and hepatic veins)"
    study.warnings.extend(result.warnings)
