"""``hepatoplan plan`` (one study → report, label maps, previews) and ``hepatoplan demo``.

``plan`` reads the CT grid and the masks, applies the resections, assesses the remnant and writes
into ``--out``: ``report.json``, ``labels.nii.gz`` and ``remnant.nii.gz`` on the CT's own grid.
``--out`` is checked before any work (:func:`hepatoplan.pipeline.outputs.check_output_folder`).
Outputs are written into a temporary folder beside ``--out`` (the label maps as soon as they are
known, the rest once everything is computed) that then replaces it as a whole, so bad input never
leaves partial output and a rerun no file of an earlier one. Numbers are rounded to their meaning
once (:func:`hepatoplan.pipeline.report.rounded`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from hepatoplan.arrays import bounding_box
from hepatoplan.errors import HepatoplanError, InputError
from hepatoplan.planning.assessment import assess_remnant
from hepatoplan.resection.ablation import DEFAULT_ABLATION_MARGIN_MM, ablation_zone
from hepatoplan.resection.procedures import DEFAULT_MARGIN_MM, AnatomicalResection, WedgeResection
from hepatoplan.resection.virtual import plan_resection
from hepatoplan.resection.volumetry import fill_partition, label_volumes_ml, tumour_instances
from hepatoplan.units import voxel_volume_ml

from . import dicom_sr, dicomweb, io, report, report_html, timing
from .labels import label_map
from .outputs import check_output_folder, out_argument, output_folder
from .helper_process import PlanHelper
from .report_html import StartedAhead
from .study import MaskPaths, PlanOptions, Study, load_study

log = logging.getLogger(__name__)

DEMO_RESECTIONS = ("right-anterior-sectionectomy", "wedge:3")
#: The verdict when the automatic segmentation failed its self-check (the FLR's own verdict is
#: kept as ``assessment["flr_verdict"]``, the reasons as ``assessment["unverified_reasons"]``).
UNVERIFIED = "unverified: review the automatic segmentation"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="volumetry, virtual resection and FLR verdict for one study",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("ct", help="CT/MR: NIfTI, NRRD, MHA/MHD file, DICOM series folder or DICOMweb series URL "
                              "(http(s)://HOST/.../studies/UID/series/UID)")
    p.add_argument("--out", type=out_argument, required=True,
                   help="output folder (replaced as a whole: it must not hold an input)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even when it is an existing folder that hepatoplan did not write")
    add_plan_options(p)
    p.set_defaults(func=run)

    d = subparsers.add_parser("demo", help="run plan on the shipped synthetic demo study")
    d.add_argument("--out", type=out_argument, required=True, help="output folder (replaced as a whole)")
    d.add_argument("--overwrite", action="store_true",
                   help="replace --out even when it is an existing folder that hepatoplan did not write")
    d.add_argument("--no-preview", dest="preview", action="store_false", help="skip 3D previews")
    d.set_defaults(func=run_demo)


def add_plan_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("masks (on the CT grid; integer labels)")
    m.add_argument("--liver", type=Path, help="liver mask (tumours inside count as liver)")
    m.add_argument("--tumours", type=Path, help="tumours: binary (split into lesions) or instance labels")
    m.add_argument("--portal", type=Path, help="portal vein mask")
    m.add_argument("--hepatic", type=Path, help="hepatic veins (+ IVC) mask")
    m.add_argument("--segments", type=Path, help="Couinaud segments, labels 1-8")
    m.add_argument("--vessels", type=Path,
                   help="instead of --portal/--hepatic: ONE combined intrahepatic vessel mask (e.g. TotalSegmentator "
                        "liver_vessels), separated into portal and hepatic trees for the Couinaud segments")
    m.add_argument("--totalsegmentator", type=Path, action="append",
                   help="TotalSegmentator output: a folder of per-structure files or a multilabel file of the tasks "
                        "total (liver 5, IVC 63, portal/splenic vein 64), liver_vessels or liver_segments; repeat "
                        "for several. Supplies the masks not given separately")
    m.add_argument("--segments-from", choices=("couinaud", "totalsegmentator"), default="couinaud",
                   help="couinaud (default): segments derived from the vessels when --segments is not given; "
                        "totalsegmentator: TotalSegmentator's liver_segments from --totalsegmentator")
    m.add_argument("--resample-masks", action="store_true",
                   help="resample masks nearest-neighbour onto the CT grid when grids differ")
    m.add_argument("--series-uid", help="DICOM SeriesInstanceUID when the folder holds several series")
    m.add_argument("--interpolate-slices", action="store_true",
                   help="DICOM series with uneven spacing, a missing or damaged slice or gantry tilt: resample "
                        "onto a regular grid (linear, as dcm2niix) instead of refusing")
    m.add_argument("--no-auto", dest="auto", action="store_false",
                   help="never segment automatically: a mask not given means none (the liver is required)")
    m.add_argument("--modality", type=str.upper, default="CT", choices=("CT", "MR"),
                   help="image modality for automatic segmentation (MR: liver only)")
    r = p.add_argument_group("resection and assessment")
    r.add_argument("--resect", action="append", default=[], metavar="SPEC",
                   help="procedure name (right-hepatectomy, ...), 'segments:5,6', 'wedge:all', "
                        "'wedge:1,3', 'wedge:2@5' (margin mm), 'ablate:2' or 'ablate:2@15' (zone "
                        "radius mm); repeat to combine")
    r.add_argument("--margin-mm", type=float, default=DEFAULT_MARGIN_MM,
                   help="clear margin of wedge resections in mm (default %(default)s)")
    r.add_argument("--near-vessel-margin-mm", type=float,
                   help="modulated wedges: this smaller margin where the tumour lies near a major vessel")
    r.add_argument("--near-vessel-distance-mm", type=float, default=5.0,
                   help="'near a vessel' for --near-vessel-margin-mm (default %(default)s mm)")
    r.add_argument("--detach-from", choices=("portal", "hepatic", "both"),
                   help="vascular detachment: wedges keep this vessel tree (vascular R1 where touched)")
    r.add_argument("--ablation-margin-mm", type=float, default=DEFAULT_ABLATION_MARGIN_MM,
                   help="margin an 'ablate:ID[@RADIUS_MM]' zone must cover around its tumour (default %(default)s)")
    r.add_argument("--function-map", type=Path,
                   help="function image (e.g. scintigraphy) on the CT grid: adds the functional FLR %%")
    r.add_argument("--parenchyma", default="normal", choices=("normal", "chemotherapy", "cirrhosis"),
                   help="liver quality: sets the FLR threshold 20/30/40 %%")
    r.add_argument("--threshold-percent", type=float, help="override the FLR threshold (%%)")
    r.add_argument("--height-cm", type=float, help="height for BSA, TELV and sFLR")
    r.add_argument("--weight-kg", type=float, help="weight for BSA, sFLR and FLR/body weight")
    p.add_argument("--no-preview", dest="preview", action="store_false",
                   help="skip meshes, rendered previews, the slice viewer, qc_montage.png and report.pdf "
                        "(faster: with every mask given the CT is read header-only; report.html has tables only)")
    p.add_argument("--store", metavar="URL",
                   help="DICOMweb root URL (e.g. https://pacs/dicom-web): store the DICOM-SEG and the SR "
                        "measurement report into the source study (STOW-RS); credentials from "
                        "HEPATOPLAN_DICOMWEB_TOKEN or HEPATOPLAN_DICOMWEB_USER/_PASSWORD")


def options_from_args(args) -> PlanOptions:
    return PlanOptions(
        ct=dicomweb.ct_argument(args.ct), out=args.out,
        masks=MaskPaths(args.liver, args.tumours, args.portal, args.hepatic, args.segments,
                        args.totalsegmentator and tuple(args.totalsegmentator), vessels=args.vessels),
        segments_from=args.segments_from,
        resect=tuple(args.resect), margin_mm=args.margin_mm, parenchyma=args.parenchyma,
        threshold_percent=args.threshold_percent, height_cm=args.height_cm, weight_kg=args.weight_kg,
        resample_masks=args.resample_masks, series_uid=args.series_uid, preview=args.preview,
        auto=args.auto, modality=args.modality, near_vessel_margin_mm=args.near_vessel_margin_mm,
        near_vessel_distance_mm=args.near_vessel_distance_mm, detach_from=args.detach_from,
        ablation_margin_mm=args.ablation_margin_mm, function_map=args.function_map,
        interpolate_slices=args.interpolate_slices,
        store=args.store and dicomweb.parse_base_url(args.store),
    )


def plan_inputs(options: PlanOptions) -> list:
    """Every input path of a plan (the CT, each mask, the function map), for the ``--out`` check."""
    paths = [p for v in options.masks.given().values() for p in (v if isinstance(v, tuple) else (v,))]
    return [options.ct, *paths, options.function_map]


def run(args) -> int:
    options = options_from_args(args)
    check_output_folder(options.out, inputs=plan_inputs(options), overwrite=args.overwrite)
    result = plan(options)
    print(report.summary_text(result))
    print(f"\nwritten to {args.out}")
    stored = result.get("dicomweb", {}).get("stored")
    if stored:
        print(f"stored {' and '.join(i['modality'] for i in stored['instances'])} into study "
              f"{stored['study_instance_uid']} at {stored['url']}")
    return 0


def run_demo(args) -> int:
    from hepatoplan.data_samples.write import DEMO_DIR

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
    check_output_folder(options.out, inputs=plan_inputs(options), overwrite=args.overwrite)
    result = plan(options)
    print(report.summary_text(result))
    print(f"\nwritten to {args.out}")
    return 0


def plan(options: PlanOptions) -> dict:
    """Run one plan and write its outputs; return the report."""
    specs, ablations = options.validate()
    anatomical = any(isinstance(s, AnatomicalResection) for s in specs)
    options, dicomweb_section = dicomweb.prepare(options)  # a URL CT is retrieved into the cache
    inputs = _hashed_inputs(options)
    # the provenance hashes are computed meanwhile (hashlib releases the GIL); with previews, the
    # vessels' meshes are made as soon as the masks are read (beside the Couinaud segments), the
    # others as soon as the label map is known, beside the vascular analysis and the assessment
    # (vtk's contouring and smoothing run outside the GIL), and the helper process that decimates the
    # meshes and writes report.pdf starts once the trees have (its imports done by the time it is asked)
    with timing.timed_run(), ThreadPoolExecutor(max_workers=1) as hashing, \
            ThreadPoolExecutor(max_workers=1) as meshing, ExitStack() as helpers:
        helper: list[PlanHelper] = []
        if options.auto and not {"liver", "totalsegmentator"} & set(options.masks.given()):
            # the segmentation's modules imported while the CT is read (before the hashes, which are
            # needed last), the modules the plan calls after the automatic segmentation (mostly one
            # thread) beside it, and the compiled transform when an anatomical resection will need it (on given
            # masks importing beside the reads was measured and not kept: bench/RESULTS.md, eleventh stop)
            hashing.submit(_import_ahead, options, resects=bool(specs or ablations),
                           compiled=options.modality == "CT" and anatomical, previews=options.preview)
        sha256 = {name: hashing.submit(io.sha256_of, path) for name, path in inputs.items()}
        vessel_meshes: list[Future] = []
        vessel_trees: list = []

        def masks_read(study: Study) -> None:
            if (specs or ablations) and (study.portal is not None or study.hepatic is not None):
                # the resection-independent half of the vascular analysis beside the Couinaud segments,
                # not in _vascular; on given masks the compiled transform is loaded by the first nearest-voxel
                # transform, in a tree's thread once the tree's own voxels are known (an anatomical resection
                # needs every liver voxel's nearest vessel voxel; wedges alone only where the cut detaches a
                # piece: on 7 of 9 IRCADb cases never), not ahead of the trees (bench/RESULTS.md, eleventh stop)
                # (the two trees side by side, as in the analysis: one after the other they were not ready
                # in time, bench/RESULTS.md, tenth stop); what is not prepared when the resection is known is
                # prepared then (consequences_of)
                trees = _vessel_trees(study, nearest_nodes=anatomical, deferred=True)
                vessel_trees.append(trees)
                hashing.submit(trees.prepare)
            if options.preview:  # after the trees' start: started with the plan, its interpreter and imports (~0.35 s
                helper.append(helpers.enter_context(PlanHelper()))  # of CPU) took a core from the reads, then scipy's
            if options.preview and (vessels := _vessels(study)):
                from .meshing import structure_meshes

                vessel_meshes.append(meshing.submit(structure_meshes, vessels, affine_ras=study.ct.affine_ras))

        def read(names: set[str]) -> None:
            # the vascular analysis' modules (scipy.ndimage: ~0.17 s holding the GIL) imported as soon as the masks
            # are read, while the CT's voxels are still being read (ISA-L inflates outside the GIL)
            if (specs or ablations) and {"portal", "hepatic", "vessels"} & names:
                import hepatoplan.resection.vascular  # noqa: F401

        study = load_study(options, needs_segments=anatomical, on_masks=masks_read, on_masks_read=read)
        function_map = None
        if options.function_map is not None:
            function_map = io.read_image(options.function_map, name="--function-map", reference=study.ct,
                                         resample=options.resample_masks).array
        started: list[StartedAhead] = []
        first: list[Future] = []

        def start_first_meshes(labels_without_resection: Callable[[], np.ndarray]) -> None:
            from .report_html import meshes_before_resection

            vessels = vessel_meshes[0] if vessel_meshes else None
            first.append(meshing.submit(meshes_before_resection, labels_without_resection,
                                        affine_ras=study.ct.affine_ras, vessels=vessels))

        def start_meshes(labels: np.ndarray) -> None:
            from .labels import label_boxes
            from .report_html import plan_meshes

            boxes = label_boxes(labels)
            vessels = vessel_meshes[0] if vessel_meshes else _vessels(study)
            made = first[0] if first else None
            started.append(StartedAhead(boxes, meshing.submit(plan_meshes, labels, boxes=boxes, made=made,
                                                              affine_ras=study.ct.affine_ras, vessels=vessels),
                                        first=made))

        # the whole folder appears at once, replacing an earlier run's; the label files are written into
        # it as soon as they are known, beside the vascular analysis and the other outputs (ITK and zlib release
        # the GIL), labels.seg.nrrd first (the longest); on an error it is removed, the files' writers joined first
        with output_folder(options.out) as folder, ThreadPoolExecutor(io.worker_threads()) as files:
            writing: dict[str, Future] = {}

            def write_arrays(arrays: dict[str, np.ndarray]) -> None:
                writing.update(_start_label_files(files, folder, study, arrays, started=writing))

            result, arrays = compute_plan(study, specs, options, ablations=ablations, function_map=function_map,
                                          on_labels=start_meshes if options.preview else None, on_arrays=write_arrays,
                                          on_unresected=start_first_meshes if options.preview else None,
                                          vessel_trees=vessel_trees[0] if vessel_trees else None)
            write_arrays(arrays)
            result = report.rounded(result)  # once, before any output: report.json, SR, HTML agree digit for digit
            if dicomweb_section:
                result["dicomweb"] = dicomweb_section
            _write_outputs(options, study, result, arrays, folder=folder, nifti=list(writing.values()), inputs=inputs,
                           label_files=writing[_SLICER_FILES],
                           hashes={name: future.result() for name, future in sha256.items()},
                           ahead=(started[0] if started else StartedAhead())._replace(pdf=helper[0] if helper else None))
    log.info("outputs written to %s", options.out)
    return result


def _hashed_inputs(options: PlanOptions) -> dict[str, str]:
    """The plan's input files by name, as its provenance hashes them: a repeated option as name, name_2, ..."""
    inputs = {"ct": str(options.ct)}
    for name, given in options.masks.given().items():
        for i, path in enumerate(given if isinstance(given, tuple) else (given,)):
            inputs[name if i == 0 else f"{name}_{i + 1}"] = str(path)
    if options.function_map is not None:
        inputs["function_map"] = str(options.function_map)
    return inputs


