"""The automatic segmentation checks its own result: may a plan be built on it unreviewed?

Arrays are canonical RAS+ (axis 0 -> Right, 1 -> Anterior, 2 -> Superior). Nothing here reads files.

Each check has a value measured on this scan, the limit it is held to, and a reason when it fails
(:class:`~hepatoplan.segmentation.params.SelfCheckParams` holds the limits):

* ``liver_candidate``: the best-scoring organ was the liver (a runner-up taken means the first
  candidate failed the liver's own quality checks);
* ``liver_volume_ml``: within the adult range (a smaller liver is part of one: cut by the scan, or
  partly missed);
* ``liver_body_fraction``: the liver's share of the body in the slices it spans (a leak into the
  neighbours, or a lost lobe, moves it);
* ``outline_pocket_ml``: no lesion-sized pocket of soft tissue darker than the liver in a notch of
  its outline (a lesion, or liver, left out);
* ``bulging_join_margin_fraction``: no large dark blob beside the liver joined to it, or left out of
  it, by a contact share, a bowel-gas share or a shape close to its limit (the largest such blob's volume
  over the liver's: a change of a few mL in the liver, or a one-voxel shift of the scan, flips
  that decision, and the liver's volume with it);
* ``bulging_gas_miss_ml``: no dark blob bulging from the liver left out by a bowel-gas share close to
  its limit alone (its contact passed), of a lesion near miss's volume (``max_near_miss_ml``): a tumour next to bowel, missed
  with the liver around it;
* ``liver_at_scan_edge_mm2``: the liver's largest cross-section on a face of the scan (a liver cut
  by the field of view has an unknown volume: the plan's FLR would be wrong);
* ``lesion_near_miss_ml``: no large lesion candidate rejected by a small margin, away from the
  lesions found (a candidate overlapping or touching a found lesion is part of it, or the halo
  around it, not a missed lesion);
* ``dark_region_ml``: no large compact region darker than the parenchyma that the lesion search
  neither kept nor judged (a faint lesion too faint to seed a candidate; the search itself now
  takes such regions as lesions when they stand out from the liver around them, so this check
  sees the ones it declined);
* ``lesion_cut_fraction``: no lesion found with a large share of its boundary on the liver's
  outline where the tissue just past it continues the lesion, its outer part not recovered (a
  bulging lesion cut by the liver mask; a cut facing a neighbour of another density, such as the
  stomach's content beside IRCADb 07 s4's lesion, is not counted);
* ``lesion_at_surface_ml``: no large lesion taken with a share of it in the liver's surface shell
  close to the surface test's limit (IRCADb 07 with 6 HU of noise: 100 mL of the stomach's
  content, 47 % in the shell against 50 %, taken as a lesion and added to the liver);
* ``voxel_spacing_mm``: the scan's coarsest voxel spacing within the range where the insertion
  benchmark saw no failure the other checks missed (3.2 mm slices; on 4.8 mm ones a 54 mL lesion was
  missed with no check seeing it).

Slices thicker than the developed range (1.6 mm) but within that one are not a failure in themselves:
the checks above caught every run they spoiled (a blob joined at a contact near its limit, a lesion cut
by the outline; IRCADb 01 seed 106's deep 18 mL lesion, which no check saw missed, is found since the
core test leaves out a lesion's top and bottom thick slice). What no check sees there is a small
lesion blurred into the liver, so the self-check
*states* the lesion size under which the search is unreliable (``limits``): the plan is not unverified
for it, the limit is written beside the result.

On MR the liver's own self-check (:mod:`hepatoplan.segmentation.mr_liver`) stands in for the liver
checks (these read densities in HU). The liver on the wrong side of
the body, or no liver-sized organ, is not a check: the segmentation refuses such scans
(:func:`hepatoplan.segmentation.segment_study`).
"""

from __future__ import annotations

import numpy as np

from hepatoplan.arrays import bounding_box
from hepatoplan.units import voxel_volume_ml

from . import _grid
from . import _morph as morph
from .params import LiverParams, SelfCheckParams


