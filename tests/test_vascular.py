"""hepatoplan.resection.vascular: devascularised and congested territories after a cut.

Phantom answers come from the generator (``truth["portal_branches"][id]["subtree_territory_ml"]``:
the liver whose nearest portal voxel belongs to the branch's subtree). A sphere cut placed right at
a branch's origin removes that branch; the liver the subtree served is then either inside the cut
or reported as devascularised, so ``devascularised_ml + (cut ∩ territory)`` must equal the truth.
Measured at 1.2 × 1.0 × 2.0 mm and 0.9 × 1.3 × 2.5 mm (scale 0.6): within 0.2 % for portal branches
5, 7, 11, 13 and hepatic tributaries 6, 7; the test allows 1 % (the issue's acceptance). Branches
whose origin lies where a ball also clips the parent or a sibling (portal 9, 14; hepatic 5, 8, 9)
are left out: the cut then legitimately takes more than one branch. Portal 8 is within 0.2 % at
the first spacing but 3 % short at the second (the ball leaves a stub of the branch connected).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from hepatoplan.arrays import bounding_box
from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.errors import InputError
from hepatoplan.resection.procedures import parse_resection
from hepatoplan.resection.vascular import consequences_of, prepare_vessel_trees, vascular_consequences
from hepatoplan.resection.virtual import plan_resection


@pytest.fixture(scope="module", params=[(1.2, 1.0, 2.0), (0.9, 1.3, 2.5)], ids=["1.2x1.0x2.0", "0.9x1.3x2.5"])
def ph(request):
    return make_phantom(spacing_mm=request.param, scale=0.6, noise_hu=0.0)


def _axes_mm(study):
    a = study.affine_ras
    return [a[k, 3] + a[k, k] * np.arange(study.shape[k]) for k in range(3)]


def _ball(study, centre_mm, radius_mm):
    x, y, z = _axes_mm(study)
    c = np.asarray(centre_mm, float)
    return ((x[:, None, None] - c[0]) ** 2 + (y[None, :, None] - c[1]) ** 2
            + (z[None, None, :] - c[2]) ** 2) <= radius_mm**2


def _cut_at_origin(study, tree: str, branch: int):
    """A ball through the origin of ``branch``, just outside its parent's tube."""
    info = study.truth[f"{tree}_branches"][str(branch)]
    parent = study.truth[f"{tree}_branches"][str(info["parent"])]
    pts = np.asarray(info["points_mm"])
    u = (pts[1] - pts[0]) / np.linalg.norm(pts[1] - pts[0])
    radius = info["radius_start_mm"] + 2.0
    centre = pts[0] + u * (parent["radius_end_mm"] + radius)
    return _ball(study, centre, radius) & (study.liver > 0)


@pytest.mark.parametrize("branch", [5, 7, 11, 13])
def test_cutting_a_portal_branch_devascularises_its_subtree_territory(ph, branch):
    info = ph.truth["portal_branches"][str(branch)]
    cut = _cut_at_origin(ph, "portal", branch)
    res = vascular_consequences(liver=ph.liver > 0, resected=cut, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0, segments=ph.segments)
    territory = np.isin(ph.portal_territories, info["subtree"])
    unit_ml = np.prod(ph.spacing_mm) / 1000
    inside_cut_ml = np.count_nonzero(territory & cut) * unit_ml
    assert res.devascularised_ml + inside_cut_ml == pytest.approx(info["subtree_territory_ml"], rel=0.01)
    # nothing outside the branch's territory is reported
    assert np.count_nonzero(res.devascularised & ~territory) * unit_ml < 0.002 * info["subtree_territory_ml"]
    assert res.devascularised_ml == pytest.approx(sum(p.territory_ml for p in res.portal_pieces))
    kinds = {p.kind for p in res.portal_pieces}
    assert kinds == {"detached", "transected"}
    detached = [p for p in res.portal_pieces if p.kind == "detached"]
    # the piece's segment is the one the branch feeds (5, 8 … for terminals; 8 or 5 for the sector)
    assert detached[0].segment in info["segments_fed"]
    # its diameter: at most the branch's start diameter, at least its end diameter, ± one voxel
    voxel = max(ph.spacing_mm)
    assert 2 * info["radius_end_mm"] - voxel <= detached[0].max_diameter_mm <= 2 * info["radius_start_mm"] + voxel


