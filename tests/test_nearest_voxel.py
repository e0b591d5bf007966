"""hepatoplan.nearest_voxel gives scipy's nearest voxel, equidistant ties included: its compiled route against
scipy on random masks, many ties at once, real vessels and the phantom's one-ulp ties (both compiled routes); which
route answers."""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from hepatoplan import nearest_voxel as nv
from hepatoplan.arrays import bounding_box
from hepatoplan.nearest_voxel_compiled import transform


@functools.cache
def _ahead_of_time():
    """The transform compiled ahead of time (built once per installation), or None where it cannot be."""
    module = nv._built_ahead() or nv._build_ahead()
    return None if module is None else module.transform


@pytest.fixture(params=["just in time", "ahead of time"])
def route(request):
    """Both compiled routes: numba's just-in-time function and the module built ahead of time."""
    if request.param == "just in time":
        return transform
    if _ahead_of_time() is None:
        pytest.skip("the ahead-of-time module cannot be built here (see the .failed file in the cache folder)")
    return _ahead_of_time()


def compiled(mask, *, spacing_mm, at, route=transform):
    return route(np.ascontiguousarray(mask), np.ascontiguousarray(at), *(float(s) for s in spacing_mm))


def _scipys(mask, spacing, at):
    idx = ndimage.distance_transform_edt(~mask, sampling=spacing, return_distances=False, return_indices=True)
    return np.searchsorted(np.flatnonzero(mask), np.ravel_multi_index(tuple(i[at] for i in idx), mask.shape))


