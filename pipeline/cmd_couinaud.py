"""``hepatoplan couinaud``: Couinaud segments 1-8 from liver, portal-vein and hepatic-vein masks.

With ``--vessels`` instead of ``--portal``/``--hepatic``: one combined intrahepatic vessel mask (as
TotalSegmentator's ``liver_vessels`` or nnU-Net give), separated into portal and hepatic trees
(:func:`hepatoplan.couinaud.segment_couinaud_from_vessels`); the trees are written beside ``--out``
as ``portal_vein.nii.gz`` and ``hepatic_veins.nii.gz`` for the user to check, and the JSON reports
the separation's confidence.

``--totalsegmentator PATH`` (repeatable; folders of per-structure files or multilabel files, see
:mod:`hepatoplan.pipeline.totalseg`) supplies the masks not given separately: the liver (its grid is
then the output grid), ``liver_vessels`` as ``--vessels``, or else the portal/splenic vein as
``--portal`` and the IVC as ``--hepatic``.

Reads the three masks (any format :mod:`hepatoplan.pipeline.io` reads), runs
:func:`hepatoplan.couinaud.segment_couinaud` on the canonical RAS+ arrays and writes the label map on the
liver mask's own grid (``--out``), optionally a JSON file with landmarks, the method of each boundary,
warnings and segment volumes (``--json``). Labels: 0 outside the liver, 1..8 = segments I..VIII;
with ``--split-segment-4``, 4 = IVa (cranial) and 9 = IVb (caudal).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from hepatoplan.couinaud import LABEL_4B, segment_couinaud, segment_couinaud_from_vessels
from hepatoplan import __version__
from hepatoplan.errors import InputError
from hepatoplan.units import voxel_volume_ml

from . import io, totalseg
from .outputs import check_writable, out_argument, write_atomic

log = logging.getLogger(__name__)

OUT_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "couinaud", help="Couinaud segments from liver, portal and hepatic vein masks",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--liver", type=Path, help="liver mask (defines the output grid); required without --totalsegmentator")
    p.add_argument("--portal", type=Path, help="portal vein mask (trunk and intrahepatic branches)")
    p.add_argument("--hepatic", type=Path, help="hepatic veins mask including the IVC")
    p.add_argument("--vessels", type=Path,
                   help="instead of --portal/--hepatic: ONE combined vessel mask (portal and hepatic veins in one "
                        "class, e.g. TotalSegmentator liver_vessels); separated into the two trees, written beside "
                        "--out as portal_vein.nii.gz and hepatic_veins.nii.gz")
    p.add_argument("--totalsegmentator", type=Path, action="append",
                   help="TotalSegmentator output (folder or multilabel file of the tasks total, liver_vessels); "
                        "repeat for several; supplies the masks not given separately")
    p.add_argument("--out", type=out_argument, required=True,
                   help="output label map (.nii.gz, .nii, .nrrd or .mha), on the liver mask's grid")
    p.add_argument("--json", type=out_argument, help="also write landmarks, methods, warnings and volumes as JSON")
    p.add_argument("--split-segment-4", action="store_true",
                   help=f"split segment 4 into 4a (label 4, cranial) and 4b (label {LABEL_4B}, caudal)")
    p.add_argument("--resample-masks", action="store_true",
                   help="resample --portal/--hepatic nearest-neighbour onto the liver's grid when grids differ")
    p.set_defaults(func=run)


def _check_out(path: Path, flag: str, suffixes, inputs) -> None:
    if path.is_dir():
        raise InputError(f"{flag} {path}: is a folder; expected a file name ending in {', '.join(suffixes)}")
    if not any(str(path).endswith(s) for s in suffixes):
        raise InputError(f"{flag} {path}: expected a file ending in {', '.join(suffixes)}; "
                         f"found '{path.name}'. Choose e.g. {path.with_suffix('').name}{suffixes[0]}")
    if not path.parent.is_dir():
        raise InputError(f"{flag} {path}: folder {path.parent} does not exist; create it first")
    check_writable(path, flag=flag)
    same = [flag_in for flag_in, given in inputs if given is not None and Path(given).resolve() == path.resolve()]
    if same:
        raise InputError(f"{flag} {path}: is the {same[0]} input; expected a new file (inputs are never overwritten)")


def _add_world(node, affine_ras: np.ndarray) -> None:
    """Add ``world_ras_mm`` (RAS world millimetres of the input image) next to every ``voxel``."""
    if isinstance(node, dict):
        if "voxel" in node:
            v = np.r_[np.asarray(node["voxel"], float), 1.0]
            node["world_ras_mm"] = [round(float(x), 2) for x in (affine_ras @ v)[:3]]
        for value in node.values():
            _add_world(value, affine_ras)
    elif isinstance(node, list):
        for value in node:
            _add_world(value, affine_ras)


def _trees_paths(args, combined: bool) -> dict[str, Path]:
    """Where the separated trees go (beside --out); never over an input file."""
    if not combined:
        return {}
    if args.portal is not None or args.hepatic is not None:
        raise InputError("--vessels replaces --portal/--hepatic: give either the combined mask or the two trees")
    paths = {name: args.out.parent / f"{name}.nii.gz" for name in ("portal_vein", "hepatic_veins")}
    inputs = {Path(p).resolve() for p in (args.liver, args.vessels, *(args.totalsegmentator or [])) if p is not None}
    clash = [str(p) for p in paths.values() if p.resolve() in inputs]
    if clash:
        raise InputError(f"--out {args.out}: the separated trees would overwrite the input {clash[0]}; "
                         "choose an --out in another folder")
    return paths


def _read_masks(args) -> tuple[io.Volume, dict[str, np.ndarray], dict]:
    """The output grid (the liver's file), the masks on it (liver, and vessels or portal + hepatic),
    and the inputs' record (path and hash of each file, TotalSegmentator's files as given)."""
    ts = args.totalsegmentator or []
    grid_file = args.liver or (totalseg.liver_file(ts) if ts else None)
    if grid_file is None:
        raise InputError("give --liver FILE" + (f" (no TotalSegmentator liver in {'; '.join(map(str, ts))})" if ts else
                                                " (or --totalsegmentator PATH with TotalSegmentator's liver)"))
    liver = io.read_labels(grid_file, name="--liver" if args.liver else "--totalsegmentator")
    read = {n: io.read_labels(p, name=f"--{n}", reference=liver, resample=args.resample_masks)
            for n, p in (("vessels", args.vessels), ("portal", args.portal), ("hepatic", args.hepatic)) if p is not None}
    masks = {n: v.array for n, v in read.items()}
    given = {n: {"path": str(v.path), "sha256": io.sha256_of(v.path)}
             for n, v in (("liver", liver), *read.items()) if n != "liver" or args.liver}
    if ts:
        found = totalseg.read_totalsegmentator(ts, reference=liver, resample=args.resample_masks)
        found["hepatic"] = found.pop("ivc", None)
        if "portal" in masks and "hepatic" in masks:  # the two trees given: TotalSegmentator's vessels unused
            found.pop("vessels", None)
        if "vessels" in found or "vessels" in masks:  # the combined tree is separated, not portal + IVC
            found.pop("portal", None), found.pop("hepatic", None)
        used = {n: m for n, m in found.items() if m is not None and n in ("vessels", "portal", "hepatic")
                and n not in masks}
        masks.update(used)
        given["totalsegmentator"] = {"paths": [str(p) for p in ts], "masks_used": sorted(used) + ["liver"] * (not args.liver)}
    masks["liver"] = liver.array if args.liver else found.get("liver")
    if masks["liver"] is None:
        raise InputError(f"--totalsegmentator {'; '.join(map(str, ts))}: no liver found; give --liver FILE")
    if "vessels" not in masks and ("portal" not in masks or "hepatic" not in masks):
        raise InputError("give --portal FILE and --hepatic FILE, or one combined vessel mask with --vessels FILE"
                         + (" (TotalSegmentator supplied " + (", ".join(sorted(masks)) or "nothing") + ")" if ts else ""))
    return liver, masks, given


def run(args) -> int:
    inputs = [("--liver", args.liver), ("--portal", args.portal), ("--hepatic", args.hepatic),
              ("--vessels", args.vessels), *(("--totalsegmentator", p) for p in args.totalsegmentator or [])]
    _check_out(args.out, "--out", OUT_SUFFIXES, inputs)
    if args.json is not None:
        _check_out(args.json, "--json", (".json",), inputs + [("--out", args.out)])
    liver, masks, given = _read_masks(args)
    trees = _trees_paths(args, "vessels" in masks)
    if trees:
        res = segment_couinaud_from_vessels(masks["liver"], masks["vessels"], spacing_mm=liver.spacing_mm,
                                            split_segment_4=args.split_segment_4)
    else:
        res = segment_couinaud(masks["liver"], masks["portal"], masks["hepatic"], spacing_mm=liver.spacing_mm,
                               split_segment_4=args.split_segment_4)
    for w in res.warnings:
        log.warning("%s", w)
    voxel_ml = voxel_volume_ml(liver.spacing_mm)
    counts = np.bincount(res.labels.ravel(), minlength=LABEL_4B + 1)
    labels = [k for k in range(1, LABEL_4B + 1) if counts[k] or k <= 8]
    _add_world(res.landmarks, liver.affine_ras)
    record = {
        "hepatoplan_version": __version__,
        "inputs": given,
        "options": {"split_segment_4": bool(args.split_segment_4), "resample_masks": bool(args.resample_masks)},
        "parameters": {"couinaud": dataclasses.asdict(res.params)},
        "labels": {"0": "outside the liver", **{str(k): f"segment {k}" for k in range(1, 9)},
                   **({"4": "segment 4a (cranial)", str(LABEL_4B): "segment 4b (caudal)"} if args.split_segment_4 else {})},
        "segment_volumes_ml": {str(k): round(float(counts[k] * voxel_ml), 2) for k in labels},
        "landmarks": res.landmarks,
        "methods": res.methods,
        "warnings": res.warnings,
        "runtime_s": round(res.runtime_s, 3),
    }
    io.write_labels(res.labels, reference=liver, path=args.out)
    for name, path in trees.items():
        io.write_labels((res.portal if name == "portal_vein" else res.hepatic).astype(np.uint8), reference=liver, path=path)
        log.info("wrote %s", path)
    if args.json is not None:
        write_atomic(args.json, json.dumps(record, indent=2))
    log.info("wrote %s", args.out)
    return 0