def self_check(image: np.ndarray, liver: np.ndarray, report: dict, *, spacing_mm,
               params: SelfCheckParams = SelfCheckParams(), liver_params: LiverParams = LiverParams()) -> dict:
    """Run the checks on a segmentation and its report.

    Parameters
    ----------
    image : (X, Y, Z) array
        The CT (HU), canonical RAS+.
    liver : (X, Y, Z) array
        The final liver mask (lesions included), same grid.
    report : dict
        ``StudySegmentation.report`` (``liver`` and, when computed, ``tumours`` sections); when the
        liver was given rather than segmented, only the tumour check runs.
    spacing_mm : 3-tuple of float
        Voxel size (mm).
    params, liver_params : keyword-only
        The limits; the liver's parameters (air level, lesion density floor).

    Returns
    -------
    dict
        JSON-ready: ``passed`` (bool), ``checks`` (name, value, limit, passed), ``reasons`` (one
        sentence per failed check, saying what to review), ``limits`` (what this result cannot be
        trusted for even when it passed: small lesions on thick slices).
    """
    checks = []
    linfo = report.get("liver")
    own = (linfo or {}).get("self_check")  # the MR liver checks itself (segmentation.mr_liver)
    if own:
        reasons = iter(own["reasons"])
        checks += [{**c, "reason": "" if c["passed"] else next(reasons, "")} for c in own["checks"]]
    elif linfo:
        checks += _liver_checks(image, liver > 0, linfo, tuple(spacing_mm), params, liver_params)
    tinfo = report.get("tumours") or {}
    if tinfo.get("computed", True) and "near_misses" in tinfo:
        checks += lesion_checks(tinfo, params)
    limits = []
    if not own and (linfo or "near_misses" in tinfo):  # CT: an automatic liver or tumour search ran
        coarsest_mm = round(float(max(spacing_mm)), 2)
        checks.append(_check("voxel_spacing_mm", coarsest_mm, params.max_voxel_spacing_mm,
                             coarsest_mm <= params.max_voxel_spacing_mm,
                             f"voxels of {coarsest_mm:g} mm along one axis: the automatic segmentation is trusted on slices "
                             f"up to {params.max_voxel_spacing_mm:g} mm (on thicker ones it missed large lesions no other "
                             "check saw); review the masks or give --liver/--tumours made on thinner slices"))
        if "near_misses" in tinfo and params.thick_voxel_spacing_mm < coarsest_mm <= params.max_voxel_spacing_mm:
            limits.append(f"voxels of {coarsest_mm:g} mm along one axis: on slices thicker than "
                          f"{params.thick_voxel_spacing_mm:g} mm lesions under {params.thick_slice_min_lesion_ml:g} mL are "
                          "not reliably found; where a small lesion matters, give --tumours made on thinner slices")
    return {"passed": all(c["passed"] for c in checks), "checks": [{k: v for k, v in c.items() if k != "reason"} for c in checks],
            "reasons": [c["reason"] for c in checks if not c["passed"]], "limits": limits}


