"""Lesion-insertion benchmark of the automatic segmentation (issue 16): synthetic lesions with known
truth in the real CTs of IRCADb 01 and 07, plus degraded scans; recall by size and contrast, tumour
and liver Dice, and whether the self-check caught the bad runs.

Corpus (fixed seeds; lesion synthesis in ``bench/lesion_insertion.py``):

* ``dev``: IRCADb 07 (no tumours of its own), seeds 0-4, six lesions per run — the development half;
* ``heldout``: IRCADb 01 (its seven real tumours stay and are scored too), seeds 100-106, other
  positions, sizes and kinds — the half the method was *not* developed on;
* ``plain``: IRCADb 07 and 01 as they are (no lesion inserted): good runs unless the segmentation
  misses 01's own lesions;
* ``degraded``: the first run of each half made to look like other scans: slices averaged 2x / 3x
  (3.2 / 4.8 mm), 20 HU of correlated noise added, the cranial or caudal 40 % of the liver cut off
  (truth masks treated alike: block share > 0.5, same cut).

Each run inserts six lesions, one per size class (0.5-1, 1-2.5, 2.5-5, 5-15, 15-50, 50-150 mL,
log-uniform within), each of another kind (hypodense, faint, necrotic, rim, heterogeneous,
hyperdense), at a position drawn among deep / subcapsular / bulging / perivascular, then runs
``segment_study`` on the CT rounded to whole HU (as a scanner writes it; ``--float-hu``: the blend's
fractions kept, as before the ninth stop) in this process and scores against the truth:

* a lesion is *found* when the predicted tumours cover at least 25 % of its voxels; ``split`` counts
  the predicted lesions overlapping it (a heterogeneous lesion should be one);
* tumour Dice pooled over the runs (all voxels of all runs) and per run; liver Dice against the
  manual liver plus the inserted lesions (their bulging parts included);
* a run is *bad* when its liver Dice < 0.90, a lesion >= 10 mL (inserted or real) is not found, or
  the scan cuts the liver (the truth liver reaches a face of the scan: its volume, hence the FLR, is
  unknown, so flagging it is right); the self-check should flag it (``report["self_check"]["passed"]``
  false) and pass the good runs;
* every near miss of the tumour search (``report["tumours"]["near_misses"]``: volume, rule, margin,
  whether it touches a lesion found) is kept in the JSON with what lies at its centroid in the truth
  (an inserted or real lesion, found or missed, or none), and so is every lesion left cut by the liver
  outline: ``--choose-limits`` picks the self-check's limits from them offline, leave-one-scan-out.

Usage::

    python bench/bench_segmentation_insertion.py [--splits dev heldout degraded] [--no-write] [--json FILE]
    python bench/bench_segmentation_insertion.py --load A.json B.json   # tables of runs made in parallel
    python bench/bench_segmentation_insertion.py --load A.json B.json --choose-limits   # + the limits, leave-one-scan-out

Prints Markdown tables and rewrites the ``### Lesion insertion`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import lesion_insertion as li  # noqa: E402
from bench_segmentation import DATA, dice  # noqa: E402
from bench_segmentation_robustness import BLOCKS, _block_mean, variant  # noqa: E402
from hepatoplan.errors import HepatoplanError  # noqa: E402
from hepatoplan.pipeline import io  # noqa: E402
from hepatoplan.segmentation import segment_study  # noqa: E402
from hepatoplan.segmentation.params import LiverParams, SelfCheckParams  # noqa: E402
from hepatoplan.segmentation.selfcheck import lesion_checks, scan_edge_area_mm2  # noqa: E402
from hepatoplan.segmentation.tumours import REJECTED  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
SECTION = "### Lesion insertion"
NAMES = ("liver", "tumours", "portal_vein", "hepatic_veins", "couinaud_reference")
SIZE_BINS_ML = ((0.5, 1.0), (1.0, 2.5), (2.5, 5.0), (5.0, 15.0), (15.0, 50.0), (50.0, 150.0))
PLACE_WEIGHTS = {"deep": 0.3, "subcapsular": 0.25, "bulging": 0.25, "perivascular": 0.2}
SPLITS = {
    "dev": [("07", seed, "native") for seed in range(5)],
    "heldout": [("01", seed, "native") for seed in range(100, 107)],
    "plain": [("07", None, "native"), ("01", None, "native")],
    "degraded": [(case, seed, v) for case, seed in (("07", 0), ("01", 100))
                 for v in ("slices_x2", "slices_x3", "noise", "partial_top", "partial_bottom")],
    # not in the default run: the other seeds' lesions (and the plain scans) on thick slices, to see
    # what thick slices lose and whether the other checks catch it (fifteenth stop)
    "thick": [(case, seed, v) for case, seeds in (("07", [*range(1, 5), None]), ("01", [*range(101, 107), None]))
              for seed in seeds for v in ("slices_x2", "slices_x3")],
}
DEFAULT_SPLITS = ("dev", "heldout", "plain", "degraded")
FOUND_FRACTION = 0.25
BIG_LESION_ML = 10.0
GOOD_LIVER_DICE = 0.90


def lesion_plan(seed: int) -> list[tuple[str, str, float]]:
    """(kind, place, volume mL) of the six lesions of run ``seed``, largest first."""
    rng = np.random.default_rng(seed)
    kinds = rng.permutation(list(li.KINDS))
    places = rng.choice(list(PLACE_WEIGHTS), size=len(SIZE_BINS_ML), p=list(PLACE_WEIGHTS.values()))
    vols = [float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) for lo, hi in SIZE_BINS_ML]
    return sorted(zip(kinds, places, vols), key=lambda t: -t[2])


class Case:
    """One CT with its reference masks, anatomy for placement and noise model (read once)."""

    def __init__(self, case: str):
        d = DATA / "ircadb" / case
        image = io.read_image(d / "ct.nii.gz")
        self.name, self.ct, self.spacing = case, image.array, image.spacing_mm
        self.ref = {n: io.read_labels(d / f"{n}.nii.gz").array for n in NAMES}
        self.anatomy = li.Anatomy.from_masks(self.ref["liver"], self.ref["portal_vein"], self.ref["hepatic_veins"],
                                             self.ref["tumours"], self.spacing)
        vessels = (self.ref["portal_vein"] > 0) | (self.ref["hepatic_veins"] > 0)
        self.parenchyma_hu, self.noise = li.measure_noise(self.ct, self.ref["liver"] > 0, vessels, self.spacing)


def make_run(case: Case, seed: int | None, *, noise_seed: int | None = None, contrast_shift_hu: float = 0.0):
    """The CT with the lesions of ``seed`` inserted (none when ``seed`` is None: the scan as it
    is), its truth masks and the lesions. ``noise_seed``: the same lesions in the same places drawn
    with another texture and noise (``bench_lesion_perturbation.py``); ``contrast_shift_hu``: every
    lesion that much brighter."""
    if seed is None:
        truth, n_real = li.truth_masks(case.ref, [])
        return case.ct.astype(np.float32), truth, [], n_real
    rng = np.random.default_rng(seed + 1000)
    plan = lesion_plan(seed)
    lesions = []
    for kind, place, vol in plan:
        # a place that cannot hold the lesion (too big for the vessels' neighbourhood...) gives way
        for where in [place] + [p for p in PLACE_WEIGHTS if p != place]:
            got = li.place_lesions(case.ct, case.anatomy, [(kind, where, vol)], rng, taken=_taken(case, lesions))
            if got:
                lesions += got
                break
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
    ct = li.insert(case.ct, lesions, case.parenchyma_hu + contrast_shift_hu, case.noise, case.spacing, rng)
    truth, n_real = li.truth_masks(case.ref, lesions)
    return ct, truth, lesions, n_real


def degrade(name: str, ct, truth: dict, spacing):
    """``bench_segmentation_robustness.variant`` of the scan and its truth; the tumour instance map
    follows (per lesion: block share > 0.5; the same cut)."""
    tumours = truth["tumours"]
    ct2, masks, spacing2 = variant(name, ct, {**truth, "tumours": tumours > 0}, spacing)
    if name in BLOCKS:
        blocked = np.zeros(masks["liver"].shape, np.uint16)
        for k in np.unique(tumours[tumours > 0]):
            blocked[_block_mean(tumours == k, BLOCKS[name]) > 0.5] = k
        tumours = blocked
    elif name.startswith("partial"):
        zs = np.flatnonzero(truth["liver"].any(axis=(0, 1)))
        cut = zs[0] + int(0.6 * (zs[-1] - zs[0])) if name == "partial_top" else zs[0] + int(0.4 * (zs[-1] - zs[0]))
        tumours = tumours[..., :cut] if name == "partial_top" else tumours[..., cut:]
    return ct2, {**masks, "tumours": tumours}, spacing2


def _taken(case: Case, lesions) -> np.ndarray:
    taken = case.ref["tumours"] > 0
    if lesions:
        taken = taken.copy()
        for les in lesions:
            taken[les.box] |= les.mask
    return taken


def at_truth(near: list[dict], truth: dict, lesion_rows: list[dict], n_real: int) -> list[dict]:
    """The near misses (or dark regions), each with ``truth``: what lies at its centroid (``inserted found`` /
    ``inserted missed`` / ``real found`` / ``real missed`` / ``none``; a real lesion under 1 mL,
    not scored, counts as missed)."""
    tum = truth["tumours"]
    found = {e["label"]: e["found"] for e in lesion_rows}
    out = []
    for e in near:
        idx = tuple(int(round(min(max(v, 0), n - 1))) for v, n in zip(e["centroid_index"], tum.shape))
        k = int(tum[idx])
        what = "none" if k == 0 else ("inserted" if k > n_real else "real") + (" found" if found.get(k) else " missed")
        out.append({**e, "truth": what})
    return out


def redo_dark_regions(rows: list[dict], folder: Path) -> int:
    """Replace each run's ``dark_regions`` by those :func:`segment_tumours` of this code finds on the
    run's saved CT and automatic liver (``--save``; the liver after the lesions found outside it
    were added, which ``segment_study`` does after the tumour search: an approximation), for runs
    recorded before the dark regions were. Returns the number of runs redone."""
    from hepatoplan.segmentation import segment_tumours

    done = 0
    for r in rows:
        path = folder / f"{r['case']}_{r['seed']}_{r['variant']}.npz"
        if not path.exists():
            continue
        d = np.load(path)
        _, tinfo = segment_tumours(d["ct"], d["liver"], spacing_mm=tuple(d["spacing"]))
        truth = {"tumours": d["truth_tumours"]}
        inserted = [e["label"] for e in r["lesions"] if e["kind"] != "real"]  # after the scan's own
        n_real = min(inserted) - 1 if inserted else int(d["truth_tumours"].max())
        r["dark_regions"] = at_truth(tinfo["dark_regions"], truth, r["lesions"], n_real)
        done += 1
    return done


def score(pred: dict, truth: dict, lesions, spacing, n_real: int) -> dict:
    """Liver / tumour scores of one run and the per-lesion outcome (inserted lesions, then the
    scan's own lesions >= 1 mL)."""
    import cc3d

    vox_ml = float(np.prod(spacing)) / 1000.0
    tum_pred, tum_true = pred["tumours"], truth["tumours"]
    row = {
        "liver_dice": dice(pred["liver"], truth["liver"]),
        "tumour_inter": int(np.count_nonzero((tum_pred > 0) & (tum_true > 0))),
        "tumour_sum": int(np.count_nonzero(tum_pred) + np.count_nonzero(tum_true)),
    }
    row["tumour_dice"] = 2.0 * row["tumour_inter"] / max(row["tumour_sum"], 1)
    entries = []
    for k in range(1, int(tum_true.max()) + 1):
        m = tum_true == k
        vol = float(m.sum() * vox_ml)
        inserted = k > n_real
        if not m.any() or (not inserted and vol < 1.0):
            continue
        covered = float(np.count_nonzero(m & (tum_pred > 0)) / m.sum())
        ids = np.unique(tum_pred[m])
        ids = ids[ids > 0]
        pm = np.isin(tum_pred, ids) if len(ids) else np.zeros_like(m)
        e = {"label": k, "volume_ml": round(vol, 2), "found": covered >= FOUND_FRACTION, "covered": round(covered, 2),
             "split": int(len(ids)), "dice": round(dice(pm, m), 3) if len(ids) else 0.0,
             "in_liver": round(float(np.count_nonzero(m & (pred["liver"] > 0)) / m.sum()), 2)}
        if inserted:
            les = lesions[k - n_real - 1]
            e.update(kind=les.kind, place=les.place, contrast_hu=les.median_contrast_hu, outside=les.outside_fraction)
        else:
            e.update(kind="real", place="real", contrast_hu=float("nan"), outside=0.0)
        entries.append(e)
    lab = cc3d.connected_components((tum_pred > 0).astype(np.uint8), connectivity=26)
    false = 0
    for k in range(1, int(lab.max()) + 1):
        m = lab == k
        if m.sum() * vox_ml >= 1.0 and np.count_nonzero(m & (tum_true > 0)) < 0.1 * m.sum():
            false += 1
    row["false_lesions_ge_1ml"] = false
    row["lesions"] = entries
    row["missed_big"] = [e["volume_ml"] for e in entries if e["volume_ml"] >= BIG_LESION_ML and not e["found"]]
    row["liver_cut_by_scan"] = bool(scan_edge_area_mm2(truth["liver"] > 0, spacing) > 0)
    row["bad"] = bool(row["liver_dice"] < GOOD_LIVER_DICE or row["missed_big"] or row["liver_cut_by_scan"])
    return row


def run_one(case: Case, seed: int, variant_name: str, save: Path | None = None, *, integer_hu: bool = True,
            perturb=None, **make_kw) -> dict:
    """One run scored; ``make_kw`` go to :func:`make_run`, ``perturb(ct)`` (after :func:`degrade`)
    changes the scan further."""
    ct, truth, lesions, n_real = make_run(case, seed, **make_kw)
    ct, truth, spacing = degrade(variant_name, ct, truth, case.spacing)
    if perturb is not None:
        ct = perturb(ct)
    if integer_hu:  # what a scanner writes: the blend, the averaged slices and the added noise leave fractions of a HU
        ct = np.rint(ct)
    row = {"case": case.name, "seed": seed, "variant": variant_name}
    t = time.perf_counter()
    try:
        seg = segment_study(np.ascontiguousarray(ct), spacing_mm=spacing)
    except HepatoplanError as exc:
        zeros = np.zeros(truth["liver"].shape, np.uint8)
        pred = {"liver": zeros, "tumours": zeros}
        check = {"passed": False, "reasons": [f"refused: {exc}"]}
        tinfo = {}
    else:
        pred = {"liver": seg.liver, "tumours": seg.tumours}
        check = seg.report["self_check"]
        tinfo = seg.report["tumours"]
        if save:  # the run's arrays, to study new checks offline (never in the repository: the CTs' licences)
            save.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(save / f"{case.name}_{seed}_{variant_name}.npz", ct=np.round(ct).astype(np.int16),
                                spacing=np.asarray(spacing), liver=seg.liver, tumours=seg.tumours,
                                vessels=(seg.portal_vein > 0) | (seg.hepatic_veins > 0),
                                truth_liver=truth["liver"] > 0, truth_tumours=truth["tumours"])
    row["segment_s"] = round(time.perf_counter() - t, 1)
    row.update(score(pred, truth, lesions, spacing, n_real))
    row["qc_passed"] = bool(check["passed"])
    row["qc_reasons"] = check.get("reasons", [])
    row["checks"] = {c["name"]: c["value"] for c in check.get("checks", [])}  # to study the limits offline
    row["near_misses"] = at_truth(tinfo.get("near_misses", []), truth, row["lesions"], n_real)
    row["cut_lesions"] = tinfo.get("cut_lesions", [])
    row["bulging_blobs"] = seg.report["liver"].get("bulging_blobs", [])
    row["dark_regions"] = at_truth(tinfo.get("dark_regions", []), truth, row["lesions"], n_real)
    # each lesion found (label k = its place in the report) with the share of it in a true lesion
    n = len(tinfo.get("lesions", []))
    ours = np.bincount(np.asarray(pred["tumours"]).ravel(), minlength=n + 1)
    true = np.bincount(np.asarray(pred["tumours"])[truth["tumours"] > 0], minlength=n + 1)
    row["found_lesions"] = [{**e, "true_share": round(float(true[k] / max(ours[k], 1)), 3)}
                            for k, e in enumerate(tinfo.get("lesions", []), start=1)]
    return row


# ----------------------------------------------------------------------------- tables


def _recall(entries) -> str:
    return f"{sum(e['found'] for e in entries)}/{len(entries)}" + (
        f" ({sum(e['found'] for e in entries) / len(entries):.2f})" if entries else "")


def summary(rows: list[dict], title: str) -> str:
    les = [e for r in rows for e in r["lesions"] if e["kind"] != "real"]
    strong = [e for e in les if abs(e["contrast_hu"]) >= 20.0]
    lines = [f"**{title}** — {len(rows)} runs, {len(les)} inserted lesions", "",
             "| lesions | < 1 mL | 1-5 mL | >= 5 mL | all |", "|---|---|---|---|---|"]
    for name, group in (("abs(contrast) >= 20 HU", strong), ("abs(contrast) < 20 HU", [e for e in les if e not in strong]),
                        ("all", les)):
        cells = [_recall([e for e in group if lo <= e["volume_ml"] < hi]) for lo, hi in ((0, 1), (1, 5), (5, 1e9))]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_recall(group)} |")
    lines += ["", "| by kind | " + " | ".join(li.KINDS) + " |", "|---|" + "---|" * len(li.KINDS),
              "| found (>= 1 mL) | " + " | ".join(_recall([e for e in les if e["kind"] == k and e["volume_ml"] >= 1.0])
                                              for k in li.KINDS) + " |",
              "", "| by place | " + " | ".join(li.PLACES) + " |", "|---|" + "---|" * len(li.PLACES),
              "| found (>= 1 mL) | " + " | ".join(_recall([e for e in les if e["place"] == p and e["volume_ml"] >= 1.0])
                                              for p in li.PLACES) + " |",
              "| in liver mask (mean) | " + " | ".join(
                  f"{np.mean([e['in_liver'] for e in les if e['place'] == p]):.2f}" if any(e["place"] == p for e in les) else "–"
                  for p in li.PLACES) + " |"]
    inter = sum(r["tumour_inter"] for r in rows)
    total = sum(r["tumour_sum"] for r in rows)
    liver = [r["liver_dice"] for r in rows]
    split = [e["split"] for e in les if e["found"]]
    real = [e for r in rows for e in r["lesions"] if e["kind"] == "real"]
    lines += ["", f"tumour Dice pooled {2 * inter / max(total, 1):.3f} (per run mean "
              f"{np.mean([r['tumour_dice'] for r in rows]):.3f}); liver Dice mean {np.mean(liver):.3f}, min "
              f"{np.min(liver):.3f}; false lesions >= 1 mL {sum(r['false_lesions_ge_1ml'] for r in rows)}; "
              f"found lesions in more than one piece {sum(s > 1 for s in split)}/{len(split)}"
              + (f"; the scan's own lesions >= 1 mL found {_recall(real)}" if real else "")]
    return "\n".join(lines)


