"""The plan's measurements as a DICOM Structured Report: TID 1500 *Measurement Report* (highdicom).

A PACS viewer shows neither ``report.json`` nor ``report.html``; it shows DICOM. ``plan`` on a
DICOM series writes ``measurements_sr.dcm`` beside ``labels_seg.dcm`` (and ``--store`` sends both
to the source study). Each measurement group (TID 1411, *Volumetric ROI Measurements*)
references the DICOM-SEG segment it was measured on; its finding type and category are that
segment's property type and category, so the SR and the SEG code each structure alike.

==========================  ===============================  ===================================
group (tracking identifier)  DICOM-SEG segment it references  measurements
==========================  ===============================  ===================================
``liver``                    ``liver``                        Volume (mL): ``volumes_ml.liver``
``functional liver``         ``functional liver``             Volume: ``volumes_ml.functional_liver``
``segment K``                ``segment K``                    Volume: ``volumes_ml.segments.K``
``tumour I``                 ``tumour I``                     Volume: ``volumes_ml.tumours.I``
``resected``                 ``resected``                     Volume: ``resection.resected_ml``
``remnant``                  ``remnant``                      Volume: ``resection.remnant_ml``;
                                                              FLR %, sFLR % (when computed), FLR
                                                              threshold %; the verdict (text)
==========================  ===============================  ===================================

A region that is exactly one label of the plan's label map references that label's segment
(``segment 5 kept``, ``liver kept``, ...); the others are added to the DICOM-SEG as overlapping
segments by :func:`measured_regions` (``liver`` = every liver label, ``functional liver`` =
liver without tumours, ``segment K`` = kept and resected parts of K, ``resected`` = liver outside
``remnant.nii.gz``, ``remnant`` = kept liver without tumours). Volumes are the report's: where
the plan counts partial voxels (wedge margins, ablation zones) or subtracts devascularised liver
from the remnant, the value is the report's and the segment is where it was measured.

Codes: *Volume* is SNOMED CT 118565006 in UCUM ``mL``; percentages are UCUM ``%``. FLR %,
sFLR % and the FLR threshold have no code in DICOM PS3.16, SNOMED CT or LOINC: they use the
private coding scheme ``99HEPATOPLAN`` (PS3.16 §8.2: a designator beginning with "99"), declared
in the SR's *Coding Scheme Identification Sequence* (table :data:`PRIVATE_CODES`). The verdict
(``adequate``/``inadequate``) is a TEXT item named DCM 121077 *Conclusion*.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hepatoplan import __version__
from hepatoplan.errors import InputError

from .labels import LIVER_KEPT_LABEL, PRIVATE_SCHEME, RESECTED_LABEL_OFFSET, TUMOUR_LABEL_OFFSET, Code, label_entry
from .outputs import atomic_file

log = logging.getLogger(__name__)

#: hepatoplan's private codes of the report fields without a standard code.
PRIVATE_CODES = {
    "flr_percent": Code("FLR", PRIVATE_SCHEME, "Future liver remnant / functional liver volume"),
    "sflr_percent": Code("SFLR", PRIVATE_SCHEME, "Standardized future liver remnant / total est. liver volume"),
    "threshold_percent": Code("FLRMIN", PRIVATE_SCHEME, "Minimum safe future liver remnant"),
}


@dataclass(frozen=True)
class MeasuredRegion:
    """A region a measurement is made on, and the DICOM-SEG segment that holds it.

    Attributes
    ----------
    key : str
        ``liver``, ``functional liver``, ``segment K``, ``tumour I``, ``resected`` or ``remnant``.
    segment_label : str
        SegmentLabel of the DICOM-SEG segment it references.
    mask : ndarray of bool or None
        The region, to be added to the DICOM-SEG as the segment ``segment_label``; ``None`` when
        an existing segment of the plan's label map is the region.
    """

    key: str
    segment_label: str
    mask: np.ndarray | None = None


def measured_regions(labels: np.ndarray, *, remnant: np.ndarray | None = None) -> list[MeasuredRegion]:
    """The regions of the report's measurements, from the plan's label map.

    Parameters
    ----------
    labels : ndarray of int, shape (X, Y, Z)
        The plan's label map (:mod:`hepatoplan.pipeline.labels` scheme), canonical RAS+.
    remnant : ndarray of bool or uint8, optional
        ``remnant.nii.gz``'s array (liver kept by the resection, tumours included); ``None``
        without a resection.

    Returns
    -------
    list of MeasuredRegion
        In report order: liver, functional liver, segments 1-8, tumours, resected, remnant.
    """
    present = set(np.flatnonzero(np.bincount(labels.ravel())).tolist()) - {0}
    if not present:
        raise InputError("the plan's label map is empty: no measured region")

    def region(key: str, values) -> MeasuredRegion | None:
        values = sorted(present & set(values))
        if not values:
            return None
        if len(values) == 1:
            return MeasuredRegion(key, label_entry(values[0]).name)
        return MeasuredRegion(key, key, np.isin(labels, values))

    liver = region("liver", present)
    tumour_values = sorted(v for v in present if v > TUMOUR_LABEL_OFFSET)
    functional = region("functional liver", present - set(tumour_values))
    if not tumour_values:  # the same voxels: measured on the liver's segment
        functional = MeasuredRegion("functional liver", liver.segment_label)
    regions = [liver, functional]
    regions += [region(f"segment {k}", (k, k + RESECTED_LABEL_OFFSET)) for k in range(1, 9)]
    regions += [region(f"tumour {v - TUMOUR_LABEL_OFFSET}", (v,)) for v in tumour_values]
    if remnant is not None:
        resected = (labels > 0) & ~remnant.astype(bool)
        regions.append(MeasuredRegion("resected", "resected", resected) if resected.any() else None)
        regions.append(region("remnant", range(1, LIVER_KEPT_LABEL + 1)))
    return [r for r in regions if r is not None]


def seg_extra_structures(regions: list[MeasuredRegion]) -> dict[str, np.ndarray]:
    """The regions that must be added to the DICOM-SEG, by segment label."""
    return {r.segment_label: r.mask for r in regions if r.mask is not None}


def _values(report: dict, key: str) -> list[tuple[str, float]]:
    """(report field, value) pairs measured on region ``key``, values not None."""
    v, r, a = report["volumes_ml"], report.get("resection") or {}, report.get("assessment") or {}
    if key == "liver":
        pairs = [("volume_ml", v["liver"])]
    elif key == "functional liver":
        pairs = [("volume_ml", v["functional_liver"])]
    elif key.startswith("segment "):
        pairs = [("volume_ml", (v.get("segments") or {}).get(key.split()[1]))]
    elif key.startswith("tumour "):
        pairs = [("volume_ml", v["tumours"].get(key.split()[1]))]
    elif key == "resected":
        pairs = [("volume_ml", r.get("resected_ml"))]
    elif key == "remnant":
        pairs = [("volume_ml", r.get("remnant_ml")), ("flr_percent", r.get("flr_percent")),
                 ("sflr_percent", a.get("sflr_percent")), ("threshold_percent", a.get("threshold_percent"))]
    else:
        raise ValueError(f"unknown measured region {key!r}")
    return [(name, float(value)) for name, value in pairs if value is not None]


def measurement_report(report: dict, regions: list[MeasuredRegion], seg):
    """Build the SR (highdicom ``Comprehensive3DSR``) of ``report`` on the DICOM-SEG ``seg``.

    Parameters
    ----------
    report : dict
        The plan's ``report.json`` content.
    regions : list of MeasuredRegion
        From :func:`measured_regions`, whose masks were written into ``seg``.
    seg : pydicom.Dataset
        The plan's DICOM-SEG (pixel data not needed). The SR belongs to its study and patient.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR

    Raises
    ------
    InputError
        A region's segment is missing from ``seg``, or ``seg`` has an empty StudyInstanceUID or
        source SeriesInstanceUID.
    """
    import highdicom as hd
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes

    source_series_uid = str(seg.ReferencedSeriesSequence[0].get("SeriesInstanceUID", ""))
    if not str(seg.get("StudyInstanceUID", "")) or not source_series_uid:
        raise InputError("the DICOM-SEG has an empty StudyInstanceUID or source SeriesInstanceUID (the "
                         "source series was anonymised without UIDs), so an SR referencing it would not be "
                         "valid DICOM")
    segments = {str(s.SegmentLabel): s for s in seg.SegmentSequence}
    source_series = hd.sr.SourceSeriesForSegmentation(source_series_uid)
    algorithm = hd.sr.AlgorithmIdentification(name="hepatoplan", version=__version__)
    units = {"volume_ml": hd.sr.CodedConcept("mL", "UCUM", "milliliter")}
    names = {"volume_ml": codes.SCT.Volume}
    for field, code in PRIVATE_CODES.items():
        names[field] = hd.sr.CodedConcept(code.value, code.scheme, code.meaning)
        units[field] = codes.UCUM.Percent
    groups = []
    for region in regions:
        segment = segments.get(region.segment_label)
        if segment is None:
            raise InputError(f"the DICOM-SEG has no segment {region.segment_label!r} for the "
                             f"{region.key} measurements; its segments: {sorted(segments)}")
        measurements = [hd.sr.Measurement(name=names[field], value=value, unit=units[field])
                        for field, value in _values(report, region.key)]
        if not measurements:
            continue
        group = hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=region.key),
            referenced_segment=hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                segment_number=int(segment.SegmentNumber), source_series=source_series),
            finding_type=hd.sr.CodedConcept.from_dataset(segment.SegmentedPropertyTypeCodeSequence[0]),
            finding_category=hd.sr.CodedConcept.from_dataset(segment.SegmentedPropertyCategoryCodeSequence[0]),
            algorithm_id=algorithm, measurements=measurements,
        )
        verdict = (report.get("assessment") or {}).get("verdict")
        if region.key == "remnant" and verdict:
            group[0].ContentSequence.append(hd.sr.TextContentItem(
                name=codes.DCM.Conclusion, value=str(verdict),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS))
        groups.append(group)
    content = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=hd.UID(), name="hepatoplan", manufacturer_name="hepatoplan"))),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
        title=codes.DCM.ImagingMeasurementReport,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[seg], content=content, series_instance_uid=hd.UID(), series_number=902,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="hepatoplan",
        series_description="hepatoplan measurements", is_complete=True, is_final=False,
    )
    if any(field in PRIVATE_CODES for region in regions for field, _ in _values(report, region.key)):
        scheme = Dataset()
        scheme.CodingSchemeDesignator = PRIVATE_SCHEME
        scheme.CodingSchemeName = "hepatoplan local codes for concepts without a standard code"
        scheme.CodingSchemeResponsibleOrganization = "hepatoplan"
        sr.CodingSchemeIdentificationSequence = [*sr.get("CodingSchemeIdentificationSequence", []), scheme]
    return sr


def write_measurement_report(path: str | Path, *, report: dict, regions: list[MeasuredRegion],
                             seg_path: str | Path) -> Path:
    """Write :func:`measurement_report` of ``report`` on the DICOM-SEG at ``seg_path`` to ``path``
    (atomically)."""
    import pydicom

    sr = measurement_report(report, regions, pydicom.dcmread(seg_path, stop_before_pixels=True))
    with atomic_file(path) as tmp:
        sr.save_as(tmp, enforce_file_format=True)
    log.info("wrote %s (%d measurement groups)", path, len(regions))
    return path