def lesion_checks(tinfo: dict, p: SelfCheckParams) -> list[dict]:
    """The checks of the tumour search's result: the largest near miss away from the lesions found
    (``lesion_near_miss_ml``), the largest compact dark region the search did not judge
    (``dark_region_ml``: ellipsoid fill at least ``min_dark_region_fill``), the largest share of a
    found lesion's boundary left cut by the liver outline where the lesion continues past it
    (``lesion_cut_fraction``: the lesion's ``continued_fraction``; its ``cut_fraction`` in reports
    made before that was recorded), and the largest lesion found whose share in the liver's
    surface shell lies within ``max_near_miss_margin`` of the surface test's limit, or over it
    (``lesion_at_surface_ml``, held to ``max_near_miss_ml``: the near miss's mirror, a candidate taken
    by a small margin).

    Parameters
    ----------
    tinfo : dict
        The tumours' report (:func:`hepatoplan.segmentation.segment_tumours`): ``near_misses`` (each
        with ``rule``, ``margin``, ``touches_lesion``, ``volume_ml``), ``cut_lesions`` and
        ``dark_regions`` (each with ``volume_ml``, ``contrast_hu``, ``ellipsoid_fill``; absent in
        reports made before it was recorded: then 0 mL) and ``lesions`` (``volume_ml``,
        ``surface_fraction``, ``surface_margin``; lesions without a margin are not counted).
    p : SelfCheckParams
        The limits.

    Returns
    -------
    list of dict
        Four checks: name, value, limit, passed, and the reason to show when failed.
    """
    near = [e for e in tinfo["near_misses"]
            if e["rule"] in p.near_miss_rules and not e["touches_lesion"] and e["margin"] <= p.max_near_miss_margin]
    worst = max(near, key=lambda e: e["volume_ml"], default={"volume_ml": 0.0, "rejected": ""})
    vol = worst["volume_ml"]
    blobs = [e for e in tinfo.get("dark_regions", []) if e["ellipsoid_fill"] >= p.min_dark_region_fill]
    dark = max(blobs, key=lambda e: e["volume_ml"], default={"volume_ml": 0.0, "contrast_hu": 0.0})
    cuts = [{**e, "continued_fraction": e.get("continued_fraction", e["cut_fraction"])} for e in tinfo.get("cut_lesions", [])]
    cut = max(cuts, key=lambda e: e["continued_fraction"], default={"continued_fraction": 0.0, "cut_fraction": 0.0, "volume_ml": 0.0})
    frac = cut["continued_fraction"]
    at_surface = max((e for e in tinfo.get("lesions", []) if e.get("surface_margin", np.inf) <= p.max_near_miss_margin),
                     key=lambda e: e["volume_ml"], default={"volume_ml": 0.0, "surface_fraction": 0.0})
    return [
        _check("lesion_near_miss_ml", vol, p.max_near_miss_ml, vol < p.max_near_miss_ml,
               f"a {vol:.0f} mL lesion candidate was rejected by a small margin ({worst['rejected']}): "
               "check for a missed lesion"),
        _check("dark_region_ml", dark["volume_ml"], p.max_dark_region_ml, dark["volume_ml"] < p.max_dark_region_ml,
               f"a compact {dark['volume_ml']:.0f} mL region {dark['contrast_hu']:.0f} HU darker than the liver around it "
               "was not judged by the lesion search: check for a faint lesion missed"),
        _check("lesion_cut_fraction", frac, p.max_cut_fraction, frac < p.max_cut_fraction,
               f"a {cut['volume_ml']:.0f} mL lesion is cut by the liver outline on {cut['cut_fraction']:.0%} of its boundary, "
               f"{frac:.0%} where the tissue past the cut has the lesion's density: its outer part was not recovered; "
               "check the lesion and the liver outline where it bulges"),
        _check("lesion_at_surface_ml", at_surface["volume_ml"], p.max_near_miss_ml, at_surface["volume_ml"] < p.max_near_miss_ml,
               f"a {at_surface['volume_ml']:.0f} mL lesion was taken with {at_surface['surface_fraction']:.0%} of it in the "
               "liver's surface shell, close to the limit for a lesion: it may be tissue outside the liver (stomach, "
               "bowel) taken with it; check the lesion and the liver outline there"),
    ]


def _check(name: str, value, limit, passed: bool, reason: str) -> dict:
    return {"name": name, "value": value, "limit": limit, "passed": bool(passed), "reason": reason}


