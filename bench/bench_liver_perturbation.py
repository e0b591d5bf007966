"""How far the automatic liver swings under small, realistic perturbations of the real CTs (issue 16).

For each scan and each perturbation, ``segment_study`` as the pipeline calls it: the liver's volume,
its Dice against the reference liver, the reference lesions >= 10 mL missed, the volume of the
bulging lesions ``liver._bulging_lesions`` joined (coarse grid), the self-check's
``bulging_join_margin_fraction`` and its verdict. A run whose volume error (against the reference
on the same grid: a cropped slice moves both) moves by more than 5 points from the unperturbed
run's is a swing; a swing, a liver Dice < 0.93 or a missed lesion >= 10 mL with the self-check
passed is a silent failure.

Perturbations: ``none``; Gaussian noise (``noise_sd_hu`` HU, seeds 0, 1, 2); a +-2 HU shift; one
slice cropped off the top / bottom; the field of view shifted by one voxel along axis 0 / 1 (the
first row dropped: the coarse grid's blocks fall differently).

Usage::

    python bench/bench_liver_perturbation.py [--cases dicom plain 01 07] [--perturbations ...] [--json FILE]

Scans read in place from ../shared/data (skipped with a reason when absent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TS = DATA / "totalsegmentator"

from hepatoplan.pipeline import io  # noqa: E402
from hepatoplan.segmentation import liver as liver_mod  # noqa: E402
from hepatoplan.segmentation import segment_study  # noqa: E402
from hepatoplan.errors import NotComputableError  # noqa: E402

CASES = {
    "dicom": (TS / "ct_contrast_dicom", TS / "ct_contrast_dicom_totalseg.nii.gz", None),
    "plain": (TS / "ct_plain.nii.gz", TS / "ct_plain_totalseg.nii.gz", None),
    "01": (DATA / "ircadb" / "01" / "ct.nii.gz", DATA / "ircadb" / "01" / "liver.nii.gz", DATA / "ircadb" / "01" / "tumours.nii.gz"),
    "07": (DATA / "ircadb" / "07" / "ct.nii.gz", DATA / "ircadb" / "07" / "liver.nii.gz", None),
}
PERTURBATIONS = ("none", "noise0", "noise1", "noise2", "plus2", "minus2", "crop_top", "crop_bottom", "shift_x", "shift_y")
NOISE_SD_HU = 5.0


def load(case):
    image, ref, tum = CASES[case]
    vol = io.read_image(image)
    if ref.name.endswith("_totalseg.nii.gz"):
        liver = io.read_labels(ref, reference=vol, resample=True).array == 5
    else:
        liver = io.read_labels(ref).array > 0
    tumours = io.read_labels(tum).array > 0 if tum is not None else np.zeros(liver.shape, bool)
    return np.asarray(vol.array), tuple(vol.spacing_mm), liver, tumours


def perturb(name, image, arrays):
    """The perturbed image and the reference arrays on its grid."""
    if name == "none":
        return image, arrays
    if name.startswith("noise"):
        rng = np.random.default_rng(int(name[5:]))
        return (image + rng.normal(0.0, NOISE_SD_HU, image.shape)).astype(np.float32), arrays
    if name in ("plus2", "minus2"):
        return image.astype(np.float32) + (2.0 if name == "plus2" else -2.0), arrays
    sl = {"crop_top": (slice(None), slice(None), slice(None, -1)),
          "crop_bottom": (slice(None), slice(None), slice(1, None)),
          "shift_x": (slice(1, None), slice(None), slice(None)),
          "shift_y": (slice(None), slice(1, None), slice(None))}[name]
    return image[sl], [a[sl] for a in arrays]


def dice(a, b):
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def run(case, name, image, spacing, ref_liver, ref_tum):
    img, (rl, rt) = perturb(name, image, [ref_liver, ref_tum])
    joined = []
    orig = liver_mod._bulging_lesions

    def spy(scan, liver, hi, p):
        out = orig(scan, liver, hi, p)
        joined.append(round(float(out[0].sum()) * scan.voxel_ml, 1))
        return out

    liver_mod._bulging_lesions = spy
    t = time.process_time()
    try:
        st = segment_study(img, spacing_mm=spacing)
    except NotComputableError as e:
        return {"case": case, "perturbation": name, "refused": str(e)}
    finally:
        liver_mod._bulging_lesions = orig
    cpu = time.process_time() - t
    voxel_ml = float(np.prod(spacing)) / 1000.0
    L = st.liver > 0
    missed = []
    if rt.any():
        lab, n = ndi.label(rt)
        sizes = np.bincount(lab.ravel()) * voxel_ml
        hit = np.bincount(lab[st.tumours > 0], minlength=n + 1)
        missed = [round(float(sizes[i]), 1) for i in range(1, n + 1) if sizes[i] >= 10.0 and hit[i] == 0]
    sc = st.report["self_check"]
    margin = next((c["value"] for c in sc["checks"] if c["name"] == "bulging_join_margin_fraction"), None)
    return {"case": case, "perturbation": name, "liver_ml": round(float(L.sum()) * voxel_ml, 1),
            "ref_ml": round(float(rl.sum()) * voxel_ml, 1), "dice": round(dice(L, rl), 4),
            "lesions": int(st.tumours.max()), "missed_ge10_ml": missed, "bulging_joined_ml": joined,
            "join_margin_fraction": margin,
            "self_check_passed": sc["passed"], "reasons": sc["reasons"], "cpu_s": round(cpu, 1),
            # to replay the checks offline
            "checks": {c["name"]: c["value"] for c in sc["checks"]}, "bulging_blobs": st.report["liver"].get("bulging_blobs", []),
            "found_lesions": st.report["tumours"].get("lesions", [])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES))
    ap.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    rows = []
    print("| scan | perturbation | liver mL (reference) | volume error | swing | Dice | lesions | missed >= 10 mL "
          "| bulging joined mL | join margin share | self-check | CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        if not CASES[case][0].exists():
            print(f"skipped {case}: {CASES[case][0]} not found", file=sys.stderr)
            continue
        image, spacing, ref_liver, ref_tum = load(case)
        base = None
        for name in args.perturbations:
            r = run(case, name, image, spacing, ref_liver, ref_tum)
            rows.append(r)
            if "refused" in r:
                print(f"| {case} | {name} | refused: {r['refused'][:80]} |")
                continue
            error = 100.0 * (r["liver_ml"] / r["ref_ml"] - 1.0)
            base = error if name == "none" else base
            swing = error - base if base is not None else float("nan")
            r["error_pct"], r["swing_points"] = round(error, 1), round(swing, 1)
            silent = r["self_check_passed"] and (abs(swing) > 5 or r["dice"] < 0.93 or r["missed_ge10_ml"])
            verdict = "passed" if r["self_check_passed"] else "flagged: " + "; ".join(x[:40] for x in r["reasons"])
            print(f"| {case} | {name} | {r['liver_ml']:.0f} ({r['ref_ml']:.0f}) | {error:+.1f} % | {swing:+.1f} | "
                  f"{r['dice']:.3f} | {r['lesions']} | {r['missed_ge10_ml'] or ''} | {r['bulging_joined_ml']} | "
                  f"{r['join_margin_fraction']} | {'**SILENT** ' if silent else ''}{verdict} | {r['cpu_s']} |", flush=True)
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
