"""Parenchymal-sparing vs anatomical resection on IRCADb 01: remnant, devascularised, congested.

Reference masks of 3D-IRCADb-01 case 01 (liver, 7 tumours, portal vein, hepatic veins + IVC,
Couinaud reference as segments, filled to the liver with ``fill_partition``). Plans:

- wedges of all seven tumours, 1 mm margin (``wedge:all@1``, lead's partial-voxel construction),
  and the same with 5 mm;
- the same with a modulated margin: 5 mm in free parenchyma, 1 mm where the tumour lies within
  5 mm of a hepatic vein or the portal vein (``hepatoplan.resection.sparing``);
- 1 mm wedges detached from the hepatic veins (protected; vascular R1 where a tumour touches);
- right hepatectomy (segments 5-8), the anatomical alternative the issue names (it leaves the
  left-liver tumours), and extended right hepatectomy (4-8) + 1 mm wedges of the two tumours in
  segment II, an anatomical plan that treats every tumour.

For each: resected and remnant functional liver (mL, FLR %), devascularised and congested liver
in the remnant (``hepatoplan.resection.vascular``), the remnant that keeps portal inflow, tumours not fully
removed, wall-clock seconds of the vascular analysis.

With ``--all-cases``, also right and left hepatectomy on every IRCADb case present (01-12): what
the anatomical plans devascularise / congest on the kept side, and the largest detached branch.

Run:  python bench/bench_sparing.py [--case 01] [--all-cases] [--write]
(``--write`` replaces the "Parenchymal-sparing planning" section of bench/RESULTS.md.)
"""

from __future__ import annotations

import argparse
import re
import resource
import time
from pathlib import Path

import numpy as np

from hepatoplan.pipeline.io import read_labels
from hepatoplan.resection.procedures import parse_resection
from hepatoplan.resection.sparing import sparing_wedges
from hepatoplan.resection.vascular import vascular_consequences
from hepatoplan.resection.virtual import plan_resection
from hepatoplan.resection.volumetry import fill_partition

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ircadb"
RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "## Parenchymal-sparing planning"


def load(case: str) -> dict:
    d = DATA / case
    vol = read_labels(d / "liver.nii.gz")
    liver, spacing = vol.array > 0, vol.spacing_mm
    segments, _ = fill_partition(read_labels(d / "couinaud_reference.nii.gz").array, liver, spacing_mm=spacing)
    return {
        "liver": liver, "spacing": spacing, "segments": segments,
        "tumours": read_labels(d / "tumours.nii.gz").array,
        "portal": read_labels(d / "portal_vein.nii.gz").array > 0,
        "hepatic": read_labels(d / "hepatic_veins.nii.gz").array > 0,
    }


def vascular(study, fraction, anatomical=None):
    t = time.perf_counter()
    res = vascular_consequences(
        liver=study["liver"], resected=fraction, anatomical=anatomical, spacing_mm=study["spacing"],
        portal=study["portal"], hepatic=study["hepatic"], tumours=study["tumours"], segments=study["segments"],
    )
    return res, time.perf_counter() - t