def _liver_checks(image, liver, linfo: dict, spacing, p: SelfCheckParams, lp: LiverParams) -> list[dict]:
    rank = int(linfo.get("candidate_rank", 1))
    vol = float(linfo.get("liver_volume_ml", 0.0))
    lo_ml, hi_ml = lp.liver_volume_range_ml
    edge_mm2 = scan_edge_area_mm2(liver, spacing)
    checks = [
        _check("liver_at_scan_edge_mm2", round(edge_mm2, 1), p.max_scan_edge_mm2, edge_mm2 < p.max_scan_edge_mm2,
               f"the liver reaches the edge of the scan ({edge_mm2 / 100.0:.0f} cm2 on one face): part of it is outside "
               "the field of view and its volume is unknown; rescan with the whole liver or give its volume"),
        _check("liver_candidate", rank, 1, rank == 1,
               f"the best-scoring organ failed the liver's checks and candidate {rank} was taken: check the liver"),
        _check("liver_volume_ml", vol, list(lp.liver_volume_range_ml), lo_ml <= vol <= hi_ml,
               f"liver volume {vol:.0f} mL outside the adult range {lo_ml:.0f}-{hi_ml:.0f} mL: part of the liver "
               "is outside the scan or was missed"),
    ]
    if linfo.get("modality", "CT") != "CT":  # the other checks read densities in HU
        return checks  # (an MR liver from segmentation.mr_liver brings its own self-check)
    coarse = _Coarse(image, liver, spacing, p.coarse_spacing_mm, p.context_mm)
    fraction = coarse.body_fraction(lp.air_max_hu)
    swing, blob = bulging_join_margin(linfo, vol, lp, p)
    gas_miss = max((b for b in close_calls(linfo, lp, p) if b["failed"] == ["gas"]),  # left out by its gas alone
                   key=lambda b: b["volume_ml"], default=None)
    gas_ml = gas_miss["volume_ml"] if gas_miss else 0.0
    pocket = coarse.pocket_ml(p, lp.lesion_min_hu, linfo["window_hu"][0]) if "window_hu" in linfo else 0.0
    f_lo, f_hi = p.liver_body_fraction_range
    checks += [
        _check("liver_body_fraction", round(fraction, 3), list(p.liver_body_fraction_range), f_lo <= fraction <= f_hi,
               f"the liver fills {fraction:.0%} of the body in its slices (expected {f_lo:.0%}-{f_hi:.0%}): a leak into "
               "a neighbouring organ or a lost lobe"),
        _check("outline_pocket_ml", round(pocket, 1), p.max_pocket_ml, pocket < p.max_pocket_ml,
               f"a {pocket:.0f} mL pocket of soft tissue darker than the liver lies in a notch of the liver's outline: "
               "a lesion or part of the liver left out"),
        _check("bulging_join_margin_fraction", round(swing, 3), p.max_bulging_join_margin_fraction,
               swing < p.max_bulging_join_margin_fraction, _join_margin_reason(blob, swing, lp)),
        _check("bulging_gas_miss_ml", gas_ml, p.max_near_miss_ml, gas_ml < p.max_near_miss_ml,
               f"a {gas_ml:.0f} mL dark blob bulging from the liver was left out because "
               f"{(gas_miss or {}).get('gas_fraction', 0.0):.1%} of its voxels lie next to bowel gas, close to the "
               f"{lp.lesion_max_gas_fraction:.0%} limit: if it is a tumour (not bowel), it is missing from the liver "
               "and the lesions; review it"),
    ]
    return checks


