"""One call for a whole study: liver, tumours, portal and hepatic veins, and a JSON-ready report.

Arrays are canonical RAS+ (axis 0 -> Right, 1 -> Anterior, 2 -> Superior). Nothing here reads files.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from hepatoplan.errors import NotComputableError
from hepatoplan.units import voxel_volume_ml

from .liver import segment_liver
from .params import SegmentationParams
from .selfcheck import self_check
from .tumours import segment_tumours
from .vessels import segment_vessels

log = logging.getLogger(__name__)

#: Why tumours and vessels are not assessed on MR (reported in segmentation.json and report.json).
MR_NOT_ASSESSED = {
    "tumours": "not assessed on MR: the automatic tumour detection works on CT densities (HU) only; "
               "give --tumours FILE for a plan with tumours",
    "vessels": "not assessed on MR: the automatic vessel segmentation needs a contrast-enhanced CT; "
               "give --portal FILE and --hepatic FILE (or --segments FILE) for anatomical resections",
}


@dataclass
class StudySegmentation:
    """Masks of one study on the input's canonical grid, plus the report.

    Attributes
    ----------
    liver : uint8 array
        1 = liver (tumours and intrahepatic vessels included).
    tumours : uint16 array
        Lesion instances 1..N (0 elsewhere), ordered by decreasing volume.
    portal_vein, hepatic_veins : uint8 arrays
        The two venous trees (hepatic includes the inferior vena cava). All zero when not computed
        (MR, non-contrast CT); ``report["vessels"]["computed"]`` says why.
    report : dict
        JSON-ready: per-structure statistics, volumes (mL), QC flags, timings (s), and the
        self-check (``self_check``: ``passed``, each check's value and limit, the reasons it failed).
    parameters : SegmentationParams
        The tuned values used (``dataclasses.asdict`` gives them JSON-ready).
    """

    liver: np.ndarray
    tumours: np.ndarray
    portal_vein: np.ndarray
    hepatic_veins: np.ndarray
    report: dict = field(default_factory=dict)
    parameters: SegmentationParams = field(default_factory=SegmentationParams)


def segment_study(
    image: np.ndarray, *, spacing_mm, modality: str = "CT", params: SegmentationParams = SegmentationParams()
) -> StudySegmentation:
    """Segment liver, tumours and both venous trees of one CT (liver only on MR).

    Parameters
    ----------
    image : (X, Y, Z) array
        CT in HU (or MR), canonical RAS+ (axis 0 -> Right, 1 -> Anterior, 2 -> Superior).
    spacing_mm : 3-tuple of float
        Voxel size (mm).
    modality : {"CT", "MR"}
        On MR only the liver is segmented.
    params : SegmentationParams, keyword-only
        Tuned values of the liver, tumour and vessel algorithms (defaults: the documented ones).

    Returns
    -------
    StudySegmentation

    Raises
    ------
    InputError
        Unusable input (shape, spacing, field of view, intensities not in HU).
    NotComputableError
        The liver found fails the quality checks (e.g. no liver in the scan): no mask is returned
        rather than a confident wrong one.
    """
    t0 = time.perf_counter()
    modality = str(modality).upper()
    liver, linfo = segment_liver(image, spacing_mm=spacing_mm, modality=modality, params=params.liver)
    if not linfo["qc_passed"]:
        raise NotComputableError(
            "automatic liver segmentation failed its quality checks: " + "; ".join(linfo["qc_flags"])
            + ". Check that the scan covers the upper abdomen, or give a liver mask made elsewhere (--liver FILE)"
        )
    report: dict = {"modality": modality, "liver": linfo}
    zeros8 = np.zeros(liver.shape, np.uint8)
    portal, hepatic = zeros8, zeros8.copy()
    tumours = np.zeros(liver.shape, np.uint16)
    contrast = linfo.get("contrast_phase_guess", "")
    checked = None
    if modality != "CT":
        report["tumours"] = {"computed": False, "reason": MR_NOT_ASSESSED["tumours"]}
        report["vessels"] = {"computed": False, "reason": MR_NOT_ASSESSED["vessels"]}
    else:
        t = time.perf_counter()
        tumours, tinfo = segment_tumours(image, liver, spacing_mm=spacing_mm, params=params.tumours)
        tinfo["seconds"] = round(time.perf_counter() - t, 2)
        # lesions found in a notch of the liver surface are liver (as in manual references)
        added = (tumours > 0) & (liver == 0)
        if added.any():
            liver[added] = 1
            voxel_ml = voxel_volume_ml(spacing_mm)
            linfo["lesion_volume_added_ml"] = round(float(np.count_nonzero(added)) * voxel_ml, 2)
            linfo["liver_volume_ml"] = round(float(np.count_nonzero(liver)) * voxel_ml, 1)
        report["tumours"] = {"computed": True, **tinfo}
        # the self-check reads the final liver and the liver's and tumours' reports only: it runs
        # beside the vessel search (ITK, numpy and fill_voids release the GIL)
        checking = ThreadPoolExecutor(1)
        checked = checking.submit(self_check, image, liver, dict(report), spacing_mm=spacing_mm,
                                  params=params.self_check, liver_params=params.liver)
        checking.shutdown(wait=False)
        if contrast == "non-contrast":
            report["vessels"] = {
                "computed": False,
                "reason": "non-contrast CT: vessels are not brighter than the parenchyma",
            }
        else:
            t = time.perf_counter()
            portal, hepatic, vinfo = segment_vessels(image, liver, spacing_mm=spacing_mm, params=params.vessels)
            vinfo["seconds"] = round(time.perf_counter() - t, 2)
            report["vessels"] = {"computed": True, **vinfo}
            portal[tumours > 0] = 0  # a hyperdense lesion is as bright as the veins
            hepatic[tumours > 0] = 0
    flags = list(linfo["qc_flags"])
    for key in ("tumours", "vessels"):
        flags += [f"{key}: {f}" for f in report[key].get("qc_flags", [])]
    report["qc_flags"] = flags
    report["qc_passed"] = True
    report["self_check"] = checked.result() if checked is not None else self_check(
        image, liver, report, spacing_mm=spacing_mm, params=params.self_check, liver_params=params.liver)
    report["seconds"] = round(time.perf_counter() - t0, 2)
    return StudySegmentation(liver, tumours, portal, hepatic, report, params)