def qc_table(rows: list[dict]) -> str:
    bad = [r for r in rows if r["bad"]]
    good = [r for r in rows if not r["bad"]]
    flagged_bad = sum(not r["qc_passed"] for r in bad)
    flagged_good = sum(not r["qc_passed"] for r in good)
    now = _flag_counts(rows, SelfCheckParams())
    return (f"self-check over {len(rows)} runs: flagged {flagged_bad}/{len(bad)} bad runs "
            f"({flagged_bad / max(len(bad), 1):.2f}; target >= 0.90) and {flagged_good}/{len(good)} good runs "
            f"({flagged_good / max(len(good), 1):.2f}; target <= 0.10) with the limits of the run; with today's "
            f"defaults (replayed from the recorded values) {now[0]}/{now[1]} bad and {now[2]}/{now[3]} good")


#: The self-check limits searched offline (``--choose-limits``), each with the values tried.
LIMIT_GRID = {
    "near_miss_rules": (tuple(REJECTED), tuple(r for r in REJECTED if r != "surface")),
    "max_near_miss_margin": (0.02, 0.05, 0.1, 0.15, 0.25, 0.35, 0.5),
    "max_near_miss_ml": (2.0, 3.0, 5.0, 7.0, 10.0, 12.0, 15.0, 20.0, 30.0, 50.0, float("inf")),
    "max_cut_fraction": (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, float("inf")),
    "min_dark_region_fill": (0.7, 0.8, 0.9),
    "max_dark_region_ml": (3.0, 4.0, 5.0, 7.0, 10.0, float("inf")),
}


