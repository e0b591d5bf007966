"""Benchmark: automatic Couinaud segments against the reference annotation on 3D-IRCADb cases.

Usage::

    python bench/bench_couinaud.py [--data ../shared/data/ircadb] [--cases 01 02 ...] [--no-write]

For every case it reads ``liver``, ``portal_vein`` and ``hepatic_veins`` (canonical RAS via
nibabel), runs :func:`hepatoplan.couinaud.segment_couinaud`, and compares with ``couinaud_reference``:
per-segment Dice (1..8), the case mean over segments 1-8, and hemiliver Dice. Hemilivers:
left = segments 2, 3, 4 and right = 5, 6, 7, 8; segment 1 (caudate, drained directly into the
IVC and fed by both portal branches) belongs to neither and is left out of both.
Runtime is the wall time of ``segment_couinaud`` alone (files already loaded), median of
``--repeat`` runs on the first case.

The table is printed and written into the ``## Couinaud segments`` section of
``bench/RESULTS.md`` (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from hepatoplan.couinaud import segment_couinaud  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "ircadb"
SECTION = "## Couinaud segments"
LEFT = (2, 3, 4)
RIGHT = (5, 6, 7, 8)


def load(case_dir: Path, name: str):
    img = nib.as_closest_canonical(nib.load(str(case_dir / f"{name}.nii.gz")))
    return np.asanyarray(img.dataobj), tuple(float(s) for s in img.header.get_zooms()[:3])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int((a & b).sum()) / s if s else float("nan")


def evaluate(labels: np.ndarray, ref: np.ndarray) -> dict:
    per = [dice(labels == k, ref == k) for k in range(1, 9)]
    return {
        "dice": per,
        "mean": float(np.nanmean(per)),
        "left": dice(np.isin(labels, LEFT), np.isin(ref, LEFT)),
        "right": dice(np.isin(labels, RIGHT), np.isin(ref, RIGHT)),
    }


def run(data: Path, cases: list[str], repeat: int) -> tuple[list, tuple]:
    rows = []
    runtime = (float("nan"), float("nan"))
    for i, case in enumerate(cases):
        d = data / case
        liver, sp = load(d, "liver")
        portal, _ = load(d, "portal_vein")
        hepatic, _ = load(d, "hepatic_veins")
        ref, _ = load(d, "couinaud_reference")
        times, cpus = [], []
        for _ in range(repeat if i == 0 else 1):
            t0, c0 = time.perf_counter(), time.process_time()
            res = segment_couinaud(liver, portal, hepatic, spacing_mm=sp)
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        if i == 0:
            runtime = (float(np.median(times)), float(np.median(cpus)))
        ev = evaluate(res.labels, ref)
        ev["case"] = case
        ev["time_s"] = times[-1]
        ev["warnings"] = res.warnings
        fb = [k for k, v in res.methods.items() if v.get("method") == "fallback"]
        ev["vessel"] = [k for k, v in res.methods.items() if v.get("method") in ("vessel", "blend")]
        ev["fallbacks"] = fb
        rows.append(ev)
        print(f"{case}: mean {ev['mean']:.3f}  L {ev['left']:.3f} R {ev['right']:.3f}  {ev['time_s']:.2f} s"
              + (f"  fallback: {', '.join(fb)}" if fb else ""), file=sys.stderr)
    return rows, runtime


def table(rows: list, runtime: tuple, first_case: str) -> str:
    head = "| case | " + " | ".join(f"S{k}" for k in range(1, 9)) + " | mean 1-8 | left (2-4) | right (5-8) | time s |"
    sep = "|" + "---|" * 13
    lines = [head, sep]
    for r in rows:
        lines.append(f"| {r['case']} | " + " | ".join(f"{v:.3f}" for v in r["dice"])
                     + f" | **{r['mean']:.3f}** | {r['left']:.3f} | {r['right']:.3f} | {r['time_s']:.2f} |")
    D = np.array([r["dice"] for r in rows])
    means = np.array([r["mean"] for r in rows])
    lines.append("| **mean** | " + " | ".join(f"{v:.3f}" for v in np.nanmean(D, axis=0))
                 + f" | **{means.mean():.3f}** | {np.mean([r['left'] for r in rows]):.3f}"
                 f" | {np.mean([r['right'] for r in rows]):.3f} | |")
    worst = rows[int(np.argmin(means))]
    hemi = [min(r["left"], r["right"]) for r in rows]
    summary = [
        "",
        f"- mean Dice over segments 1-8, averaged over {len(rows)} cases: **{means.mean():.3f}** (target >= 0.80, aim 0.85)",
        f"- worst case: {worst['case']} with {worst['mean']:.3f} (target: none below 0.65)",
        f"- hemiliver Dice, mean left {np.mean([r['left'] for r in rows]):.3f} / right {np.mean([r['right'] for r in rows]):.3f}; "
        f"lowest single hemiliver {min(hemi):.3f} (target >= 0.92; segment 1 in neither hemiliver)",
        f"- runtime of segment_couinaud on case {first_case} (median of the timing runs, files already loaded): "
        f"**{runtime[0]:.2f} s wall, {runtime[1]:.2f} s CPU** (target <= 1.5 s on 2 cores; wall time depends on "
        f"the machine's load, {_load_note()})",
    ]
    fbs = {r["case"]: r["fallbacks"] for r in rows if r["fallbacks"]}
    if fbs:
        summary.append("- boundaries decided by a fallback prior: " + "; ".join(f"{c}: {', '.join(v)}" for c, v in fbs.items()))
    ves = {r["case"]: r["vessel"] for r in rows if r["vessel"]}
    summary.append("- boundaries taken (fully or blended) from the vessels: "
                   + ("; ".join(f"{c}: {', '.join(v)}" for c, v in ves.items()) if ves else "none"))
    return "\n".join(lines + summary)


def _load_note() -> str:
    try:
        import os

        return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores when measured"
    except OSError:  # pragma: no cover
        return "load unknown"


def phantom_rows() -> str:
    """Per-segment Dice on the data_samples phantom (its own convention, see the note)."""
    from hepatoplan.data_samples.phantom import make_phantom

    lines = ["", "Phantom (`hepatoplan.data_samples.phantom.make_phantom(scale=0.7)`), per-segment Dice against the generator's truth:", "",
             "| spacing mm | " + " | ".join(f"S{k}" for k in range(1, 9)) + " | mean | left | right |",
             "|" + "---|" * 12]
    for sp in ((1.5, 1.5, 2.5), (0.9, 0.9, 1.2)):
        ph = make_phantom(spacing_mm=sp, scale=0.7)
        ev = evaluate(segment_couinaud(ph.liver, ph.portal, ph.hepatic, spacing_mm=ph.spacing_mm).labels, ph.segments)
        lines.append(f"| {sp[0]}x{sp[1]}x{sp[2]} | " + " | ".join(f"{v:.3f}" for v in ev["dice"])
                     + f" | {ev['mean']:.3f} | {ev['left']:.3f} | {ev['right']:.3f} |")
    lines += ["", "The phantom's hepatic veins (RHV 35 deg, MHV 92 deg) and umbilical portion run straight in their "
              "scissurae, so the confidence rule takes the right and middle scissurae and the umbilical fissure "
              "(and the 2|3 height) from the vessels there (method `vessel`); on IRCADb the trunks are curved "
              "or mixed with tributaries (in-plane share <= 0.64, phantom >= 0.78) and the priors decide "
              "(`fallback`). Segments 2, 3, 5-8 reach >= 0.95; the caudate and segment 4 do not: the phantom's "
              "caudate is a sector open downward under an oblique top plane, the method keeps the compact "
              "caudate box the IRCADb reference needs.",
              "", "Constants chosen on these 12 cases, with leave-one-out (choose on 11, score the 12th): the band "
              "of VEIN_BAND_MM = 8 mm in which the prior scissurae move onto their hepatic vein (from 8/12/16/20 mm; "
              "8 mm on 10 of 12 folds, 16/20 mm on 06 and 07): in-sample 0.804, leave-one-out 0.798 (before: 0.792); "
              "the caudate box (left 30 mm of the IVC, 20 mm below and 5 mm in front of the bifurcation, from a "
              "six-limit grid): in-sample 0.809, leave-one-out 0.808. Honest figure for this table, the two "
              "leave-one-out losses added: about **0.802**. Tried without gain: constant offsets of the 5|8 plane "
              "(-6..+2 mm) or the 2|3 plane (-4..+4 mm): leave-one-out 0.802 / 0.803 against 0.804 unshifted.",
              "", "Transverse planes: each moves halfway (SHARE_HEIGHT_WEIGHT) from its portal vein's height toward "
              "the height that leaves the reference's usual share of its section below it (SECTION_SHARE_BELOW, "
              "measured on the sections the method draws: 42 % of 5+8 below the 5|8 plane, SD 0.04 over the 12 "
              "cases; 30 % of 2+3 below the 2|3 plane, SD 0.06). Height error against the reference, rms over the "
              "12 cases: portal vein 6.1 mm (right) / 5.6 mm (left), share alone with the share chosen "
              "leave-one-out 5.9 / 5.8 mm, halfway about 4.4 / 4.1 mm. Mean Dice 0.809 -> 0.823 in-sample, 0.822 "
              "with the shares chosen leave-one-out; weight 0 / 0.5 / 0.75 / 1: 0.809 / 0.823 / 0.821 / 0.817. "
              "Honest figure for this table, the three leave-one-out losses added: about **0.815**. Not used when "
              "the liver reaches the scan's first or last slice (sections incomplete). On the automatic masks of "
              "`bench_segmentation.py` (IRCADb 01 / 07) the halfway planes cost 0.017 / 0.008 (0.785 -> 0.768, "
              "0.608 -> 0.600): 01's automatic liver shifts its sections' shares.",
              "", "Where the remaining error is (reference planes fitted per case, each put in alone): an exact "
              "caudate would give 0.847, exact 5|8 and 2|3 heights 0.825, exact right scissura 0.815, exact "
              "umbilical fissure 0.814, exact middle scissura 0.807 (measured on the 0.792 version). The reference "
              "caudate's top lies 21-64 mm above the bifurcation and its bottom 2-37 mm below, with no landmark "
              "found that predicts them (liver top, hepatic-vein confluence: |r| <= 0.35).",
              "", "Measured alternatives on IRCADb 01-12 (mean Dice 1-8, on the 0.792 version): the middle scissura on "
              "the detected middle hepatic vein whenever its azimuth is within 10-15 deg of the reference's usual "
              "55 deg: 0.789-0.793 (no gain); caudate reaching 1.0 or 1.5 IVC radii behind the IVC axis: 0.792 / "
              "0.790; caudate top 30 / 50 mm above the bifurcation instead of 40: 0.789 / 0.792 (case-dependent, "
              "01 wants it higher, 12 lower); the 5|8 plane at the median height of the right liver or of its "
              "portal voxels: farther from the reference than the right portal vein's height. Cases 06, 08 and 11 "
              "keep their reference 5|8 plane 9-12 mm below the right portal vein, with no vessel cue found.",
              "", "Runtime (issue 20, round 3): the same labels in less time; interleaved against 7e36ef3 on "
              "IRCADb 01 (`python bench/bench_couinaud_ab.py --base 7e36ef3 --case 01 --mode separate -n 5`, "
              "load 2.9 on 2 cores): CPU per call median 1.72 -> 1.14 s, wall median 1.81 -> 1.17 s (min 0.84 s), "
              "labels identical (under load 13.4: CPU 1.45 -> 1.03 s). "
              "The code is single-threaded, so the CPU seconds are what a quiet machine's wall time would be; "
              "the table's time column above is from an earlier run. Over the 12 cases under load 12-15 the "
              "separate-mask call took 0.45-1.82 s CPU. What changed: section \"Couinaud segments from one "
              "combined vessel mask\"."]
    return "\n".join(lines)


def write_section(body: str, command: str) -> None:
    path = ROOT / "bench" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    block = f"{SECTION}\n\nCommand: `{command}`\n\n{body}\n"
    if SECTION in text:
        start = text.index(SECTION)
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + block + ("\n" + text[nxt + 1:] if nxt >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--cases", nargs="*", default=[f"{i:02d}" for i in range(1, 13)])
    p.add_argument("--repeat", type=int, default=3, help="timing runs on the first case")
    p.add_argument("--no-write", action="store_true", help="print only, do not touch bench/RESULTS.md")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"data not found: {args.data}", file=sys.stderr)
        return 2
    rows, runtime = run(args.data, args.cases, args.repeat)
    body = table(rows, runtime, args.cases[0]) + "\n" + phantom_rows()
    print(body)
    if not args.no_write:
        write_section(body, "python bench/bench_couinaud.py" + ("" if len(args.cases) == 12 else " --cases " + " ".join(args.cases)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