def row(name, functional_ml, resected_functional_ml, not_removed, res, seconds, note=""):
    remnant = functional_ml - resected_functional_ml
    perfused = remnant - res.devascularised_ml
    return {
        "plan": name,
        "resected_ml": resected_functional_ml,
        "remnant_ml": remnant,
        "flr_percent": 100 * remnant / functional_ml,
        "devascularised_ml": res.devascularised_ml,
        "congested_ml": res.congested_ml,
        "perfused_remnant_ml": perfused,
        "perfused_flr_percent": 100 * perfused / functional_ml,
        "not_removed": not_removed,
        "seconds": seconds,
        "pieces": f"{sum(p.kind == 'detached' for p in res.portal_pieces)}/"
                  f"{sum(p.kind == 'transected' for p in res.portal_pieces)}",
        "hpieces": f"{sum(p.kind == 'detached' for p in res.hepatic_pieces)}/"
                   f"{sum(p.kind == 'transected' for p in res.hepatic_pieces)}",
        "cut": f"{res.portal_cut_voxels}/{res.hepatic_cut_voxels}",
        "note": note,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="01")
    ap.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    ap.add_argument("--all-cases", action="store_true", help="anatomical plans on every IRCADb case")
    args = ap.parse_args()
    study = load(args.case)
    liver, tumours, spacing = study["liver"], study["tumours"], study["spacing"]
    rows = []

    wedge = plan_resection(liver=liver, tumours=tumours, segments=None,
                           resections=[parse_resection("wedge:all@1")], spacing_mm=spacing)
    functional_ml = wedge.functional_liver_ml
    res, s = vascular(study, wedge.resected_fraction)
    left = [t.id for t in wedge.tumours if not t.resected]
    rows.append(row("wedges of all tumours, 1 mm", functional_ml, wedge.resected_functional_ml, left, res, s))

    wedge5 = plan_resection(liver=liver, tumours=tumours, segments=None,
                            resections=[parse_resection("wedge:all@5")], spacing_mm=spacing)
    res, s = vascular(study, wedge5.resected_fraction)
    rows.append(row("wedges of all tumours, 5 mm", functional_ml, wedge5.resected_functional_ml, [], res, s))

    vessels = study["portal"] | study["hepatic"]
    t0 = time.perf_counter()
    mod = sparing_wedges(liver=liver, tumours=tumours, spacing_mm=spacing, margin_mm=5.0,
                         near_vessel_margin_mm=1.0, near_vessel_distance_mm=5.0, major_vessels=vessels)
    t_mod = time.perf_counter() - t0
    res, s = vascular(study, mod["fraction"])
    thin = min(o.achieved_min_margin_mm for o in mod["tumours"] if o.achieved_min_margin_mm is not None)
    rows.append(row("wedges, 5 mm / 1 mm within 5 mm of a vessel", functional_ml, mod["resected_functional_ml"],
                    [], res, s, note=f"thinnest achieved margin {thin:.2f} mm; wedges {t_mod:.1f} s"))

    t0 = time.perf_counter()
    det = sparing_wedges(liver=liver, tumours=tumours, spacing_mm=spacing, margin_mm=1.0, protected=study["hepatic"])
    t_det = time.perf_counter() - t0
    res, s = vascular(study, det["fraction"])
    r1 = [o.id for o in det["tumours"] if o.vascular_r1]
    rows.append(row("wedges 1 mm, detached from hepatic veins", functional_ml, det["resected_functional_ml"],
                    [], res, s, note=f"vascular R1: tumours {r1 or 'none'}; wedges {t_det:.1f} s"))

    right = plan_resection(liver=liver, tumours=tumours, segments=study["segments"],
                           resections=[parse_resection("right-hepatectomy")], spacing_mm=spacing)
    anatomical = right.resected_fraction >= 0.5
    res_r, s = vascular(study, right.resected_fraction, anatomical=anatomical)
    left = [f"{t.id} ({t.status})" for t in right.tumours if not t.resected]
    left_liver = np.isin(study["segments"], (1, 2, 3, 4))
    unit = float(np.prod(spacing)) / 1000
    dv_left = float(np.count_nonzero(res_r.devascularised & left_liver)) * unit
    rows.append(row("right hepatectomy (segments 5-8)", functional_ml, right.resected_functional_ml, left, res_r, s,
                    note=f"devascularised in segments 1-4: {dv_left:.1f} mL"))

    ext = plan_resection(liver=liver, tumours=tumours, segments=study["segments"],
                         resections=[parse_resection("extended-right-hepatectomy"), parse_resection("wedge:3,7@1")],
                         spacing_mm=spacing)
    anatomical = np.isin(study["segments"], (4, 5, 6, 7, 8)) & liver
    res_e, s = vascular(study, ext.resected_fraction, anatomical=anatomical)
    left = [f"{t.id} ({t.status})" for t in ext.tumours if not t.resected]
    rows.append(row("extended right hepatectomy (4-8) + 1 mm wedges of 3, 7", functional_ml,
                    ext.resected_functional_ml, left, res_e, s))

    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    table = [
        "| plan | resected mL | remnant mL (FLR %) | devascularised mL | congested mL | remnant with inflow mL (FLR %) "
        "| vessel voxels cut portal/hepatic | portal pieces detached/transected | hepatic pieces detached/transected "
        "| tumours not removed | vascular analysis s | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        table.append(
            f"| {r['plan']} | {r['resected_ml']:.1f} | {r['remnant_ml']:.1f} ({r['flr_percent']:.1f}) "
            f"| {r['devascularised_ml']:.1f} | {r['congested_ml']:.1f} "
            f"| {r['perfused_remnant_ml']:.1f} ({r['perfused_flr_percent']:.1f}) | {r['cut']} | {r['pieces']} | {r['hpieces']} "
            f"| {', '.join(map(str, r['not_removed'])) or 'none'} | {r['seconds']:.1f} | {r['note']} |"
        )
    text = "\n".join(table)
    print(f"IRCADb {args.case}: functional liver {functional_ml:.1f} mL, {len(wedge.tumours)} tumours, "
          f"peak RSS {peak_gb:.2f} GB\n")
    print(text)
    cases_text = ""
    if args.all_cases:
        cases_text = all_cases_table()
        print("\n" + cases_text)
    if args.write:
        write_section(args.case, functional_ml, text, peak_gb, cases_text)