#: The issue's targets: at least this share of the bad runs flagged, at most this share of the good.
FLAG_TARGETS = (0.90, 0.10)


def flagged(row: dict, params: SelfCheckParams, lp: LiverParams = LiverParams()) -> bool:
    """Whether the self-check with the limits ``params`` flags the run ``row``, from the values it
    recorded (liver checks) and its near misses and cut lesions (the lesion checks themselves)."""
    if any(r.startswith("refused") for r in row["qc_reasons"]):
        return True
    c = row["checks"]
    v_lo, v_hi = lp.liver_volume_range_ml
    f_lo, f_hi = params.liver_body_fraction_range
    liver_ok = (c["liver_candidate"] == 1 and v_lo <= c["liver_volume_ml"] <= v_hi
                and f_lo <= c["liver_body_fraction"] <= f_hi and c["outline_pocket_ml"] < params.max_pocket_ml
                and c["liver_at_scan_edge_mm2"] < params.max_scan_edge_mm2
                and c.get("bulging_join_margin_fraction", 0.0) < params.max_bulging_join_margin_fraction
                and c.get("bulging_gas_miss_ml", 0.0) < params.max_near_miss_ml)
    # JSON written before near misses had a ``rule``: from its words (the edge test's began "edge")
    near = [{"rule": next((k for k, v in REJECTED.items() if e["rejected"].startswith(v)), "edge"), **e}
            for e in row["near_misses"]]
    lesions = lesion_checks({"near_misses": near, "cut_lesions": row["cut_lesions"],
                             "dark_regions": row.get("dark_regions", []), "lesions": row.get("found_lesions", [])}, params)
    spacing_ok = c.get("voxel_spacing_mm", 0.0) <= params.max_voxel_spacing_mm
    return not (liver_ok and spacing_ok and all(x["passed"] for x in lesions))