def _import_ahead(options: PlanOptions, *, resects: bool, compiled: bool = False, previews: bool = False) -> None:
    """Import the modules the plan will call: the segmentation (with scipy.ndimage) while the CT is
    read; the Couinaud division when the segments may be derived; the vascular analysis when something
    is resected; with ``compiled`` the compiled transform, :func:`~hepatoplan.nearest_voxel.load_compiled`,
    while the automatic segmentation runs; with ``previews`` also the output stages' modules (vtk's
    meshing and rendering classes, PIL, the label files; not the mesh decimation, which runs in the plan's
    helper process) and the offscreen-rendering probe (a child process), which otherwise load and run
    beside the meshes after the segmentation. A failed import is left to the main thread, which raises it."""
    import hepatoplan.segmentation  # noqa: F401  (first: the main thread needs it once the CT is read)

    if options.masks.segments is None and options.segments_from == "couinaud":
        import hepatoplan.couinaud.segment  # noqa: F401
    if resects:
        import hepatoplan.resection.vascular  # noqa: F401
    if compiled:
        from hepatoplan.nearest_voxel import load_compiled

        load_compiled()
    if previews:
        import nrrd  # noqa: F401
        from PIL import Image, ImageDraw, ImageFont  # noqa: F401

        from . import mesh_files, montage, rendering, seg_nrrd, slice_viewer  # noqa: F401

        rendering.start_offscreen_check()
        rendering.vtk_classes()  # meshing's too