def test_a_cut_as_fractions_gives_the_same_answer_as_the_mask(ph):
    cut = _cut_at_origin(ph, "portal", 7)
    fraction = np.where(cut, 0.8, 0.0).astype(np.float32)
    fraction[ndimage.binary_dilation(cut) & ~cut & (ph.liver > 0)] = 0.3  # a partial rim, kept
    a = vascular_consequences(liver=ph.liver > 0, resected=cut, spacing_mm=ph.spacing_mm, portal=ph.portal > 0)
    b = vascular_consequences(liver=ph.liver > 0, resected=fraction, spacing_mm=ph.spacing_mm, portal=ph.portal > 0)
    assert np.array_equal(a.devascularised, b.devascularised)
    # the rim keeps 70 % of its voxels: the fractional answer is a little smaller, never larger
    assert b.devascularised_ml <= a.devascularised_ml
    rim_ml = np.count_nonzero(a.devascularised & (fraction == 0.3)) * np.prod(ph.spacing_mm) / 1000
    assert a.devascularised_ml - b.devascularised_ml == pytest.approx(0.3 * rim_ml, abs=1e-6)


@pytest.mark.parametrize("branch", [6, 7])
def test_cutting_a_hepatic_tributary_congests_its_drainage_territory(ph, branch):
    info = ph.truth["hepatic_branches"][str(branch)]
    cut = _cut_at_origin(ph, "hepatic", branch)
    res = vascular_consequences(liver=ph.liver > 0, resected=cut, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0)
    territory = ph.hepatic_territories == branch  # a terminal tributary: its subtree is itself
    inside_cut_ml = np.count_nonzero(territory & cut) * np.prod(ph.spacing_mm) / 1000
    assert info["subtree_territory_ml"] > 5
    assert res.congested_ml + inside_cut_ml == pytest.approx(info["subtree_territory_ml"], rel=0.01)
    assert res.devascularised_ml == 0.0
    assert res.hepatic_pieces and all(p.tree == "hepatic" for p in res.hepatic_pieces)


def test_a_wedge_away_from_vessels_devascularises_nothing(ph):
    # tumour 1 of the phantom lies about 9 mm (× scale) from every vessel
    plan = plan_resection(liver=ph.liver > 0, tumours=ph.tumours, segments=None,
                          resections=[parse_resection("wedge:1@1")], spacing_mm=ph.spacing_mm)
    res = vascular_consequences(liver=ph.liver > 0, resected=plan.resected_fraction, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0, tumours=ph.tumours)
    assert res.devascularised_ml == 0.0 and res.congested_ml == 0.0
    assert res.portal_pieces == [] and res.hepatic_pieces == []
    assert res.portal_cut_voxels == 0 and res.hepatic_cut_voxels == 0


def test_anatomical_resection_counts_only_what_it_detaches(ph):
    """Right hepatectomy on the phantom: the left liver keeps inflow and outflow."""
    right = np.isin(ph.segments, (5, 6, 7, 8))
    res = vascular_consequences(liver=ph.liver > 0, resected=right, anatomical=right, spacing_mm=ph.spacing_mm,
                                portal=ph.portal > 0, hepatic=ph.hepatic > 0, segments=ph.segments)
    assert res.devascularised_ml == 0.0
    assert not res.devascularised.any()


