"""The vascular analysis of ``plan`` split in its two halves: CPU of the whole against the part prepared before the
resection (``prepare_vessel_trees``, which ``plan`` runs beside the Couinaud segments) and the part left after it
(``consequences_of``).

    python bench/bench_vascular_split.py [--case 01] [--rounds 4] [--resect right-hepatectomy]

Inputs as in ``plan``'s default row of bench_plan.py: the case's liver, tumours (instances), portal and hepatic masks
read by ``hepatoplan.pipeline.io``, Couinaud segments derived from the veins, the resection planned by
``plan_resection``; numba's one-off is loaded first (``plan`` loads it ahead too). Each round times
``vascular_consequences`` and then the two halves (as ``plan`` makes them), CPU seconds of the process (user + system) and wall, and checks that both give the same ``to_dict()`` and
territory arrays.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import time

import numpy as np

from bench_plan import CASES
from hepatoplan.couinaud import segment_couinaud
from hepatoplan.nearest_voxel import load_compiled
from hepatoplan.pipeline.io import read_labels
from hepatoplan.resection.procedures import parse_resection
from hepatoplan.resection.vascular import consequences_of, prepare_vessel_trees, vascular_consequences
from hepatoplan.resection.virtual import plan_resection
from hepatoplan.resection.volumetry import label_in, tumour_instances


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def inputs(case: str, resect: str) -> dict:
    d = CASES / case
    liver_vol = read_labels(d / "liver.nii.gz", binary=True)
    liver, spacing = liver_vol.array, liver_vol.spacing_mm
    portal = read_labels(d / "portal_vein.nii.gz", binary=True).array
    hepatic = read_labels(d / "hepatic_veins.nii.gz", binary=True).array
    tumours = tumour_instances(read_labels(d / "tumours.nii.gz").array)
    segments = segment_couinaud(liver, portal, hepatic, spacing_mm=spacing).labels
    res = plan_resection(liver=liver, tumours=tumours, segments=segments, resections=[parse_resection(resect)],
                         spacing_mm=spacing)
    anatomical = label_in(segments, res.segments_removed) & liver if res.segments_removed else None
    return dict(liver=liver, resected=res.resected_fraction, spacing_mm=spacing, portal=portal, hepatic=hepatic,
                tumours=tumours, segments=segments, anatomical=anatomical)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="01")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--resect", default="right-hepatectomy")
    opts = parser.parse_args()
    kw = inputs(opts.case, opts.resect)
    load_compiled()
    times: dict[str, list[tuple[float, float]]] = {"vascular_consequences": [], "prepare_vessel_trees": [],
                                                   "consequences_of": []}

    def timed(name, call):
        cpu, wall = _cpu_s(), time.perf_counter()
        out = call()
        times[name].append((_cpu_s() - cpu, time.perf_counter() - wall))
        return out

    for _ in range(opts.rounds):
        whole = timed("vascular_consequences", lambda: vascular_consequences(**kw))
        trees = timed("prepare_vessel_trees", lambda: prepare_vessel_trees(
            liver=kw["liver"], spacing_mm=kw["spacing_mm"], portal=kw["portal"], hepatic=kw["hepatic"],
            nearest_nodes=kw["anatomical"] is not None))
        part = timed("consequences_of", lambda: consequences_of(
            trees, resected=kw["resected"], tumours=kw["tumours"], segments=kw["segments"], anatomical=kw["anatomical"]))
        assert whole.to_dict() == part.to_dict()
        assert np.array_equal(whole.devascularised, part.devascularised)
        assert np.array_equal(whole.congested, part.congested)
    print(f"IRCADb {opts.case}, {opts.resect}, {opts.rounds} rounds (identical answers by both routes)\n")
    print("| call | CPU s (each round) | CPU s median | wall s median |\n|---|---|---|---|")
    for name, runs in times.items():
        print(f"| {name} | {', '.join(f'{c:.2f}' for c, _ in runs)} | {statistics.median(c for c, _ in runs):.2f} | "
              f"{statistics.median(w for _, w in runs):.2f} |")
    load = os.getloadavg()
    print(f"\nload average at the end (1, 5, 15 min): {load[0]:.1f}, {load[1]:.1f}, {load[2]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