@timing.timed("volumetry")
def compute_plan(study: Study, specs, options: PlanOptions, *, ablations=(), function_map=None,
                 on_labels: Callable[[np.ndarray], None] | None = None,
                 on_arrays: Callable[[dict[str, np.ndarray]], None] | None = None,
                 on_unresected: Callable[[Callable[[], np.ndarray]], None] | None = None,
                 vessel_trees=None) -> tuple[dict, dict[str, np.ndarray]]:
    """Volumetry, resection and assessment of a loaded study (no file access).

    Returns the JSON-ready report and the canonical arrays to write. ``on_labels`` is called with
    the label map as soon as it is known (after the resection, while its vascular consequences are
    computed in a thread, before the assessment: neither changes it), ``on_arrays`` with the arrays to
    write known then (the label map and the remnant); ``on_unresected``, when something is resected,
    before the resection with a function making the label map without it (segments and tumours as in
    the plan's). ``vessel_trees``: the study's vessel trees for the
    vascular analysis (:func:`_vessel_trees`, being prepared in another thread); otherwise they are
    prepared there.
    """
    spacing = study.spacing_mm
    liver = study.liver
    box = bounding_box(liver)  # the volumes within the liver, counted in its box (a quarter of the CT grid)
    in_box = liver[box]
    voxel_ml = voxel_volume_ml(spacing)
    tumours = None if study.tumours is None else tumour_instances(study.tumours)
    tumours_in_liver = np.zeros(0, np.uint8) if tumours is None else tumours[box][in_box]
    tumour_ml = {} if tumours is None else label_volumes_ml(tumours_in_liver, spacing_mm=spacing)
    liver_voxels = int(np.count_nonzero(in_box))
    liver_ml = liver_voxels * voxel_ml
    functional_ml = (liver_voxels - int(np.count_nonzero(tumours_in_liver))) * voxel_ml

    segments = segments_ml = given_ml = None
    filled_ml = 0.0
    if study.segments is not None:
        given_ml = label_volumes_ml(study.segments[box], spacing_mm=spacing, within=in_box)
        segments, n_filled = fill_partition(study.segments, liver, spacing_mm=spacing)
        filled_ml = n_filled * voxel_ml
        segments_ml = label_volumes_ml(segments[box], spacing_mm=spacing, within=in_box)
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
    if "tumours" in study.details.get("not_assessed", {}):  # MR: unknown, not zero
        result["volumes_ml"].update(tumours=None, tumours_total=None)
    made: dict[str, np.ndarray] = {}

    def labels_of(resected: np.ndarray | None) -> None:
        made["labels"] = label_map(liver=liver, segments=segments, tumours=tumours, resected=resected)
        if resected is not None:
            made["remnant"] = np.greater(liver, resected).view(np.uint8)  # liver & ~resected, in one pass
        if on_arrays is not None:
            on_arrays(dict(made))
        if on_labels is not None:
            on_labels(made["labels"])

    if specs or ablations:
        if on_unresected is not None:
            on_unresected(partial(label_map, liver=liver, segments=segments, tumours=tumours, resected=None))
        _resect(result, _Resection(study, options, segments, tumours, tumour_ml, function_map, vessel_trees),
                specs, ablations, on_resected=labels_of)
    else:
        labels_of(None)
    result["warnings"] = study.warnings
    arrays = dict(made)
    if "vessel_separation" in study.details:  # the trees separated from --vessels, for the user to check
        arrays.update(portal_vein=study.portal.view(np.uint8), hepatic_veins=study.hepatic.view(np.uint8))
    return result, arrays


