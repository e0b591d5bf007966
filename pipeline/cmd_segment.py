"""``hepatoplan segment``: automatic liver, tumour, portal and hepatic vein masks from a CT (liver on MR).

Reads the image (any format :mod:`hepatoplan.pipeline.io` reads, or a DICOM folder), runs
:func:`hepatoplan.segmentation.segment_study` on the canonical RAS+ array and writes, on the input's own grid,
``liver.nii.gz``, ``tumours.nii.gz`` (instances 1..N), ``portal_vein.nii.gz``,
``hepatic_veins.nii.gz`` and ``segmentation.json`` (volumes, HU statistics, QC flags, the
algorithms' parameters, provenance)
into ``--out``, checked first (:func:`hepatoplan.pipeline.outputs.check_output_folder`). Everything is
computed before anything is written, into a temporary folder beside ``--out`` that then replaces it as a
whole, so a failed run leaves no partial output and a rerun no file of the earlier one.

``--engine totalsegmentator`` runs TotalSegmentator's Python API instead (tasks ``total`` and
``liver_vessels``; only when it and its weights are installed, hepatoplan never downloads weights)
and writes ``liver.nii.gz``, ``tumours.nii.gz`` and ``vessels.nii.gz`` (ONE combined intrahepatic
vessel class, for ``plan --vessels`` / ``couinaud --vessels``) in the same way
(:mod:`hepatoplan.pipeline.totalseg`).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path

from hepatoplan import __version__
from hepatoplan.errors import InputError
from hepatoplan.units import voxel_volume_ml

from . import dicomweb, io
from .outputs import check_output_folder, out_argument, output_folder

log = logging.getLogger(__name__)

OUTPUT_FILES = ("liver.nii.gz", "tumours.nii.gz", "portal_vein.nii.gz", "hepatic_veins.nii.gz", "segmentation.json")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="automatic liver, tumour, portal and hepatic vein masks from a CT (liver only on MR)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("image", help="CT or MR: NIfTI, NRRD, MetaImage file, a DICOM folder or a DICOMweb series URL")
    p.add_argument("--out", type=out_argument, required=True,
                   help="output folder (created, or an earlier one replaced as a whole; it must not hold the image)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even when it is an existing folder that hepatoplan did not write")
    p.add_argument("--series-uid", help="SeriesInstanceUID when the DICOM folder holds several series")
    p.add_argument("--interpolate-slices", action="store_true",
                   help="DICOM series with uneven spacing, a missing or damaged slice or gantry tilt: resample "
                        "onto a regular grid (linear, as dcm2niix) instead of refusing")
    p.add_argument("--modality", choices=("ct", "mr"), default="ct", help="imaging modality (default: ct)")
    p.add_argument("--engine", choices=("classical", "totalsegmentator"), default="classical",
                   help="classical (default) or TotalSegmentator's Python API when it and its weights are "
                        "installed (CT; writes liver, tumours and one combined vessels mask)")
    p.set_defaults(func=run)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process (MB).

    On Linux ``VmHWM`` of the current memory map: unlike ``ru_maxrss`` it is not inherited from a
    parent that forked this process before exec (a benchmark driver holding large arrays).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024.0 * 1024.0) if sys.platform == "darwin" else rss / 1024.0


def run(args) -> int:
    from hepatoplan.segmentation import segment_study  # heavy imports only when the command runs

    out = check_output_folder(args.out, inputs=[args.image], overwrite=args.overwrite)
    t0 = time.perf_counter()
    image = url = dicomweb.ct_argument(args.image)
    if isinstance(url, dicomweb.SeriesURL):
        image = dicomweb.retrieve_series(url)  # into the cache, then read as any DICOM folder
    vol = io.read_image(image, series_uid=args.series_uid, name="IMAGE", interpolate_slices=args.interpolate_slices)
    t_read = time.perf_counter() - t0
    if args.engine == "totalsegmentator":
        return _run_totalsegmentator(args, out, image, vol, url, t0)
    result = segment_study(vol.array, spacing_mm=vol.spacing_mm, modality=args.modality.upper())
    record = {
        "hepatoplan_version": __version__,
        "command": "segment",
        "inputs": {"image": {"path": str(vol.path), "sha256": io.sha256_of(vol.path),
                             **({"url": str(url)} if url is not image else {})}},
        "options": {"modality": args.modality, "series_uid": args.series_uid,
                    "interpolate_slices": args.interpolate_slices},
        "intake_notes": list(vol.notes),
        "parameters": ({"mr_liver": result.report["liver"]["params"]} if args.modality.upper() == "MR"
                       else asdict(result.parameters)),
        "grid": {"shape": list(vol.shape), "spacing_mm": [round(s, 4) for s in vol.spacing_mm]},
        "outputs": {
            "liver.nii.gz": "1 = liver (tumours and intrahepatic vessels included)",
            "tumours.nii.gz": "0 = background, 1..N = lesion instances (see tumours.lesions)",
            "portal_vein.nii.gz": "1 = portal venous tree",
            "hepatic_veins.nii.gz": "1 = hepatic veins and inferior vena cava",
        },
        **result.report,
    }
    with output_folder(out) as tmp:
        io.write_labels(result.liver, reference=vol, path=tmp / "liver.nii.gz")
        io.write_labels(result.tumours, reference=vol, path=tmp / "tumours.nii.gz")
        io.write_labels(result.portal_vein, reference=vol, path=tmp / "portal_vein.nii.gz")
        io.write_labels(result.hepatic_veins, reference=vol, path=tmp / "hepatic_veins.nii.gz")
        record["timing_seconds"] = {
            "read": round(t_read, 2),
            "segment": result.report.get("seconds"),
            "total": round(time.perf_counter() - t0, 2),
        }
        record["peak_memory_mb"] = round(_peak_rss_mb(), 1)
        (tmp / "segmentation.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")
    liver_ml = result.report["liver"]["liver_volume_ml"]
    n_les = result.report.get("tumours", {}).get("n_lesions", 0)
    log.info("liver %.0f mL, %d lesion(s), outputs in %s", liver_ml, n_les, out)
    for flag in result.report["qc_flags"]:
        log.warning("QC: %s", flag)
    for reason in result.report["self_check"]["reasons"]:
        log.warning("self-check failed, review the automatic segmentation: %s", reason)
    for limit in result.report["self_check"].get("limits", []):
        log.warning("limit of the automatic segmentation: %s", limit)
    return 0


def _run_totalsegmentator(args, out: Path, image, vol: io.Volume, url, t0: float) -> int:
    """``--engine totalsegmentator``: TotalSegmentator's outputs mapped onto the image's grid."""
    import tempfile

    import numpy as np

    from hepatoplan.resection.volumetry import tumour_instances

    from . import totalseg

    if args.modality != "ct":
        raise InputError("--engine totalsegmentator: CT only here (its tasks total and liver_vessels); "
                         "use the classical engine for MR")
    with tempfile.TemporaryDirectory(prefix="totalseg-", dir=out.resolve().parent) as work:
        folder = totalseg.run_engine(Path(image), Path(work) / "totalsegmentator")
        found = totalseg.read_totalsegmentator(folder, reference=vol, flag="--engine totalsegmentator")
    if "liver" not in found or not found["liver"].any():
        raise InputError(f"--engine totalsegmentator: TotalSegmentator found no liver in {vol.path}; "
                         "check that the image is an abdominal CT")
    liver = found["liver"] > 0
    masks = {"liver.nii.gz": liver.astype(np.uint8),
             "tumours.nii.gz": tumour_instances(found.get("tumours", np.zeros(liver.shape, np.uint8)) > 0)}
    if "vessels" in found:
        masks["vessels.nii.gz"] = found["vessels"]
    voxel_ml = voxel_volume_ml(vol.spacing_mm)
    record = {
        "hepatoplan_version": __version__, "command": "segment", "engine": "totalsegmentator",
        "inputs": {"image": {"path": str(vol.path), "sha256": io.sha256_of(vol.path),
                             **({"url": str(url)} if url is not image else {})}},
        "options": {"modality": args.modality, "series_uid": args.series_uid,
                    "interpolate_slices": args.interpolate_slices},
        "intake_notes": list(vol.notes),
        "totalsegmentator": {"tasks": list(totalseg.ENGINE_TASKS), "roi_subset_total": list(totalseg.ENGINE_ROI_SUBSET),
                             "masks_found": sorted(found)},
        "grid": {"shape": list(vol.shape), "spacing_mm": [round(s, 4) for s in vol.spacing_mm]},
        "outputs": {"liver.nii.gz": "1 = liver (TotalSegmentator total: liver)",
                    "tumours.nii.gz": "0 = background, 1..N = lesion instances (TotalSegmentator liver_tumor)",
                    **({"vessels.nii.gz": "1 = intrahepatic portal and hepatic veins in ONE class (TotalSegmentator "
                        "liver_vessels): give it to plan/couinaud with --vessels"} if "vessels" in found else {})},
        "volumes_ml": {name: round(float(np.count_nonzero(m)) * voxel_ml, 2) for name, m in masks.items()},
        "not_found": [n for n in ("vessels", "tumours") if n not in found],
    }
    with output_folder(out) as tmp:
        for name, mask in masks.items():
            io.write_labels(mask, reference=vol, path=tmp / name)
        record["timing_seconds"] = {"total": round(time.perf_counter() - t0, 2)}
        (tmp / "segmentation.json").write_text(json.dumps(record, indent=2) + "\n")
    log.info("TotalSegmentator: liver %.0f mL, outputs in %s", record["volumes_ml"]["liver.nii.gz"], out)
    return 0


def _json_default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
