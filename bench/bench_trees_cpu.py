"""The vascular analysis' CPU, another revision's ``resection/vascular.py`` against this checkout's, in one process.

    python bench/bench_trees_cpu.py --rev 110b431 [--rounds 8] [--case 01] [--resect right-hepatectomy]

IRCADb ``--case`` as bench_vascular.py reads it (its reference Couinaud segments filled to the liver); the plan
``--resect``. Per round, each side in turn (the order alternates): ``prepare_vessel_trees(nearest_nodes=True)`` (the
trees as ``plan`` prepares them beside the division, in their two threads) and then ``consequences_of`` on the
resection's box (what follows the resection). Process CPU (every thread: the trees', cKDTree's and edt's workers);
the reference side is loaded as bench_vascular.py loads it (``git show``), beside this one, with this checkout's
compiled module. Medians, and every round.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from bench_vascular import reference_module, studies
from hepatoplan.nearest_voxel import compiled, load_compiled
from hepatoplan.resection import vascular
from hepatoplan.resection.procedures import parse_resection
from hepatoplan.resection.virtual import plan_resection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rev", required=True, help="commit of the reference vascular.py")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--case", default="01")
    parser.add_argument("--resect", default="right-hepatectomy")
    options = parser.parse_args()
    load_compiled()
    compiled("reached")
    sides = {options.rev: reference_module(options.rev), "this": vascular}
    (_, study), = studies([options.case], False)
    plan = plan_resection(liver=study["liver"], tumours=study["tumours"], segments=study["segments"],
                          resections=[parse_resection(options.resect)], spacing_mm=study["spacing"])
    anatomical = np.isin(study["segments"], plan.segments_removed) & study["liver"] if plan.segments_removed else None
    box = plan.box
    cpu_s = {(side, part): [] for side in sides for part in ("prepare", "consequences")}
    for r in range(options.rounds):
        for side in list(sides)[:: 1 if r % 2 == 0 else -1]:
            module = sides[side]
            start = time.process_time()
            trees = module.prepare_vessel_trees(liver=study["liver"], spacing_mm=study["spacing"],
                                                portal=study["portal"], hepatic=study["hepatic"], nearest_nodes=True)
            prepared = time.process_time()
            module.consequences_of(trees, resected=plan.fraction_in_box, tumours=study["tumours"],
                                   segments=study["segments"], box=box,
                                   anatomical=None if anatomical is None else anatomical[box])
            cpu_s[side, "prepare"].append(prepared - start)
            cpu_s[side, "consequences"].append(time.process_time() - prepared)
    for (side, part), values in cpu_s.items():
        print(f"{side:>10} {part:>12}: median {statistics.median(values):.3f} s  ("
              + " ".join(f"{v:.3f}" for v in values) + ")")
    print(f"IRCADb {options.case}, {options.resect}, process CPU, {options.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