@dataclass(frozen=True)
class _Resection:
    """What every resection step reads: the study, the options and the derived arrays."""

    study: Study
    options: PlanOptions
    segments: np.ndarray | None
    tumours: np.ndarray | None
    tumour_ml: dict
    function_map: np.ndarray | None
    vessel_trees: object = None  # VesselTrees (resection/vascular.py, imported when needed)

    @property
    def liver(self) -> np.ndarray:
        return self.study.liver

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        return self.study.spacing_mm


@timing.timed("resection")
def _resect(result: dict, plan: _Resection, specs, ablations, *,
            on_resected: Callable[[np.ndarray], None]) -> None:
    """Resections, their vascular consequences and the assessment, into ``result``; the removed
    mask is handed to ``on_resected`` as soon as it is known.

    Steps: sparing wedges (:func:`_sparing_wedges`) and ablations (:func:`_ablations`) build
    partial-volume fractions that :func:`plan_resection` adds to the anatomical and plain wedge
    resections; then the vascular consequences (:func:`_vascular`), the function-weighted FLR
    and the assessment (:func:`_assess`).
    """
    options = plan.options
    sparing = options.near_vessel_margin_mm is not None or options.detach_from is not None
    extra = np.zeros(plan.liver.shape, np.float32) if (sparing or ablations) else None
    extra_specs, details = [], {}
    if sparing:
        wedges = [s for s in specs if isinstance(s, WedgeResection)]
        specs = [s for s in specs if not isinstance(s, WedgeResection)]
        texts, details["sparing"] = _sparing_wedges(plan, wedges, extra)
        extra_specs += texts
    if ablations:
        texts, details["ablations"] = _ablations(plan, ablations, extra)
        extra_specs += texts
    res = plan_resection(
        liver=plan.liver, tumours=plan.tumours, segments=plan.segments, resections=specs,
        spacing_mm=plan.spacing_mm, default_margin_mm=options.margin_mm, extra_fraction=extra,
        extra_specs=tuple(extra_specs),
    )
    # the vascular consequences (GIL-bound threads) computed beside the label map and its handlers (numpy's
    # passes and the label files' compression, outside the GIL), which do not depend on them
    with ThreadPoolExecutor(max_workers=1) as analysis:
        vascular = analysis.submit(_consequences, plan, res)
        resected = res.resected_mask
        on_resected(resected)
        section = _resection_section(res, details)
        devascularised = _vascular(plan, res, section, vascular)
    result["resection"] = section
    if plan.function_map is not None:
        from hepatoplan.resection.function import function_weighted_flr

        remnant_fraction = 1.0 - res.resected_fraction
        if devascularised is not None:
            remnant_fraction = remnant_fraction * ~devascularised
        result["function"] = function_weighted_flr(function_map=plan.function_map, liver=plan.liver,
                                                   remnant_fraction=remnant_fraction, tumours=plan.tumours)
    left = [t["id"] for t in section["tumours"] if t["status"] not in ("resected", "ablated")]
    if left:
        plan.study.warnings.append(
            f"tumour(s) {', '.join(map(str, left))} not completely resected or ablated: the plan is not R0"
        )
    if section["remnant_ml"] <= 0:
        raise InputError("the resections remove the whole functional liver: nothing remains")
    _assess(result, plan, functional_liver_ml=res.functional_liver_ml)


