"""Benchmark of the automatic segmentation (``hepatoplan segment``) against reference masks.

Runs the CLI once per case in a fresh process (so time and peak memory are per case), then scores
the outputs:

* IRCADb 01 and 07 (manual masks): liver Dice and volume error; tumour Dice, lesions >= 1 mL
  found, false lesions >= 1 mL; Dice of portal ∪ hepatic inside the liver (reference liver, closed
  by 5 mm and hole-filled, since IRCADb's liver excludes the large vessel lumens) and the share of
  voxels in both prediction and reference that got the right tree; Couinaud segments computed by
  ``hepatoplan.couinaud.segment_couinaud`` from the automatic masks, mean Dice over segments 1-8 against
  ``couinaud_reference``.
* TotalSegmentator examples (model-made references, label 5 = liver), compared on the image's
  grid after nearest-neighbour resampling of the reference in physical space.

Usage::

    python bench/bench_segmentation.py [--cases 01 07 dicom plain mr] [--no-write]

Prints a Markdown table and rewrites the ``## Automatic segmentation`` section of
``bench/RESULTS.md`` (other sections untouched).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Automatic segmentation"


from hepatoplan.pipeline import io  # noqa: E402
from hepatoplan.segmentation import _morph as morph  # noqa: E402

TS = DATA / "totalsegmentator"
CASES = {
    "01": ("ircadb", DATA / "ircadb" / "01" / "ct.nii.gz", "ct"),
    "07": ("ircadb", DATA / "ircadb" / "07" / "ct.nii.gz", "ct"),
    "dicom": ("ts", TS / "ct_contrast_dicom", "ct"),
    "plain": ("ts", TS / "ct_plain.nii.gz", "ct"),
    "mr": ("ts", TS / "mr.nii.gz", "mr"),
}
TS_REF = {"dicom": "ct_contrast_dicom_totalseg.nii.gz", "plain": "ct_plain_totalseg.nii.gz", "mr": "mr_totalseg.nii.gz"}


def dice(a, b) -> float:
    a, b = a > 0, b > 0
    den = np.count_nonzero(a) + np.count_nonzero(b)
    return float("nan") if den == 0 else 2.0 * np.count_nonzero(a & b) / den


def run_cli(image: Path, modality: str, out: Path) -> tuple[float, dict]:
    cmd = [sys.executable, "-c", "import sys; from hepatoplan.pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
           "segment", str(image), "--out", str(out), "--modality", modality]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"segment failed on {image}: {proc.stderr.strip()}")
    return wall, json.loads((out / "segmentation.json").read_text())


def score_ircadb(case: str, out: Path) -> dict:
    ref_dir = DATA / "ircadb" / case
    ct = io.read_image(ref_dir / "ct.nii.gz", header_only=True)
    ld = lambda p: io.read_labels(p).array  # noqa: E731
    names = ("liver", "tumours", "portal_vein", "hepatic_veins")
    pred = {n: ld(out / f"{n}.nii.gz") for n in names}
    ref = {n: ld(ref_dir / f"{n}.nii.gz") for n in names + ("couinaud_reference",)}
    return score_arrays(pred, ref, ct.spacing_mm)


def score_arrays(pred: dict, ref: dict, spacing) -> dict:
    """Scores of automatic masks ``pred`` (liver, tumours, portal_vein, hepatic_veins) against
    manual masks ``ref`` (the same, plus couinaud_reference) on one grid of voxel size ``spacing`` (mm)."""
    vox_ml = float(np.prod(spacing)) / 1000.0
    liver, liver_ref = pred["liver"] > 0, ref["liver"] > 0
    row = {
        "liver_dice": dice(liver, liver_ref),
        "liver_vol_err_pct": 100.0 * (np.count_nonzero(liver) / np.count_nonzero(liver_ref) - 1.0),
    }
    tum_ref, tum = ref["tumours"] > 0, pred["tumours"]
    import cc3d

    rl = cc3d.connected_components(tum_ref.astype(np.uint8))
    big_ref = [i for i, c in enumerate(np.bincount(rl.ravel())) if i and c * vox_ml >= 1.0]
    found = sum(bool(np.any(tum[rl == i])) for i in big_ref)
    false_big = 0
    for k in range(1, int(tum.max()) + 1):
        m = tum == k
        if np.count_nonzero(m) * vox_ml >= 1.0 and not np.any(tum_ref[m]):
            false_big += 1
    row["tumour_dice"] = dice(tum, tum_ref) if tum_ref.any() else float("nan")
    row["lesions_found"] = f"{found}/{len(big_ref)}"
    row["false_lesions_ge_1ml"] = false_big
    pv_ref, hv_ref = ref["portal_vein"] > 0, ref["hepatic_veins"] > 0
    region = morph.fill_holes(morph.close(liver_ref, 5.0, spacing, pad_vox=10), per_slice=True)
    pv, hv = pred["portal_vein"] > 0, pred["hepatic_veins"] > 0
    row["vessel_dice_in_liver"] = dice((pv | hv) & region, (pv_ref | hv_ref) & region)
    both = (pv | hv) & (pv_ref | hv_ref) & region & ~(pv_ref & hv_ref)
    right = both & ((pv & pv_ref) | (hv & hv_ref))
    row["tree_accuracy"] = float(np.count_nonzero(right) / max(1, np.count_nonzero(both)))
    from hepatoplan.couinaud import segment_couinaud
    from hepatoplan.errors import HepatoplanError

    try:
        res = segment_couinaud(pred["liver"], pred["portal_vein"], pred["hepatic_veins"], spacing_mm=spacing)
    except HepatoplanError:  # e.g. no hepatic veins found: no segments
        row["couinaud_mean_dice"] = float("nan")
    else:
        row["couinaud_mean_dice"] = float(np.nanmean([dice(res.labels == k, ref["couinaud_reference"] == k) for k in range(1, 9)]))
    return row


def score_ts(name: str, image: Path, out: Path) -> dict:
    vol = io.read_image(image)
    ref = io.read_labels(TS / TS_REF[name], reference=vol, resample=True)
    liver = io.read_labels(out / "liver.nii.gz").array > 0
    ref_liver = ref.array == 5
    return {
        "liver_dice": dice(liver, ref_liver),
        "liver_vol_err_pct": 100.0 * (np.count_nonzero(liver) / np.count_nonzero(ref_liver) - 1.0),
    }


def fmt(v) -> str:
    if isinstance(v, float):
        return "–" if np.isnan(v) else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/RESULTS.md")
    args = ap.parse_args(argv)
    rows = []
    for case in args.cases:
        kind, image, modality = CASES[case]
        if not image.exists():
            print(f"skip {case}: {image} not found", file=sys.stderr)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "seg"
            wall, rec = run_cli(image, modality, out)
            row = score_ircadb(case, out) if kind == "ircadb" else score_ts(case, image, out)
        row.update(
            case=case,
            wall_s=wall,
            segment_s=rec["timing_seconds"]["segment"],
            peak_mb=rec["peak_memory_mb"],
            qc=("pass" if rec["qc_passed"] else "FAIL"),
        )
        rows.append(row)
        print(json.dumps({k: (fmt(v) if isinstance(v, float) else v) for k, v in row.items()}), file=sys.stderr)
    cols = ["case", "liver_dice", "liver_vol_err_pct", "tumour_dice", "lesions_found", "false_lesions_ge_1ml",
            "vessel_dice_in_liver", "tree_accuracy", "couinaud_mean_dice", "wall_s", "segment_s", "peak_mb", "qc"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, float("nan"))) for c in cols) + " |")
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        _write_section(table, args.cases)
    return 0


def _write_section(table: str, cases) -> None:
    import os
    import platform

    cmd = "python bench/bench_segmentation.py" + ("" if list(cases) == list(CASES) else " --cases " + " ".join(cases))
    body = (
        f"{SECTION}\n\n"
        f"`{cmd}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores "
        f"({platform.python_version()}), machine shared with other jobs (times are upper bounds).\n"
        "Each case runs `hepatoplan segment` in a fresh process; wall_s includes reading and writing, "
        "peak_mb is the process's peak RSS. IRCADb: manual references; vessel Dice inside the reference "
        "liver (closed 5 mm, filled); tree_accuracy = share of voxels in both prediction and reference "
        "labelled with the right tree; couinaud_mean_dice = mean Dice over segments 1-8 of "
        "`hepatoplan.couinaud.segment_couinaud` run on the automatic masks vs `couinaud_reference`. dicom/plain/mr: "
        "TotalSegmentator (model) livers, resampled nearest-neighbour onto the image grid in physical "
        "space.\n\n"
        f"{table}\n"
    )
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("\n" + text[nxt + 1:] if nxt != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    RESULTS.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
