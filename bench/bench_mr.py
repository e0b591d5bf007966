"""Liver on MR: accuracy, leave-one-out choices and robustness of ``segment --modality mr``.

Scans: ``../shared/data/chaos_mr/{01,02,03,05}`` (CHAOS T2-SPIR, manual livers) and the
TotalSegmentator MR example (``totalsegmentator/mr.nii.gz``; its reference, label 5 of
``mr_totalseg.nii.gz``, is a model's output, matched in physical space). Three modes:

* ``table`` (default): ``hepatoplan segment IMAGE --modality mr`` as a user runs it (a subprocess,
  wall time includes start-up, reading and writing), scored against the reference read onto the
  output's grid: Dice, volume error, QC.
* ``loo``: for a grid of :class:`~hepatoplan.segmentation.mr_liver.MRLiverParams` values, the
  leave-one-out figure: for each scan, the setting with the best mean Dice on the *other* scans is
  chosen and scored on it. ``--grid window_min_log=0.15,0.2,0.25 nest_margin_mm=6,10``.
* ``errors``: where each scan's mask is wrong (in-process): the false-positive and false-negative mL
  by distance to the reference's border (within 2.5 mm: where the border is put; beyond 6 mm: a leak or a
  missed part), the false positives on slices beyond the reference's ends, and the three axial slices
  with the most error, and the Dice of the mask shrunk and grown by one pixel in-plane (a border put
  systematically outside or inside the reference's scores better after one of them).
* ``variations``: each scan made to look like scans we cannot download (axes flipped and permuted in
  the file, the world origin moved, intensities scaled and offset, a bias field, noise, slices twice
  as thick or half as thick, the field of view cut at the top, bottom or side), written as NIfTI and
  segmented through ``hepatoplan.pipeline.io`` as ``segment`` reads them; reported with Dice and
  the verdict: pass, unverified (a mask whose self-check failed) or FAIL (refused, Dice 0) (the
  acceptance: no scan with Dice < 0.85 whose QC passed). ``--folder`` keeps the variation files,
  the masks (``masks/CASE_VARIATION.npy``) and one JSON row per run (``rows.jsonl``, written as it
  goes) for later study; ``none`` is the scan as it is.

Usage::

    python bench/bench_mr.py table
    python bench/bench_mr.py loo --grid window_min_log=0.15,0.2,0.25
    python bench/bench_mr.py errors [--cases 02 03]
    python bench/bench_mr.py variations [--cases 01 ts] [--variations none flip_x bias ...] [--folder DIR]

Prints Markdown tables (nothing is written outside a temporary folder, or ``--folder``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import edt
import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from hepatoplan.errors import HepatoplanError
from hepatoplan.pipeline import io
from hepatoplan.segmentation.mr_liver import MRLiverParams, segment_liver_mr

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CASES = ("01", "02", "03", "05", "ts")
VARIATIONS = ("flip_x", "flip_y_permute", "world_offset", "scale_offset", "bias", "noise", "slices_x2",
              "slices_half", "cut_top", "cut_bottom", "cut_side")


def paths(case: str) -> tuple[Path, Path, int]:
    """(image, reference, liver label) of a case."""
    if case == "ts":
        d = DATA / "totalsegmentator"
        return d / "mr.nii.gz", d / "mr_totalseg.nii.gz", 5
    d = DATA / "chaos_mr" / case
    return d / "image.nii.gz", d / "liver.nii.gz", 1


def load(case: str):
    """Canonical image volume and reference liver (bool) on its grid."""
    image, reference, label = paths(case)
    vol = io.read_image(image)
    ref = io.read_labels(reference, reference=vol, resample=True).array == label
    return vol, ref


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def verdict(info: dict) -> tuple[bool, str]:
    """(QC passed, the QC column): passed = a credible liver whose every self-check passed."""
    if not info["qc_passed"]:
        return False, "FAIL: " + "; ".join(info["qc_flags"])
    reasons = info["self_check"]["reasons"]
    return not reasons, ("unverified: " + "; ".join(r.split(";")[0] for r in reasons)) if reasons else "pass"


def score(mask: np.ndarray, ref: np.ndarray) -> dict:
    return {"dice": dice(mask, ref), "volume_error_pct": 100.0 * (np.count_nonzero(mask) / np.count_nonzero(ref) - 1.0)}


# --------------------------------------------------------------------------- table (the CLI)


def table(cases) -> list[str]:
    lines = [f"load average at start {os.getloadavg()[0]:.1f}", "",
             "| scan | Dice | volume error | liver mL (reference) | contrast | segment wall s | CPU s | QC |",
             "|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            image, reference, label = paths(case)
            out = Path(tmp) / case
            t, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.run([sys.executable, "-m", "hepatoplan.pipeline.cli", "segment", str(image),
                                   "--modality", "mr", "--out", str(out)], capture_output=True, text=True, check=False)
            wall = time.perf_counter() - t
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            if proc.returncode:
                lines.append(f"| {case} | refused | | | | {wall:.1f} | {cpu:.1f} | {proc.stderr.strip().splitlines()[-1]} |")
                continue
            seg = io.read_image(out / "liver.nii.gz")
            mask = seg.array > 0
            ref = io.read_labels(reference, reference=seg, resample=True).array == label
            s = score(mask, ref)
            rec = json.loads((out / "segmentation.json").read_text())["liver"]
            ref_ml = np.count_nonzero(ref) * np.prod(seg.spacing_mm) / 1000.0
            lines.append(f"| {case} | {s['dice']:.3f} | {s['volume_error_pct']:+.1f} % | {rec['liver_volume_ml']:.0f} "
                         f"({ref_ml:.0f}) | {rec['mr_contrast']['kind']} | {wall:.1f} | {cpu:.1f} | {verdict(rec)[1]} |")
            print(lines[-1], file=sys.stderr, flush=True)
    return lines


# --------------------------------------------------------------------------- leave-one-out


def loo(cases, grid: dict[str, list[float]]) -> list[str]:
    names = list(grid)
    settings = [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]
    data = {case: load(case) for case in cases}
    scores = np.zeros((len(settings), len(cases)))
    for i, setting in enumerate(settings):
        params = dataclasses.replace(MRLiverParams(), **setting)
        for j, case in enumerate(cases):
            vol, ref = data[case]
            try:
                mask, info = segment_liver_mr(vol.array, spacing_mm=vol.spacing_mm, params=params)
                scores[i, j] = dice(mask > 0, ref) if info["qc_passed"] else 0.0
            except HepatoplanError:
                scores[i, j] = 0.0
        print(setting, np.round(scores[i], 3), file=sys.stderr, flush=True)
    lines = ["| setting | " + " | ".join(cases) + " | mean |", "|---" * (len(cases) + 2) + "|"]
    for setting, row in zip(settings, scores):
        lines.append(f"| {setting} | " + " | ".join(f"{d:.3f}" for d in row) + f" | {row.mean():.3f} |")
    lines += ["", "| held-out scan | setting chosen on the others | its Dice |", "|---|---|---|"]
    held = []
    for j, case in enumerate(cases):
        others = np.delete(scores, j, axis=1).mean(axis=1)
        best = int(np.argmax(others))
        held.append(scores[best, j])
        lines.append(f"| {case} | {settings[best]} | {scores[best, j]:.3f} |")
    lines.append(f"| mean | | {np.mean(held):.3f} |")
    return lines


# --------------------------------------------------------------------------- errors


def errors(cases) -> list[str]:
    lines = ["| scan | reference mL | false positive mL: <= 2.5 / 2.5-6 / > 6 mm out | of which beyond the reference's "
             "end slices | false negative mL: <= 2.5 / 2.5-6 / > 6 mm in | slices with the most error (FP+FN mL) "
             "| Dice: as is / one pixel shrunk / grown in-plane |",
             "|---|---|---|---|---|---|---|"]
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndi.generate_binary_structure(2, 1)
    bands = ((0.0, 2.5), (2.5, 6.0), (6.0, np.inf))
    for case in cases:
        vol, ref = load(case)
        mask = segment_liver_mr(vol.array, spacing_mm=vol.spacing_mm)[0] > 0
        ml = float(np.prod(vol.spacing_mm)) / 1000.0
        fp, fn = mask & ~ref, ref & ~mask
        cols = []
        for wrong, inside in ((fp, ~ref), (fn, ref)):
            depth = edt.edt(np.ascontiguousarray(inside, dtype=np.uint8), anisotropy=tuple(vol.spacing_mm))[wrong]
            parts = [np.count_nonzero((depth > lo) & (depth <= hi)) * ml for lo, hi in bands]
            cols.append(f"{sum(parts):.0f}: " + " / ".join(f"{v:.0f}" for v in parts))
        zs = np.flatnonzero(ref.any(axis=(0, 1)))
        beyond = (np.count_nonzero(fp[..., : zs[0]]) + np.count_nonzero(fp[..., zs[-1] + 1:])) * ml
        per_slice = (fp | fn).sum(axis=(0, 1)) * ml
        worst = ", ".join(f"{z} ({per_slice[z]:.0f})" for z in np.argsort(per_slice)[::-1][:3])
        shifted = " / ".join(f"{dice(m, ref):.3f}" for m in (mask, ndi.binary_erosion(mask, in_plane),
                                                              ndi.binary_dilation(mask, in_plane)))
        lines.append(f"| {case} | {np.count_nonzero(ref) * ml:.0f} | {cols[0]} | {beyond:.0f} | {cols[1]} | {worst} "
                     f"| {shifted} |")
        print(lines[-1], file=sys.stderr, flush=True)
    return lines


# --------------------------------------------------------------------------- variations


def _write(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array, affine), str(path))


def make_variation(name: str, image: np.ndarray, ref: np.ndarray, affine: np.ndarray, rng):
    """(image, reference, affine) of one variation, in the file's own array order."""
    img = image.astype(np.float32)
    if name == "flip_x":
        flip = np.diag([-1.0, 1.0, 1.0, 1.0])
        flip[0, 3] = img.shape[0] - 1
        return img[::-1], ref[::-1], affine @ flip
    if name == "flip_y_permute":  # axes stored as (A, R, S), A flipped
        # new[i', j', k] = old[j', n1 - 1 - i', k]: old index = P @ new index
        perm = np.array([[0, 1, 0, 0], [-1, 0, 0, img.shape[1] - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        return (np.transpose(img, (1, 0, 2))[::-1], np.transpose(ref, (1, 0, 2))[::-1], affine @ perm)
    if name == "world_offset":
        moved = affine.copy()
        moved[:3, 3] += (-137.0, 251.0, -612.0)
        return img, ref, moved
    if name == "scale_offset":
        return img * 7.3 + 1500.0, ref, affine
    if name == "bias":  # a smooth multiplicative field, 0.55 ... 1.45 across the body
        x, y, z = (np.linspace(-1, 1, n) for n in img.shape)
        field = 1.0 + 0.45 * (0.6 * x[:, None, None] + 0.5 * y[None, :, None] - 0.4 * z[None, None, :] ** 2)
        return img * np.clip(field, 0.4, 1.6).astype(np.float32), ref, affine
    if name == "noise":  # Rician noise, 6 % of the body's median
        sigma = 0.06 * float(np.median(img[img > np.percentile(img, 60)]))
        noisy = np.hypot(img + rng.normal(0, sigma, img.shape), rng.normal(0, sigma, img.shape))
        return noisy.astype(np.float32), ref, affine
    if name == "slices_x2":
        n = img.shape[2] // 2 * 2
        thick = img[..., :n].reshape(img.shape[0], img.shape[1], -1, 2).mean(axis=3)
        r = ref[..., :n].reshape(ref.shape[0], ref.shape[1], -1, 2).mean(axis=3) > 0.5
        return thick, r, affine @ np.diag([1.0, 1.0, 2.0, 1.0])
    if name == "slices_half":
        thin = ndi.zoom(img, (1, 1, 2), order=1)
        r = ndi.zoom(ref.astype(np.float32), (1, 1, 2), order=1) > 0.5
        return thin, r, affine @ np.diag([1.0, 1.0, 0.5, 1.0])
    zs = np.flatnonzero(ref.any(axis=(0, 1)))
    if name == "cut_top":  # the cranial 30 % of the liver cut off
        keep = zs[0] + int(0.7 * (zs[-1] - zs[0]))
        return img[..., :keep], ref[..., :keep], affine
    if name == "cut_bottom":  # the caudal 30 % cut off
        start = zs[0] + int(0.3 * (zs[-1] - zs[0]))
        shift = np.eye(4)
        shift[2, 3] = start
        return img[..., start:], ref[..., start:], affine @ shift
    raise ValueError(name)


def variation_files(case: str, name: str, folder: Path) -> tuple[Path, Path]:
    """The variation's image and reference as NIfTI files in ``folder`` (written once, then reused)."""
    f_img, f_ref = folder / f"{case}_{name}.nii.gz", folder / f"{case}_{name}_ref.nii.gz"
    if f_img.is_file() and f_ref.is_file():
        return f_img, f_ref
    image, reference, label = paths(case)
    src = nib.load(str(image))
    img0 = np.asanyarray(src.dataobj)
    ref0 = np.asanyarray(nib.load(str(reference)).dataobj) == label
    if name == "none":
        img, ref, aff = img0.astype(np.float32), ref0, src.affine
    elif name == "cut_side":
        img, ref, aff = _cut_side(img0, ref0, src.affine)
    else:
        img, ref, aff = make_variation(name, img0, ref0, src.affine, np.random.default_rng(CASES.index(case)))
    _write(f_ref, np.ascontiguousarray(ref, dtype=np.uint8), aff)
    _write(f_img, np.ascontiguousarray(img, dtype=np.float32), aff)
    return f_img, f_ref


def variations(cases, names, folder: Path | None) -> list[str]:
    """Segment every (case, variation); one JSON row per run appended to ``folder/rows.jsonl`` as it goes.

    ``folder`` keeps the variation files between runs (a temporary folder when None) and the masks
    (``masks/CASE_NAME.npy``), so that quality checks can be studied on them afterwards.
    """
    lines = ["| scan | variation | Dice | volume error | QC |", "|---|---|---|---|---|"]
    all_scores = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(folder or tmp)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for case in cases:
            for name in names:
                f_img, f_ref = variation_files(case, name, folder)
                vol = io.read_image(f_img)
                r = io.read_labels(f_ref, reference=vol).array > 0
                t = time.process_time()
                try:
                    mask, info = segment_liver_mr(vol.array, spacing_mm=vol.spacing_mm)
                except HepatoplanError as exc:
                    lines.append(f"| {case} | {name} | refused | | {exc} |")
                    all_scores.append((0.0, False))
                    row = {"case": case, "variation": name, "refused": str(exc)}
                else:
                    s = score(mask > 0, r)
                    passed, column = verdict(info)
                    all_scores.append((s["dice"], passed))
                    lines.append(f"| {case} | {name} | {s['dice']:.3f} | {s['volume_error_pct']:+.1f} % | {column} |")
                    np.save(folder / "masks" / f"{case}_{name}.npy", mask > 0)
                    info.pop("params", None)
                    row = {"case": case, "variation": name, **s, "cpu_s": time.process_time() - t, "info": info}
                with open(folder / "rows.jsonl", "a") as fh:
                    fh.write(json.dumps(row, default=float) + "\n")
                print(lines[-1], file=sys.stderr, flush=True)
    d = np.array([s for s, _ in all_scores])
    passed = np.array([p for _, p in all_scores])
    bad = int(np.sum(passed & (d < 0.85)))
    lines += ["", f"{len(d)} runs: mean Dice {d.mean():.3f}, minimum {d.min():.3f}; QC passed on {passed.sum()}, "
              f"mean Dice of those {d[passed].mean() if passed.any() else float('nan'):.3f}; "
              f"Dice < 0.85 with QC passed: {bad}"]
    return lines


def _cut_side(img, ref, affine):
    """Cut the field of view on the patient's right so that 30 % of the liver's width is lost."""
    ax = int(np.argmax(np.abs(affine[:3, :3])[0]))  # the array axis along world x (R-L)
    toward_right = affine[0, ax] > 0  # RAS+: increasing world x is the patient's right
    extent = np.flatnonzero(ref.any(axis=tuple(a for a in range(3) if a != ax)))
    width = extent[-1] - extent[0]
    sl = [slice(None)] * 3
    shift = np.eye(4)
    if toward_right:
        sl[ax] = slice(0, extent[-1] - int(0.3 * width))
    else:
        start = extent[0] + int(0.3 * width)
        sl[ax] = slice(start, None)
        shift[ax, 3] = start
    return img[tuple(sl)], ref[tuple(sl)], affine @ shift


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", nargs="?", default="table", choices=("table", "loo", "errors", "variations"))
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    ap.add_argument("--grid", nargs="+", default=["window_min_log=0.15,0.2,0.25"],
                    help="PARAM=v1,v2,... (loo mode)")
    ap.add_argument("--variations", nargs="+", default=list(VARIATIONS), choices=("none",) + VARIATIONS)
    ap.add_argument("--folder", type=Path, help="variations: keep the variation files, masks and rows.jsonl here")
    args = ap.parse_args(argv)
    missing = [c for c in args.cases if not paths(c)[0].is_file()]
    if missing:
        print(f"skip {missing}: data not found under {DATA}", file=sys.stderr)
    cases = [c for c in args.cases if c not in missing]
    if args.mode == "table":
        lines = table(cases)
    elif args.mode == "loo":
        grid = {k: [float(x) for x in v.split(",")] for k, v in (g.split("=") for g in args.grid)}
        lines = loo(cases, grid)
    elif args.mode == "errors":
        lines = errors(cases)
    else:
        lines = variations(cases, args.variations, args.folder)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