def _sparing_wedges(plan: _Resection, wedges, extra: np.ndarray) -> tuple[list[str], list[dict]]:
    """Parenchymal-sparing wedges (modulated margins, vascular detachment): each one's fraction
    is maxed into ``extra``; returns their spec texts and per-tumour outcomes."""
    from hepatoplan.resection.sparing import sparing_wedges  # imported only by the plans that use them

    study, options = plan.study, plan.options
    vessels = [v for v in (study.portal, study.hepatic) if v is not None]
    if not vessels:
        raise InputError("--near-vessel-margin-mm and --detach-from need --portal and/or --hepatic")
    major = np.logical_or.reduce(vessels)
    protected = {"portal": study.portal, "hepatic": study.hepatic, "both": major}.get(options.detach_from)
    if options.detach_from and protected is None:
        raise InputError(f"--detach-from {options.detach_from}: give --{options.detach_from} FILE")
    texts, outcomes = [], []
    for wedge in wedges:
        if plan.tumours is None or not plan.tumours.any():
            raise InputError(f"--resect {wedge.text}: a wedge resection needs tumours (--tumours FILE)")
        out = sparing_wedges(
            liver=plan.liver, tumours=plan.tumours, spacing_mm=plan.spacing_mm,
            tumour_ids=wedge.tumour_ids,
            margin_mm=options.margin_mm if wedge.margin_mm is None else wedge.margin_mm,
            near_vessel_margin_mm=options.near_vessel_margin_mm,
            near_vessel_distance_mm=options.near_vessel_distance_mm,
            major_vessels=major, protected=protected,
        )
        np.maximum(extra, out["fraction"], out=extra)
        outcomes += [t.to_dict() for t in out["tumours"]]
        texts.append(wedge.describe() + ", margin modulated near vessels" * (
            options.near_vessel_margin_mm is not None) + f", detached from {options.detach_from}" * bool(
            options.detach_from))
    return texts, outcomes