def close_calls(linfo: dict, lp: LiverParams, p: SelfCheckParams) -> list[dict]:
    """The bulging blobs (``bulging_blobs`` in the liver's report) whose join was decided near a limit:
    at least one test near its limit, every other test passed or near its limit too; each with
    ``near``, the tests near their limit, and ``failed``, the tests it failed. Near: the contact
    share within ``p.bulging_contact_margin`` of ``lp.lesion_min_contact_fraction``; the gas share
    within a factor ``p.bulging_gas_margin_factor`` of ``lp.lesion_max_gas_fraction``, or the outer gas
    share within ``p.bulging_contact_margin`` of ``lp.lesion_max_outer_gas_fraction``, neither beyond
    its margin on the failing side (the bowel tests count as one); the shape tests
    (``lesion_max_volume_to_sphere``, ``lesion_min_radius_mm``) decided the other way were the blob's
    outline ``p.bulging_outline_margin_vox`` coarse voxels further out or in (:func:`_outline_moved`)."""
    c_min, c_m = lp.lesion_min_contact_fraction, p.bulging_contact_margin
    g_max, g_f = lp.lesion_max_gas_fraction, p.bulging_gas_margin_factor
    o_max = lp.lesion_max_outer_gas_fraction
    close = []
    for b in linfo.get("bulging_blobs", []):
        c, g = b["contact_fraction"], b.get("gas_fraction", 0.0)  # reports before gas13 held gas-free blobs only
        o = b.get("outer_gas_fraction", 0.0)
        # the bowel tests: near when neither fails clearly and one is within its margin (the outer
        # share is a share of boundary faces, as the contact: the same margin)
        firm = g >= g_max * g_f or o >= o_max + c_m
        tests = {"contact": (c >= c_min, abs(c - c_min) < c_m),
                 "gas": (g <= g_max and o <= o_max, not firm and (g_max / g_f < g or abs(o - o_max) < c_m))}
        if "volume_to_sphere" in b:  # reports before qc14 held shape-passing blobs only
            q, r, step = b["volume_to_sphere"], b["radius_mm"], p.bulging_outline_margin_vox * b["voxel_mm"]
            shaped = _shape_passes(q, r, lp)
            tests["shape"] = (shaped, any(_shape_passes(*_outline_moved(q, r, d), lp) != shaped for d in (-step, step)))
        if any(near for _, near in tests.values()) and all(ok or near for ok, near in tests.values()):
            close.append({**b, "near": [t for t, (_, near) in tests.items() if near],
                          "failed": [t for t, (ok, _) in tests.items() if not ok]})
    return close


def _shape_passes(volume_to_sphere: float, radius_mm: float, lp: LiverParams) -> bool:
    """The bulging-blob shape tests: compact and thick."""
    return volume_to_sphere <= lp.lesion_max_volume_to_sphere and radius_mm >= lp.lesion_min_radius_mm


def _outline_moved(volume_to_sphere: float, radius_mm: float, by_mm: float) -> tuple[float, float]:
    """A blob's shape values were its outline moved outward by ``by_mm`` (inward when negative) all
    round: the inscribed radius moves by as much, the volume as that of a sphere of the same volume's."""
    r = max(radius_mm + by_mm, 1e-6)
    r_equal = radius_mm * volume_to_sphere ** (1.0 / 3.0)  # the radius of the sphere of the blob's volume
    volume_factor = (max(r_equal + by_mm, 0.0) / r_equal) ** 3
    return volume_to_sphere * volume_factor * (radius_mm / r) ** 3, r


def bulging_join_margin(linfo: dict, liver_ml: float, lp: LiverParams, p: SelfCheckParams) -> tuple[float, dict | None]:
    """The largest of :func:`close_calls`: its volume over the liver's (0 when none, or not recorded)
    and the blob."""
    blob = max(close_calls(linfo, lp, p), key=lambda b: b["volume_ml"], default=None)
    return (blob["volume_ml"] / max(liver_ml, 1e-6) if blob else 0.0), blob


def _join_margin_reason(blob: dict | None, share: float, lp: LiverParams) -> str:
    if blob is None:
        return ""
    why = {"contact": f"a contact close to its limit ({blob['contact_fraction']:.0%} of its boundary on the liver, "
                      f"limit {lp.lesion_min_contact_fraction:.0%})",
           "gas": f"a bowel-gas share close to its limit ({blob.get('gas_fraction', 0.0):.1%} of its voxels next to "
                  f"gas, limit {lp.lesion_max_gas_fraction:.0%}; {blob.get('outer_gas_fraction', 0.0):.0%} of its free "
                  f"boundary next to air, limit {lp.lesion_max_outer_gas_fraction:.1%})",
           "shape": f"a shape close to its limit ({blob.get('volume_to_sphere', 0.0):.1f} times the volume of its "
                    f"{blob.get('radius_mm', 0.0):.0f} mm inscribed sphere, limit {lp.lesion_max_volume_to_sphere:g})"}
    what = "joined to the liver" if blob["joined"] else "left out of the liver"
    return (f"a {blob['volume_ml']:.0f} mL dark blob beside the liver ({share:.0%} of its volume) was {what} by "
            + " and ".join(why[t] for t in blob["near"]) + f": if it is {'not ' if blob['joined'] else ''}liver or a lesion, the liver's volume is "
            f"off by {blob['volume_ml']:.0f} mL; review the liver outline there")


