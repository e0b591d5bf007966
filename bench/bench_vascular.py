"""Vascular consequences: this checkout's implementation against an earlier one (exactness, time).

    python bench/bench_vascular.py [--rev a6ade80] [--cases 01,02] [--no-phantom] [--write]

``--rev`` names the commit whose ``resection/vascular.py`` is the reference (default a6ade80, the
implementation before issue 15); it is read with ``git show`` and run in this process beside the
current one, on the same inputs, one after the other for each plan.

Studies: the phantom (``make_phantom(scale=0.6)`` at 1.2 × 1.0 × 2.0 mm, its own segments) and
every IRCADb case found in ../shared/data (reference liver, tumours, portal and hepatic masks;
Couinaud reference filled to the liver with ``fill_partition``). Plans (``plan_resection``):
right and left hepatectomy (anatomical: the downstream-share rule), wedges of all tumours with
1 mm and 5 mm margins (transected stretches) and an extended right hepatectomy with 1 mm wedges
(both at once); wedges only where the case has tumours.

For each plan: devascularised and congested mL of both implementations, whether they agree within
0.1 mL or 0.1 % (the issue's tolerance), whether every number of ``to_dict()`` and both territory
arrays are identical (also those of ``plan``'s route: ``prepare_vessel_trees``, with the nearest
vessel voxels when the plan has an anatomical part, then ``consequences_of`` on the resection's box; not timed), and the seconds of each (wall; the machine's load moves them, the ratio is
the comparison). ``--write`` replaces the "## Vascular consequences" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

from hepatoplan.resection import vascular
from hepatoplan.resection.procedures import parse_resection
from hepatoplan.resection.virtual import plan_resection

ROOT = Path(__file__).resolve().parents[1]
IRCADB = ROOT.parent / "shared" / "data" / "ircadb"
PLANS = (("right-hepatectomy",), ("left-hepatectomy",), ("wedge:all@1",), ("wedge:all@5",),
         ("extended-right-hepatectomy", "wedge:all@1"))


def reference_module(rev: str) -> types.ModuleType:
    """``resection/vascular.py`` as of ``rev``, importable beside the current one (with ``resection/volumetry.py``
    as of ``rev``: the reference's helpers there may have changed since)."""
    def load(stem: str, source: str) -> types.ModuleType:
        name = f"hepatoplan.resection._{stem}_reference"
        module = types.ModuleType(name)
        module.__package__ = "hepatoplan.resection"  # its relative imports resolve as in the package
        sys.modules[name] = module
        exec(compile(source, f"{rev}:resection/{stem}.py", "exec"), module.__dict__)
        return module

    def show(stem: str) -> str:
        return subprocess.run(["git", "show", f"{rev}:resection/{stem}.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout

    load("volumetry", show("volumetry"))
    return load("vascular", show("vascular").replace("from .volumetry import", "from ._volumetry_reference import"))


def studies(cases: list[str], phantom: bool):
    if phantom:
        from hepatoplan.data_samples.phantom import make_phantom

        ph = make_phantom(spacing_mm=(1.2, 1.0, 2.0), scale=0.6, noise_hu=0.0)
        yield "phantom", {"liver": ph.liver > 0, "spacing": ph.spacing_mm, "segments": ph.segments,
                          "tumours": ph.tumours, "portal": ph.portal > 0, "hepatic": ph.hepatic > 0}
    for case in cases:
        from hepatoplan.pipeline.io import read_labels
        from hepatoplan.resection.volumetry import fill_partition

        d = IRCADB / case
        vol = read_labels(d / "liver.nii.gz")
        liver, spacing = vol.array > 0, vol.spacing_mm
        segments, _ = fill_partition(read_labels(d / "couinaud_reference.nii.gz").array, liver, spacing_mm=spacing)
        yield case, {"liver": liver, "spacing": spacing, "segments": segments,
                     "tumours": read_labels(d / "tumours.nii.gz").array,
                     "portal": read_labels(d / "portal_vein.nii.gz").array > 0,
                     "hepatic": read_labels(d / "hepatic_veins.nii.gz").array > 0}


def within(a: float, b: float) -> bool:
    """Equal within 0.1 mL or 0.1 %."""
    return abs(a - b) <= max(0.1, 0.001 * max(abs(a), abs(b)))


def compare(reference, study: dict, specs: tuple[str, ...]) -> dict:
    plan = plan_resection(liver=study["liver"], tumours=study["tumours"], segments=study["segments"],
                          resections=[parse_resection(s) for s in specs], spacing_mm=study["spacing"])
    anatomical = (np.isin(study["segments"], plan.segments_removed) & study["liver"]
                  if plan.segments_removed else None)
    kw = dict(liver=study["liver"], resected=plan.resected_fraction, spacing_mm=study["spacing"],
              portal=study["portal"], hepatic=study["hepatic"], tumours=study["tumours"],
              segments=study["segments"], anatomical=anatomical)
    out = {}
    for name, module in (("before", reference), ("now", vascular)):
        t = time.perf_counter()
        out[name] = module.vascular_consequences(**kw)
        out[f"{name}_s"] = time.perf_counter() - t
    a, b = out["before"], out["now"]
    # the plan's route: the trees prepared first (with every liver voxel's nearest vessel voxel when
    # the plan has an anatomical part, as ``plan`` prepares them), then the resection's consequences,
    # given on the resection's box (the liver's) as ``plan`` gives them
    trees = vascular.prepare_vessel_trees(liver=kw["liver"], spacing_mm=kw["spacing_mm"], portal=kw["portal"],
                                          hepatic=kw["hepatic"], nearest_nodes=anatomical is not None)
    box = plan.box
    c = vascular.consequences_of(trees, resected=plan.fraction_in_box, tumours=kw["tumours"], segments=kw["segments"],
                                 anatomical=None if anatomical is None else anatomical[box], box=box)
    return {
        "plan": " + ".join(specs),
        "devascularised_ml": (a.devascularised_ml, b.devascularised_ml),
        "congested_ml": (a.congested_ml, b.congested_ml),
        "within": within(a.devascularised_ml, b.devascularised_ml) and within(a.congested_ml, b.congested_ml),
        "identical": all(a.to_dict() == x.to_dict() and np.array_equal(a.devascularised, x.devascularised)
                         and np.array_equal(a.congested, x.congested) for x in (b, c)),
        "seconds": (out["before_s"], out["now_s"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rev", default="a6ade80", help="commit of the reference implementation")
    parser.add_argument("--cases", default=",".join(f"{i:02d}" for i in range(1, 13)))
    parser.add_argument("--no-phantom", dest="phantom", action="store_false")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    opts = parser.parse_args()
    reference = reference_module(opts.rev)
    cases = [c for c in opts.cases.split(",") if c and (IRCADB / c).is_dir()]
    header = ("| study | plan | devascularised mL before / now | congested mL before / now | within 0.1 mL or 0.1 % "
              "| identical | s before / now |\n|---|---|---|---|---|---|---|")
    print(header, flush=True)
    rows, all_within, all_identical = [], True, True
    for name, study in studies(cases, opts.phantom):
        for specs in PLANS:
            if any(s.startswith("wedge") for s in specs) and not study["tumours"].any():
                continue
            r = compare(reference, study, specs)
            all_within &= r["within"]
            all_identical &= r["identical"]
            (d0, d1), (c0, c1), (s0, s1) = r["devascularised_ml"], r["congested_ml"], r["seconds"]
            line = (f"| {name} | {r['plan']} | {d0:.2f} / {d1:.2f} | {c0:.2f} / {c1:.2f} | "
                    f"{'yes' if r['within'] else 'NO'} | {'yes' if r['identical'] else 'no'} | {s0:.2f} / {s1:.2f} |")
            rows.append((line, s0, s1))
            print(line, flush=True)
    total_before, total_now = sum(r[1] for r in rows), sum(r[2] for r in rows)
    summary = (f"\n{len(rows)} plans: all within tolerance: {'yes' if all_within else 'NO'}; all identical: "
               f"{'yes' if all_identical else 'no'}; seconds in total before {total_before:.1f}, now {total_now:.1f} "
               f"({total_before / max(total_now, 1e-9):.1f}x); load average {os.getloadavg()[0]:.1f} on "
               f"{os.cpu_count()} cores")
    print(summary)
    if opts.write:
        from bench_plan import write_section

        write_section("Vascular consequences", f"`python bench/bench_vascular.py --rev {opts.rev} --write` "
                      f"({time.strftime('%Y-%m-%d %H:%M')})\n\n" + header + "\n"
                      + "\n".join(r[0] for r in rows) + "\n" + summary + "\n")
    return 0 if all_within else 1


if __name__ == "__main__":
    sys.exit(main())