def test_a_voxel_with_many_equidistant_sites_takes_scipys(route):
    """The centre of a 5 × 5 × 5 isotropic box whose 26 neighbours all are sites (more ties than
    a few candidates): scipy's pick."""
    mask = np.zeros((5, 5, 5), bool)
    mask[1:4, 1:4, 1:4] = True
    mask[2, 2, 2] = False
    at = np.zeros_like(mask)
    at[2, 2, 2] = True
    spacing = (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(compiled(mask, spacing_mm=spacing, at=at, route=route), _scipys(mask, spacing, at))


@functools.cache
def _real_vessels(case_dir):
    """IRCADb: every tenth liver voxel of the liver's box asking (``at``), the spacing, and per tree its
    mask on that box with scipy's answer (computed once for both routes)."""
    def mask(name):
        return np.asanyarray(nib.as_closest_canonical(nib.load(str(case_dir / f"{name}.nii.gz"))).dataobj) > 0
    img = nib.as_closest_canonical(nib.load(str(case_dir / "liver.nii.gz")))
    sp = tuple(float(s) for s in img.header.get_zooms()[:3])
    liver = np.asanyarray(img.dataobj) > 0
    box = bounding_box(liver)
    at = np.zeros(liver.shape, bool)
    at.flat[np.flatnonzero(liver)[::10]] = True
    at = np.ascontiguousarray(at[box])
    trees = {}
    for name in ("portal_vein", "hepatic_veins"):
        vessel = np.ascontiguousarray(mask(name)[box])
        trees[name] = vessel, _scipys(vessel, sp, at)
    return sp, at, trees


@pytest.mark.parametrize("case", ["04"])
def test_scipys_on_real_vessels(ircadb_dir, case, route):
    """IRCADb: every tenth liver voxel of the liver's box asking for its nearest portal and hepatic
    voxel (0.57-0.8 mm in-plane, 1.6 mm slices): scipy's voxels."""
    sp, at, trees = _real_vessels(ircadb_dir / case)
    for vessel, expected in trees.values():
        np.testing.assert_array_equal(compiled(vessel, spacing_mm=sp, at=at, route=route), expected)


@functools.cache
def _phantom_hepatic_and_liver():
    from hepatoplan.data_samples.phantom import make_phantom

    study = make_phantom(spacing_mm=(1.2, 1.0, 2.0), scale=0.6, noise_hu=0.0)
    return study.hepatic > 0, tuple(study.spacing_mm), study.liver > 0


def test_the_compiled_route_is_scipys_on_the_phantoms_exact_ties(route):
    """The phantom's hepatic tree and liver at 1.2 x 1.0 x 2.0 mm (straight tubes on a regular grid: equidistant
    sites whose float distances differ by one ulp): the compiled route gives scipy's voxel everywhere."""
    mask, spacing, at = _phantom_hepatic_and_liver()
    np.testing.assert_array_equal(compiled(mask, spacing_mm=spacing, at=at, route=route), _scipys(mask, spacing, at))


@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_routes_are_scipys_on_random_masks(route, seed):
    """Random masks (sparse to dense), anisotropic spacings with float32-rounded values as NIfTI gives them:
    scipy's voxel, equidistant ties included (the ahead-of-time module's generic machine code too); an empty
    mask answers -1 everywhere."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 16, 3))
        spacing = tuple(float(s) for s in rng.choice([0.5, 0.78, 1.0, 1.6, 2.5, float(np.float32(0.57))], 3))
        mask = rng.random(shape) < rng.choice([0.002, 0.03, 0.2, 0.6])
        at = rng.random(shape) < 0.7
        got = compiled(mask, spacing_mm=spacing, at=at, route=route)
        if mask.any():
            np.testing.assert_array_equal(got, _scipys(mask, spacing, at))
        else:
            assert (got == -1).all()


def test_small_arrays_take_scipy_until_the_compiled_route_is_loaded(monkeypatch):
    """At most SCIPY_MAX_VOXELS voxels: scipy's transform while the compiled module is neither loaded nor built
    ahead of time (its first call would cost numba's import), the compiled one once it is; larger arrays the
    compiled one. Same answer."""
    import sys

    rng = np.random.default_rng(0)
    mask, at = rng.random((12, 9, 7)) < 0.05, rng.random((12, 9, 7)) < 0.5
    sp = (0.7, 0.7, 2.0)
    expected = _scipys(mask, sp, at)
    calls = []
    monkeypatch.setattr(nv, "scipys", lambda *a: calls.append("scipy") or _scipys(*a))
    monkeypatch.setattr(nv, "_built_ahead", lambda: None)  # nothing built ahead of time, nothing loaded
    monkeypatch.setattr(nv, "_loaded", None)
    name = "hepatoplan.nearest_voxel_compiled"
    monkeypatch.delitem(sys.modules, name, raising=False)
    np.testing.assert_array_equal(nv.nearest_voxel(mask, spacing_mm=sp, at=at), expected)
    monkeypatch.setattr(nv, "_loaded", lambda *a: calls.append("compiled") or transform(*a))
    np.testing.assert_array_equal(nv.nearest_voxel(mask, spacing_mm=sp, at=at), expected)
    monkeypatch.setattr(nv, "SCIPY_MAX_VOXELS", mask.size - 1)
    np.testing.assert_array_equal(nv.nearest_voxel(mask, spacing_mm=sp, at=at), expected)
    assert calls == ["scipy", "compiled", "compiled"]


def test_load_compiled_loads_the_signature_every_call_uses():
    """``plan`` loads the compiled transform ahead (``load_compiled``): later calls, on any shape and
    spacing, use that one machine code (built ahead of time, or numba's with no second compilation)."""
    nv.load_compiled()
    assert nv._loaded is (_ahead_of_time() or transform)
    jit_signatures = len(transform.signatures)
    rng = np.random.default_rng(5)
    mask, at = rng.random((9, 7, 5)) < 0.1, rng.random((9, 7, 5)) < 0.6
    expected = ndimage.distance_transform_edt(~mask, sampling=(0.7, 0.8, 2.5), return_indices=True)[1]
    flat = np.ravel_multi_index(tuple(expected[:, at]), mask.shape)
    numbers = np.searchsorted(np.flatnonzero(mask), flat)
    assert np.array_equal(nv.nearest_voxel(mask, spacing_mm=(0.7, 0.8, 2.5), at=at), numbers)
    assert len(transform.signatures) == jit_signatures <= 1


def test_a_failed_ahead_of_time_build_is_recorded_and_not_retried(monkeypatch, tmp_path):
    """Where the module cannot be built (no C compiler, ...), the failure is written beside it with the
    error and later processes neither build again nor stop: they take numba's just-in-time route."""
    import subprocess

    runs = []
    monkeypatch.setattr(nv, "_aot_folders", lambda: [tmp_path / "cache"])
    monkeypatch.setattr(nv.subprocess, "run", lambda *a, **k: runs.append(a) or subprocess.CompletedProcess(
        a, 1, "", "error: command 'gcc' failed\n"))
    assert nv._build_ahead() is None and len(runs) == 1
    (failed,) = (tmp_path / "cache").glob("*.failed")
    assert "gcc" in failed.read_text()
    assert nv._build_ahead() is None and len(runs) == 1  # not tried again
    monkeypatch.setattr(nv, "_loaded", None)
    monkeypatch.setattr(nv, "_built_ahead", lambda: None)
    assert nv.compiled_transform() is transform and len(runs) == 1


def test_edt_mm_is_edts_boolean_transform_bit_for_bit():
    """edt_mm (edt on the uint8 view) against edt on the boolean mask itself: random 2-D and 3-D masks,
    sparse and dense, anisotropic, both borders, non-contiguous views."""
    import edt

    rng = np.random.default_rng(11)
    for trial in range(60):
        shape = tuple(int(n) for n in rng.integers(1, 24, 2 + trial % 2))
        mask = rng.random(shape) < rng.uniform(0.02, 0.98)
        spacing = tuple(rng.uniform(0.3, 3.0, len(shape)))
        for border in (False, True):
            for m in (mask, mask[::-1], ~mask):
                want = edt.edt(np.ascontiguousarray(m), anisotropy=spacing, black_border=border)
                got = nv.edt_mm(m, spacing_mm=spacing, black_border=border)
                assert got.dtype == want.dtype and np.array_equal(got, want)


def test_edt_mm_calls_edts_squared_transform_outside_the_gil():
    """2-D and 3-D masks take edt's C++ function through ctypes (which releases the GIL) on this install, and it
    gives edt.edt's values bit for bit: shapes with one-voxel axes, empty arrays, IRCADb-like spacings, a real
    liver and its outside with both borders."""
    import edt

    assert nv._edt_squared(1) is None
    if nv._edt_squared(2) is None or nv._edt_squared(3) is None:  # another edt build: edt_mm is edt.edt there
        pytest.skip("this edt does not export the squared transforms by the names edt 3.1 gives them")
    rng = np.random.default_rng(12)
    shapes = [(1, 1, 1), (1, 7, 5), (6, 1, 9), (5, 8, 1), (1, 9), (9, 1), (0, 4, 4), (0, 3), (31, 17, 23)]
    for shape in shapes:
        mask = rng.random(shape) < 0.7
        spacing = tuple(rng.uniform(0.3, 3.0, len(shape)))
        for border in (False, True):
            want = edt.edt(mask.view(np.uint8), anisotropy=spacing, black_border=border)
            got = nv.edt_mm(mask, spacing_mm=spacing, black_border=border)
            assert got.shape == want.shape and got.dtype == want.dtype
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    ball = np.zeros((60, 50, 30), bool)
    ijk = np.indices(ball.shape) - np.array([30, 25, 15])[:, None, None, None]
    ball[((ijk * np.array([0.57, 0.57, 1.6])[:, None, None, None]) ** 2).sum(0) < 14.0 ** 2] = True
    for m in (ball, ~ball):
        for border in (False, True):
            want = edt.edt(m.view(np.uint8), anisotropy=(0.57, 0.57, 1.6), black_border=border)
            got = nv.edt_mm(m, spacing_mm=(0.57, 0.57, 1.6), black_border=border)
            assert np.array_equal(got.view(np.uint32), want.view(np.uint32))


def test_edts_function_that_answers_otherwise_than_edt_is_not_used(monkeypatch):
    """The ctypes route is checked once against edt.edt on a probe: an edt whose internal function disagrees
    (here edt.edt itself made to differ) leaves edt_mm to edt.edt."""
    import edt

    real = edt.edt
    monkeypatch.setattr(edt, "edt", lambda *args, **kwargs: real(*args, **kwargs) + np.float32(0.5))
    nv._edt_squared.cache_clear()
    try:
        assert nv._edt_squared(3) is None and nv._edt_squared(2) is None
        mask = np.zeros((6, 5, 4), bool)
        mask[2:4, 1:4, 1:3] = True
        assert np.array_equal(nv.edt_mm(mask, spacing_mm=(1.0, 1.0, 2.0)),
                              real(mask.view(np.uint8), anisotropy=(1.0, 1.0, 2.0)) + np.float32(0.5))
    finally:
        nv._edt_squared.cache_clear()


def test_a_damaged_built_module_is_not_loaded(monkeypatch, tmp_path):
    """A file under the built module's name that is no loadable extension (cut short, another platform's) is
    passed over, not raised: the route is built again or falls back to numba's."""
    import importlib.machinery

    monkeypatch.setattr(nv, "_aot_folders", lambda: [tmp_path])
    monkeypatch.setattr(nv, "_aot_name", lambda: "_nearest_voxel_aot_damaged")
    (tmp_path / ("_nearest_voxel_aot_damaged" + importlib.machinery.EXTENSION_SUFFIXES[0])).write_bytes(b"\x7fELF cut")
    assert nv._built_ahead() is None
