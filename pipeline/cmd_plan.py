"""``hepatoplan plan`` (one study → report, label maps, previews) and ``hepatoplan demo``.

``plan`` reads the CT grid and the masks, applies the resections, assesses the remnant and writes
into ``--out``: ``report.json``, ``labels.nii.gz`` and ``remnant.nii.gz`` on the CT's own grid.
Everything is computed before anything is written, and files are written into a temporary folder
beside ``--out`` and moved in at the end, so bad input never leaves partial output.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np

from hepatoplan.errors import InputError
from planning.assessment import assess_remnant
from planning.scenarios import growth_outlook
from resection.procedures import DEFAULT_MARGIN_MM, AnatomicalResection
from resection.virtual import plan_resection
from resection.volumetry import fill_partition, label_volumes_ml, mask_volume_ml, tumour_instances

from . import io, report
from .study import MaskPaths, PlanOptions, Study, load_study

log = logging.getLogger(__name__)

DEMO_DIR = Path(__file__).resolve().parents[1] / "data_samples" / "demo"
DEMO_RESECTIONS = ("right-anterior-sectionectomy", "wedge:3")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="volumetry, virtual resection and FLR verdict for one study",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("ct", type=Path, help="CT/MR: NIfTI, NRRD, MHA/MHD file or DICOM series folder")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_plan_options(p)
    p.set_defaults(func=run)

    d = subparsers.add_parser("demo", help="run plan on the shipped synthetic demo study")
    d.add_argument("--out", type=Path, required=True, help="output folder")
    d.add_argument("--no-preview", dest="preview", action="store_false", help="skip 3D previews")
    d.set_defaults(func=run_demo)


def add_plan_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("masks (on the CT grid; integer labels)")
    m.add_argument("--liver", type=Path, help="liver mask (tumours inside count as liver)")
    m.add_argument("--tumours", type=Path, help="tumours: binary (split into lesions) or instance labels")
    m.add_argument("--portal", type=Path, help="portal vein mask")
    m.add_argument("--hepatic", type=Path, help="hepatic veins (+ IVC) mask")
    m.add_argument("--segments", type=Path, help="Couinaud segments, labels 1-8")
    m.add_argument("--totalsegmentator", type=Path,
                   help="TotalSegmentator multilabel file (liver 5, IVC 63, portal/splenic vein 64)")
    m.add_argument("--resample-masks", action="store_true",
                   help="resample masks nearest-neighbour onto the CT grid when grids differ")
    m.add_argument("--series-uid", help="DICOM SeriesInstanceUID when the folder holds several series")
    m.add_argument("--no-auto", dest="auto", action="store_false",
                   help="never segment automatically: a mask not given means none (the liver is required)")
    m.add_argument("--modality", type=str.upper, default="CT", choices=("CT", "MR"),
                   help="image modality for automatic segmentation (MR: liver only)")
    r = p.add_argument_group("resection and assessment")
    r.add_argument("--resect", action="append", default=[], metavar="SPEC",
                   help="procedure name (right-hepatectomy, ...), 'segments:5,6', 'wedge:all', "
                        "'wedge:1,3', 'wedge:2@5' (margin mm); repeat to combine")
    r.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM,
                   help="clear margin of wedge resections in mm (default %(default)s)")
    r.add_argument("--parenchyma", default="normal", choices=("normal", "chemotherapy", "cirrhosis"),
                   help="liver quality: sets the FLR threshold 20/30/40 %%")
    r.add_argument("--threshold-percent", type=float, help="override the FLR threshold (%%)")
    r.add_argument("--height-cm", type=float, help="height for BSA, TELV and sFLR")
    r.add_argument("--weight-kg", type=float, help="weight for BSA, sFLR and FLR/body weight")
    p.add_argument("--no-preview", dest="preview", action="store_false",
                   help="skip meshes, rendered previews and the HTML report")


def options_from_args(args) -> PlanOptions:
    return PlanOptions(
        ct=args.ct, out=args.out,
        masks=MaskPaths(args.liver, args.tumours, args.portal, args.hepatic, args.segments,
                        args.totalsegmentator),
        resect=tuple(args.resect), margin_mm=args.margin_mm, parenchyma=args.parenchyma,
        threshold_percent=args.threshold_percent, height_cm=args.height_cm, weight_kg=args.weight_kg,
        resample_masks=args.resample_masks, series_uid=args.series_uid, preview=args.preview,
        auto=args.auto, modality=args.modality,
    )


def run(args) -> int:
    result = plan(options_from_args(args))
    print(report.summary_text(result))
    print(f"\nwritten to {args.out}")
    return 0


def run_demo(args) -> int:
    if not (DEMO_DIR / "ct.nii.gz").is_file():
        raise InputError(f"the demo study is missing from {DEMO_DIR}; reinstall hepatoplan")
    demo = DEMO_DIR
    options = PlanOptions(
        ct=demo / "ct.nii.gz", out=args.out,
        masks=MaskPaths(liver=demo / "liver.nii.gz", tumours=demo / "tumours.nii.gz",
                        portal=demo / "portal_vein.nii.gz", hepatic=demo / "hepatic_veins.nii.gz",
                        segments=demo / "segments.nii.gz"),
        resect=DEMO_RESECTIONS, parenchyma="chemotherapy", height_cm=172.0, weight_kg=78.0,
        preview=args.preview,
    )
    result = plan(options)
    print(report.summary_text(result))
    print(f"\nwritten to {args.out}")
    return 0


def plan(options: PlanOptions) -> dict:
    """Run one plan and write its outputs; return the report."""
    specs = options.validate()
    study = load_study(options, needs_segments=any(isinstance(s, AnatomicalResection) for s in specs))
    result, arrays = compute_plan(study, specs, options)
    _write_outputs(options, study, result, arrays)
    return result


def compute_plan(study: Study, specs, options: PlanOptions) -> tuple[dict, dict[str, np.ndarray]]:
    """Volumetry, resection and assessment of a loaded study (no file access).

    Returns the JSON-ready report and the canonical arrays to write.
    """
    spacing = study.spacing_mm
    liver = study.liver
    tumours = None if study.tumours is None else tumour_instances(study.tumours)
    tumour_ml = {} if tumours is None else label_volumes_ml(tumours, spacing_mm=spacing, within=liver)
    tumour_any = np.zeros_like(liver) if tumours is None else tumours > 0
    liver_ml = mask_volume_ml(liver, spacing_mm=spacing)
    functional_ml = mask_volume_ml(liver & ~tumour_any, spacing_mm=spacing)

    segments = segments_ml = given_ml = None
    filled_ml = 0.0
    if study.segments is not None:
        given_ml = label_volumes_ml(study.segments, spacing_mm=spacing, within=liver)
        segments, n_filled = fill_partition(study.segments, liver, spacing_mm=spacing)
        filled_ml = n_filled * float(np.prod(spacing)) / 1000.0
        segments_ml = label_volumes_ml(segments, spacing_mm=spacing, within=liver)
        if n_filled:
            study.warnings.append(
                f"segments: {filled_ml:.1f} mL of liver had no segment label and joined the nearest segment"
            )

    result: dict = {
        "volumes_ml": report.volumes_section(
            liver_ml=liver_ml, tumour_ml=tumour_ml, functional_ml=functional_ml,
            segments_ml=segments_ml, segments_given_ml=given_ml, filled_ml=filled_ml,
        ),
        "sources": study.sources,
        **study.details,
        "geometry": {
            "shape": list(study.ct.shape), "spacing_mm": list(spacing),
            "voxel_volume_mm3": study.ct.voxel_volume_mm3, "native_grid": study.ct.grid.describe(),
        },
    }
    resected = None
    if specs:
        res = plan_resection(
            liver=liver, tumours=tumours, segments=segments, resections=specs,
            spacing_mm=spacing, default_margin_mm=options.margin_mm,
        )
        resected = res.resected_mask
        result["resection"] = {
            "specs": res.specs,
            "segments_removed": res.segments_removed,
            "resected_ml": res.resected_ml,
            "resected_functional_ml": res.resected_functional_ml,
            "remnant_ml": res.remnant_ml,
            "functional_liver_ml": res.functional_liver_ml,
            "flr_percent": res.flr_percent,
            "tumours": [t.to_dict() for t in res.tumours],
        }
        left = [t.id for t in res.tumours if not t.resected]
        if left:
            study.warnings.append(
                f"tumour(s) {', '.join(map(str, left))} not completely resected: the plan is not R0"
            )
        if res.remnant_ml <= 0:
            raise InputError("the resections remove the whole functional liver: nothing remains")
        assessment = assess_remnant(
            remnant_ml=res.remnant_ml, functional_liver_ml=res.functional_liver_ml,
            parenchyma=options.parenchyma, threshold_percent=options.threshold_percent,
            height_cm=options.height_cm, weight_kg=options.weight_kg,
        ).to_dict()
        result["assessment"] = assessment
        if assessment["verdict"] == "inadequate":
            result["growth_outlook"] = growth_outlook(
                flr_ml=res.remnant_ml, target_ml=assessment["min_remnant_ml"],
                tumour_ml=sum(tumour_ml.values()) or None,
            )
    result["warnings"] = study.warnings
    labels = report.label_map(liver=liver, segments=segments, tumours=tumours, resected=resected)
    arrays = {"labels": labels}
    if resected is not None:
        arrays["remnant"] = (liver & ~resected).astype(np.uint8)
    return result, arrays


def _write_outputs(options: PlanOptions, study: Study, result: dict, arrays: dict) -> None:
    out = Path(options.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder; choose a folder path")
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = {"ct": str(options.ct), **{k: str(v) for k, v in options.masks.given().items()}}
    hashes = {name: io.sha256_of(path) for name, path in inputs.items()}
    result["provenance"] = report.provenance(inputs, hashes, {
        "resect": list(options.resect), "margin_mm": options.margin_mm,
        "parenchyma": options.parenchyma, "threshold_percent": options.threshold_percent,
        "height_cm": options.height_cm, "weight_kg": options.weight_kg,
        "resample_masks": options.resample_masks, "series_uid": options.series_uid,
    })
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as tmp:
        tmp = Path(tmp)
        for name, array in arrays.items():
            io.write_labels(array, reference=study.ct, path=tmp / f"{name}.nii.gz")
        _write_visuals(tmp, options, study, result, arrays["labels"])
        (tmp / "report.json").write_text(
            json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8"
        )
        out.mkdir(exist_ok=True)
        # report.json last: its presence marks a complete output folder (batch resumes on it)
        for f in sorted(tmp.iterdir(), key=lambda p: p.name == "report.json"):
            target = out / f.name
            if target.is_dir():
                shutil.rmtree(target)
            shutil.move(str(f), target)
    log.info("outputs written to %s", out)


def _write_visuals(folder: Path, options: PlanOptions, study: Study, result: dict, labels) -> None:
    """Colour table, Slicer .seg.nrrd, DICOM-SEG (DICOM input), meshes, previews, report.html."""
    from .report_html import write_plan_visuals

    growth_png = None
    outlook = result.get("growth_outlook")
    if outlook:
        from planning.scenarios import DEFAULT_TECHNIQUES

        from .growth_plot import plot_stage_outlook

        growth_png = plot_stage_outlook(
            folder / "growth_outlook.png", flr_ml=outlook["flr_ml"],
            min_remnant_ml=outlook["target_ml"], techniques=DEFAULT_TECHNIQUES,
            scenarios=outlook["scenarios"], tumour_ml=outlook.get("tumour_ml"),
            doubling_days=outlook.get("doubling_days"),
        )
    vessels = {name: mask for name, mask in (("portal vein", study.portal), ("hepatic veins", study.hepatic))
               if mask is not None and mask.any()}
    written = write_plan_visuals(
        folder, report=result, labels=labels, affine_ras=study.ct.affine_ras, vessels=vessels,
        source_dicom_files=study.ct.dicom_files or None, growth_plot_png=growth_png,
        meshes_and_previews=options.preview,
    )
    result["outputs"] = sorted(
        str(p.relative_to(folder)) for paths in written.values() for p in paths
    ) + ["labels.nii.gz", "report.json"] + (["remnant.nii.gz"] if "resection" in result else [])
