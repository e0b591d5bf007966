"""How the automatic segmentation holds up when IRCADb 01 / 07 are made to look like other scans.

Each variant is made from the CT and its manual masks on the same terms, then ``segment_study``
runs in this process and ``bench_segmentation.score_arrays`` scores it:

* ``native``: the scan as it is (0.57-0.78 mm in-plane, 1.6 mm slices);
* ``slices_x2`` / ``slices_x3``: 2 and 3 slices averaged into one (3.2 / 4.8 mm slices, as many
  clinical CTs and several IRCADb patients are); masks: the share of the block inside > 0.5,
  Couinaud labels by majority;
* ``inplane_x2``: 2 x 2 pixels averaged (1.1-1.6 mm in-plane);
* ``noise``: correlated Gaussian noise (about 20 HU) added, as in a low-dose scan;
* ``partial_top`` / ``partial_bottom``: only the caudal 60 % / cranial 60 % of the liver's extent in
  the scan (the rest of the slices cut off), as in a scan that shows part of the liver.

Usage::

    python bench/bench_segmentation_robustness.py [--cases 01 07] [--variants native slices_x2 ...]

Prints a Markdown table (nothing is written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from bench_segmentation import DATA, fmt, score_arrays  # noqa: E402
from hepatoplan.errors import HepatoplanError  # noqa: E402
from hepatoplan.pipeline import io  # noqa: E402
from hepatoplan.segmentation import segment_study  # noqa: E402

NAMES = ("liver", "tumours", "portal_vein", "hepatic_veins", "couinaud_reference")
VARIANTS = ("native", "slices_x2", "slices_x3", "inplane_x2", "noise", "partial_top", "partial_bottom")
BLOCKS = {"slices_x2": (1, 1, 2), "slices_x3": (1, 1, 3), "inplane_x2": (2, 2, 1)}


def _blocks(a: np.ndarray, f) -> np.ndarray:
    """``a`` cut to whole blocks of ``f`` voxels, as an array with each block's voxels on the last axes."""
    n = [s // k * k for s, k in zip(a.shape, f)]
    a = a[: n[0], : n[1], : n[2]]
    return a.reshape(n[0] // f[0], f[0], n[1] // f[1], f[1], n[2] // f[2], f[2]).transpose(0, 2, 4, 1, 3, 5)


def _block_mean(a, f):
    return _blocks(a.astype(np.float32), f).mean(axis=(3, 4, 5))


def _block_majority(labels, f):
    b = _blocks(labels, f)
    b = b.reshape(b.shape[:3] + (-1,))
    votes = np.stack([(b == k).sum(axis=-1) for k in range(int(labels.max()) + 1)])
    return votes.argmax(axis=0).astype(labels.dtype)


def variant(name: str, ct: np.ndarray, ref: dict, spacing):
    """(CT, reference masks, spacing) of one variant."""
    if name in BLOCKS:
        f = BLOCKS[name]
        masks = {k: (_block_majority(v, f) if k == "couinaud_reference" else (_block_mean(v > 0, f) > 0.5).astype(np.uint8))
                 for k, v in ref.items()}
        return _block_mean(ct, f), masks, tuple(s * k for s, k in zip(spacing, f))
    if name == "noise":
        rng = np.random.default_rng(0)
        noise = ndi.gaussian_filter(rng.normal(0.0, 20.0, ct.shape).astype(np.float32), 0.7)
        return ct + noise * (20.0 / noise.std()), ref, spacing
    if name in ("partial_top", "partial_bottom"):
        zs = np.flatnonzero(ref["liver"].any(axis=(0, 1)))
        keep = slice(0, zs[0] + int(0.6 * (zs[-1] - zs[0]))) if name == "partial_top" else slice(zs[0] + int(0.4 * (zs[-1] - zs[0])), None)
        return ct[..., keep], {k: v[..., keep] for k, v in ref.items()}, spacing
    return ct, ref, spacing


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="+", default=["01", "07"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    args = ap.parse_args(argv)
    cols = ["case", "variant", "spacing_mm", "liver_dice", "liver_vol_err_pct", "tumour_dice", "lesions_found",
            "false_lesions_ge_1ml", "vessel_dice_in_liver", "tree_accuracy", "couinaud_mean_dice", "segment_s", "qc"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for case in args.cases:
        d = DATA / "ircadb" / case
        if not (d / "ct.nii.gz").exists():
            print(f"skip {case}: {d / 'ct.nii.gz'} not found", file=sys.stderr)
            continue
        image = io.read_image(d / "ct.nii.gz")
        ct0 = image.array.astype(np.float32)
        ref0 = {n: io.read_labels(d / f"{n}.nii.gz").array for n in NAMES}
        for name in args.variants:
            ct, ref, spacing = variant(name, ct0, ref0, image.spacing_mm)
            row = {"case": case, "variant": name, "spacing_mm": "×".join(f"{s:.2f}" for s in spacing)}
            t = time.perf_counter()
            try:
                seg = segment_study(np.ascontiguousarray(ct), spacing_mm=spacing)
            except HepatoplanError as exc:
                row["qc"] = f"refused: {exc}"
            else:
                row["segment_s"] = time.perf_counter() - t
                pred = {"liver": seg.liver, "tumours": seg.tumours, "portal_vein": seg.portal_vein, "hepatic_veins": seg.hepatic_veins}
                row.update(score_arrays(pred, ref, spacing))
                row["qc"] = "; ".join(seg.report["qc_flags"]) or "pass"
            lines.append("| " + " | ".join(fmt(row.get(c, float("nan"))) for c in cols) + " |")
            print(lines[-1], file=sys.stderr, flush=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