def scan_edge_area_mm2(mask: np.ndarray, spacing) -> float:
    """The largest area (mm2) of ``mask`` on one of the six faces of its array."""
    areas = []
    for ax in range(3):
        pixel_mm2 = float(np.prod([s for a, s in enumerate(spacing) if a != ax]))
        areas += [np.count_nonzero(np.take(mask, i, axis=ax)) * pixel_mm2 for i in (0, -1)]
    return float(max(areas))


class _Coarse:
    """The image and liver block-averaged to about ``spacing_mm``, cropped to the liver's box grown
    by ``context_mm`` (the checks look at millimetre-scale shapes)."""

    def __init__(self, image, liver, spacing, coarse_mm: float, context_mm: float):
        factors = _grid.shrink_factors(spacing, coarse_mm)
        self.spacing = tuple(s * f for s, f in zip(spacing, factors))
        pad = tuple(int(np.ceil(context_mm / s)) for s in spacing)
        box = bounding_box(liver, pad=pad)
        self.image = _grid.block_mean(image[box], factors)
        self.liver = _grid.block_mean(liver[box].astype(np.float32), factors) > 0.5
        # the body over the liver's slices: whole axial planes of the image, not only the box
        zs = box[2]
        self._axial = _grid.block_mean(image[:, :, zs], factors)

    def body_fraction(self, air_max_hu: float) -> float:
        """The liver's volume over the body's in the slices the liver spans."""
        zs = np.flatnonzero(self.liver.any(axis=(0, 1)))
        if not len(zs):
            return 0.0
        body = morph.fill_holes(morph.largest_component(self._axial > air_max_hu), per_slice=True)
        body_vox = body[:, :, zs[0]: zs[-1] + 1].sum()
        return float(self.liver.sum() / max(body_vox, 1))

    def pocket_ml(self, p: SelfCheckParams, min_hu: float, max_hu: float) -> float:
        """Largest lesion-sized pocket (an opening of ``pocket_open_mm`` survives) of tissue between
        ``min_hu`` and ``max_hu`` in the liver's outline closed by ``pocket_close_mm``."""
        closed = morph.close(self.liver, p.pocket_close_mm, self.spacing, pad_vox=int(np.ceil(p.pocket_close_mm / min(self.spacing))) + 1)
        pocket = closed & ~self.liver & (self.image > min_hu) & (self.image < max_hu)
        pocket = morph.open_(pocket, p.pocket_open_mm, self.spacing)
        if not pocket.any():
            return 0.0
        return float(morph.largest_component(pocket).sum() * voxel_volume_ml(self.spacing))


def liver_plausibility(volume_ml: float, right_of_body_mm: float | None, *, partial: bool,
                       volume_range_ml: tuple[float, float], min_partial_ml: float,
                       min_right_offset_mm: float) -> tuple[list[str], list[str]]:
    """The checks every liver candidate (CT or MR) must pass: a plausible volume (a smaller one
    only when the scan cuts the liver, ``partial``) and a centre on the patient's right.

    Returns
    -------
    (flags, failures) : two lists of str
        Notes for the user, and the reasons the candidate is not a liver.
    """
    flags, fail = [], []
    lo_ml, hi_ml = volume_range_ml
    if volume_ml < min_partial_ml or volume_ml > hi_ml or (volume_ml < lo_ml and not partial):
        fail.append(f"liver volume {volume_ml:.0f} mL outside the plausible range {volume_range_ml} mL")
    elif volume_ml < lo_ml:
        flags.append(f"liver volume {volume_ml:.0f} mL below {lo_ml:.0f} mL: partial scan coverage")
    if right_of_body_mm is None:
        fail.append("no liver found")
    elif right_of_body_mm < min_right_offset_mm:
        fail.append(
            f"the liver candidate's centre lies {right_of_body_mm:.0f} mm right of the body centre (a liver lies "
            f"at least {min_right_offset_mm:.0f} mm to the patient's right): no liver in this scan, or the "
            "orientation is wrong"
        )
    return flags, fail