def _ablations(plan: _Resection, ablations, extra: np.ndarray) -> tuple[list[str], list[dict]]:
    """Thermal ablation zones: each one's fraction is maxed into ``extra``; returns their spec
    texts and zone records."""
    if plan.tumours is None:
        raise InputError("ablate: specs need tumours (--tumours FILE)")
    texts, zones = [], []
    for spec in ablations:
        if not (plan.tumours == spec.tumour_id).any():
            raise InputError(f"--resect {spec.text}: no tumour with id {spec.tumour_id}")
        zone = ablation_zone(tumour=plan.tumours == spec.tumour_id, spacing_mm=plan.spacing_mm,
                             radius_mm=spec.radius_mm, margin_mm=plan.options.ablation_margin_mm,
                             liver=plan.liver, portal=plan.study.portal, hepatic=plan.study.hepatic)
        np.maximum(extra, zone.fraction, out=extra)
        zones.append({"tumour_id": spec.tumour_id, **zone.to_dict()})
        texts.append(spec.describe())
    return texts, zones


def _resection_section(res, details: dict) -> dict:
    """``report.json``'s ``resection`` section before vascular consequences: volumes, tumours
    (margins of sparing wedges and ablation outcomes folded in) and the steps' details."""
    section = {
        "specs": res.specs,
        "segments_removed": res.segments_removed,
        "resected_ml": res.resected_ml,
        "resected_functional_ml": res.resected_functional_ml,
        "functional_liver_ml": res.functional_liver_ml,
        "remnant_volumetric_ml": res.remnant_ml,
        "devascularised_ml": None,
        "congested_ml": None,
        "remnant_ml": res.remnant_ml,
        "flr_percent": res.flr_percent,
        "tumours": [t.to_dict() for t in res.tumours],
        **details,
    }
    by_id = {t["id"]: t for t in section["tumours"]}
    for outcome in details.get("sparing", []):  # the sparing construction knows its own margins
        t = by_id.get(outcome["id"])
        if t is not None and t["status"] == "resected":
            t["min_margin_mm"], t["wedge_margin_mm"] = outcome["achieved_min_margin_mm"], outcome["margin_mm"]
            t["r_status"] = outcome["r_status"]
    for zone in details.get("ablations", []):
        t = by_id[zone["tumour_id"]]
        t["status"] = "ablated" if zone["covers_tumour"] else "incompletely ablated"
        t["resected"] = False
        t["min_margin_mm"] = zone["min_coverage_margin_mm"]
    return section


