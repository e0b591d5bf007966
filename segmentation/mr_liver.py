"""Liver segmentation on abdominal MR by classical image analysis, without trained weights.

Arrays are canonical RAS+: index axis 0 increases toward the patient's Right, axis 1 toward
Anterior, axis 2 toward Superior. Nothing here reads files.

MR intensities are arbitrary units, multiplied by a smooth coil-sensitivity (bias) field and
often offset, so every threshold is learned from the scan itself and expressed in natural-log
units (0.1 = 10 % brighter), which a global scale does not change:

1. **Working grid.** Pixels are block-averaged in-plane to about ``coarse_spacing_mm`` (slices of
   7-8 mm are kept as they are), median-filtered in-plane; the air level (the triangle threshold of
   the histogram) is subtracted and the body is the largest component above it, holes filled per
   slice (lungs included).
2. **Seed.** The liver is the largest homogeneous organ on the patient's right: for each peak of
   the log-intensity histogram of the deep right body, voxels within ``seed_window_log`` of it are
   eroded in-plane by ``seed_erode_mm`` and every blob is scored by its volume times its
   right-sidedness. The best blob is the seed (the runner-ups are tried when the result fails the
   checks below).
3. **Bias-aware region competition.** A smooth field (first, then second order polynomial in
   millimetres, fitted robustly to the log-intensities of the current liver) models the liver's
   intensity everywhere; voxels within ``window_k_sd`` residual SDs (at least ``window_min_log``)
   of the field form the liver-like window. Blobs of the window that survive an in-plane erosion of
   ``core_erode_mm`` and are not the liver (spleen, bowel, muscle, heart of similar brightness) and
   voxels farther than ``far_log`` from the field (kidneys, fluid, fat, lung) become competing
   markers of a watershed on the gradient of the log-image, which puts the liver's border on the
   strongest edge between them. Three passes refine the field with the grown liver.
4. **Slice nesting (shape prior).** Away from its widest slice the liver only narrows (towards the
   dome above, towards the tip of the right lobe below), so each axial slice is kept only where it
   lies within ``nest_margin_mm`` of the slice nearer the widest one, after an in-plane opening of
   ``nest_open_mm`` that breaks thin bridges into bowel, stomach or heart (below the widest slice a wider
   ``nest_open_below_mm``, what it shaves off a kept piece given back under the slice above's liver);
   above the widest slice only the largest piece of each slice is kept (``dome_one_piece``: the heart
   above the left lobe lies within reach of the slice below but apart from the liver in-plane).
5. **Dome.** On thick slices the top of the right dome is a partial-volume mixture of liver and lung,
   darker than the liver-like window: on the slices where the liver ends (it shrinks to less than
   ``dome_shrink_fraction`` of the slice below), right of the body's centre and within the slice below's
   liver, voxels of at least ``dome_min_fraction`` of the liver's brightness touching the slice's liver
   (or, on the one slice above its top, the largest such patch) are added and the slice's field follows
   them.
6. **Graph cut (boundary and smoothness).** The border is moved to the cheapest closed surface within
   ``cut_band_mm`` outside and ``cut_core_mm`` inside it: a minimum s-t cut whose faces cost their area
   times ``exp(-d² / (2 cut_contrast_log²))`` (``d`` the log-intensity step across the face), the core
   liver and the band's outer shell (with the voxels far from the field) its terminals. Region growing
   follows every weak gap and leaves a ragged border; the cut prefers a short surface across the
   strongest edges, the liver's smooth outline. Below the widest slice the core also stops
   ``cut_core_caudal_mm`` above the liver's lower surface: a leak that continues the liver downward into
   bowel as bright as it costs more to keep (its sides) than to cut across (its section). On the dome's
   slices (where the liver shrinks under the lung, ``cut_dome_shrink_fraction``) no voxel darker than the
   field is a terminal: a partial-volume border with the lung is put on its edge.
7. **Full resolution.** The coarse mask is up-sampled (partial-volume aware) and its border snapped
   within ``band_mm`` to the full-resolution intensities against the same field (on the dome's slices a dark
   voxel under the lung is not ruled out: ``snap_lung_above_log``).

The contrast is checked from the scan itself: the subcutaneous fat's brightness relative to the
liver tells a fat-suppressed T2-weighted scan (fat darker than liver, e.g. CHAOS T2-SPIR) from a
T1-weighted one with bright fat (the TotalSegmentator MR example); anything else (e.g. fat about as
bright as liver, as on opposed-phase or diffusion images) was not developed on and fails the checks.

Developed on CHAOS T2-SPIR (4 scans, 1.25 x 1.25 x 7.7 mm) and the TotalSegmentator MR example
(T1-weighted, 3 mm); values chosen on them are marked in :class:`MRLiverParams` with their
leave-one-out figures (``bench/bench_mr.py``, figures in ``bench/RESULTS.md``).

Design choices, measured:

* No N4 bias-field correction: SimpleITK's N4 (shrink 2, 4 control points, 50/50/30 iterations)
  took 34-289 s per scan here and narrowed the liver's interquartile range only from 0.18-0.28 to
  0.16-0.26 of its median; a cheap N4 (shrink 4 in-plane, 4 levels of 20 iterations) still took
  12 s of CPU on CHAOS 02 with a constructed bias field and moved its Dice from 0.743 to 0.803 with
  the volume +32 % instead of -2 % (50 iterations: 30 s, 0.721). On the working grid (shrunk 2 in-plane, 3 levels
  of 20) it costs 2.9-11.2 s of CPU and moves the five development scans' mean Dice from 0.914 to 0.913; the dark
  dome of CHAOS 03 is no darker in its field than the liver beside it (0.01-0.02 log against 0.6-0.7: partial
  volume with the lung, not coil sensitivity; tenth stop). The robust polynomial field of step 3 is fitted to
  the liver alone, in milliseconds, plus a per-slice offset (2-D MR sequences vary from slice to slice: the CHAOS
  livers' slice medians vary by 13-24 %).
* Edges on the working grid, not at full resolution: the full-resolution gradient averaged onto the grid
  scored CHAOS 02 0.874-0.912 depending on its scale by 0.25 mm (a knife edge), collapsed CHAOS 05 at
  1-1.25 mm, and at 1.5 mm let two constructed variations pass QC with Dice 0.75 and 0.00.
* No cut where the liver's area rises again below its widest slice (CHAOS 02's leak into bowel does):
  IRCADb 12's liver narrows to 11 % of its widest section and widens again below (a long right-lobe tip).
* The graph cut is scipy's ``maximum_flow`` (Dinic) on the band around the border only (the core's inside
  joins the source through its surface voxels): 0.1-1.4 s a cut on CHAOS on a loaded machine; PyMaxflow
  has no aarch64 wheel for Python 3.11. Boundary and smoothness only: a region term (each voxel's cost from its
  distance to the liver-like window) lowered the mean Dice from 0.907 to 0.899-0.900, and 02's leak is as
  bright as the liver.
* No shipped atlas: IRCADb's masks are CC BY-NC-ND (no derivatives) and CHAOS's CC BY-SA (a derived
  prior would carry that licence); the priors here are anatomy stated in millimetres (the liver is
  the large organ right of the body's centre, it narrows away from its widest slice).

Checks. A candidate that is not a credible liver (volume, side, contrast, lying in the abdominal
wall) is rejected and the next seed tried; the liver taken is then checked (:func:`_self_check`:
first candidate, a border stable under a wider window, a mask in one piece on most slices, slices no
thicker than ``max_slice_thickness_mm``, a field of view that does not cut the liver's side, a left lobe
reaching across the midline) and marked ``unverified`` in ``qc_flags`` and ``self_check`` when a check fails: delivered, not vouched for.

Known limits (``bench/RESULTS.md``): on 7.7 mm slices the liver can leak into iso-intense
mesenteric fat or bowel in front of its tip (CHAOS 02 +5.9 %, beside the tip of its right lobe: the contact
is broad and the graph cut cannot move the border farther in than ``cut_core_mm``; the caudal core can take
off a real tip's last slice where bowel as bright as it lies beneath: CHAOS 05 -1.4 %), and the liver's border
at the dome and beside the caudate and IVC can be lost where it is darker than the window (CHAOS 03 -6.3 %,
Dice 0.901); on the 60
constructed variations the checks catch every result with Dice < 0.85, but their limits were chosen on
those runs: check the mask.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from hepatoplan.arrays import bounding_box, is_empty_box
from hepatoplan.errors import InputError
from hepatoplan.units import voxel_volume_ml

from . import _grid
from . import _morph as morph
from .selfcheck import liver_plausibility

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MRLiverParams:
    """Constants of :func:`segment_liver_mr`; lengths in mm, intensities in natural-log units.

    Attributes
    ----------
    coarse_spacing_mm : float
        In-plane pixel size of the working grid (CHAOS: 1.25 mm pixels averaged 2 x 2).
    seed_window_log : float
        Half-width of the intensity windows whose eroded blobs are seed candidates (+-16 %).
    seed_erode_mm : float
        In-plane erosion of those windows: a liver seed is thicker than 15 mm in-plane.
    seed_depth_mm : float
        Histogram peaks are taken from the body deeper than this (the subcutaneous layer left out).
    window_k_sd : float
        Liver-like window half-width, in robust SDs of the residual to the liver's intensity field.
    window_min_log : float
        ... but never narrower than this (+-22 %). Chosen on CHAOS 01/02/03/05 and the
        TotalSegmentator MR example among 0.2 and 0.25 (0.15 loses 05 and the T1 example):
        leave-one-out mean Dice 0.889.
    window_dark_extra_log : float
        The window's dark side widened by this much (0: symmetric). 0.1 (with ``window_min_log`` 0.2 and
        0.25) and -0.05 / -0.1 were tried on the five scans and lowered the mean Dice (CHAOS 02 leaks
        further; ``bench/RESULTS.md``): 0 kept.
    far_log : float
        Voxels farther than this from the liver's field (+-49 %) are certainly not liver.
    core_erode_mm : float
        In-plane erosion making competing organ markers from the window's other blobs.
    gradient_sigma_mm : float
        Scale of the log-image gradient the watershed runs on.
    nest_margin_mm : float
        How far (in-plane) a slice's liver may reach beyond its neighbour nearer the widest slice.
    nest_open_mm : float
        In-plane opening radius breaking thin bridges before the nesting. Wider openings (10-15 mm, with
        what they shave off given back to the kept pieces) score up to 0.901 on the five scans but remove the
        pieces the ``fragmented_slice_fraction`` check reads: CHAOS 02 cut at the top then passed QC at
        0.823 (``bench/RESULTS.md``); not taken. Below the widest slice only, without the give-back, 7.5 / 10 /
        12.5 mm: CHAOS 02 0.885 / 0.895 / 0.897 but the right lobe's tips of 01, 03 and TS shaved, leave-one-out
        0.897 (0.899 at 5 mm).
    nest_open_below_mm : float
        The same opening below the widest slice, where the liver narrows to the tip of its right lobe and
        leaks into the bowel beneath and in front of it (the hepatic flexure); what it shaves off a kept
        piece is given back where it lies under the slice above's liver (the tip narrows within it; a leak
        creeps out of it). Chosen on CHAOS 01/02/03/05 and the TotalSegmentator MR example among 5, 7.5, 10,
        12.5 and 15 mm: mean Dice 0.898 / 0.899 / 0.901 / 0.900 / 0.899 (0.899 before: 5 mm without the
        give-back); leave-one-out 0.899, equal to before (03's fold chooses 15 mm: 0.873; ``bench/RESULTS.md``):
        it brings CHAOS 02 from 0.878 to 0.888 and 05 from 0.898 to 0.904. It removes the leak's pieces that
        ``fragmented_slice_fraction`` reads, so that check reads the mask nested without it.
    nest_overlap_fraction : float
        Share of a slice's liver piece that must lie within the neighbour's reach to be kept.
    band_mm : float
        Half-width of the band where the full-resolution border is snapped.
    refine_sigma_mm : float
        Scale of the full-resolution gradient whose crest is the border (the half-way contour).
    max_candidates : int
        Seeds tried in turn while the result fails the checks.
    volume_range_ml : tuple of float
        Plausible adult liver volume (the CT path's range; CHAOS livers are 1263-2122 mL).
    min_partial_volume_ml : float
        Smallest liver accepted when the scan cuts it off at its cranial or caudal end.
    min_border_section_fraction : float
        A liver counts as cut off by the scan's end when its cross-section in the end slice is at
        least this share of its widest one (a speck grazing the last slice does not excuse a small
        volume); a liver cut so by the field of view's side is unverified (``side_section_fraction``).
    min_right_offset_mm : float
        The liver's centre lies at least this far right of the body's centre (anatomy).
    fat_suppressed_max_ratio, bright_fat_min_ratio : float
        Subcutaneous fat / liver intensity: below the first the scan is a fat-suppressed
        T2-weighted scan (CHAOS: 0.15-0.42), above the second a T1-weighted scan with bright fat
        (TotalSegmentator example: 5.2); in between the contrast was not developed on.
    stability_delta_log, min_stability_dice : float
        The liver is grown again with ``window_min_log`` this much wider; a mask agreeing less than
        ``min_stability_dice`` with it is unverified. Chosen on the 60 runs of ``bench_mr.py
        variations`` (the 5 scans as they are and 11 variations of each): the masks with Dice < 0.85
        it catches agree 0.729 and 0.920; those with Dice >= 0.85 0.926-1.0 (CHAOS 01 cut at the side,
        0.926, is flagged; the others >= 0.968).
    skin_depth_mm, max_near_skin_fraction : float
        A candidate with more than this share within ``skin_depth_mm`` (in-plane) of the body's outline
        is not a liver (it takes the abdominal wall): the next candidate is tried. Same 60 runs: the
        livers taken 0.000-0.062, a mask in the anterior wall (CHAOS 05 with a bias field) 0.27.
    min_left_lobe_reach_mm : float
        A liver not cut by the scan's ends reaching less than this far left of the body's centre is
        unverified (its left lobe is missing). Anatomy; same 60 runs: the mask that lost the left lobe
        (CHAOS 02 with a bias field) 8.6 mm, the other livers the scan does not cut 35-83 mm.
    max_fragmented_slice_fraction : float
        A mask in more than one piece on more than this share of its axial slices (working grid) is
        unverified. Chosen on the same 60 runs: the five scans 0.24-0.50, every mask with Dice >= 0.85
        <= 0.59, four leaks with Dice 0.82-0.85 (CHAOS 02 cut at the top, 05 with noise, half-thick
        slices, the side cut) 0.63-0.77; leave-one-scan-out in ``bench/RESULTS.md``. Read on the full-resolution
        snap of the nested mask block-averaged back, not on the coarse mask (23 % less CPU): there CHAOS 02 cut at
        the top with the seventh stop's code (Dice 0.831) reads 0.526 instead of 0.632, as much as a good result.
    dome_min_fraction : float
        The right dome's partial-volume rim (step 5) takes voxels at least this share of the liver's
        brightness (log(0.45) = -0.8: a voxel at least about half liver, the rest lung) and darker than the
        liver-like window. Chosen on CHAOS 01/02/03/05 and the TotalSegmentator MR example among 0 (no
        rim), 0.35, 0.45 and 0.55: leave-one-out in ``bench/RESULTS.md``.
    dome_inset_mm : float
        The rim lies within the slice below's liver shrunk in-plane by this much (the dome narrows).
    dome_open_mm : float
        In-plane opening radius of the rim: thin slivers along the border are not a dome.
    dome_shrink_fraction : float
        The rim is looked for only on slices where the liver shrinks to less than this share of the
        slice below's (where it ends under the lung). 0.7 / 0.8 / 0.9 / 1.0 on CHAOS 01/02/03/05 and the
        TotalSegmentator MR example: mean Dice 0.899 / 0.900 / 0.900 / 0.900, leave-one-out 0.900 at 0.8-1.0
        (03 +0.004), but from 0.75 the MR phantom's rim takes its bowel-like tissue above the liver (+2.3-3.2 %
        volume): 0.7 kept (``bench/RESULTS.md``). With the rim on both sides of the body's centre and kept from
        the graph cut (its core), 0.8: CHAOS 03 0.890 -> 0.903 (-8.7 -> -6.0 %), but 01 -0.002 (heart above the
        left lobe) and 05 -0.004; leave-one-out 0.913, 03's own fold keeping this rule (ninth stop).
    dome_one_piece : bool
        Above the widest slice only the largest in-plane piece of each slice is kept (the liver rises to
        the right dome as one piece; beside it lie the heart above the left lobe and vessels). On the five
        scans the pieces it drops lie outside the reference but for 18 voxels of CHAOS 03; chosen in every
        fold of the leave-one-out (0.899, was 0.894; ``bench/RESULTS.md``). It lowers the share of slices in
        pieces, so CHAOS 05 cut at the side passed QC at 0.838 with it until the ``side_section_fraction``
        check.
    cut_contrast_log : float
        Graph cut (step 6): a face between two voxels whose log-intensities differ by ``d`` costs its area
        times ``exp(-d² / (2 cut_contrast_log²))`` (0: no cut). Chosen with ``cut_core_mm`` and
        ``cut_band_mm`` on CHAOS 01/02/03/05 and the TotalSegmentator MR example among 0.05, 0.1 and 0.2
        (cores 5-15 mm, bands 5-20 mm, 40 settings and no cut): mean Dice 0.9011 without the cut, 0.9094
        here (0.05 / 0.2: 0.9074 / 0.8999); leave-one-out 0.9065 (``bench/RESULTS.md``).
    cut_core_mm : float
        The liver shrunk in-plane by this much (with the seed) is kept whatever the cut: how far inward the
        border may move. 5 / 7.5 / 10 / 12.5 / 15 mm (band 15, contrast 0.1): mean Dice 0.9057 / 0.9080 /
        0.9094 / 0.9085 / 0.9014 (at 15 mm CHAOS 03 and 05 lose parts: -12.9 % and -7.0 %).
    cut_band_mm : float
        How far (in-plane) outward the border may move; the band's outer shell is not liver. 5 / 7.5 / 10 / 15
        / 20 mm (core 10 mm, contrast 0.1): mean Dice 0.9045 / 0.9063 / 0.9070 / 0.9094 / 0.9098 (20 mm:
        +0.0004, a wider reach for leaks; 15 kept).
    cut_core_caudal_mm : float
        Below the widest slice the core also stops this far above the liver's lower surface (an ellipsoidal
        erosion, ``cut_core_mm`` in-plane, this along the slices; 0: in-plane only), so the cut may take off
        the slices of a leak that continues the liver downward (CHAOS 02's tail into the bowel below the tip
        of the right lobe): cutting across a section costs its area, as bright on both sides; a real tip with
        its own edges costs less to keep. Chosen on CHAOS 01/02/03/05 and the TotalSegmentator MR example
        among 0, 10, 15, 20, 25 and 30 mm: mean Dice 0.909 / 0.910 / 0.910 / 0.914 / 0.913 / 0.911 (CHAOS 02 0.891
        -> 0.916 at 20 mm, 05's last tip slice lost: -2.9 % volume); leave-one-out 0.911 (05's fold takes 30 mm:
        0.898; ``bench/RESULTS.md``, eighth stop).
    cut_dome_shrink_fraction : float
        Above the widest slice, on the slices where the liver shrinks to less than this share of the slice below
        (the dome, whose surface the thick slices cut obliquely under the lung), the cut's voxels darker than the
        field are no terminal however dark (0: everywhere farther than ``far_log``): a voxel part liver, part lung
        is as dark as its liver share, so the border there is the edges' to judge, the strongest one the lung's.
        Not an intensity fitted to a scan: SimpleITK's N4 finds the dark dome of CHAOS 03 no darker in its field
        than the liver beside it (0.01-0.02 log against 0.6-0.7; ``bench/RESULTS.md``, tenth stop). Chosen on CHAOS
        01/02/03/05 and the TotalSegmentator MR example among 0 (off), 0.7, 0.8, 0.9 and 1.0 (0.8-0.9 best, CHAOS
        03 0.890 -> 0.899), then with ``snap_lung_above_log``: leave-one-out in ``bench/RESULTS.md`` (tenth stop).
    snap_lung_above_log : float
        On the same slices the full-resolution snap's "certainly not liver" marker spares a voxel darker than the
        field when the voxel above it (the next slice) is darker than the field by more than this (lung above it:
        the voxel is part liver, part lung); 0: off. log(0.45): the lung's side of a partial-volume voxel. Chosen
        with ``cut_dome_shrink_fraction`` among 0 / 0.8 / 1.2 x 0.8 / 0.9: leave-one-out 0.917, 03's own fold 0.900
        (by 0.0001 over no snap rule: 0.899; ``bench/RESULTS.md``, tenth stop).
    max_slice_thickness_mm : float
        Slices farther apart than this are beyond what the method was developed on (CHAOS 7.7 mm, the
        TotalSegmentator example 3 mm): the mask is delivered unverified. The 60 variations at 15.4 mm:
        CHAOS 01 0.909, 02 0.878, 03 0.852, 05 0.781 (a leak into heart and bowel, +39 %, which no other
        check caught). A development range, not a fitted value.
    """

    coarse_spacing_mm: float = 2.5
    seed_window_log: float = 0.15
    seed_erode_mm: float = 7.5
    seed_depth_mm: float = 15.0
    window_k_sd: float = 3.0
    window_min_log: float = 0.2
    window_dark_extra_log: float = 0.0
    far_log: float = 0.4
    core_erode_mm: float = 6.0
    gradient_sigma_mm: float = 2.0
    nest_margin_mm: float = 10.0
    nest_open_mm: float = 5.0
    nest_open_below_mm: float = 10.0
    nest_overlap_fraction: float = 0.5
    band_mm: float = 3.0
    refine_sigma_mm: float = 1.0
    max_candidates: int = 3
    volume_range_ml: tuple[float, float] = (600.0, 4000.0)
    min_partial_volume_ml: float = 50.0
    min_border_section_fraction: float = 0.25
    min_right_offset_mm: float = 15.0
    fat_suppressed_max_ratio: float = 0.7
    bright_fat_min_ratio: float = 2.0
    stability_delta_log: float = 0.05
    min_stability_dice: float = 0.93
    skin_depth_mm: float = 15.0
    max_near_skin_fraction: float = 0.15
    min_left_lobe_reach_mm: float = 15.0
    max_fragmented_slice_fraction: float = 0.6
    dome_min_fraction: float = 0.45
    dome_inset_mm: float = 2.5
    dome_open_mm: float = 2.5
    dome_shrink_fraction: float = 0.7
    dome_one_piece: bool = True
    cut_contrast_log: float = 0.1
    cut_core_mm: float = 10.0
    cut_band_mm: float = 15.0
    cut_core_caudal_mm: float = 20.0
    cut_dome_shrink_fraction: float = 0.8
    snap_lung_above_log: float = 0.8
    max_slice_thickness_mm: float = 10.0


def segment_liver_mr(image: np.ndarray, *, spacing_mm, params: MRLiverParams = MRLiverParams()
                     ) -> tuple[np.ndarray, dict]:
    """Segment the liver in an abdominal MR volume.

    Parameters
    ----------
    image : (X, Y, Z) array
        Canonical RAS+ MR volume (axis 0 -> Right, 1 -> Anterior, 2 -> Superior), any units.
    spacing_mm : 3-tuple of float
        Voxel size along the three axes (mm).
    params : MRLiverParams
        Tuned constants (their values are reported in ``info["params"]``).

    Returns
    -------
    liver : (X, Y, Z) uint8 array
        1 inside the liver, 0 elsewhere.
    info : dict
        JSON-ready: ``liver_volume_ml``, the contrast found (``mr_contrast``), intensity statistics
        in the scan's units, ``qc_flags`` and ``qc_passed`` (False: the mask is not a credible
        liver and must not be used), ``self_check`` when it passed (``passed`` False: unverified,
        each check's ``value`` and ``limit``, ``reasons``), ``seconds``.

    Raises
    ------
    InputError
        Not a 3-D volume, bad spacing, a field of view too small for a liver, or no body or no
        liver-like tissue in it.
    """
    t0 = time.perf_counter()
    spacing = _grid.check_volume(image, spacing_mm)
    img = np.asarray(image, dtype=np.float32)
    if not np.isfinite(img).all():
        raise InputError("MR image: non-finite values (NaN or inf) found; expected finite intensities")
    grid = _WorkGrid.make(img, spacing, params)
    seeds = _seed_candidates(grid, params)
    if not seeds:
        raise InputError(
            "MR: no liver-like organ found (no homogeneous tissue thicker than "
            f"{2 * params.seed_erode_mm:.0f} mm on the patient's right); is this an abdominal MR scan?"
        )
    tried = []
    for seed in seeds[: params.max_candidates]:
        info: dict = {"modality": "MR", "qc_flags": [], "qc_passed": True}
        grown, grown_field, sd = _grow(grid, seed, params)
        liver_small, field_small = _dome(_nest(grown, grid.spacing_mm, params), grid, grown_field, params)
        liver_small = _graph_cut(liver_small, grid, field_small, seed, params)
        liver = _refine_full(img, grid, liver_small, field_small, sd, params)
        info.update(_describe(grid, liver_small, seed, field_small, sd, params))
        info["liver_volume_ml"] = round(float(np.count_nonzero(liver)) * voxel_volume_ml(spacing), 1)
        _qc(liver, info, grid, spacing, params)
        tried.append((liver, info, seed, liver_small, (grown, grown_field, sd)))
        if info["qc_passed"]:
            break
    liver, info, seed, liver_small, (grown, grown_field, sd) = tried[-1] if tried[-1][1]["qc_passed"] else tried[0]
    if info["qc_passed"]:
        # the leak's pieces are read on the mask nested without the caudal cleaning, which removes them
        plain, plain_field = _dome(_nest(grown, grid.spacing_mm, params, caudal=False), grid, grown_field, params)
        plain = _refine_full(img, grid, plain, plain_field, sd, params)
        info["self_check"] = _self_check(grid, seed, liver_small, params, rank=len(tried),
                                         cut_by_scan=_cut_by_scan_end(liver, params),
                                         fragmented=fragmented_slice_fraction(plain, grid.factors),
                                         side_cut=max(border_section_fraction(liver, a) for a in (0, 1)))
        info["qc_flags"] += [f"unverified: {reason}" for reason in info["self_check"]["reasons"]]
    info["params"] = asdict(params)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    return liver.astype(np.uint8), info


@dataclass
class _WorkGrid:
    """The coarse working grid: log-intensities, body mask and how it maps to the full grid."""

    log_image: np.ndarray  # natural log of (intensity - air level), floored at the body threshold
    body: np.ndarray
    factors: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    air_level: float
    body_level: float

    @classmethod
    def make(cls, img: np.ndarray, spacing, params: MRLiverParams) -> _WorkGrid:
        from skimage.filters import threshold_triangle

        factors = _grid.shrink_factors(spacing, params.coarse_spacing_mm)
        small = _grid.block_mean(img, factors)
        small = ndi.median_filter(small, size=(3, 3, 1))
        level = float(threshold_triangle(small))
        below = small[small <= level]
        air = float(np.median(below)) if below.size else float(small.min())
        body = morph.fill_holes(morph.largest_component(small > level), per_slice=True)
        if np.count_nonzero(body) < 1000:
            raise InputError(
                "MR: no body found above the background level (triangle threshold of the histogram); "
                "expected an abdominal MR volume"
            )
        floor = max(level - air, 1e-3)
        log_image = np.log(np.maximum(small - air, floor)).astype(np.float32)
        sp = tuple(s * f for s, f in zip(spacing, factors))
        return cls(log_image, body, factors, sp, air, level)

    def right_of_centre_mm(self, mask: np.ndarray) -> float:
        """How far (mm) the centre of ``mask`` lies to the patient's right of the body's centre."""
        cx_body = float(np.average(np.arange(self.body.shape[0]), weights=self.body.sum(axis=(1, 2))))
        cx = float(np.average(np.arange(mask.shape[0]), weights=mask.sum(axis=(1, 2))))
        return (cx - cx_body) * self.spacing_mm[0]


def _in_plane(spacing_mm) -> tuple[float, float, float]:
    """Anisotropy that makes ``edt`` morphology act within each axial slice only."""
    return (spacing_mm[0], spacing_mm[1], 1e6)


def _seed_candidates(grid: _WorkGrid, params: MRLiverParams) -> list[np.ndarray]:
    """Seed blobs, best first: eroded blobs of histogram-peak windows scored by volume x right-sidedness."""
    ls, body, sp = grid.log_image, grid.body, grid.spacing_mm
    deep = morph.erode(body, params.seed_depth_mm, sp)
    cx = float(np.average(np.arange(body.shape[0]), weights=body.sum(axis=(1, 2))))
    deep[: int(cx)] = False
    values = ls[deep & (ls > np.log(max(grid.body_level - grid.air_level, 1e-3)))]
    if values.size < 100:
        return []
    # bins anchored at the median: a global intensity scale shifts them with the values (same peaks)
    med = float(np.median(values))
    bins = med + 0.04 * np.arange(np.floor((values.min() - med) / 0.04), np.ceil((values.max() - med) / 0.04) + 1.5)
    hist, edges = np.histogram(values, bins=bins)
    hist = ndi.gaussian_filter1d(hist.astype(float), 1.5)
    centres = 0.5 * (edges[:-1] + edges[1:])
    peaks = sorted((i for i in range(1, len(hist) - 1) if hist[i] >= hist[i - 1] and hist[i] > hist[i + 1]),
                   key=lambda i: -hist[i])[:5]
    voxel_ml = voxel_volume_ml(sp)
    scored = []
    for i in peaks:
        window = body & (np.abs(ls - centres[i]) < params.seed_window_log)
        labels, n = morph.components(morph.erode(window, params.seed_erode_mm, _in_plane(sp)))
        if n == 0:
            continue
        counts = np.bincount(labels.ravel())
        counts[0] = 0
        for lab in np.argsort(counts)[::-1][:4]:
            if counts[lab] == 0:
                break
            blob = labels == lab
            right_mm = grid.right_of_centre_mm(blob)
            scored.append((counts[lab] * voxel_ml / (1.0 + np.exp(-right_mm / 20.0)), blob))
    chosen: list[np.ndarray] = []
    taken = np.zeros(body.shape, bool)
    for _, blob in sorted(scored, key=lambda t: -t[0]):
        if not (blob & taken).any():
            chosen.append(blob)
            taken |= blob
    return chosen


def _fit_field(ls: np.ndarray, mask: np.ndarray, spacing_mm, order: int) -> tuple[np.ndarray, float]:
    """Robust polynomial fit of the log-intensities of ``mask``: field on the whole grid, residual SD.

    The field is clipped to the range it takes over ``mask`` (no wild extrapolation).
    """
    idx = np.argwhere(mask)
    centre = idx.mean(axis=0)
    y = ls[mask].astype(np.float64)
    a = _design(idx, centre, spacing_mm, order)
    keep = np.ones(len(y), bool)
    sd = 1.0
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a[keep], y[keep], rcond=None)
        r = y - a @ coef
        sd = max(1.4826 * float(np.median(np.abs(r[keep] - np.median(r[keep])))), 1e-3)
        keep = np.abs(r) < 2.5 * sd
    lo, hi = np.percentile(a @ coef, [1, 99])
    axes = [(np.arange(n) - c) * s / 100.0 for n, c, s in zip(ls.shape, centre, spacing_mm)]
    x, yy, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    terms = [1.0, x, yy, z] + ([x * x, yy * yy, z * z, x * yy, x * z, yy * z] if order >= 2 else [])
    field = sum(c * t for c, t in zip(coef, terms))
    return np.clip(np.broadcast_to(field, ls.shape), lo, hi).astype(np.float32), sd


def _slice_offsets(resid: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median residual of ``mask`` per axial slice (2-D MR sequences vary from slice to slice),
    median-filtered over 3 slices; slices without enough of ``mask`` take the nearest value."""
    counts = mask.sum(axis=(0, 1))
    zs = np.flatnonzero(counts >= 20)
    if zs.size == 0:
        return np.zeros(mask.shape[2], np.float32)
    med = np.array([np.median(resid[:, :, z][mask[:, :, z]]) for z in zs])
    med = ndi.median_filter(med, size=3, mode="nearest")
    return np.interp(np.arange(mask.shape[2]), zs, med).astype(np.float32)


def _design(idx: np.ndarray, centre, spacing_mm, order: int) -> np.ndarray:
    x = (idx - centre) * np.asarray(spacing_mm) / 100.0  # decimetres keep the terms of one order
    cols = [np.ones(len(x)), x[:, 0], x[:, 1], x[:, 2]]
    if order >= 2:
        cols += [x[:, 0] ** 2, x[:, 1] ** 2, x[:, 2] ** 2, x[:, 0] * x[:, 1], x[:, 0] * x[:, 2], x[:, 1] * x[:, 2]]
    return np.stack(cols, axis=1)


def _watershed(elevation: np.ndarray, markers: np.ndarray) -> np.ndarray:
    """skimage's marker watershed (connectivity 1) flooding only the unlabelled voxels and the markers beside them.

    skimage pushes every marker voxel onto its priority queue; here most of the volume is markers (the
    body's outside, the far voxels, the core), and a marker voxel with no unlabelled neighbour floods
    nothing. Leaving those out keeps the order of the rest (value, then age), so the labels are the same:
    identical on the five development scans' eight calls each and on the 60 constructed variations; the
    eight calls take 0.4-0.7 s of CPU on a CHAOS scan instead of 2.7-3.5 s (``bench/RESULTS.md``, tenth stop).
    """
    from skimage.segmentation import watershed

    region = ndi.binary_dilation(markers == 0)
    return np.where(region, watershed(elevation, markers, mask=region, connectivity=1), markers)


def _grow(grid: _WorkGrid, seed: np.ndarray, params: MRLiverParams):
    """Region competition from ``seed``; returns (liver, intensity field, residual SD) on the coarse grid."""
    ls, body, sp = grid.log_image, grid.body, grid.spacing_mm
    grad = _grid.gradient_magnitude(ls, sp, params.gradient_sigma_mm)
    liver = seed
    for order in (1, 2, 2):
        field, sd = _fit_field(ls, liver, sp, order)
        field += _slice_offsets(ls - field, liver)[None, None, :]
        resid = ls - field
        half = max(params.window_k_sd * sd, params.window_min_log)
        window = body & (resid < half) & (resid > -half - params.window_dark_extra_log)
        labels, n = morph.components(morph.erode(window, params.core_erode_mm, _in_plane(sp)))
        own = np.unique(labels[(seed | morph.erode(liver, params.core_erode_mm, _in_plane(sp))) & (labels > 0)])
        markers = np.zeros(ls.shape, np.uint32)
        markers[(body & (np.abs(resid) > params.far_log)) | ~body] = 1
        others = np.setdiff1d(np.arange(1, n + 1), own)
        lut = np.zeros(n + 1, np.uint32)
        lut[others] = np.arange(3, 3 + len(others))
        markers = np.where(lut[labels] > 0, lut[labels], markers)
        markers[seed] = 2
        ws = _watershed(grad, markers)
        liver = morph.fill_holes(morph.reconstruct(seed, (ws == 2) & window), per_slice=True)
    return liver, field, sd


def _nest(liver: np.ndarray, spacing_mm, params: MRLiverParams, *, caudal: bool = True) -> np.ndarray:
    """Keep each slice's liver where it lies within reach of the slice nearer the widest one; ``caudal``
    False: below the widest slice the opening of above it, nothing given back (the leak's pieces left)."""
    sp2 = spacing_mm[:2]
    areas = liver.sum(axis=(0, 1))
    if not areas.any():
        return liver
    widest = int(np.argmax(areas))
    kept = np.zeros_like(liver)
    kept[:, :, widest] = liver[:, :, widest]
    for step, open_mm in ((1, params.nest_open_mm), (-1, params.nest_open_below_mm if caudal else params.nest_open_mm)):
        z = widest + step
        while 0 <= z < liver.shape[2] and kept[:, :, z - step].any():
            reach = morph.dilate(kept[:, :, z - step], params.nest_margin_mm, sp2)
            labels, n = morph.components(morph.open_(liver[:, :, z], open_mm, sp2), 4)
            inside = np.bincount(labels[reach], minlength=n + 1)
            total = np.bincount(labels.ravel(), minlength=n + 1)
            ok = inside >= params.nest_overlap_fraction * total
            ok[0] = False
            kept[:, :, z] = ok[labels] & reach
            if step == 1 and params.dome_one_piece:  # under the diaphragm the liver rises as one piece
                kept[:, :, z] = morph.largest_component(kept[:, :, z], 4)
            if step == -1 and caudal:  # what the opening shaved off the kept pieces back, under the slice above's liver
                under = liver[:, :, z] & (kept[:, :, z + 1] | kept[:, :, z])
                kept[:, :, z] = morph.reconstruct(kept[:, :, z], under, 4)
            z += step
    return kept


def _dome(liver: np.ndarray, grid: _WorkGrid, field: np.ndarray, params: MRLiverParams):
    """Add the darker partial-volume rim of the right dome above the widest slice (step 5 of the
    module's docstring); returns the liver and the field, lowered on the slices that took a rim."""
    if not params.dome_min_fraction:
        return liver, field
    ls, body, sp2 = grid.log_image, grid.body, grid.spacing_mm[:2]
    areas = liver.sum(axis=(0, 1))
    if not areas.any():
        return liver, field
    cx = float(np.average(np.arange(body.shape[0]), weights=body.sum(axis=(1, 2))))
    right = (np.arange(body.shape[0]) >= cx)[:, None]
    out, field = liver.copy(), field.copy()
    lo = np.log(params.dome_min_fraction)
    top = int(np.flatnonzero(areas)[-1])
    for z in range(int(np.argmax(areas)) + 1, min(top + 2, liver.shape[2])):  # at most one slice above the top
        foot = morph.erode(out[:, :, z - 1], params.dome_inset_mm, sp2) & right
        if not foot.any():
            break
        if out[:, :, z].sum() >= params.dome_shrink_fraction * out[:, :, z - 1].sum():
            continue  # not at the dome: the liver does not end here
        res = ls[:, :, z] - field[:, :, z]
        cand = foot & body[:, :, z] & ~out[:, :, z] & (res > lo) & (res < -params.window_min_log)
        cand = morph.open_(cand, params.dome_open_mm, sp2)
        # the rim surrounds the slice's liver; above its top slice it is the cap itself
        here = out[:, :, z]
        cand = morph.reconstruct(ndi.binary_dilation(here) & cand | here, cand | here, 4) & cand if here.any() \
            else morph.largest_component(cand, 4) if cand.any() else cand
        if cand.any():
            out[:, :, z] |= cand
            # the slice's liver is darker (partial volume with the lung): its field follows
            field[:, :, z] += min(float(np.median(res[out[:, :, z]])), 0.0)
    return out, field


def _dome_slices(liver: np.ndarray, params: MRLiverParams) -> np.ndarray:
    """Axial slices above the widest one where ``liver`` shrinks to less than ``cut_dome_shrink_fraction`` of
    the slice below (the dome ending under the lung)."""
    areas = liver.sum(axis=(0, 1))
    dome = np.zeros(len(areas), bool)
    above = np.arange(int(np.argmax(areas)) + 1, len(areas))
    dome[above] = areas[above] < params.cut_dome_shrink_fraction * areas[above - 1]
    return dome


def _graph_cut(liver: np.ndarray, grid: _WorkGrid, field: np.ndarray, seed: np.ndarray, params: MRLiverParams
               ) -> np.ndarray:
    """Move the liver's border to the cheapest closed surface near it (step 6 of the module's docstring).

    A minimum s-t cut (``scipy.sparse.csgraph.maximum_flow``) on the working grid within ``cut_band_mm``
    outside and ``cut_core_mm`` inside the border: the core (and the seed) is liver, the band's outer shell
    and the voxels farther than ``far_log`` from the field are not; a face between two voxels costs its area
    in mm² times ``exp(-d² / (2 cut_contrast_log²))``, ``d`` their log-intensity difference. The cut takes
    the smoothest surface across the weakest edges (boundary and smoothness, no intensity model).
    """
    if not params.cut_contrast_log or not liver.any():
        return liver
    from scipy import sparse
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    ls, sp, ip = grid.log_image, grid.spacing_mm, _in_plane(grid.spacing_mm)
    band = morph.dilate(liver, params.cut_band_mm, ip) & grid.body
    core = morph.erode(liver, params.cut_core_mm, ip)
    if params.cut_core_caudal_mm:  # below the widest slice the core stops cut_core_caudal_mm above the lower surface
        widest = int(np.argmax(liver.sum(axis=(0, 1))))
        stretched = (sp[0], sp[1], sp[2] * params.cut_core_mm / params.cut_core_caudal_mm)
        core[:, :, :widest] &= morph.erode(liver, params.cut_core_mm, stretched)[:, :, :widest]
    core = (core | seed) & liver
    far = np.abs(ls - field) > params.far_log
    if params.cut_dome_shrink_fraction:  # where the dome ends under the lung its darker border is the edges' to judge
        far &= ~((ls < field) & _dome_slices(liver, params)[None, None, :])
    outside = band & ~morph.dilate(liver, params.cut_band_mm - sp[0], ip) | band & far & ~core
    nodes = band & ~ndi.binary_erosion(core)  # the core's inside joins the source through its surface voxels
    index = np.full(ls.shape, -1, np.int64)
    n = int(np.count_nonzero(nodes))
    index[nodes] = np.arange(n)
    rows, cols, caps = [], [], []
    for ax in range(3):
        lo = tuple(slice(0, -1) if a == ax else slice(None) for a in range(3))
        hi = tuple(slice(1, None) if a == ax else slice(None) for a in range(3))
        i, j = index[lo], index[hi]
        pair = (i >= 0) & (j >= 0)
        d = (ls[lo] - ls[hi])[pair]
        face_mm2 = float(np.prod(sp)) / sp[ax]
        w = np.rint(face_mm2 * np.exp(-d * d / (2.0 * params.cut_contrast_log ** 2))).astype(np.int32)
        rows += [i[pair], j[pair]]
        cols += [j[pair], i[pair]]
        caps += [w, w]
    hard = np.int32(2 ** 24)  # more than any surface here: |faces| x 60 mm2
    source, sink = index[core & nodes], index[outside & nodes & ~core]
    rows += [np.full(source.size, n), sink]
    cols += [source, np.full(sink.size, n + 1)]
    caps += [np.full(source.size, hard, np.int32), np.full(sink.size, hard, np.int32)]
    graph = sparse.csr_matrix((np.concatenate(caps), (np.concatenate(rows), np.concatenate(cols))), shape=(n + 2, n + 2))
    flow = maximum_flow(graph, n, n + 1, method="dinic").flow
    residual = (graph - flow).tocsr()
    residual.data = (residual.data > 0).astype(np.int8)
    residual.eliminate_zeros()
    side = np.zeros(n + 2, bool)
    side[breadth_first_order(residual, n, directed=True, return_predecessors=False)] = True
    out = core.copy()
    out[nodes] = side[:n]
    return morph.fill_holes(out, per_slice=True)


def _at_least_4(extent: slice, size: int) -> slice:
    """``extent`` widened to four voxels within ``size``: ITK's recursive Gaussians need four a side (a
    mask on the scan's last two slices)."""
    start = max(0, min(extent.start, size - 4))
    return slice(start, min(size, max(extent.stop, start + 4)))


def _refine_full(img, grid: _WorkGrid, liver_small, field_small, sd, params: MRLiverParams) -> np.ndarray:
    """Up-sample the coarse mask and snap its border to the full-resolution intensities."""
    out = np.zeros(img.shape, dtype=bool)
    cbox = bounding_box(liver_small, pad=(3, 3, 1))
    if is_empty_box(cbox):
        return out
    cbox = tuple(_at_least_4(c, n) for c, n in zip(cbox, liver_small.shape))
    f = grid.factors
    box = tuple(slice(c.start * k, min(c.stop * k, n)) for c, k, n in zip(cbox, f, img.shape))
    shape = tuple(b.stop - b.start for b in box)
    if f == (1, 1, 1):
        sub = liver_small[cbox].copy()
        field = field_small[cbox]
    else:
        smooth = _grid.gaussian(liver_small[cbox].astype(np.float32), (1, 1, 1), 0.7)
        sub = _grid.upsample(smooth, f, shape) > 0.5
        field = _grid.upsample(field_small[cbox], f, shape)
    if not params.band_mm:
        out[box] = sub
        return out
    full_sp = tuple(s / k for s, k in zip(grid.spacing_mm, f))
    floor = max(grid.body_level - grid.air_level, 1e-3)
    ls = np.log(np.maximum(img[box] - grid.air_level, floor))
    grad = _grid.gradient_magnitude(ls, _in_plane(full_sp)[:2] + (full_sp[2],), params.refine_sigma_mm)
    markers = np.zeros(shape, np.uint8)
    markers[~morph.dilate(sub, params.band_mm, _in_plane(full_sp))] = 1
    far = np.abs(ls - field) > params.far_log
    if params.snap_lung_above_log and params.cut_dome_shrink_fraction:  # a voxel part liver, part the lung above it
        res = ls - field
        up = np.concatenate([res[:, :, 1:], np.zeros(res.shape[:2] + (1,), res.dtype)], axis=2)
        dome = np.repeat(_dome_slices(liver_small, params), f[2])[: img.shape[2]][box[2]]
        far &= ~((res < 0) & (up < -params.snap_lung_above_log) & dome[None, None, :])
    markers[far] = 1
    markers[morph.erode(sub, params.band_mm, _in_plane(full_sp))] = 2
    ws = _watershed(grad, markers)
    new = morph.open_(ws == 2, 1.5, _in_plane(full_sp)) | (markers == 2)
    out[box] = morph.fill_holes(new, per_slice=True)
    return out


def _contrast(grid: _WorkGrid, liver_small: np.ndarray, params: MRLiverParams) -> dict:
    """Subcutaneous fat vs liver brightness over the liver's slices: which contrast this scan has."""
    zs = np.flatnonzero(liver_small.any(axis=(0, 1)))
    depth = morph._dist_inside(grid.body, _in_plane(grid.spacing_mm))
    shell = grid.body & (depth > grid.spacing_mm[0]) & (depth < 12.0)
    shell[:, :, : zs[0]] = False
    shell[:, :, zs[-1] + 1:] = False
    if not shell.any():
        return {"kind": "not recognised", "subcutaneous_fat_to_liver_ratio": None}
    ratio = float(np.exp(np.median(grid.log_image[shell]) - np.median(grid.log_image[liver_small])))
    if ratio <= params.fat_suppressed_max_ratio:
        kind = "fat-suppressed T2-weighted (fat darker than liver)"
    elif ratio >= params.bright_fat_min_ratio:
        kind = "T1-weighted, bright fat"
    else:
        kind = "not recognised"
    return {"kind": kind, "subcutaneous_fat_to_liver_ratio": round(ratio, 3)}


def _near_skin_fraction(grid: _WorkGrid, liver_small: np.ndarray, params: MRLiverParams) -> float:
    """Share of the mask within ``skin_depth_mm`` (in-plane) of the body's outline."""
    if not liver_small.any():
        return 0.0
    depth = morph._dist_inside(grid.body, _in_plane(grid.spacing_mm))
    return round(float(np.mean(depth[liver_small] < params.skin_depth_mm)), 3)


def _describe(grid: _WorkGrid, liver_small, seed, field_small, sd, params) -> dict:
    liver_values = grid.log_image[liver_small] if liver_small.any() else grid.log_image[seed]
    return {
        "mr_contrast": _contrast(grid, liver_small if liver_small.any() else seed, params),
        "liver_median_intensity": round(float(np.exp(np.median(liver_values)) + grid.air_level), 2),
        "liver_residual_sd_log": round(float(sd), 4),
        "air_level_intensity": round(grid.air_level, 2),
        "seed_volume_ml": round(float(np.count_nonzero(seed)) * voxel_volume_ml(grid.spacing_mm), 1),
        "working_spacing_mm": [round(s, 3) for s in grid.spacing_mm],
        "_right_offset_mm": grid.right_of_centre_mm(liver_small) if liver_small.any() else None,
        "liver_near_skin_fraction": _near_skin_fraction(grid, liver_small, params),
    }


def _self_check(grid: _WorkGrid, seed, liver_small, params: MRLiverParams, *, rank: int, cut_by_scan: bool,
                fragmented: float, side_cut: float) -> dict:
    """Checks with a physical meaning on a liver that passed :func:`_qc`; a failed one marks it unverified.

    * ``liver_candidate``: the best-scoring seed gave the liver (``rank`` 1);
    * ``liver_stability_dice``: the liver grown again with a window ``stability_delta_log`` wider
      agrees with it (a border on real edges moves little; one touching tissue as bright as the liver,
      or fading, moves);
    * ``fragmented_slice_fraction`` (``fragmented``, from :func:`fragmented_slice_fraction` on the mask
      nested without the caudal cleaning, which removes the pieces it reads): the liver is one organ; an
      axial slice cuts it into several pieces near the dome and the tips of its lobes,
      a mask in pieces on most of its slices took pieces of bowel, fat or vessels beside it;
    * ``slice_thickness_mm``: within the range the method was developed on (thicker slices blur the
      border with the heart and bowel into a leak no other check sees);
    * ``side_section_fraction`` (``side_cut``, from :func:`border_section_fraction` across the
      right-left and anterior-posterior axes): the field of view's side cuts the liver through a wide
      section; its volume is incomplete and the body's centre, which the shape priors measure from, is
      not the body's (a scan that cuts the liver at its top or bottom keeps the body's outline and is
      only flagged);
    * ``left_lobe_reach_mm``: a whole liver (not cut by the scan's ends) reaches left of the body's
      centre with its left lobe (segments II/III lie left of the falciform ligament); a mask that stops
      short lost it (or the lobe is absent: resected or atrophic).

    Returns
    -------
    dict
        JSON-ready: ``passed``, ``checks`` (``name``, ``value``, ``limit``, ``passed``), ``reasons`` (one
        sentence per failed check).
    """
    sp, body = grid.spacing_mm, grid.body
    slice_mm = sp[2] / grid.factors[2]
    wider = replace(params, window_min_log=params.window_min_log + params.stability_delta_log)
    grown, field, _ = _grow(grid, seed, wider)
    other, field = _dome(_nest(grown, sp, wider), grid, field, wider)
    other = _graph_cut(other, grid, field, seed, wider)
    agreement = 2.0 * np.count_nonzero(other & liver_small) / max(np.count_nonzero(other) + np.count_nonzero(liver_small), 1)
    zs = np.flatnonzero(liver_small.any(axis=(0, 1)))
    body_x = body[:, :, zs[0]: zs[-1] + 1].sum(axis=(1, 2))
    centre_x = float(np.average(np.arange(body.shape[0]), weights=body_x))
    left_reach_mm = (centre_x - float(np.flatnonzero(liver_small.any(axis=(1, 2)))[0])) * sp[0]
    checks = [
        ("liver_candidate", rank, 1, rank == 1,
         f"the best-scoring liver candidate failed the quality checks and candidate {rank} was taken"),
        ("liver_stability_dice", round(float(agreement), 3), params.min_stability_dice,
         agreement >= params.min_stability_dice,
         f"the liver's border is unstable: a {params.stability_delta_log:g} wider intensity window changes the mask "
         f"(Dice {agreement:.3f} between the two): it touches tissue as bright as the liver, or fades"),
        ("fragmented_slice_fraction", round(fragmented, 3), params.max_fragmented_slice_fraction,
         fragmented <= params.max_fragmented_slice_fraction,
         f"the mask is in several pieces on {fragmented:.0%} of its slices: it takes pieces of the tissue beside the "
         "liver (bowel, fat, vessels)"),
        ("side_section_fraction", round(side_cut, 3), params.min_border_section_fraction,
         side_cut < params.min_border_section_fraction,
         f"the field of view's side cuts the liver (its section there is {side_cut:.0%} of its widest): its volume "
         "is incomplete and the body's centre, which the shape priors measure from, is shifted"),
        ("slice_thickness_mm", round(slice_mm, 2), params.max_slice_thickness_mm,
         slice_mm <= params.max_slice_thickness_mm,
         f"slices {slice_mm:.1f} mm apart (developed on 3-7.7 mm slices, limit {params.max_slice_thickness_mm:g} mm): "
         "the liver's border with the heart, the bowel and the lung at the dome is not resolved"),
    ]
    if not cut_by_scan:
        checks.append(("left_lobe_reach_mm", round(left_reach_mm, 1), params.min_left_lobe_reach_mm,
                       left_reach_mm >= params.min_left_lobe_reach_mm,
                       f"the mask reaches only {left_reach_mm:.0f} mm left of the body's centre: the left lobe is "
                       "missing (lost by the segmentation, or resected or atrophic)"))
    fix = "; check the mask, or give a liver mask made elsewhere (--liver FILE)"
    return {"passed": all(c[3] for c in checks),
            "checks": [{"name": n, "value": v, "limit": lim, "passed": bool(ok)} for n, v, lim, ok, _ in checks],
            "reasons": [why + fix for *_, ok, why in checks if not ok]}


def fragmented_slice_fraction(liver: np.ndarray, factors) -> float:
    """Share of the liver's axial slices where it is in more than one piece (4-connected), on the
    working grid (``liver`` block-averaged by ``factors``, then > 0.5)."""
    small = _grid.block_mean(liver, factors) > 0.5
    zs = np.flatnonzero(small.any(axis=(0, 1)))
    if not zs.size:
        return 0.0
    return float(np.mean([morph.components(small[:, :, z], 4)[1] > 1 for z in zs]))


def border_section_fraction(liver: np.ndarray, axis: int) -> float:
    """The liver's larger cross-section in the scan's first or last plane across ``axis``, as a share of
    its widest cross-section across that axis (0: the scan does not cut it)."""
    areas = liver.sum(axis=tuple(a for a in range(3) if a != axis))
    return float(max(areas[0], areas[-1]) / max(areas.max(), 1))


def _cut_by_scan_end(liver: np.ndarray, params: MRLiverParams) -> bool:
    """The scan's first or last slice cuts the liver through a wide cross-section (not grazing it)."""
    return border_section_fraction(liver, 2) >= params.min_border_section_fraction


def _qc(liver: np.ndarray, info: dict, grid: _WorkGrid, spacing, params: MRLiverParams) -> None:
    """Quality flags; ``qc_passed`` is False when the mask is not a credible liver."""
    flags, fail = info["qc_flags"], []
    for ax, name in enumerate(("right-left", "anterior-posterior", "superior-inferior")):
        proj = liver.any(axis=tuple(a for a in range(3) if a != ax))
        if proj.size and (proj[0] or proj[-1]):
            flags.append(f"liver touches the scan border ({name} axis): volume may be incomplete")
    partial = _cut_by_scan_end(liver, params)
    vol = info["liver_volume_ml"]
    right_mm = info.pop("_right_offset_mm")
    if right_mm is not None:
        info["liver_centre_right_of_body_mm"] = round(right_mm, 1)
    more_flags, more_fail = liver_plausibility(
        vol, right_mm, partial=partial, volume_range_ml=params.volume_range_ml,
        min_partial_ml=params.min_partial_volume_ml, min_right_offset_mm=params.min_right_offset_mm)
    flags.extend(more_flags)
    fail.extend(more_fail)
    near_skin = info["liver_near_skin_fraction"]
    if near_skin > params.max_near_skin_fraction:
        fail.append(f"{near_skin:.0%} of the liver candidate lies within {params.skin_depth_mm:g} mm of the skin (a liver "
                    f"lies inside the abdominal wall; at most {params.max_near_skin_fraction:.0%}): it is the wall")
    contrast = info["mr_contrast"]
    if contrast["kind"] == "not recognised":
        ratio = contrast["subcutaneous_fat_to_liver_ratio"]
        fail.append(
            f"MR contrast not recognised: subcutaneous fat / liver intensity {'unknown' if ratio is None else f'{ratio:.2f}'} "
            f"(developed on fat-suppressed T2, <= {params.fat_suppressed_max_ratio}, and T1 with bright fat, "
            f">= {params.bright_fat_min_ratio}; opposed-phase, diffusion or other contrasts are not supported)"
        )
    flags.extend(fail)
    info["qc_passed"] = not fail
