"""How robust one insertion run's outcome is (issue 16): the run made again with small changes to the
scan, and for each, whether its large lesions (>= 10 mL) are found and whether the self-check flags
the run when one is missed (a miss with the check passed is a silent failure).

Perturbations of the run (``bench_segmentation_insertion.py``'s, e.g. IRCADb 01 seed 106):

* ``base``: the run as the benchmark makes it;
* ``texture<k>``: the same lesions in the same places, their texture and noise drawn with seed k;
* ``contrast+1`` / ``contrast-1``: every inserted lesion 1 HU brighter / darker;
* ``noise<sd>_<k>``: correlated noise of the scan's own texture, SD ``sd`` HU (seed k), added to the CT;
* ``float``: the CT not rounded to whole HU;
* ``slices_x2``: two slices averaged into one (3.2 mm).

Usage::

    python bench/bench_lesion_perturbation.py --case 01 --seed 106 [--only base texture1 ...] [--json FILE]
        [--tumour-param joint_near_miss_margin=-1]   # a TumourParams value changed (e.g. a rule off: A/B in one checkout)

Prints one line per perturbation and a summary (nothing is written to RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_segmentation_insertion as bench  # noqa: E402
from bench_segmentation_insertion import BIG_LESION_ML, Case, run_one  # noqa: E402

PERTURBATIONS = ["base", "texture1", "texture2", "texture3", "texture4", "contrast+1", "contrast-1",
                 "noise3_1", "noise3_2", "noise6_1", "noise6_2", "float", "slices_x2"]


def _run(case: Case, seed: int, name: str) -> dict:
    variant, kw = "native", {}
    if name.startswith("texture"):
        kw["noise_seed"] = 10_000 + int(name[7:])
    elif name.startswith("contrast"):
        kw["contrast_shift_hu"] = float(name[8:])
    elif name.startswith("noise"):
        sd, k = name[5:].split("_")

        def added(ct, sd=float(sd), k=int(k)):
            rng = np.random.default_rng(20_000 + k)
            noise = type(case.noise)(sd, case.noise.sigma_vox)
            return ct + noise.sample(ct.shape, rng)

        kw["perturb"] = added
    elif name == "float":
        kw["integer_hu"] = False
    elif name != "base":
        variant = name
    return run_one(case, seed, variant, **kw)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="01")
    ap.add_argument("--seed", type=lambda s: None if s == "none" else int(s), default=106,
                    help="the insertion run's seed; none: the scan as it is (false lesions under noise)")
    ap.add_argument("--only", nargs="+", default=PERTURBATIONS)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--tumour-param", nargs="+", default=[], metavar="NAME=VALUE",
                    help="run with these TumourParams values (floats) instead of the defaults")
    args = ap.parse_args(argv)
    if args.tumour_param:
        import functools
        from dataclasses import replace

        from hepatoplan.segmentation.params import SegmentationParams

        values = {k: float(v) for k, v in (a.split("=") for a in args.tumour_param)}
        base = SegmentationParams()
        bench.segment_study = functools.partial(bench.segment_study, params=replace(base, tumours=replace(base.tumours, **values)))
    case = Case(args.case)
    out = {}
    for name in args.only:
        row = _run(case, args.seed, name)
        big = [e for e in row["lesions"] if e["volume_ml"] >= BIG_LESION_ML]
        out[name] = row
        silent = bool(row["bad"] and row["qc_passed"])
        print(f"{name:12s} big lesions " + " ".join(f"{e['volume_ml']:.1f}mL:{e['covered']:.2f}" for e in big)
              + f"  tumour Dice {row['tumour_dice']:.3f} liver {row['liver_dice']:.3f} false {row['false_lesions_ge_1ml']} bad {row['bad']} "
              f"qc_passed {row['qc_passed']}{'  SILENT' if silent else ''}  {row['qc_reasons']}", flush=True)
        if args.json:
            args.json.write_text(json.dumps(out, indent=1, default=float))
    rows = list(out.values())
    print(f"\n{args.case} seed {args.seed}: {len(rows)} perturbations, large lesions all found in "
          f"{sum(not r['missed_big'] for r in rows)}, bad {sum(r['bad'] for r in rows)}, flagged "
          f"{sum(not r['qc_passed'] for r in rows)}, silent bad {sum(r['bad'] and r['qc_passed'] for r in rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