def _consequences(plan: _Resection, res):
    """The vascular consequences of the resection ``res`` (``VascularConsequences``), or None
    without a vessel mask."""
    study = plan.study
    if study.portal is None and study.hepatic is None:
        return None
    from hepatoplan.resection.vascular import consequences_of

    trees = _vessel_trees(study) if plan.vessel_trees is None else plan.vessel_trees
    # the resection on its box (the liver's): no full-volume copy of the fractions or the removed segments
    return consequences_of(trees, resected=res.fraction_in_box, tumours=plan.tumours, segments=plan.segments,
                           anatomical=res.anatomical_in_box if res.segments_removed else None, box=res.box)


@timing.timed("vascular")
def _vascular(plan: _Resection, res, section: dict, analysis: Future) -> np.ndarray | None:
    """Remnant liver whose inflow or outflow the cut severs (``analysis``: :func:`_consequences`
    being computed), into ``section`` (devascularised liver subtracted from the FLR, congested
    liver reported beside it); the devascularised mask."""
    study = plan.study
    vasc = analysis.result()
    if vasc is None:
        section["vascular"] = {"computed": False, "reason": "no portal or hepatic vein mask"}
        return None
    section["vascular"] = vasc.to_dict()
    section["devascularised_ml"] = vasc.devascularised_ml
    section["congested_ml"] = vasc.congested_ml
    devascularised = None
    if vasc.devascularised_ml:
        section["remnant_ml"] = res.remnant_ml - vasc.devascularised_ml
        section["flr_percent"] = 100.0 * section["remnant_ml"] / res.functional_liver_ml
        devascularised = vasc.devascularised
        study.warnings.append(f"the cut devascularises {vasc.devascularised_ml:.1f} mL of the remnant "
                              "(subtracted from the FLR)")
    if vasc.congested_ml:
        section["flr_percent_without_congested"] = (
            100.0 * (section["remnant_ml"] - vasc.congested_ml) / res.functional_liver_ml)
        study.warnings.append(f"the cut congests {vasc.congested_ml:.1f} mL of the remnant (hepatic outflow)")
    return devascularised


def _vessel_trees(study: Study, *, nearest_nodes: bool = False, deferred: bool = False):
    """The study's portal and hepatic trees prepared for the vascular analysis (its
    resection-independent half, :func:`~hepatoplan.resection.vascular.prepare_vessel_trees`)."""
    from hepatoplan.resection.vascular import prepare_vessel_trees

    return prepare_vessel_trees(liver=study.liver, spacing_mm=study.spacing_mm, portal=study.portal,
                                hepatic=study.hepatic, nearest_nodes=nearest_nodes, deferred=deferred)


@timing.timed("assessment")
def _assess(result: dict, plan: _Resection, *, functional_liver_ml: float) -> None:
    """The safety verdict on the remnant and, when it is inadequate, the growth outlook; the verdict
    is :data:`UNVERIFIED` when the automatic segmentation failed its self-check."""
    options, remnant_ml = plan.options, result["resection"]["remnant_ml"]
    assessment = assess_remnant(
        remnant_ml=remnant_ml, functional_liver_ml=functional_liver_ml,
        parenchyma=options.parenchyma, threshold_percent=options.threshold_percent,
        height_cm=options.height_cm, weight_kg=options.weight_kg,
    ).to_dict()
    check = (result.get("segmentation") or {}).get("self_check") or {"passed": True}
    if not check["passed"]:  # the FLR verdict stands on masks nobody has checked
        assessment.update(flr_verdict=assessment["verdict"], verdict=UNVERIFIED, unverified_reasons=check["reasons"])
    result["assessment"] = assessment
    if assessment.get("flr_verdict", assessment["verdict"]) == "inadequate":
        from hepatoplan.planning.scenarios import growth_outlook

        result["growth_outlook"] = growth_outlook(
            flr_ml=remnant_ml, target_ml=assessment["min_remnant_ml"],
            tumour_ml=sum(plan.tumour_ml.values()) or None,
        )


#: The key of labels.ctbl and labels.seg.nrrd among the label files being written (the others: NIfTI files by name).
_SLICER_FILES = "labels.seg.nrrd"