def all_cases_table() -> str:
    lines = [
        "| case | plan | removed mL | devascularised mL (kept side) | congested mL | detached portal pieces | "
        "largest detached portal branch: diameter mm, territory mL, segment | s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for case_dir in sorted(p for p in DATA.iterdir() if (p / "portal_vein.nii.gz").is_file()):
        study = load(case_dir.name)
        liver, unit = study["liver"], float(np.prod(study["spacing"])) / 1000
        for name, removed, kept in (("right hepatectomy", (5, 6, 7, 8), (1, 2, 3, 4)),
                                    ("left hepatectomy", (2, 3, 4), (1, 5, 6, 7, 8))):
            cut = np.isin(study["segments"], removed) & liver
            res, seconds = vascular(study, cut, anatomical=cut)
            on_kept = float(np.count_nonzero(res.devascularised & np.isin(study["segments"], kept))) * unit
            detached = [p for p in res.portal_pieces if p.kind == "detached"]
            big = max(detached, key=lambda p: p.territory_ml, default=None)
            big_text = "—" if big is None else f"{big.max_diameter_mm:.1f}, {big.territory_ml:.1f}, {big.segment}"
            lines.append(
                f"| {case_dir.name} | {name} | {np.count_nonzero(cut) * unit:.0f} | {res.devascularised_ml:.1f} "
                f"({on_kept:.1f}) | {res.congested_ml:.1f} | {len(detached)} | {big_text} | {seconds:.1f} |"
            )
    return "\n".join(lines)


def write_section(case: str, functional_ml: float, table: str, peak_gb: float, cases_text: str = "") -> None:
    cases = "" if not cases_text else f"""
Anatomical plans on every case (reference masks; Couinaud reference filled to the liver):

`python bench/bench_sparing.py --all-cases --write`

{cases_text}

Reading: the segment planes of the reference are not the vascular territories, so an anatomical
plan can detach a branch that crosses a plane: after a right hepatectomy, 2-4 mm branches to
segment IV arising on the right side (cases 03, 07, 08, 10: 51-85 mL); after a left hepatectomy,
branches to V/VIII arising on the left (04, 05, 09: 21-35 mL). Whether that is a variant the
surgeon must know about or an annotation artefact, the report names the branch, its diameter and
its segment. The trunk and the bifurcation are never divided: before the downstream-share rule,
the right hepatectomy of cases 02 and 12 detached the whole left portal vein (379 and 423 mL).
"""
    body = f"""{SECTION}

What a parenchymal-sparing plan keeps, and what its cuts cost in inflow and outflow (issue 5),
on IRCADb {case} with its reference masks (functional liver {functional_ml:.1f} mL; Couinaud
reference filled to the liver). Devascularised / congested = remnant liver whose nearest portal /
hepatic vessel voxel (tree before the cut) is detached from the portal root / IVC, or a vessel
stretch a non-anatomical cut removes and thereby severs (`hepatoplan.resection.vascular`); the anatomical plan counts only what
its cut detaches. Wall-clock seconds on the shared 2-core machine (other agents running), one run;
peak RSS of the whole run {peak_gb:.2f} GB.

`python bench/bench_sparing.py --case {case} --write`

{table}

Reading: the seven 1 mm wedges keep far more liver than either anatomical plan (the seed's
point); they graze vessel walls (cut voxels) but sever no vessel, so nothing is devascularised.
A uniform 5 mm margin is what costs: around tumour 5, at the hepatocaval confluence, it takes the
right and middle hepatic veins at the cava and congests 986 mL (72 % of the liver; the wedge of
tumour 5 alone: 1053 mL) — the 5 mm / 1 mm modulated margin and the detachment from the hepatic
veins (vascular R1 on tumours 1, 4, 5) both avoid it. The right hepatectomy devascularises
nothing in the left liver (the issue's acceptance) and congests nothing (the middle hepatic vein
stays: most of what it drains is kept), but it leaves four tumours; the anatomical plan that treats every tumour leaves 19.6 %, under the 20 % threshold of a
normal liver. A test (tests/test_vascular.py) recomputes
the 1 mm-wedge remnant and devascularised volume independently.
{cases}"""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    RESULTS.write_text(text)


if __name__ == "__main__":
    main()