def test_trees_prepared_once_answer_every_resection_as_the_whole_analysis(ph):
    """``plan`` prepares the trees (with every liver voxel's nearest vessel voxel) while the Couinaud
    segments are derived: the answers must be those of ``vascular_consequences``, for an anatomical
    resection with a cut beside it (the downstream rule reads the prepared nearest voxels) and a cut alone."""
    liver, vessels = ph.liver > 0, dict(portal=ph.portal > 0, hepatic=ph.hepatic > 0)
    trees = prepare_vessel_trees(liver=liver, spacing_mm=ph.spacing_mm, nearest_nodes=True, **vessels)
    right = np.isin(ph.segments, (5, 6, 7, 8))
    for resected, anatomical in ((right | _cut_at_origin(ph, "portal", 11), right), (_cut_at_origin(ph, "hepatic", 6), None)):
        kw = dict(resected=resected, anatomical=anatomical, tumours=ph.tumours, segments=ph.segments)
        a = vascular_consequences(liver=liver, spacing_mm=ph.spacing_mm, **vessels, **kw)
        # deferred: nothing prepared ahead, consequences_of prepares what it needs
        deferred = prepare_vessel_trees(liver=liver, spacing_mm=ph.spacing_mm, deferred=True, **vessels)
        # the resection given on a box (as plan gives the liver's): the liver's, and the cut's own
        # (liver voxels and vessel voxels outside it: read as not resected)
        on_boxes = [consequences_of(trees, **{**kw, "resected": resected[box], "anatomical": None if anatomical
                                                  is None else anatomical[box]}, box=box)
                    for box in (bounding_box(liver), bounding_box(resected))]
        for b in (consequences_of(trees, **kw), consequences_of(deferred, **kw), *on_boxes):
            assert a.to_dict() == b.to_dict()
            assert np.array_equal(a.devascularised, b.devascularised) and np.array_equal(a.congested, b.congested)
    assert a.congested_ml > 0 and a.hepatic_pieces  # the last cut detaches something: not a vacuous match


def test_flipping_the_axes_does_not_change_the_answer(ph):
    cut = _cut_at_origin(ph, "portal", 11)
    kw = dict(spacing_mm=ph.spacing_mm)
    a = vascular_consequences(liver=ph.liver > 0, resected=cut, portal=ph.portal > 0, **kw)
    flip = (slice(None, None, -1), slice(None), slice(None, None, -1))
    b = vascular_consequences(liver=(ph.liver > 0)[flip], resected=cut[flip], portal=(ph.portal > 0)[flip], **kw)
    # ties between equidistant vessel voxels may break differently: a few voxels at most
    assert b.devascularised_ml == pytest.approx(a.devascularised_ml, rel=0.002)


def test_bad_input_is_refused_with_a_clear_message():
    liver = np.ones((10, 10, 10), bool)
    vessel = np.zeros_like(liver)
    with pytest.raises(InputError, match="portal-vein mask, a hepatic-vein mask"):
        vascular_consequences(liver=liver, resected=liver, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="resected: shape"):
        vascular_consequences(liver=liver, resected=liver[:5], portal=vessel, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="fractions must lie in 0-1"):
        vascular_consequences(liver=liver, resected=np.full(liver.shape, 1.5), portal=vessel, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="spacing_mm"):
        vascular_consequences(liver=liver, resected=liver, portal=vessel, spacing_mm=(1, 0, 1))
    with pytest.raises(InputError, match="liver mask is empty"):
        vascular_consequences(liver=~liver, resected=liver, portal=vessel, spacing_mm=(1, 1, 1))
    trees = prepare_vessel_trees(liver=liver, portal=vessel, spacing_mm=(1, 1, 1))
    with pytest.raises(InputError, match="segments: shape"):
        consequences_of(trees, resected=liver, segments=liver[:5])
    deferred = prepare_vessel_trees(liver=~liver, portal=vessel, spacing_mm=(1, 1, 1), deferred=True)
    for _ in range(2):  # raised when the part is needed, every time
        with pytest.raises(InputError, match="liver mask is empty"):
            consequences_of(deferred, resected=liver)


@pytest.mark.slow
def test_right_hepatectomy_on_ircadb01_leaves_the_left_liver_perfused(ircadb01, ircadb_dir):
    """Full-size IRCADb 01 (its masks, read once for the module), the reference segments filled to the
    liver: a right hepatectomy cuts over 10 000 portal voxels yet devascularises nothing."""
    from hepatoplan.pipeline.io import read_labels
    from hepatoplan.resection.volumetry import fill_partition

    s = ircadb01
    liver, spacing = s["liver"], s["spacing"]
    segments, _ = fill_partition(read_labels(ircadb_dir / "01" / "couinaud_reference.nii.gz").array, liver,
                                 spacing_mm=spacing)
    right = np.isin(segments, (5, 6, 7, 8)) & liver
    res = vascular_consequences(liver=liver, resected=right, anatomical=right, spacing_mm=spacing, segments=segments,
                                portal=s["portal"], hepatic=s["hepatic"], tumours=s["tumours"])
    left = np.isin(segments, (1, 2, 3, 4))
    assert res.devascularised_ml == 0.0
    assert not (res.devascularised & left).any()
    assert res.portal_cut_voxels > 10_000  # the right portal tree was cut, not missed


