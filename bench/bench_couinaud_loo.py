"""Leave-one-out Couinaud Dice with SEPARATE vessel masks: tuned constants chosen on 11 IRCADb cases,
scored on the 12th.

Usage::

    python bench/bench_couinaud_loo.py [--cache F.json] [--cases 01 02 ...]

Every setting of a grid of :class:`~hepatoplan.couinaud.params.CouinaudParams` values is run on
every case (:func:`segment_couinaud` on ``liver``, ``portal_vein``, ``hepatic_veins``; mean Dice over
segments 1-8 against ``couinaud_reference``). For each held-out case the setting with the best mean
over the other cases is chosen and the held-out case is scored with it. The grid (chosen jointly,
others at their defaults): the scissurae's vein band (8 / 12 / 16 mm) x the transverse planes' share
weight (0.5 / 0.75), the values the in-sample tuning hesitated between; one setting costs 12 runs
(about 4 min on a loaded 2-core machine), hence a small grid. ``--cache`` keeps the per-run Dice (JSON) so an
interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

from bench_couinaud import DEFAULT_DATA, evaluate, load  # this folder is on sys.path when run as a script

from hepatoplan.couinaud import segment_couinaud
from hepatoplan.couinaud.params import CouinaudParams

GRIDS = {
    "vein band x share weight": {"scissurae.vein_band_mm": (8.0, 12.0, 16.0),
                                 "transverse.share_height_weight": (0.5, 0.75)},
}


def with_values(values: dict) -> CouinaudParams:
    """The default parameters with ``{"group.field": value}`` replaced."""
    p = CouinaudParams()
    for key, v in values.items():
        group, name = key.split(".")
        p = dataclasses.replace(p, **{group: dataclasses.replace(getattr(p, group), **{name: v})})
    return p


def loo(scores: dict, cases: list) -> tuple[float, float, dict]:
    """In-sample best mean, leave-one-out mean and each fold's chosen setting."""
    keys = list(scores)
    S = np.array([[scores[k][c] for c in cases] for k in keys])
    held, chosen = [], {}
    for j, c in enumerate(cases):
        rest = np.delete(S, j, axis=1).mean(axis=1)
        best = int(np.argmax(rest))
        held.append(S[best, j])
        chosen[c] = keys[best]
    return float(S.mean(axis=1).max()), float(np.mean(held)), chosen


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cases", nargs="*", default=[f"{i:02d}" for i in range(1, 13)])
    ap.add_argument("--cache", type=Path, default=None, help="JSON of per-run Dice, read and extended")
    a = ap.parse_args(argv)
    if not all((a.data / c).is_dir() for c in a.cases):
        print(f"no IRCADb data at {a.data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    cache = json.loads(a.cache.read_text()) if a.cache and a.cache.exists() else {}
    for case in a.cases:
        d = a.data / case
        (liver, sp), (portal, _), (hepatic, _), (ref, _) = (
            load(d, n) for n in ("liver", "portal_vein", "hepatic_veins", "couinaud_reference"))
        liver, portal, hepatic = (np.ascontiguousarray(m > 0) for m in (liver, portal, hepatic))
        for grid in GRIDS.values():
            for combo in itertools.product(*grid.values()):
                values = dict(zip(grid, combo))
                key = json.dumps(values, sort_keys=True)
                if case in cache.get(key, {}):
                    continue
                res = segment_couinaud(liver, portal, hepatic, spacing_mm=sp, params=with_values(values))
                cache.setdefault(key, {})[case] = evaluate(res.labels, ref)["mean"]
                print(f"{case} {key}: {cache[key][case]:.4f}", file=sys.stderr, flush=True)
                if a.cache:
                    a.cache.write_text(json.dumps(cache))
    for name, grid in GRIDS.items():
        keys = [json.dumps(dict(zip(grid, c)), sort_keys=True) for c in itertools.product(*grid.values())]
        default = json.dumps({k: getattr(getattr(CouinaudParams(), k.split(".")[0]), k.split(".")[1]) for k in grid},
                             sort_keys=True)
        ins, out, chosen = loo({k: cache[k] for k in keys}, a.cases)
        print(f"{name}: defaults {np.mean([cache[default][c] for c in a.cases]):.4f} in-sample; best setting in-sample "
              f"{ins:.4f}; leave-one-out {out:.4f}")
        for c in a.cases:
            print(f"  fold {c}: {chosen[c]} -> {cache[chosen[c]][c]:.4f} (defaults {cache[default][c]:.4f})")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
