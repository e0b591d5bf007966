"""Benchmark: Couinaud segments from ONE combined vessel mask on 3D-IRCADb cases (issue 20).

Usage::

    python bench/bench_couinaud_vessels.py [--data ../shared/data/ircadb] [--cases 01 02 ...]
                                           [--variant VARIANT] [--loo] [--write] [--json FILE]
                                           [--separation NAME=VALUE ...] [--transverse NAME=VALUE ...]

For every case the only vessel mask is ``(portal_vein | hepatic_veins) & liver`` (intrahepatic,
no IVC, no extrahepatic portal trunk), as TotalSegmentator's ``liver_vessels`` or nnU-Net give.
:func:`hepatoplan.couinaud.segment_couinaud_from_vessels` separates it and divides the liver;
scored are the share of vessel voxels put in the right tree (against the IRCADb portal / hepatic
masks) and the mean Dice over segments 1-8 against ``couinaud_reference``. Variants: ``thick``
keeps every second axial slice (slices twice as thick: 2-4 mm); ``thick-2mm`` / ``thick-3mm`` /
``thick-4mm`` average the native slices into slices that thick (a mask voxel is set where the mean
is >= 0.5, the reference takes the middle native slice's labels; a scan already that thick is kept);
``mirrored`` flips the arrays left-right (a flipped header: a laterality warning is expected, and the
Dice is scored against the mirrored reference); ``thinned`` erodes the vessel mask by one voxel
in-plane (a model that under-segments: thin peripheral branches vanish, trunks narrow; the right-tree
share is scored on the voxels left); ``layout-RAS`` / ``-LPI`` / ``-PIL`` / ``-SRA`` write the liver
and the vessels as NIfTI stored in that axis order and run ``hepatoplan couinaud --vessels`` on them
(labels and separated trees read back in RAS: ``pipeline.io`` must undo the layout);
``rotated+10`` / ``rotated-10`` turn the arrays and the reference 10 deg about the long axis (a
patient lying turned; nearest neighbour). Runtime: wall and CPU time of the call alone (files
loaded; the layouts include writing and reading them), on a shared machine.

``--loo``: leave-one-out over the constants fitted on these cases (the expected portal bifurcation
from the IVC and the liver's height, ``SeparationParams.bifurcation_*``): each case runs with the
means over the other cases of the bifurcation that :func:`segment_couinaud` finds in the SEPARATE
masks (IVC included), never with its own.

With ``--write`` the table goes into the ``## Couinaud segments from one combined vessel mask``
section of ``bench/RESULTS.md`` (one sub-table per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from bench_couinaud import DEFAULT_DATA, ROOT, dice, load  # this folder is on sys.path when run as a script

from hepatoplan.couinaud import CouinaudParams, segment_couinaud, segment_couinaud_from_vessels

SECTION = "## Couinaud segments from one combined vessel mask"


THICK_MM = {"thick-2mm": 2.0, "thick-3mm": 3.0, "thick-4mm": 4.0}
# file layouts written to disk and read back by the CLI (pipeline.io undoes them): axis codes of the stored array
LAYOUTS = {"layout-RAS": "RAS", "layout-LPI": "LPI", "layout-PIL": "PIL", "layout-SRA": "SRA"}
ROTATED_DEG = {"rotated+10": 10.0, "rotated-10": -10.0}
VARIANTS = ("native", "thick", *THICK_MM, "mirrored", "thinned", *LAYOUTS, *ROTATED_DEG)


def thick_slices(a: np.ndarray, sp_z: float, slice_mm: float, *, labels: bool) -> np.ndarray:
    """Slices ``slice_mm`` thick from slices ``sp_z`` thick: each new slice holds the old slices whose
    centres fall in it; a mask is their mean >= 0.5 (partial volume), a label map the middle one's."""
    bins = np.floor((np.arange(a.shape[2]) + 0.5) * sp_z / slice_mm).astype(int)
    out = []
    for b in range(bins.max() + 1):
        idx = np.flatnonzero(bins == b)
        out.append(a[:, :, idx[len(idx) // 2]] if labels else a[:, :, idx].mean(axis=2) >= 0.5)
    return np.stack(out, axis=2)


def variant(arrays: list[np.ndarray], sp: tuple, name: str):
    """``arrays`` = masks then the reference label map (last), canonical RAS."""
    if name == "thick":
        return [a[:, :, ::2] for a in arrays], (sp[0], sp[1], 2 * sp[2])
    if name in THICK_MM:
        t = max(THICK_MM[name], sp[2])  # a scan already as thick keeps its slices
        return ([thick_slices(a, sp[2], t, labels=i == len(arrays) - 1) for i, a in enumerate(arrays)],
                (sp[0], sp[1], t))
    if name == "mirrored":
        return [a[::-1] for a in arrays], sp
    if name in ROTATED_DEG:  # the patient turned about the long axis (in-plane, nearest neighbour)
        return [ndi.rotate(a.astype(np.uint8), ROTATED_DEG[name], axes=(0, 1), order=0) for a in arrays], sp
    return arrays, sp


def through_files(liver, vessels, sp, layout: str, tmp: Path):
    """Write liver and vessels stored as ``layout`` (NIfTI), run ``hepatoplan couinaud --vessels`` on them
    and read back its labels and separated trees in canonical RAS."""
    import nibabel as nib
    from hepatoplan.pipeline.cli import main as cli

    ornt = nib.orientations.axcodes2ornt(tuple(layout))
    paths = {}
    for n, a in (("liver", liver), ("vessels", vessels)):
        img = nib.Nifti1Image(a.astype(np.uint8), np.diag([*sp, 1.0])).as_reoriented(ornt)
        paths[n] = tmp / f"{n}.nii.gz"
        nib.save(img, paths[n])
    out = tmp / "couinaud.nii.gz"
    if cli(["couinaud", "--liver", str(paths["liver"]), "--vessels", str(paths["vessels"]), "--out", str(out),
            "--json", str(tmp / "couinaud.json")]) != 0:
        raise RuntimeError(f"hepatoplan couinaud failed on layout {layout}")
    read = [np.asanyarray(nib.as_closest_canonical(nib.load(str(f))).dataobj)
            for f in (out, tmp / "portal_vein.nii.gz", tmp / "hepatic_veins.nii.gz")]
    return read[0], read[1] > 0, read[2] > 0, json.loads((tmp / "couinaud.json").read_text())


def bifurcation_constants(d: Path) -> np.ndarray:
    """(right of IVC mm, anterior of IVC mm, share of liver voxels below) of the bifurcation
    :func:`segment_couinaud` finds in one case's separate masks."""
    (liver, sp), (portal, _), (hepatic, _) = (load(d, n) for n in ("liver", "portal_vein", "hepatic_veins"))
    res = segment_couinaud(liver > 0, portal > 0, hepatic > 0, spacing_mm=sp)
    b = np.asarray(res.landmarks["portal_bifurcation"]["mm"])
    ivc = np.asarray(res.landmarks["ivc_axis"]["point_at_bifurcation"]["mm"])
    z_mm = np.nonzero(liver)[2] * sp[2]
    return np.array([b[0] - ivc[0], b[1] - ivc[1], float((z_mm < b[2]).mean())])


def fold_params(constants: dict, case: str, p: CouinaudParams = CouinaudParams()) -> CouinaudParams:
    """``p`` with the bifurcation constants averaged over every case but ``case``."""
    right, ant, height = np.mean([v for c, v in constants.items() if c != case], axis=0)
    return replace(p, separation=replace(p.separation, bifurcation_right_of_ivc_mm=float(right),
                                         bifurcation_anterior_of_ivc_mm=float(ant),
                                         bifurcation_height_fraction=float(height)))


def run_case(d: Path, name: str, params: CouinaudParams = CouinaudParams()) -> dict:
    (liver, sp), (portal, _), (hepatic, _), (ref, _) = (load(d, n) for n in (
        "liver", "portal_vein", "hepatic_veins", "couinaud_reference"))
    (liver, portal, hepatic, ref), sp = variant([liver > 0, portal > 0, hepatic > 0, ref], sp, name)
    liver, portal, hepatic = liver > 0, portal > 0, hepatic > 0
    vessels = (portal | hepatic) & liver
    if name == "thinned":
        vessels = ndi.binary_erosion(vessels, structure=np.ones((3, 3, 1), bool))
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        if name in LAYOUTS:
            with tempfile.TemporaryDirectory() as tmp:
                labels, res_portal, res_hepatic, record = through_files(liver, vessels, sp, LAYOUTS[name], Path(tmp))
            confidence = record["landmarks"]["vessel_separation"]["confidence"]
            warnings = record["warnings"]
        else:
            res = segment_couinaud_from_vessels(liver, vessels, spacing_mm=sp, params=params)
            labels, res_portal, res_hepatic = res.labels, res.portal, res.hepatic
            confidence, warnings = res.landmarks["vessel_separation"]["confidence"], res.warnings
    except Exception as e:  # a refused case is a row of the table, not a crash of the bench
        return {"error": f"{type(e).__name__}: {e}"}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    right = ((res_portal & portal) | (res_hepatic & hepatic))[vessels].mean()
    per = [dice(labels == k, ref == k) for k in range(1, 9)]
    return {"tree": float(right), "dice": per, "mean": float(np.nanmean(per)), "s": wall, "cpu_s": cpu,
            "confidence": confidence, "slice_mm": sp[2], "warnings": list(warnings),
            "laterality_warned": any("laterality" in w for w in warnings)}


def table(rows: dict, name: str, command: str) -> str:
    lines = [f"### variant: {name}", "", f"Command: `{command}`", "",
             "| case | right tree share | S1 | S2 | S3 | S4 | S5 | S6 | S7 | S8 | mean 1-8 | confidence | laterality warned "
             "| s | CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ok = {c: r for c, r in rows.items() if "error" not in r}
    for c, r in rows.items():
        if "error" in r:
            lines.append(f"| {c} | refused: {r['error'][:120]} |" + " |" * 13)
            continue
        lines.append(f"| {c} | {r['tree']:.3f} | " + " | ".join(f"{v:.3f}" for v in r["dice"])
                     + f" | **{r['mean']:.3f}** | {r['confidence']:.2f} | {r['laterality_warned']} | {r['s']:.1f} "
                     f"| {r['cpu_s']:.2f} |")
    if ok:
        tree = np.mean([r["tree"] for r in ok.values()])
        mean = np.mean([r["mean"] for r in rows.values() if "mean" in r])
        lines.append(f"| **mean** | {tree:.3f} |" + " |" * 8 + f" **{mean:.3f}** | | | | |")
        cpu = [r["cpu_s"] for r in ok.values()]
        lines += ["", f"CPU s per case (the code is single-threaded: the wall time of a quiet machine): median "
                      f"{np.median(cpu):.2f}, max {max(cpu):.2f}; load average {os.getloadavg()[0]:.1f} on "
                      f"{os.cpu_count()} cores at the end of the run (the wall seconds include waiting for the CPU)."]
    return "\n".join(lines) + "\n"


def write_section(text: str, name: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    doc = path.read_text()
    head = f"### variant: {name}"
    if SECTION not in doc:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\n"
    start = doc.index(SECTION)
    nxt = doc.find("\n## ", start + len(SECTION))
    body = doc[start: nxt if nxt >= 0 else len(doc)]
    if head in body:
        a = body.index(head)
        b = body.find("\n### ", a + len(head))
        body = body[:a] + text + (body[b + 1:] if b >= 0 else "")
    else:
        body = body.rstrip("\n") + "\n\n" + text
    doc = doc[:start] + body.rstrip("\n") + "\n" + (doc[nxt:] if nxt >= 0 else "")
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(doc)
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cases", nargs="*", default=[f"{i:02d}" for i in range(1, 13)])
    ap.add_argument("--variant", choices=VARIANTS, default="native")
    ap.add_argument("--loo", action="store_true", help="leave-one-out over the bifurcation constants")
    ap.add_argument("--separation", nargs="*", default=[], metavar="NAME=VALUE",
                    help="SeparationParams fields to try instead of the defaults (not with --write)")
    ap.add_argument("--transverse", nargs="*", default=[], metavar="NAME=VALUE",
                    help="TransverseParams fields to try instead of the defaults (not with --write)")
    ap.add_argument("--json", type=Path, help="also write the per-case rows as JSON")
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args(argv)
    if (a.separation or a.transverse) and a.write:
        ap.error("--separation / --transverse try values: the table in bench/RESULTS.md is the defaults'")
    base = CouinaudParams()
    base = replace(base, separation=replace(base.separation, **{
        k: float(v) for k, v in (item.split("=", 1) for item in a.separation)}), transverse=replace(
        base.transverse, **{k: float(v) for k, v in (item.split("=", 1) for item in a.transverse)}))
    if not a.data.is_dir():
        print(f"no data at {a.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    rows = {}
    constants = {c: bifurcation_constants(a.data / c) for c in a.cases} if a.loo else {}
    for c in a.cases:
        rows[c] = run_case(a.data / c, a.variant, fold_params(constants, c, base) if a.loo else base)
        print(c, rows[c] if "error" in rows[c] else {k: v for k, v in rows[c].items() if k != "dice"}, flush=True)
    name = a.variant + (", leave-one-out" if a.loo else "")
    sep = "".join(f" --{k} {' '.join(v)}" for k, v in (("separation", a.separation), ("transverse", a.transverse))
                  if v) or " --write"
    text = table(rows, name, f"python bench/bench_couinaud_vessels.py --variant {a.variant}{' --loo' * a.loo}{sep}")
    print(text)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    if a.write:
        write_section(text, name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