# --- IRCADb 01: the bench's wedge numbers, recomputed independently ------------------------------


def _grown_box(mask, pad_mm, spacing, within=None):
    """Bounding box of ``mask`` grown by ``pad_mm`` (clipped to ``within``'s shape, default the mask's)."""
    shape = mask.shape if within is None else within
    nz = [np.flatnonzero(mask.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
    pad = [int(np.ceil(pad_mm / v)) + 1 for v in spacing]
    return tuple(slice(max(z[0] - p, 0), min(z[-1] + 1 + p, n)) for z, p, n in zip(nz, pad, shape))


def _independent_vascular(liver, resected, vessel, tumours, spacing, *, tree, pad_mm=20.0):
    """The definition of hepatoplan.resection.vascular re-implemented with other tools (the ``edt``
    package, scipy's labels, KD-trees).

    Cut: vessel voxels in the liver or with the liver as close as their own wall (+ max spacing)
    whose nearest liver voxel is resected; root: largest extrahepatic portal piece / the largest
    piece of the hepatic mask's opening with a ball of 0.7 × its largest inscribed radius;
    affected: remnant liver whose nearest vessel voxel is detached, or is a removed stretch that
    touches a detached piece. Returns the affected functional volume in voxels, each weighted by
    its kept share (tumour voxels left out).

    Each step looks only where it must: the liver's box + ``pad_mm`` for the roots, the vessels'
    own box for their wall distance, a KD-tree of the liver's border voxels for the nearest liver
    voxel of a vessel voxel outside it (scipy's feature transform of the box did the same: on IRCADb
    01 the same answers, the portal recount 5.9 -> 2.8 s CPU); the remnant's nearest vessel voxel is
    settled per block of voxels where the block's distances to affected and other vessel voxels
    decide it (:func:`_affected_weight`). Distances to a mask's outside are the ``edt`` package's exact
    EDT (float32; scipy's float64 EDT gave the same answers on IRCADb 01's recounts at ~1.5-2 × the CPU).
    """
    import edt
    from scipy.spatial import cKDTree

    def distance_to_outside(mask):
        return edt.edt(np.ascontiguousarray(mask), anisotropy=tuple(spacing), parallel=1)

    s26 = np.ones((3, 3, 3), bool)
    sp = np.asarray(spacing, float)
    box = _grown_box(liver, pad_mm, spacing)
    L, V, F = liver[box], vessel[box], resected[box]
    removed = F >= 0.5
    vb = _grown_box(V, 0.0, spacing)  # the nearest non-vessel voxel lies within one voxel of V's box
    wall = np.zeros(V.shape)
    wall[vb] = distance_to_outside(V[vb])
    # a vessel voxel outside the liver: its nearest liver voxel is one of the liver's border voxels (a
    # step from an inner one towards it gets closer), found with a KD-tree up to the thickest wall (+ max
    # spacing); one inside the liver is its own nearest liver voxel
    border = np.argwhere(L & ~ndimage.binary_erosion(L))
    outside = np.argwhere(V & ~L)
    d_liver, k = cKDTree(border * sp).query(outside * sp, distance_upper_bound=wall.max() + sp.max(), workers=-1)
    close = d_liver <= wall[tuple(outside.T)] + sp.max()
    outside, nearest = tuple(outside[close].T), tuple(border[k[close]].T)
    intra = V & L
    intra[outside] = True
    cut = intra & removed
    cut[outside] = removed[nearest]
    # the vessels' steps in their own box
    V, intra, cut, wall = V[vb], intra[vb], cut[vb], wall[vb]
    if tree == "portal":
        lab, _ = ndimage.label(V & ~intra, structure=s26)
    else:
        r = 0.7 * wall.max()
        centres = wall >= r
        cb = _grown_box(centres, r, spacing)
        opening = np.zeros(V.shape, bool)
        opening[cb] = (distance_to_outside(~centres[cb]) <= r) & V[cb]
        lab, _ = ndimage.label(opening, structure=s26)
    root = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    cut &= ~root

    def reach(mask):
        lab, _ = ndimage.label(mask, structure=s26)
        ids = np.setdiff1d(np.unique(lab[root & mask]), [0])
        return np.isin(lab, ids)

    before = reach(V)
    detached = before & ~cut & ~reach(V & ~cut)
    cut_lab, _ = ndimage.label(cut & before, structure=s26)
    severing = np.setdiff1d(np.unique(cut_lab[ndimage.binary_dilation(detached, s26)]), [0])
    affected = detached | np.isin(cut_lab, severing)
    weight = np.where(L & ~removed & (tumours[box] == 0), 1.0 - F.astype(np.float64), 0.0)
    origin = [b.start for b in vb]
    return _affected_weight(weight, np.argwhere(affected) + origin, np.argwhere(V & ~affected) + origin, sp)


def _grid_tree(points_mm):
    """A k-d tree of grid points for nearest-point queries, split at the sliding midpoint without
    shrinking the cells to the data (``balanced_tree=False, compact_nodes=False``): on the vessel and
    border voxels of IRCADb 01 queries with scipy's defaults (median splits, compacted cells) took
    5-7 × the CPU (1.30 -> 0.19 s for 30 000 queries among 100 000 hepatic-vein voxels). Exact distances
    either way; for the nearest liver border voxel (an index, whose ties decide) scipy's default tree is
    kept: this one broke a tie otherwise and moved the 5 mm recount by half a voxel."""
    from scipy.spatial import cKDTree

    return cKDTree(points_mm, balanced_tree=False, compact_nodes=False)


def _affected_weight(weight, affected, others, sp):
    """Sum of ``weight`` over the voxels whose nearest vessel voxel (mm) is one of ``affected``
    rather than of ``others`` (voxel indices (n, 3) of ``weight``'s grid; ties count as affected),
    with two KD-trees. Within a block of voxels the
    distances from its centre move by at most the half-diagonal ``h``: where the block centre's two
    distances differ by at least ``2 h`` the whole block is settled; the other voxels go on to
    smaller blocks, and finally one by one."""
    if not len(affected):
        return 0.0
    to_affected = _grid_tree(affected * sp).query
    to_others = _grid_tree(others * sp).query if len(others) else (lambda q, **kw: (np.full(len(q), np.inf), None))
    pts = np.argwhere(weight > 0)
    hit = np.zeros(len(pts), bool)
    todo = np.arange(len(pts))
    for block in np.array([(16, 16, 8), (8, 8, 4), (4, 4, 2), (2, 2, 1), (1, 1, 1)]):
        grid = -(-np.array(weight.shape) // block)
        flat = np.ravel_multi_index((pts[todo] // block).T, grid)
        occupied = np.zeros(int(np.prod(grid)), bool)  # np.unique's keys and inverse without its sort
        occupied[flat] = True
        keys = np.flatnonzero(occupied)
        inverse = np.searchsorted(keys, flat)
        centres = (np.stack(np.unravel_index(keys, grid), axis=1) * block + (block - 1) / 2) * sp
        h = 0.5 * float(np.linalg.norm((block - 1) * sp))
        da, do = to_affected(centres, workers=-1)[0], to_others(centres, workers=-1)[0]
        hit[todo] = (da + 2 * h <= do)[inverse]
        todo = todo[(np.abs(da - do) < 2 * h)[inverse]]
    return float(weight[tuple(pts[hit].T)].sum())


def _trilinear_thirds(values):
    """``values`` trilinearly interpolated (edges clamped) at index ± 1/3 and index along every axis:
    what ``ndimage.map_coordinates(values, grid, order=1, mode="nearest")`` gives on that 3 × 3 × 3
    sub-sampled grid, one axis at a time (trilinear weights are a product of per-axis ones), without
    the three float64 coordinate arrays of 27 × the crop. A binary mask's values are multiples of
    1/27, so the 0.5 level is the same either way (``test_trilinear_thirds_is_map_coordinates``)."""
    for axis in range(3):
        n = values.shape[axis]
        before = np.take(values, np.r_[0, : n - 1], axis=axis)
        after = np.take(values, np.r_[1:n, n - 1], axis=axis)
        thirds = np.stack([values + (before - values) / 3, values, values + (after - values) / 3], axis=axis + 1)
        values = thirds.reshape(values.shape[:axis] + (3 * n,) + values.shape[axis + 1:])
    return values


def test_trilinear_thirds_is_map_coordinates():
    """The separable sub-sampling above equals scipy's trilinear interpolation on the 3 × 3 × 3 grid
    (random masks with edges touching the crop) to float32 rounding, and at the 0.5 level exactly."""
    rng = np.random.default_rng(0)
    for shape in ((1, 4, 3), (5, 6, 7), (9, 2, 8)):
        crop = (rng.random(shape) < 0.5).astype(np.float32)
        axes = [(np.arange(n)[:, None] + np.array([-1 / 3, 0, 1 / 3])[None]).ravel() for n in shape]
        expected = ndimage.map_coordinates(crop, np.meshgrid(*axes, indexing="ij"), order=1, mode="nearest")
        got = _trilinear_thirds(crop)
        np.testing.assert_allclose(got, expected, atol=1e-6)
        np.testing.assert_array_equal(got >= 0.5, expected >= 0.5)


def _independent_wedge_fraction(liver, tumours, spacing, margin_mm):
    """Resected share per voxel of tumour + margin, by 3 × 3 × 3 sub-sampling: the tumour surface is
    the 0.5 level of the trilinearly interpolated mask (:func:`_trilinear_thirds`, checked against scipy's
    ``map_coordinates``), the margin a
    Euclidean distance on the sub-sampled grid (the exact EDT of the ``edt`` package), the share the
    sub-samples within it. Each tumour is looked at in its own box (``ndimage.find_objects``) grown by
    the margin."""
    import edt

    sp = np.asarray(spacing, float)
    fine_sp = sp / 3
    frac = np.zeros(liver.shape, np.float32)
    pad = np.ceil((margin_mm + 2 * sp.max()) / sp).astype(int) + 1
    for i, found in enumerate(ndimage.find_objects(tumours), start=1):
        if found is None:
            continue
        lo = np.maximum([s.start for s in found] - pad, 0)
        hi = np.minimum([s.stop for s in found] + pad, tumours.shape)
        crop = (tumours[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] == i).astype(np.float32)
        inside = _trilinear_thirds(crop) >= 0.5
        dist = edt.edt(~inside, anisotropy=tuple(fine_sp), parallel=1)  # exact; a seventh of scipy's CPU time here
        within = dist <= margin_mm + fine_sp.mean() / 2  # distance to the surface, not to a centre
        n = crop.shape
        share = within.reshape(n[0], 3, n[1], 3, n[2], 3).mean(axis=(1, 3, 5)).astype(np.float32)
        view = frac[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        np.maximum(view, share, out=view)
    frac[tumours > 0] = 1.0
    return frac * liver


@pytest.fixture(scope="module")
def ircadb01(ircadb_dir):
    from hepatoplan.pipeline.io import read_labels

    case = ircadb_dir / "01"
    vol = read_labels(case / "liver.nii.gz")
    return {
        "liver": vol.array > 0, "spacing": vol.spacing_mm,
        "tumours": read_labels(case / "tumours.nii.gz").array,
        "portal": read_labels(case / "portal_vein.nii.gz").array > 0,
        "hepatic": read_labels(case / "hepatic_veins.nii.gz").array > 0,
    }


@pytest.mark.slow
def test_ircadb01_one_mm_wedges_recomputed_independently(ircadb01):
    s = ircadb01
    plan = plan_resection(liver=s["liver"], tumours=s["tumours"], segments=None,
                          resections=[parse_resection("wedge:all@1")], spacing_mm=s["spacing"])
    unit = np.prod(s["spacing"]) / 1000
    functional = s["liver"] & (s["tumours"] == 0)
    frac = _independent_wedge_fraction(s["liver"], s["tumours"], s["spacing"], 1.0)
    resected_ml = float(frac[functional].sum(dtype=np.float64)) * unit
    # Two models of a voxelised tumour's surface (hepatoplan.resection.surface: Gaussian-smoothed, volume-
    # calibrated level and exact distances, vs trilinear 0.5 level + sub-sampled EDT) differ by
    # ~0.2 mm on IRCADb's jagged masks: 16.6 vs 20.0 mL for the 1 mm shell (1.6 mm slices), 94.4 vs
    # 102.3 mL at 5 mm; on a smooth sphere the independent count is 2 % above the analytic volume. Hence 25 % on the thin shell, 0.5 % on
    # the remnant (what the plan reports).
    assert plan.resected_functional_ml == pytest.approx(resected_ml, rel=0.25)
    assert plan.remnant_ml == pytest.approx(np.count_nonzero(functional) * unit - resected_ml, rel=0.005)
    res = vascular_consequences(liver=s["liver"], resected=plan.resected_fraction, spacing_mm=s["spacing"],
                                portal=s["portal"], hepatic=s["hepatic"], tumours=s["tumours"])
    expected = _independent_vascular(s["liver"], plan.resected_fraction, s["portal"], s["tumours"], s["spacing"],
                                     tree="portal")
    assert res.devascularised_ml == pytest.approx(expected * unit, abs=0.05)
    # the 1 mm wedges graze vessels but sever none (bench/RESULTS.md)
    assert res.portal_cut_voxels > 0 and res.devascularised_ml == 0.0


@pytest.mark.slow
def test_ircadb01_five_mm_wedge_at_the_confluence_congests_what_an_independent_count_finds(ircadb01):
    """Tumour 5 abuts the hepatocaval confluence: a 5 mm margin takes hepatic-vein ostia."""
    s = ircadb01
    plan = plan_resection(liver=s["liver"], tumours=s["tumours"], segments=None,
                          resections=[parse_resection("wedge:5@5")], spacing_mm=s["spacing"])
    res = vascular_consequences(liver=s["liver"], resected=plan.resected_fraction, spacing_mm=s["spacing"],
                                hepatic=s["hepatic"], tumours=s["tumours"])
    expected_ml = _independent_vascular(s["liver"], plan.resected_fraction, s["hepatic"], s["tumours"], s["spacing"],
                                        tree="hepatic") * np.prod(s["spacing"]) / 1000
    assert expected_ml > 100
    # nearest-voxel ties may break differently between the EDT and the KD-tree
    assert res.congested_ml == pytest.approx(expected_ml, rel=0.005)


def test_an_anatomical_plane_across_the_bifurcation_does_not_divide_the_trunk(ph):
    """Right hepatectomy whose 'segments' also swallow the portal bifurcation (as the IRCADb 02
    reference does): the surgeon keeps the trunk to the left liver, so the left stays perfused;
    the same region cut as a wedge does divide it."""
    bif = ph.truth["landmarks"]["portal_bifurcation_mm"]
    plane = (np.isin(ph.segments, (5, 6, 7, 8)) | _ball(ph, bif, 8.0)) & (ph.liver > 0)
    kw = dict(liver=ph.liver > 0, resected=plane, spacing_mm=ph.spacing_mm, portal=ph.portal > 0)
    anatomical = vascular_consequences(anatomical=plane, **kw)
    left = np.isin(ph.segments, (1, 2, 3, 4))
    assert np.count_nonzero(anatomical.devascularised & left) * np.prod(ph.spacing_mm) / 1000 < 1.0
    as_wedge = vascular_consequences(**kw)
    assert as_wedge.devascularised_ml > 100  # the left portal vein is detached


@pytest.mark.parametrize("seed", range(3))
def test_the_voxel_graph_searched_as_directed_is_the_undirected_search(seed):
    """The downstream rule's Dijkstra runs on the voxel graph as a directed graph (it holds both
    directions of every edge): the distances and predecessors of the undirected search, equal-length
    paths (ties on the voxel grid, several roots) included."""
    from scipy.sparse import csgraph

    from hepatoplan.resection.vascular import _voxel_graph

    rng = np.random.default_rng(seed)
    mask = ndimage.binary_dilation(rng.random((30, 25, 20)) < 0.02, iterations=2)
    ijk = np.argwhere(mask)
    graph = _voxel_graph(ijk, (0.78, 0.78, 1.6) if seed else (1.0, 1.0, 1.0))
    roots = rng.choice(len(ijk), 3, replace=False)
    undirected = csgraph.dijkstra(graph, directed=False, indices=roots, min_only=True, return_predecessors=True)
    directed = csgraph.dijkstra(graph, directed=True, indices=roots, min_only=True, return_predecessors=True)
    for a, b in zip(undirected, directed):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("route", ["just in time", "ahead of time"])
def test_the_downstream_sums_add_each_nodes_descendants(route):
    """The downstream rule's sums (``subtree_sums``, both compiled routes): on random forests listed parents
    first, each node's weight plus those of all its descendants, found by walking up from every node."""
    from hepatoplan import nearest_voxel as nv
    from hepatoplan.nearest_voxel_compiled import subtree_sums

    if route == "ahead of time":
        module = nv._built_ahead() or nv._build_ahead()
        if module is None:
            pytest.skip("the ahead-of-time module cannot be built here")
        subtree_sums = module.subtree_sums
    rng = np.random.default_rng(3)
    for n in (1, 2, 50, 400):
        order = rng.permutation(n)
        parent = np.full(n, -9999, np.int32)  # a forest: some nodes are roots
        for i in range(1, n):
            if rng.random() < 0.9:
                parent[order[i]] = order[rng.integers(0, i)]
        weights = rng.integers(0, 1000, n).astype(np.float64)
        expected = weights.copy()
        for v in range(n):
            up = parent[v]
            while up >= 0:
                expected[up] += weights[v]
                up = parent[up]
        np.testing.assert_array_equal(subtree_sums(order.astype(np.int64), parent, weights), expected)


@pytest.mark.parametrize("seed", range(3))
def test_the_downstream_graphs_search_joins_the_nodes_cc3d_joins(seed):
    """With the downstream rule the nodes joined to the root (before and after a cut) come from a search on the
    voxel graph: the same nodes as cc3d's 26-connected labels, on fragmented random trees and random cuts."""
    from hepatoplan.resection.vascular import _Downstream, _Tree

    rng = np.random.default_rng(seed)
    mask = ndimage.binary_dilation(rng.random((30, 25, 20)) < 0.01, iterations=2) | (rng.random((30, 25, 20)) < 0.02)
    ijk = np.argwhere(mask)
    t, _ = _Tree.of(mask, (0.78, 0.78, 1.6), ijk)
    root = np.zeros(t.n, bool)
    root[rng.choice(t.n, 3, replace=False)] = True
    down = _Downstream.make(t, root, np.zeros(10, np.int32))
    assert 0 < np.count_nonzero(down.before) < t.n  # fragments left out
    np.testing.assert_array_equal(down.before, t.connected_to(np.ones(t.n, bool), root))
    for cut_share in (0.02, 0.1, 0.3):
        keep = rng.random(t.n) >= cut_share
        np.testing.assert_array_equal(down.connected_to(keep, root), t.connected_to(keep, root))


@pytest.mark.parametrize("seed", range(3))
def test_the_voxel_graph_joins_each_voxel_to_its_26_neighbours(seed):
    """The voxel graph (CSR) holds exactly the pairs of voxels one step apart along every axis
    (26-neighbours, none across the box's edges), weighted by their distance in mm, each row's
    columns in increasing order: compared with every pair's distance."""
    from hepatoplan.resection.vascular import _voxel_graph

    rng = np.random.default_rng(seed)
    ijk = np.argwhere(rng.random((9, 7, 6)) < 0.3)  # voxels on every face of their box
    spacing = (0.78, 0.78, 1.6)
    graph = _voxel_graph(ijk, spacing)
    step = np.abs(ijk[:, None] - ijk[None])
    near = (step.max(axis=2) == 1)
    expected = np.where(near, np.sqrt(((step * spacing) ** 2).sum(axis=2)), 0.0)
    np.testing.assert_array_equal(graph.toarray(), expected)
    assert graph.has_sorted_indices and graph.nnz == np.count_nonzero(near)


def test_nearest_voxel_on_a_line_of_two_points_splits_at_the_midpoint():
    """Two voxels 10 apart along the slices (2 mm): voxels up to the midpoint (a tie, which the
    lower index wins) go to the first, the rest to the second; an empty mask answers -1."""
    from hepatoplan.nearest_voxel import nearest_voxel

    mask = np.zeros((3, 4, 11), bool)
    mask[1, 2, 0] = mask[1, 2, 10] = True
    at = np.zeros_like(mask)
    at[1, 2, :] = True
    np.testing.assert_array_equal(nearest_voxel(mask, spacing_mm=(0.7, 0.7, 2.0), at=at), [0] * 6 + [1] * 5)
    assert (nearest_voxel(np.zeros_like(mask), spacing_mm=(1, 1, 1), at=at) == -1).all()
    with pytest.raises(InputError, match="3-D arrays of one shape"):
        nearest_voxel(mask, spacing_mm=(1, 1, 1), at=at[0])