def choose_limits(rows: list[dict]) -> tuple[SelfCheckParams, tuple[int, int, int, int]]:
    """The limits of :data:`LIMIT_GRID` nearest to the issue's two targets on ``rows``: the shortfall
    of the share of bad runs flagged below 0.90 plus the excess of the share of good runs flagged
    above 0.10 (shares, not counts: counts would let a few bad runs outweigh every good one and
    choose to flag everything, which is what the check must stop doing). Among equally good limits
    each one is taken in the middle of its tied values (the lower median, in :data:`LIMIT_GRID`'s
    order), so that a limit does not sit on the edge of what these runs showed. Returns the limits
    and (bad flagged, bad, good flagged, good)."""
    scored = []
    for values in itertools.product(*LIMIT_GRID.values()):
        params = replace(SelfCheckParams(), **dict(zip(LIMIT_GRID, values)))
        counts = _flag_counts(rows, params)
        loss = max(0.0, FLAG_TARGETS[0] - counts[0] / max(counts[1], 1)) + max(0.0, counts[2] / max(counts[3], 1) - FLAG_TARGETS[1])
        scored.append((round(loss, 9), values, params, counts))
    best = min(s[0] for s in scored)
    tied = [s for s in scored if s[0] == best]
    for i, grid in enumerate(LIMIT_GRID.values()):
        present = [v for v in grid if any(s[1][i] == v for s in tied)]
        pick = present[(len(present) - 1) // 2]
        tied = [s for s in tied if s[1][i] == pick]
    return tied[0][2], tied[0][3]


def _flag_counts(rows, params) -> tuple[int, int, int, int]:
    bad = [r for r in rows if r["bad"]]
    good = [r for r in rows if not r["bad"]]
    return (sum(flagged(r, params) for r in bad), len(bad), sum(flagged(r, params) for r in good), len(good))


def limits_table(rows: list[dict]) -> str:
    """Leave-one-scan-out choice of the self-check limits: chosen on one CT's runs (native and
    degraded), measured on the other's; then chosen on both (in-sample)."""
    default = SelfCheckParams()
    names = list(LIMIT_GRID)
    lines = ["| chosen on | " + " | ".join(names) + " | flags there (bad, good) | measured on | flags there (bad, good) |",
             "|---|" + "---|" * (len(names) + 3)]

    def rate(c):
        return f"{c[0]}/{c[1]} bad, {c[2]}/{c[3]} good"

    cases = sorted({r["case"] for r in rows})
    for train in cases + ["all"]:
        tr = [r for r in rows if train in ("all", r["case"])]
        te = [r for r in rows if train != "all" and r["case"] != train]
        params, counts = choose_limits(tr)
        held = rate(_flag_counts(te, params)) if te else "–"
        lines.append(f"| {train} | " + " | ".join(_show(getattr(params, n)) for n in names)
                     + f" | {rate(counts)} | {'other' if te else '–'} | {held} |")
    lines.append(f"\nthe defaults ({', '.join(f'{n}={_show(getattr(default, n))}' for n in names)}): {rate(_flag_counts(rows, default))}")
    return "\n".join(lines)


def _show(value) -> str:
    return " ".join(value) if isinstance(value, tuple) else f"{value:g}"


#: The lesion sizes (mL) a thick-slice limit is stated at: "lesions under N mL are not reliably found".
LIMIT_SIZES_ML = (1.0, 2.5, 5.0, 10.0, 15.0)


def _spacing_mm(row: dict) -> float:
    return float(row["checks"].get("voxel_spacing_mm", 0.0))


def _stated(row: dict, params: SelfCheckParams) -> bool:
    """Whether the self-check states its thick-slice lesion limit on the run (rather than failing it)."""
    return params.thick_voxel_spacing_mm < _spacing_mm(row) <= params.max_voxel_spacing_mm


def smallest_reliable_ml(rows: list[dict], params: SelfCheckParams, *, recall: float = FLAG_TARGETS[0]) -> float:
    """The smallest size of :data:`LIMIT_SIZES_ML` from which the lesions inserted with abs(contrast) >= 20 HU
    into the runs of ``rows`` the thick-slice limit is stated on are found at ``recall`` or more (inf when none)."""
    les = [e for r in rows if _stated(r, params) for e in r["lesions"]
           if e["kind"] != "real" and abs(e["contrast_hu"]) >= 20.0]
    for size in LIMIT_SIZES_ML:
        above = [e for e in les if e["volume_ml"] >= size]
        if above and sum(e["found"] for e in above) >= recall * len(above):
            return size
    return float("inf")


def thick_table(rows: list[dict], params: SelfCheckParams = SelfCheckParams()) -> str:
    """What thick slices lose and who catches it: recall by size at each slice spacing (the same
    lesions natively and on 2x / 3x slices; the noisy and cut scans left out), each thick run's
    verdict with and without the spacing check, and the size under which lesions are not reliably
    found on thick slices, leave-one-scan-out (:func:`smallest_reliable_ml`)."""
    rows = [r for r in rows if r["variant"] in ("native", "slices_x2", "slices_x3")]  # not the noise, not a cut scan
    spacings = sorted({_spacing_mm(r) for r in rows})
    edges = (0.5, *LIMIT_SIZES_ML, float("inf"))
    lines = ["inserted lesions with abs(contrast) >= 20 HU found, by size:", "",
             "| slices (mm) | runs | " + " | ".join(f"{lo:g}-{hi:g} mL" for lo, hi in zip(edges[:-1], edges[1:]))
             + " | liver Dice mean (min) | bad runs |", "|---" * (len(edges) + 3) + "|"]
    for mm in spacings:
        rs = [r for r in rows if _spacing_mm(r) == mm]
        les = [e for r in rs for e in r["lesions"] if e["kind"] != "real" and abs(e["contrast_hu"]) >= 20.0]
        cells = [_recall([e for e in les if lo <= e["volume_ml"] < hi]) for lo, hi in zip(edges[:-1], edges[1:])]
        dice_ = [r["liver_dice"] for r in rs]
        lines.append(f"| {mm:g} | {len(rs)} | " + " | ".join(cells)
                     + f" | {np.mean(dice_):.3f} ({np.min(dice_):.3f}) | {sum(r['bad'] for r in rs)} |")
    without = replace(params, max_voxel_spacing_mm=float("inf"))
    thick = [r for r in rows if _spacing_mm(r) > params.thick_voxel_spacing_mm]
    lines += ["", "| case | seed | slices (mm) | liver Dice | missed >= 10 mL | bad | flagged | without the spacing check |",
              "|---|---|---|---|---|---|---|---|"]
    for r in thick:
        lines.append(f"| {r['case']} | {r['seed']} | {_spacing_mm(r):g} | {r['liver_dice']:.3f} | {r['missed_big'] or '–'} | "
                     f"{'yes' if r['bad'] else 'no'} | {'FLAG' if flagged(r, params) else 'pass'} | "
                     f"{'FLAG' if flagged(r, without) else 'pass'} |")
    bad = [r for r in thick if r["bad"]]
    good = [r for r in thick if not r["bad"]]
    lines.append(f"\nthick-slice runs: bad {len(bad)}, of them caught without the spacing check "
                 f"{sum(flagged(r, without) for r in bad)}; good {len(good)}, flagged {sum(flagged(r, params) for r in good)}"
                 f" (without the spacing check {sum(flagged(r, without) for r in good)})")
    lines += ["", "| chosen on | lesions under (mL) not reliably found | measured on the other scan: found >= that size |", "|---|---|---|"]
    cases = sorted({r["case"] for r in rows})
    for train in cases + ["all"]:
        size = smallest_reliable_ml([r for r in rows if train in ("all", r["case"])], params)
        held = [e for r in rows if train != "all" and r["case"] != train and _stated(r, params)
                for e in r["lesions"] if e["kind"] != "real" and abs(e["contrast_hu"]) >= 20.0 and e["volume_ml"] >= size]
        lines.append(f"| {train} | {size:g} | {_recall(held) if train != 'all' else '–'} |")
    lines.append(f"\nstated by the self-check today: {params.thick_slice_min_lesion_ml:g} mL")
    return "\n".join(lines)


def near_miss_table(rows: list[dict]) -> str:
    """The recorded near misses and cut lesions of at least :data:`BIG_LESION_ML` (the JSON holds
    every one from 2 mL): what each was, and what lay there in the truth."""
    lines = ["| case | seed | variant | bad | kind | volume_ml | rule | margin | touches_lesion | truth |", "|" + "---|" * 10]
    for r in rows:
        bad = "yes" if r["bad"] else "no"
        for e in (e for e in r["near_misses"] if e["volume_ml"] >= BIG_LESION_ML):
            lines.append(f"| {r['case']} | {r['seed']} | {r['variant']} | {bad} | near miss | {e['volume_ml']} | "
                         f"{e['rejected']} | {e['margin']} | {e['touches_lesion']} | {e['truth']} |")
        for e in (e for e in r["cut_lesions"] if e["volume_ml"] >= BIG_LESION_ML):
            lines.append(f"| {r['case']} | {r['seed']} | {r['variant']} | {bad} | cut lesion | {e['volume_ml']} | "
                         f"cut {e['cut_fraction']}, continued {e.get('continued_fraction', '–')} | – | – | found |")
    return "\n".join(lines)


def run_table(rows: list[dict]) -> str:
    cols = ("case", "seed", "variant", "liver_dice", "tumour_dice", "found", "false", "bad", "self_check (limits of the run)",
            "today's limits", "segment_s")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        found = _recall([e for e in r["lesions"] if e["volume_ml"] >= 1.0])
        why = "pass" if r["qc_passed"] else "FLAG: " + "; ".join(r["qc_reasons"])[:160]
        bad = (("liver" if r["liver_dice"] < GOOD_LIVER_DICE else "") + (f" missed {r['missed_big']}" if r["missed_big"] else "")
               + (" cut by the scan" if r.get("liver_cut_by_scan") else ""))
        lines.append(f"| {r['case']} | {r['seed']} | {r['variant']} | {r['liver_dice']:.3f} | {r['tumour_dice']:.3f} | "
                     f"{found} | {r['false_lesions_ge_1ml']} | {bad.strip() or '–'} | {why} | "
                     f"{'FLAG' if flagged(r, SelfCheckParams()) else 'pass'} | {r['segment_s']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", nargs="+", default=list(DEFAULT_SPLITS), choices=list(SPLITS))
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/RESULTS.md")
    ap.add_argument("--json", type=Path, help="also write every run's scores to this file")
    ap.add_argument("--limit", type=int, help="only the first N runs of each split (development; implies --no-write)")
    ap.add_argument("--seeds", type=int, nargs="+", help="only the runs of these seeds (to run a split in parallel)")
    ap.add_argument("--cases", nargs="+", help="only the runs of these IRCADb cases (e.g. 01)")
    ap.add_argument("--variants", nargs="+", help="only the runs of these variants (e.g. noise)")
    ap.add_argument("--save", type=Path, metavar="DIR",
                    help="also save each run's CT, masks and truth as DIR/<case>_<seed>_<variant>.npz (outside the repository)")
    ap.add_argument("--load", type=Path, nargs="+", metavar="JSON",
                    help="tables from the --json files of earlier runs (e.g. the splits run in parallel) instead of "
                         "running; a run in several files: the last file's")
    ap.add_argument("--redo-dark-regions", type=Path, metavar="DIR",
                    help="with --load: the dark regions of each run from its saved arrays (--save DIR) with this code")
    ap.add_argument("--float-hu", action="store_true",
                    help="segment the CT as the insertion left it (fractions of a HU), as before the ninth stop; by "
                         "default it is rounded to whole HU, as every scanner writes it")
    ap.add_argument("--choose-limits", action="store_true",
                    help="also choose the self-check's limits from the runs' near misses, leave-one-scan-out")
    args = ap.parse_args(argv)
    cases: dict[str, Case] = {}
    rows: dict[str, list] = {}
    latest: dict[tuple, tuple[str, dict]] = {}  # a run loaded twice: the later file's
    for path in args.load or []:
        for split, runs in json.loads(path.read_text()).items():
            for r in runs:
                latest[(r["case"], r["seed"], r["variant"])] = (split, r)
    for split, r in latest.values():
        rows.setdefault(split, []).append(r)
    if args.load and args.redo_dark_regions:
        n = redo_dark_regions([r for rs in rows.values() for r in rs], args.redo_dark_regions)
        print(f"dark regions recomputed on {n} saved runs", file=sys.stderr)
    for split in [] if args.load else args.splits:
        rows[split] = []
        for case, seed, var in SPLITS[split][: args.limit]:
            if ((args.seeds and seed not in args.seeds) or (args.cases and case not in args.cases)
                    or (args.variants and var not in args.variants)):
                continue
            if not (DATA / "ircadb" / case / "ct.nii.gz").exists():
                print(f"skip {case}: no CT in {DATA}", file=sys.stderr)
                continue
            if case not in cases:
                cases[case] = Case(case)
            row = run_one(cases[case], seed, var, args.save, integer_hu=not args.float_hu)
            rows[split].append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "lesions"}, default=str), file=sys.stderr, flush=True)
            if args.json:  # after every run: a long benchmark stopped early keeps what it measured
                args.json.write_text(json.dumps(rows, indent=1, default=float))
    parts = []
    for split, rs in rows.items():
        if rs:
            parts.append(summary(rs, split) + "\n\n" + qc_table(rs) + "\n\n" + run_table(rs))
    everything = [r for rs in rows.values() for r in rs]
    parts.append("**all runs** " + qc_table(everything))
    if args.choose_limits:
        parts += ["**self-check limits, leave-one-scan-out** (`--choose-limits`)\n\n" + limits_table(everything),
                  f"near misses and cut lesions of >= {BIG_LESION_ML:g} mL\n\n" + near_miss_table(everything),
                  "**thick slices**: what they lose, who flags them, and the stated limit\n\n" + thick_table(everything)]
    text = "\n\n".join(parts)
    print(text)
    if not (args.no_write or args.limit or args.seeds or args.cases or args.variants):
        _write_section(text, list(rows))
    return 0


def _write_section(text: str, splits) -> None:
    cmd = "python bench/bench_segmentation_insertion.py" + ("" if list(splits) == list(DEFAULT_SPLITS) else " --splits " + " ".join(splits))
    body = (f"{SECTION}\n\n`{cmd}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
            "machine shared with other jobs (segment_s is wall time, an upper bound).\n\n" + text + "\n")
    text_all = RESULTS.read_text()
    if SECTION in text_all:
        start = text_all.index(SECTION)
        nxt = text_all.find("\n## ", start + len(SECTION))
        nxt3 = text_all.find("\n### ", start + len(SECTION))
        ends = [i for i in (nxt, nxt3) if i != -1]
        end = min(ends) if ends else -1
        text_all = text_all[:start] + body + ("\n" + text_all[end + 1:] if end != -1 else "")
    else:
        anchor = text_all.find("\n## ", text_all.index("## Automatic segmentation") + 5)
        text_all = text_all[:anchor] + "\n\n" + body + text_all[anchor:] if anchor != -1 else text_all + "\n\n" + body
    RESULTS.write_text(text_all)


if __name__ == "__main__":
    sys.exit(main())
