"""Tuned values of the Couinaud division, in one frozen, documented parameter object.

:class:`CouinaudParams` groups one frozen dataclass per step (analysis grid, IVC, portal tree,
hepatic-vein trunks, scissurae, umbilical fissure, transverse planes, caudate). Every field carries
its unit in its name (``_mm``, ``_deg``, ``_ml``; ``_fraction`` is 0-1, ``_radii`` counts IVC radii)
and its docstring says where the value came from: anatomy, or "chosen on IRCADb 01-12" with the
leave-one-out figure from ``bench/RESULTS.md`` (section "Couinaud segments"). The defaults are the
values the benchmark table was measured with. ``dataclasses.asdict(params)`` is JSON-ready and is
written into the outputs' provenance.

Orientation conventions the values assume: canonical RAS+ arrays (axis 0 -> patient Right, 1 ->
Anterior, 2 -> Superior); axial angles from +x (Right) toward +y (Anterior), in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AnalysisParams:
    """Crop and analysis grid, and the check that the vessels belong to the liver.

    Attributes
    ----------
    analysis_spacing_mm : float
        Vessels are analysed on a grid of about this spacing, by integer block max-pooling
        (landmarks are millimetre-scale; keeps a study near 1 s).
    crop_margin_mm : float
        Margin around the liver's bounding box: keeps the hilum and the IVC next to the liver.
    near_liver_mm : float
        A vessel voxel counts as "at the liver" within this distance of liver tissue.
    min_fraction_near_liver : float
        Below this share (0-1) of vessel voxels at the liver, a mask is rejected as lying outside it.
    """

    analysis_spacing_mm: float = 1.2
    crop_margin_mm: float = 15.0
    near_liver_mm: float = 8.0
    min_fraction_near_liver: float = 0.25


@dataclass(frozen=True)
class IVCParams:
    """Tracking of the inferior vena cava (:func:`hepatoplan.couinaud.landmarks.ivc_axis`).

    Attributes
    ----------
    min_radius_mm : float
        Smallest in-plane radius of a cross-section taken for the IVC (anatomy: the retrohepatic
        IVC is 20-30 mm wide; 4 mm admits a compressed or partly masked one).
    candidates_per_slice : int
        Largest inscribed discs offered per axial slice.
    suppression_margin_mm : float
        Around a chosen disc, a circle of 2 radii plus this margin is not offered again.
    max_gap_slices : int
        The chain may skip up to this many slices minus one (small gaps in the mask).
    max_step_mm : float
        Slice-to-slice continuity: centres may move this much ...
    max_tilt_mm_per_mm : float
        ... plus this much per mm of height (the IVC is close to vertical); also the steepest
        slope accepted for the fitted axis.
    min_fit_length_mm : float
        A chain shorter than this gives no slope: the axis is taken vertical (a 16 mm piece at
        the dome of IRCADb 01 on 3.2 mm slices tilted the axis 40 mm off).
    min_span_for_slope_mm : float
        While trimming outliers, a chain spanning less height than this is fitted vertical.
    trim_residual_mm : float
        Centres farther than this from the fitted line (or ``trim_residual_radius_fraction`` of
        the median radius, whichever is larger) are dropped and the line refitted.
    trim_residual_radius_fraction : float
        See ``trim_residual_mm``.
    reach_below_bifurcation_mm : float
        The chain must reach up to this far below the portal bifurcation (the scissurae hinge on
        the IVC there; a low thick piece such as a kidney's upper pole in an automatic mask is not
        taken for it). Chosen on IRCADb 01/07 automatic masks; manual IRCADb 01-12 unchanged.
    centre_window_mm : float
        The IVC centre at a height is the mean of the tracked centres within this distance.
    """

    min_radius_mm: float = 4.0
    candidates_per_slice: int = 3
    suppression_margin_mm: float = 5.0
    max_gap_slices: int = 3
    max_step_mm: float = 3.0
    max_tilt_mm_per_mm: float = 0.35
    min_fit_length_mm: float = 40.0
    min_span_for_slope_mm: float = 10.0
    trim_residual_mm: float = 4.0
    trim_residual_radius_fraction: float = 0.5
    reach_below_bifurcation_mm: float = 20.0
    centre_window_mm: float = 20.0


@dataclass(frozen=True)
class PortalParams:
    """Landmarks of the portal tree (:func:`hepatoplan.couinaud.landmarks.portal_landmarks`).

    Attributes
    ----------
    min_skeleton_nodes : int
        Fewer skeleton voxels than this: no tree can be built.
    intrahepatic_margin_mm : float
        A skeleton node counts as intrahepatic within its radius plus this of liver tissue.
    main_branch_fraction : float
        A branch is a main branch when it carries this share (0-1) of the intrahepatic portal
        volume (radius^2-weighted skeleton length).
    root_radius_fraction : float
        The root is the most caudal node at least this fraction as thick as the thickest.
    lpv_length_mm : float
        Length of the left portal vein followed from the bifurcation (transverse and umbilical
        part; anatomy: 30-40 mm transverse, 30-40 mm umbilical).
    rpv_length_mm : float
        Length of the right portal vein followed (its horizontal first part; anatomy: 20-30 mm).
    lpv_radius_length_mm : float
        The left portal vein's own radius is the median over its first this many mm.
    umbilical_radius_fraction : float
        Umbilical portion: left-portal nodes at least this fraction of that radius ...
    umbilical_min_nodes : int
        ... and at least this many of them to fit its direction.
    umbilical_front_mm : float
        The umbilical portion's anterior part, where the umbilical fissure's prior passes: the
        radius²-weighted centroid of those thick left-portal nodes lying at least this far in front
        of the bifurcation (at least 3 of them), which segment 4's thick branches near the
        bifurcation no longer pull toward it. Chosen on IRCADb 01-12 from 10 / 20 mm with the radius
        fraction 0.5 / 0.6 / 0.7 (and against the old prior): every leave-one-out fold picks 20 mm
        and 0.6, leave-one-out mean Dice 0.838 (old prior 0.8225, in-sample); with the vein band and share
        weight also chosen leave-one-out 0.830 (bench/RESULTS.md, Couinaud from one combined mask, round 7).
    umbilical_run_max_tilt_deg : float
        The umbilical run on the left portal path heads within this angle of straight anterior ...
    umbilical_chord_mm : float
        ... measured over chords of this length.
    disconnected_warning_fraction : float
        A warning when more than this share (0-1) of the intrahepatic portal volume is not
        connected to the main tree.
    """

    min_skeleton_nodes: int = 10
    intrahepatic_margin_mm: float = 3.0
    main_branch_fraction: float = 0.12
    root_radius_fraction: float = 0.6
    lpv_length_mm: float = 90.0
    rpv_length_mm: float = 30.0
    lpv_radius_length_mm: float = 15.0
    umbilical_radius_fraction: float = 0.6
    umbilical_min_nodes: int = 8
    umbilical_front_mm: float = 20.0
    umbilical_run_max_tilt_deg: float = 45.0
    umbilical_chord_mm: float = 6.0
    disconnected_warning_fraction: float = 0.2


@dataclass(frozen=True)
class HepaticParams:
    """Hepatic-vein trunk azimuths around the IVC (:func:`hepatoplan.couinaud.landmarks.hepatic_trunks`).

    Attributes
    ----------
    ring_mm : (float, float)
        Skeleton nodes between these distances beyond the IVC wall vote for trunk azimuths.
    max_radius_ivc_fraction : float
        Voting nodes are thinner than this fraction of the IVC radius (the IVC itself is not a trunk).
    histogram_bin_deg : float
        Azimuth histogram bin width (smoothed over three bins either side, weights 1-2-3-2-1).
    peak_min_fraction : float
        A peak holds at least this fraction (0-1) of the highest bin.
    refine_window_deg : float
        A peak's azimuth is refined as the weighted mean of the votes within this angle.
    right_window_deg, middle_window_deg, left_window_deg : (float, float)
        Azimuth windows searched for the right, middle and left hepatic veins (anatomy).
    min_trunk_separation_deg : float
        Least angle between neighbouring trunks (and between the right and middle scissurae).
    planarity_window_deg : float
        A trunk's planarity is measured over the skeleton within this angle of its azimuth ...
    planarity_tolerance_mm : float
        ... as the share (radius^2-weighted) within this distance (about a trunk radius) of one
        vertical half-plane from the IVC axis at that azimuth.
    """

    ring_mm: tuple[float, float] = (5.0, 60.0)
    max_radius_ivc_fraction: float = 0.8
    histogram_bin_deg: float = 5.0
    peak_min_fraction: float = 0.1
    refine_window_deg: float = 10.0
    right_window_deg: tuple[float, float] = (-60.0, 50.0)
    middle_window_deg: tuple[float, float] = (20.0, 125.0)
    left_window_deg: tuple[float, float] = (100.0, 225.0)
    min_trunk_separation_deg: float = 25.0
    planarity_window_deg: float = 25.0
    planarity_tolerance_mm: float = 3.0


@dataclass(frozen=True)
class ScissuraParams:
    """The right and middle scissurae: vertical planes hinged on the IVC axis.

    Attributes
    ----------
    prior_middle_deg : float
        Prior angle of the middle scissura (Cantlie's line, from the IVC toward the gallbladder
        fossa); the IRCADb reference plane has this orientation on every case, 40 +- 5 deg.
    middle_offset_ivc_radii : float
        The middle scissura passes this many IVC radii anterior-left of the IVC centre (the middle
        hepatic vein joins the IVC on its anterior-left wall).
    prior_right_deg : float
        Prior angle of the right scissura: coronal through the IVC centre (the reference puts it
        there within ~5 mm on 10 of 12 IRCADb cases).
    trunk_planar_low, trunk_planar_high : float
        A trunk's in-plane share (0-1, see :class:`HepaticParams`) at or below ``low``: the prior
        decides; at or above ``high``: the vein does; linear blend between. On IRCADb 01-12 the
        share is at most 0.64, on the data_samples phantom (veins in their scissurae) >= 0.78.
    vein_band_mm : float
        Where the prior decides an angle, the plane moves onto the median of the venous voxels
        within this distance of it. Chosen on IRCADb 01-12 among 8/12/16/20 mm: leave-one-out
        picks 8 mm on 10 of 12 folds, leave-one-out mean Dice 0.798 vs 0.804 in-sample. On the
        current code, jointly with ``TransverseParams.share_height_weight`` (8 / 12 / 16 mm x 0.5 /
        0.75): 8 and 12 mm at 0.5 tie in-sample (0.8225), the folds split 5 / 7 between them,
        leave-one-out 0.8195 (``bench/bench_couinaud_loo.py``).
    vein_band_min_ml : float
        ... using at least this much venous volume in the band, else the prior position stays.
    vein_band_ring_mm : (float, float)
        ... counting venous voxels between these distances beyond the IVC wall.
    vein_band_below_right_plane_mm : float
        ... from this far below the right transverse plane up.
    min_segment_4_fraction : float
        A middle scissura taken (partly) from a trunk that leaves segment 4 less than this share of
        the liver is taken from its prior instead, with a warning (the trunk was the left hepatic
        vein's: IRCADb 02 with thinned vessels, segment 4 empty). Half the smallest share of segment 4
        in the IRCADb reference (0.079-0.267 over 01-12); a guard, not fitted on Dice.
    """

    prior_middle_deg: float = 40.0
    middle_offset_ivc_radii: float = 1.5
    prior_right_deg: float = 0.0
    trunk_planar_low: float = 0.65
    trunk_planar_high: float = 0.75
    vein_band_mm: float = 8.0
    vein_band_min_ml: float = 0.5
    vein_band_ring_mm: tuple[float, float] = (10.0, 70.0)
    vein_band_below_right_plane_mm: float = 10.0
    min_segment_4_fraction: float = 0.04


@dataclass(frozen=True)
class UmbilicalParams:
    """The umbilical fissure (segment 4 vs 2/3): a vertical plane.

    The detected umbilical portion is trusted by the product of four linear ramps, each reaching 0
    at its limit and 1 one ramp width inside it (see ``segment._umbilical_confidence``).

    Attributes
    ----------
    prior_deg : float
        Prior angle (anterior, slightly to the right; the reference fissures lie at 61-93 deg on
        11 of the 12 IRCADb cases).
    prior_offset_mm : float
        Prior position: this far to the patient's left of the portal bifurcation (on IRCADb rms
        12.6 mm from the reference, better than the vessel estimates tried).
    max_rms_mm, rms_ramp_mm : float
        The run is straight: rms distance from its line at most ``max_rms_mm`` (full weight),
        none at ``max_rms_mm + rms_ramp_mm``.
    min_length_mm, length_ramp_mm : float
        At least ``min_length_mm`` long (none at ``min_length_mm - length_ramp_mm``).
    min_left_mm, left_ramp_mm : float
        Its line crosses the bifurcation's coronal level at least ``min_left_mm`` to the
        patient's left of it (reached after a transverse part).
    max_turn_deg, turn_ramp_deg : float
        It heads within ``max_turn_deg`` of the prior's direction (full weight ``turn_ramp_deg``
        less); a run far outside follows a segment 2 or 3 branch.
    """

    prior_deg: float = 74.0
    prior_offset_mm: float = 25.0
    max_rms_mm: float = 1.2
    rms_ramp_mm: float = 0.4
    min_length_mm: float = 20.0
    length_ramp_mm: float = 5.0
    min_left_mm: float = 10.0
    left_ramp_mm: float = 5.0
    max_turn_deg: float = 30.0
    turn_ramp_deg: float = 10.0


@dataclass(frozen=True)
class TransverseParams:
    """The axial planes 5|8, 6|7 (right) and 2|3, 4a|4b (left).

    Attributes
    ----------
    section_share_below_right_fraction : float
        Share (0-1) of the right anterior section (5 + 8) below the 5|8 plane in the IRCADb
        reference: 0.42, SD 0.04 over cases 01-12.
    section_share_below_left_fraction : float
        Share of the left lateral section (2 + 3) below the 2|3 plane: 0.30, SD 0.06.
    share_height_weight : float
        Each plane moves this far (0-1) from its portal vein's height toward the share's height.
        Chosen on IRCADb 01-12 among 0 / 0.5 / 0.75 / 1 (0.809 / 0.823 / 0.821 / 0.817 in-sample);
        with the shares chosen leave-one-out 0.822.
    share_height_weight_separated : float
        The same weight when the trees were separated from one combined vessel mask
        (:func:`~hepatoplan.couinaud.segment_couinaud_from_vessels`): their portal heights rest on a
        separation and an expected bifurcation, so the shares count more. Chosen on IRCADb 01-12
        (combined mask) by leave-one-out among 0.5 / 0.625 / 0.75 / 0.875 / 1: mean Dice in-sample
        0.8086 / 0.8107 / 0.8121 / 0.8130 / 0.8119, leave-one-out 0.8106 (11 folds choose 0.875, 06's
        0.625), against 0.8086 for the separate masks' 0.5 (not chosen on these). A flat range: over
        0.5 / 0.75 / 1 alone the leave-one-out is 0.8072 (bench/RESULTS.md, tenth stop).
    """

    section_share_below_right_fraction: float = 0.42
    section_share_below_left_fraction: float = 0.30
    share_height_weight: float = 0.5
    share_height_weight_separated: float = 0.875


@dataclass(frozen=True)
class CaudateParams:
    """The caudate lobe (1): an axis-aligned box around the IVC and the portal bifurcation.

    Chosen on IRCADb 01-12 by a grid over left 20-35, right 10-35 mm of the IVC or 0-15 mm of the
    bifurcation, behind 0-1 IVC radii, front -10..10, below 5-30, above 20-50 mm: in-sample mean
    Dice 0.809, leave-one-out 0.808 (bench/RESULTS.md).

    Attributes
    ----------
    below_bifurcation_mm, above_bifurcation_mm : float
        Height range around the bifurcation.
    left_of_ivc_mm : float
        Reach to the patient's left of the IVC axis.
    front_of_bifurcation_mm : float
        Reach in front of the bifurcation (the bifurcation and the transverse left portal vein lie
        on the caudate's anterior face).
    behind_ivc_radii : float
        The caudate starts this many IVC radii behind the IVC's centre line (it wraps around it).
    """

    below_bifurcation_mm: float = 20.0
    above_bifurcation_mm: float = 40.0
    left_of_ivc_mm: float = 30.0
    front_of_bifurcation_mm: float = 5.0
    behind_ivc_radii: float = 0.5


@dataclass(frozen=True)
class SeparationParams:
    """Separation of one combined vessel mask into portal and hepatic trees
    (:mod:`hepatoplan.couinaud.separate`). Heights are fractions (0-1) of the liver's voxels
    counted from below (``0.5`` = the height with half the liver under it).

    Values chosen on IRCADb 01-12 with (portal | hepatic) & liver as the only vessel mask, by
    trying a few values each (bench/bench_couinaud_vessels.py; bench/RESULTS.md has the figures);
    the others are anatomy.

    Attributes
    ----------
    groove_closing_mm : float
        The IVC lies in the liver's dorsal groove: non-liver pixels that an axial closing of the
        liver with a disc of this radius fills (anatomy: the IVC is 20-30 mm wide).
    groove_max_vessel_depth_mm : float
        Vessel voxels at most this deep (axially) inside the closed liver may also be the IVC (a
        liver mask that wraps the IVC holds it). Chosen among 15 / 20 / 25 mm: at 25 mm a hepatic
        trunk was taken for the IVC on case 04.
    ivc_reach_height_fraction : float
        The IVC chain must reach this height of the liver (it runs up to the dome).
    ivc_radius_floor_mm : float
        Seeds are placed around the IVC as if it had at least this radius (the groove sees only
        part of its cross-section; anatomy: retrohepatic IVC radius 8-15 mm).
    hepatic_seed_ring_mm : float
        Hepatic-vein roots: skeleton nodes within this distance beyond the IVC wall ...
    hepatic_seed_height_fraction : float
        ... above this height (the hepatic veins join the IVC under the diaphragm) ...
    hepatic_seed_min_radius_mm : float
        ... and at least this thick.
    portal_seed_min_radius_mm : float
        Portal roots: cut ends of vessels at least this thick at the liver's surface (where a
        vessel clipped to the liver leaves it at the hilum) ...
    portal_seed_ring_mm : float
        ... more than this beyond the IVC wall, in front of the IVC's centre ...
    portal_seed_max_height_fraction : float
        ... below this height ...
    portal_seed_max_vertical_cos : float
        ... and not running cranio-caudally: |cosine| of the angle between the vessel's direction
        there and the body's long axis at most this (1 turns the rule off). Anatomy: the portal
        branches leave the hilum across the liver; the hepatic veins run up to the IVC, and where one
        skims the visceral surface its nodes pass for cut ends (IRCADb 08, 12: 15 / 24 such roots).
        Right-tree share over IRCADb 01-12 for 1 / 0.95 / 0.9 / 0.85 / 0.8 / 0.75 / 0.5: 0.893 /
        0.894 / 0.904 / 0.909 / 0.913 / 0.911 / 0.911 (09 falls 0.822 -> 0.746 below 0.8);
        leave-one-out over that grid 0.903. 0.85 rather than 0.8: 0.05 from 09's fall, and 11's
        Dice drops at 0.8 (0.757 -> 0.736) ...
    portal_seed_vertical_beyond_mm : float
        ... a rule kept for the nodes farther than this from the expected bifurcation
        (:func:`~hepatoplan.couinaud.separate.bifurcation_prior`): near the hilum a cranio-caudal cut
        end is the portal trunk coming up. Made with IRCADb 05 in view: with every second slice
        ("thick" variant) its only good root runs nearly vertically (share 0.951 -> 0.722 without
        this); 30 mm gives 0.951, 20 mm 0.722. On the native cases 0 to 30 mm give the same
        separation on all 12 (leave-one-out = in-sample), 40 mm loses 08 and 10 (share 0.909 ->
        0.899).
    cut_end_depth_margin_mm : float
        A skeleton node is a cut end when its depth in the liver is at most its radius plus this.
    radius_cost_power : float
        Walking a vessel costs length / radius^power (thick trunks are cheap to follow).
    radius_increase_cost : float
        Extra cost per mm of radius gained along the walk: a tree thins from its root, so
        crossing into the other tree through a contact and on toward its trunk is expensive.
        Chosen among 4 / 12 / 30: 0.848 / 0.818 / 0.811 right-tree share.
    direction_cost : float
        A step costs up to (1 + this) times more when the vessel there does not point at the
        tree's root (hepatic veins point at the IVC confluence, portal branches at the hilum).
        Chosen among 0 / 2 / 5: 0.829 / 0.848 / 0.851.
    confluence_height_fraction : float
        The hepatic veins' confluence on the IVC axis at this height (anatomy: just under the dome).
    blob_max_liver_fraction : float
        A vessel mask filling more than this share of the liver is not a vessel tree (a liver
        mask given as vessels, a blob): refused.
    max_portal_volume_fraction : float
        Above this share (0-1) of the separated vessel volume in the portal tree the separation is
        implausible (IRCADb 01-12, (portal | hepatic) & liver: the portal vein holds 0.13-0.45; case
        06's wrong roots gave 0.64; the data_samples phantom's fat portal tree holds 0.49-0.54) ...
    implausible_confidence : float
        ... and its confidence is capped at this (below the 0.5 that warns).
    portal_one_piece_fraction : float
        When one 26-connected piece holds at least this share of the separated portal tree, the
        bifurcation is inside the mask and is found on the tree; otherwise the tree was cut at the
        hilum (IRCADb 01-12 clipped to the liver: the largest piece holds 0.33-0.79 on ten cases,
        0.99-1.0 on 02, 07 and the phantom) and the bifurcation comes from the prior below.
    bifurcation_right_of_ivc_mm, bifurcation_anterior_of_ivc_mm : float
        Where the portal bifurcation lies from the IVC's centre at its height, when the mask holds
        no portal trunk (:func:`~hepatoplan.couinaud.separate.bifurcation_prior`). Means over
        IRCADb 01-12 of the bifurcation found in the separate masks (SD 5.6 / 5.0 mm); mean
        leave-one-out error of the horizontal position 8.8 mm.
    bifurcation_max_offset_mm : float
        On an uncut portal tree, the bifurcation found on the tree is kept when it lies within this
        horizontal distance of the expected one (4 SD of the prior's scatter), else the tree is
        rooted at the expected one. The data_samples phantom's tree bifurcation lies 21 mm from the
        expected one (its bifurcation is 9 mm left of the IVC, IRCADb's 7-27 mm right), IRCADb 02's
        20 mm (the tree's is 19 mm from the separate masks' one, the prior's 4 mm), 07's 47 mm
        (the tree's 47 mm off, the prior's 4 mm): 25 mm keeps the phantom's own bifurcation.
    bifurcation_height_fraction : float
        ... at the height with this share of the liver's voxels below it (IRCADb 01-12: 0.35 +-
        0.06, leave-one-out mean absolute error 0.048).
    piece_root_ring_mm : float
        A piece of the vessel mask (26-connected) that holds no hepatic root gets one at its node
        nearest the IVC axis within this distance beyond the IVC wall (as the hepatic roots:
        ``ivc_radius_floor_mm`` at least), above ``hepatic_seed_height_fraction`` ... (0 turns the rule
        off). Anatomy: a hepatic trunk that the clipping to the liver cut off from the others still
        ends close to the IVC, behind the hilum. Made with IRCADb 06 in view (its right hepatic vein
        ends 28 mm from the inferred axis, in a piece with portal branches and no hepatic root:
        right-tree share 0.565 -> 0.942); it changes no other IRCADb case, so any value between
        20 and 40 mm gives the same figures and a leave-one-out choice cannot tell them apart.
    piece_root_min_radius_mm : float
        ... at least this thick (a trunk, not a peripheral branch) ...
    piece_root_front_mm : float
        ... and at most this far in front of the IVC axis (the portal vein enters in front of it).
    """

    groove_closing_mm: float = 15.0
    groove_max_vessel_depth_mm: float = 15.0
    ivc_reach_height_fraction: float = 0.6
    ivc_radius_floor_mm: float = 8.0
    hepatic_seed_ring_mm: float = 15.0
    hepatic_seed_height_fraction: float = 0.5
    hepatic_seed_min_radius_mm: float = 1.5
    portal_seed_min_radius_mm: float = 2.5
    portal_seed_ring_mm: float = 12.0
    portal_seed_max_height_fraction: float = 0.7
    portal_seed_max_vertical_cos: float = 0.85
    portal_seed_vertical_beyond_mm: float = 30.0
    cut_end_depth_margin_mm: float = 3.0
    radius_cost_power: float = 2.0
    radius_increase_cost: float = 1.0
    direction_cost: float = 2.0
    confluence_height_fraction: float = 0.85
    blob_max_liver_fraction: float = 0.3
    max_portal_volume_fraction: float = 0.6
    implausible_confidence: float = 0.3
    portal_one_piece_fraction: float = 0.9
    bifurcation_right_of_ivc_mm: float = 14.0
    bifurcation_anterior_of_ivc_mm: float = 25.0
    bifurcation_height_fraction: float = 0.35
    bifurcation_max_offset_mm: float = 25.0
    piece_root_ring_mm: float = 30.0
    piece_root_min_radius_mm: float = 3.0
    piece_root_front_mm: float = 0.0


@dataclass(frozen=True)
class CouinaudParams:
    """Every tuned value of :func:`hepatoplan.couinaud.segment_couinaud`, one group per step.

    Override one value with :func:`dataclasses.replace`, e.g.
    ``replace(p, caudate=replace(p.caudate, above_bifurcation_mm=50.0))``.
    """

    analysis: AnalysisParams = field(default_factory=AnalysisParams)
    ivc: IVCParams = field(default_factory=IVCParams)
    portal: PortalParams = field(default_factory=PortalParams)
    hepatic: HepaticParams = field(default_factory=HepaticParams)
    scissurae: ScissuraParams = field(default_factory=ScissuraParams)
    umbilical: UmbilicalParams = field(default_factory=UmbilicalParams)
    transverse: TransverseParams = field(default_factory=TransverseParams)
    caudate: CaudateParams = field(default_factory=CaudateParams)
    separation: SeparationParams = field(default_factory=SeparationParams)