def _start_label_files(files: ThreadPoolExecutor, folder: Path, study: Study, arrays: dict[str, np.ndarray], *,
                       started: dict[str, Future]) -> dict[str, Future]:
    """The label files of ``arrays`` not ``started`` yet, submitted to ``files`` (writing into ``folder``):
    labels.ctbl and labels.seg.nrrd first (:data:`_SLICER_FILES`, the longest to write), then a NIfTI file per array."""
    new = {} if _SLICER_FILES in started else {_SLICER_FILES: files.submit(
        report_html.write_label_files, folder, arrays["labels"], affine_ras=study.ct.affine_ras,
        vessels=partial(_vessels, study))}
    return new | {name: files.submit(io.write_labels, array, reference=study.ct, path=folder / f"{name}.nii.gz")
                  for name, array in arrays.items() if name not in started}


@timing.timed("writing")
def _write_outputs(options: PlanOptions, study: Study, result: dict, arrays: dict, *, folder: Path,
                   nifti: list[Future], inputs: dict[str, str], hashes: dict[str, str], label_files: Future,
                   ahead: StartedAhead = StartedAhead()) -> None:
    """Write everything but the label files (``nifti``: being written, among them ``label_files``, labels.ctbl
    and labels.seg.nrrd) into ``folder`` (the temporary ``--out``), then wait for them; ``inputs`` and ``hashes``
    name each input's path and SHA-256; ``ahead``: the work started for the visuals (the label boxes, the
    meshes being made)."""
    result["provenance"] = report.provenance(inputs, hashes, options=dataclasses.asdict(options),
                                             parameters=study.parameters)
    regions = dicom_sr.measured_regions(arrays["labels"], remnant=arrays.get("remnant")) if study.ct.dicom_files else []
    _write_visuals(folder, options, study, result, arrays["labels"], regions, ahead._replace(label_files=label_files))
    for written in nifti:
        written.result()
    if regions and (folder / "labels_seg.dcm").is_file():
        _write_measurement_report(folder, result, regions)
    if options.store:
        result.setdefault("dicomweb", {})["stored"] = dicomweb.store_outputs(options.store, folder)
    result["provenance"]["timing_s"] = timing.current_seconds()  # seconds per stage, so far
    (folder / "report.json").write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def _write_measurement_report(folder: Path, result: dict, regions) -> None:
    """``measurements_sr.dcm`` beside the DICOM-SEG; a warning, not a failed plan, if it cannot be made."""
    try:
        dicom_sr.write_measurement_report(folder / "measurements_sr.dcm", report=result, regions=regions,
                                          seg_path=folder / "labels_seg.dcm")
    except (HepatoplanError, ValueError) as exc:  # highdicom refuses what it cannot encode with ValueError
        message = f"measurements_sr.dcm: not written: {exc}"
        log.warning("%s", message)
        result["warnings"].append(message)
        return
    result["outputs"] = sorted([*result["outputs"], "measurements_sr.dcm"])


def _vessels(study: Study) -> dict[str, np.ndarray]:
    """The vessel masks drawn beside the labels (meshes, slice viewer, .seg.nrrd layers)."""
    return {name: mask for name, mask in (("portal vein", study.portal), ("hepatic veins", study.hepatic))
            if mask is not None and mask.any()}


def _write_visuals(folder: Path, options: PlanOptions, study: Study, result: dict, labels, regions=(),
                   ahead: StartedAhead = StartedAhead()) -> None:
    """Colour table, Slicer .seg.nrrd, DICOM-SEG (DICOM input), meshes, previews, QC montage,
    report.pdf and report.html (with the slice viewer)."""
    from .report_html import DicomSegSource, write_plan_visuals

    growth_png = None
    outlook = result.get("growth_outlook")
    if outlook:
        from hepatoplan.planning.scenarios import DEFAULT_TECHNIQUES

        from .growth_plot import plot_stage_outlook

        growth_png = plot_stage_outlook(
            folder / "growth_outlook.png", flr_ml=outlook["flr_ml"],
            min_remnant_ml=outlook["target_ml"], techniques=DEFAULT_TECHNIQUES,
            scenarios=outlook["scenarios"], tumour_ml=outlook.get("tumour_ml"),
            doubling_days=outlook.get("doubling_days"),
        )
    vessels = _vessels(study)
    ct = None  # the slice viewer and QC montage need the CT's voxels; --no-preview keeps header-only reading
    if options.preview:
        ct = study.ct.array if study.ct.array is not None else \
            io.read_image(options.ct, series_uid=options.series_uid, name="CT").array
    written = write_plan_visuals(
        folder, report=result, labels=labels, affine_ras=study.ct.affine_ras, vessels=vessels, ct=ct,
        modality=options.modality, growth_plot_png=growth_png,
        meshes_and_previews=ahead._replace(previews=options.preview),
        dicom_seg=DicomSegSource(study.ct.dicom_files, dicom_sr.seg_extra_structures(regions))
        if study.ct.dicom_files else None,
    )
    result["outputs"] = sorted(
        str(p.relative_to(folder)) for paths in written.values() for p in paths
    ) + ["labels.nii.gz", "report.json"] + (["remnant.nii.gz"] if "resection" in result else [])
