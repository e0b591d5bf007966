"""Synthetic liver lesions inserted into real CTs, with the truth known by construction.

Used by ``bench/bench_segmentation_insertion.py``. Arrays are canonical RAS+ (axis 0 -> Right,
1 -> Anterior, 2 -> Superior) with ``spacing_mm``, as ``hepatoplan.pipeline.io`` reads them.

A lesion is a lobulated ellipsoid (random axes within 0.8-1.25 of each other, random orientation, a
smooth radial modulation of +-10 %) given by an implicit function ``rho(x) <= 1``. Its voxels are
supersampled (sub-voxels of at most 0.4 mm) into a partial-volume fraction ``f``, blurred by the
scanner's point spread (Gaussian, ``PSF_SIGMA_MM``), and the scan becomes
``(1 - f) * scan + f * (profile + noise)``: the lesion replaces whatever was there (vessels,
parenchyma, or the neighbouring tissue where it bulges out of the liver), with

* ``profile``: the lesion's own density map relative to the liver parenchyma's median ``P`` of this
  scan (:data:`KINDS`): homogeneous hypodense, faintly hypodense, necrotic (dark core, smooth
  transition), necrotic with an enhancing rim, heterogeneous (blotches from fluid to above
  parenchyma, as the held-out CT of issue 16), hyperdense;
* ``noise``: Gaussian noise with the scan's own noise texture: the SD and the per-axis lag-1
  autocorrelation of the residual (scan minus its 3 mm Gaussian) in deep parenchyma away from
  vessels, reproduced by filtering white noise with a per-axis Gaussian.

Truth: the lesion is ``f >= 0.5`` (before the point-spread blur); its volume is that mask's voxel
count. The liver's truth is the manual liver plus every inserted lesion (also the part bulging out
of the outline, as manual references count tumours as liver).

Positions (:data:`PLACES`): ``deep`` (at least 5 mm under the surface), ``subcapsular`` (edge within
0.5-3 mm of the surface), ``bulging`` (centre between 0.3 radius outside and 0.4 radius inside the
outline: 10-60 % of the lesion outside the liver, where the outside part must not be air or bone),
``perivascular`` (edge within 0-2 mm of a portal or hepatic vein of at least 3 mm radius). Lesions
keep 8 mm from each other and from the scan's real tumours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from hepatoplan.segmentation import _grid
from hepatoplan.segmentation import _morph as morph

#: Lesion density profiles: kind -> (contrast range relative to the parenchyma, HU).
KINDS = {
    "hypodense": (-70.0, -30.0),
    "faint": (-25.0, -12.0),
    "necrotic": (-90.0, -55.0),
    "rim": (-90.0, -55.0),
    "heterogeneous": (-45.0, -25.0),
    "hyperdense": (20.0, 50.0),
}
PLACES = ("deep", "subcapsular", "bulging", "perivascular")
#: Scanner point spread (Gaussian sigma, mm) applied to the partial-volume fraction.
PSF_SIGMA_MM = 0.5
#: Largest sub-voxel size (mm) of the partial-volume supersampling.
SUBVOXEL_MM = 0.4
#: Lesions keep this distance (mm) from each other and from the scan's own tumours.
CLEARANCE_MM = 8.0
#: Fluid floor: no lesion voxel profile goes below this (HU; necrosis and cysts are 5-20 HU).
FLUID_HU = 8.0


@dataclass
class Lesion:
    """One inserted lesion: what was asked, its shape, its partial-volume fraction and truth mask
    on ``box`` (full-grid slices), its volume (mL) and median contrast (HU, set by :func:`insert`)."""

    kind: str
    place: str
    contrast_hu: float
    centre_mm: np.ndarray
    radius_mm: float
    shape: "_Shape" = field(repr=False)
    box: tuple = field(repr=False)
    fraction: np.ndarray = field(repr=False)
    outside_fraction: float = 0.0
    median_contrast_hu: float = float("nan")

    @property
    def mask(self) -> np.ndarray:
        return self.fraction >= 0.5

    def volume_ml(self, spacing) -> float:
        return float(self.mask.sum() * np.prod(spacing) / 1000.0)


@dataclass
class ScanNoise:
    """The scan's noise: SD (HU) and the per-axis Gaussian (sigma in voxels) giving its texture."""

    sd_hu: float
    sigma_vox: tuple

    def sample(self, shape, rng) -> np.ndarray:
        white = rng.normal(0.0, 1.0, shape).astype(np.float32)
        n = ndi.gaussian_filter(white, self.sigma_vox, mode="wrap") if any(self.sigma_vox) else white
        return n * (self.sd_hu / max(float(n.std()), 1e-6))


def measure_noise(ct: np.ndarray, liver: np.ndarray, vessels: np.ndarray, spacing) -> tuple[float, ScanNoise]:
    """Parenchyma median (HU) and noise of the scan, from the liver 8 mm deep and 3 mm from vessels."""
    from hepatoplan.arrays import bounding_box

    box = bounding_box(liver, pad=5)
    x = ct[box].astype(np.float32)
    deep = morph.erode(liver[box], 8.0, spacing) & ~morph.dilate(vessels[box], 3.0, spacing)
    r = x - _grid.gaussian(x, spacing, 3.0)
    sigmas = []
    for ax in range(3):
        a, b = [slice(None)] * 3, [slice(None)] * 3
        a[ax], b[ax] = slice(1, None), slice(None, -1)
        m = deep[tuple(a)] & deep[tuple(b)]
        rho = float(np.corrcoef(r[tuple(a)][m], r[tuple(b)][m])[0, 1])
        # lag-1 autocorrelation of Gaussian-filtered white noise: exp(-1 / (4 sigma^2))
        sigmas.append(float(np.sqrt(-1.0 / (4.0 * np.log(rho)))) if 0.05 < rho < 0.95 else 0.0)
    return float(np.median(x[deep])), ScanNoise(float(r[deep].std()), tuple(sigmas))


def _random_rotation(rng) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


class _Shape:
    """A lobulated ellipsoid: ``rho(p) <= 1`` inside, ``p`` in mm relative to the centre."""

    def __init__(self, radius_mm: float, rng):
        axes = np.exp(rng.uniform(np.log(0.8), np.log(1.25), 3))
        axes /= np.prod(axes) ** (1.0 / 3.0)
        self.radius_mm = radius_mm
        self.inv = (_random_rotation(rng) / (axes * radius_mm)).T  # p @ inv -> unit-sphere coords
        self.lobe_dirs = _random_rotation(rng)
        self.lobe_amp = rng.uniform(-0.1, 0.1, 3)
        self.lobe_freq = rng.integers(2, 4, 3)

    def rho(self, p: np.ndarray) -> np.ndarray:
        u = p @ self.inv
        n = np.linalg.norm(u, axis=-1)
        unit = u / np.maximum(n, 1e-9)[..., None]
        mod = 1.0 + sum(a * np.cos(k * np.arccos(np.clip(unit @ d, -1, 1)))
                        for a, k, d in zip(self.lobe_amp, self.lobe_freq, self.lobe_dirs))
        return n / mod


def _centres_mm(box, spacing) -> np.ndarray:
    """Voxel centres (mm) of ``box``, shape (nx, ny, nz, 3)."""
    return np.stack(np.meshgrid(*[np.arange(b.start, b.stop) * s for b, s in zip(box, spacing)], indexing="ij"), axis=-1)


def _fraction(shape: _Shape, centre_mm, box, spacing) -> np.ndarray:
    """Partial-volume fraction of every voxel of ``box`` inside the shape: voxels whose centre is
    far inside (outside) count 1 (0), those near the surface are supersampled."""
    sp = np.asarray(spacing, float)
    p = _centres_mm(box, sp) - centre_mm
    rho = shape.rho(p)
    margin = 2.5 * 0.5 * float(np.linalg.norm(sp)) / shape.radius_mm
    frac = (rho <= 1.0).astype(np.float32)
    near = np.abs(rho - 1.0) < margin
    sub = [max(1, int(np.ceil(s / SUBVOXEL_MM))) for s in sp]
    offs = np.stack(np.meshgrid(*[((np.arange(k) + 0.5) / k - 0.5) * s for k, s in zip(sub, sp)], indexing="ij"), axis=-1)
    offs = offs.reshape(-1, 3)
    pts = p[near]
    inside = np.zeros(len(pts), np.float32)
    for o in offs:
        inside += shape.rho(pts + o) <= 1.0
    frac[near] = inside / len(offs)
    return frac


def _profile(lesion: Lesion, shape: _Shape, box, spacing, parenchyma_hu: float, rng) -> np.ndarray:
    """The lesion's density (HU, before noise) on ``box``."""
    rho = shape.rho(_centres_mm(box, spacing) - lesion.centre_mm)
    c = lesion.contrast_hu
    n = [b.stop - b.start for b in box]

    def blotches(sigma_mm, sd):
        field_ = ndi.gaussian_filter(rng.normal(0, 1, n), [sigma_mm / s for s in spacing])
        return field_ * (sd / max(float(field_.std()), 1e-6))

    if lesion.kind in ("hypodense", "faint", "hyperdense"):
        hu = parenchyma_hu + c + blotches(2.0, 0.15 * abs(c))
    elif lesion.kind in ("necrotic", "rim"):
        # dark core (rho < 0.55) blending into a less dark periphery (a third of the contrast)
        t = np.clip((rho - 0.55) / 0.35, 0.0, 1.0)
        hu = parenchyma_hu + c * (1.0 - 0.67 * t) + blotches(2.5, 8.0)
        if lesion.kind == "rim":
            rim_mm = rng.uniform(1.5, 3.0)
            rim = rho * lesion.radius_mm > lesion.radius_mm - rim_mm
            hu = np.where(rim, parenchyma_hu + rng.uniform(15.0, 40.0) + blotches(1.5, 6.0), hu)
    else:  # heterogeneous: blotches from near fluid to above the parenchyma
        hu = parenchyma_hu + c + blotches(4.0, 28.0) + blotches(1.5, 10.0)
    return np.maximum(hu, FLUID_HU).astype(np.float32)


def _box_around(centre_mm, radius_mm, spacing, shape) -> tuple | None:
    reach = 1.3 * radius_mm + 2.0
    lo = np.floor((centre_mm - reach) / spacing).astype(int)
    hi = np.ceil((centre_mm + reach) / spacing).astype(int) + 1
    if np.any(lo < 1) or np.any(hi > np.asarray(shape) - 1):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


@dataclass
class Anatomy:
    """What placement needs from the reference masks: signed depth under the liver surface (mm,
    positive inside), distance to large vessels (mm), the scan's tumours, spacing."""

    depth_mm: np.ndarray
    vessel_dist_mm: np.ndarray
    tumours: np.ndarray
    spacing_mm: tuple

    @classmethod
    def from_masks(cls, liver, portal, hepatic, tumours, spacing):
        liver = liver > 0
        depth = morph._dist_inside(liver, spacing) - morph._dist_inside(~liver, spacing)
        ves = (portal > 0) | (hepatic > 0)
        large = morph.dilate(morph.erode(ves, 3.0, spacing), 3.0, spacing) & liver
        vdist = morph._dist_inside(~large, spacing) if large.any() else np.full(liver.shape, 1e9, np.float32)
        return cls(depth.astype(np.float32), vdist.astype(np.float32), tumours > 0, tuple(spacing))


def _candidate_centres(anat: Anatomy, place: str, radius_mm: float) -> np.ndarray:
    d, r = anat.depth_mm, radius_mm
    if place == "deep":
        ok = d >= r + 5.0
    elif place == "subcapsular":
        ok = (d >= r + 0.5) & (d <= r + 3.0)
    elif place == "bulging":
        ok = (d >= -0.3 * r) & (d <= 0.4 * r)
    else:  # perivascular
        ok = (d >= r + 1.0) & (anat.vessel_dist_mm >= r) & (anat.vessel_dist_mm <= r + 2.0)
    return np.argwhere(ok[::2, ::2, ::2]) * 2


def place_lesions(ct, anat: Anatomy, plan, rng, *, taken=None) -> list[Lesion]:
    """Place lesions ``plan`` = [(kind, place, volume_ml), ...] (positions drawn with ``rng``),
    each at most 40 attempts; returns the placed lesions with their truth masks (``ct`` unchanged)."""
    sp = np.asarray(anat.spacing_mm)
    taken = np.array(anat.tumours) if taken is None else taken
    clear = morph._dist_inside(~taken, sp) if taken.any() else np.full(taken.shape, 1e9, np.float32)
    placed = []
    for kind, place, volume_ml in plan:
        radius = float((3.0 * volume_ml * 1000.0 / (4.0 * np.pi)) ** (1.0 / 3.0))
        cands = _candidate_centres(anat, place, radius)
        for _ in range(40):
            if not len(cands):
                break
            idx = cands[rng.integers(len(cands))]
            centre = (idx + rng.uniform(-0.5, 0.5, 3)) * sp
            box = _box_around(centre, radius, sp, ct.shape)
            if box is None or float(clear[box].min()) < CLEARANCE_MM:
                continue
            shape = _Shape(radius, rng)
            frac = _fraction(shape, centre, box, sp)
            mask = frac >= 0.5
            if not mask.any():
                continue
            outside = mask & (anat.depth_mm[box] <= 0)
            out_frac = float(outside.sum() / max(mask.sum(), 1))
            if place == "bulging" and not 0.1 <= out_frac <= 0.6:
                continue
            if place != "bulging" and out_frac > 0:
                continue
            vals = ct[box][outside]
            if vals.size and np.mean((vals < -200) | (vals > 250)) > 0.03:
                continue  # would bulge into air or bone
            placed.append(Lesion(kind, place, float(rng.uniform(*KINDS[kind])), centre, radius, shape, box, frac,
                                 outside_fraction=round(out_frac, 2)))
            m = np.zeros(taken.shape, bool)
            m[box] = mask
            clear = np.minimum(clear, morph._dist_inside(~m, sp))
            break
    return placed


def insert(ct: np.ndarray, lesions: list[Lesion], parenchyma_hu: float, noise: ScanNoise, spacing, rng) -> np.ndarray:
    """A copy of ``ct`` (float32) with the ``lesions`` blended in (partial volume, point spread,
    the scan's noise texture); sets each lesion's ``median_contrast_hu`` (truth voxels, noise-free
    profile minus the parenchyma)."""
    out = ct.astype(np.float32, copy=True)
    sp = np.asarray(spacing, float)
    for les in lesions:
        prof = _profile(les, les.shape, les.box, sp, parenchyma_hu, rng)
        f = ndi.gaussian_filter(les.fraction, PSF_SIGMA_MM / sp)
        n = noise.sample(f.shape, rng)
        out[les.box] = (1.0 - f) * out[les.box] + f * (prof + n)
        les.median_contrast_hu = round(float(np.median(prof[les.mask])) - parenchyma_hu, 1)
    return out


def truth_masks(ref: dict, lesions: list[Lesion]) -> tuple[dict, int]:
    """Reference masks with the lesions, and the number of the scan's own lesions.

    ``tumours`` becomes an instance map: the scan's own lesions first (one label per 26-connected
    component, 1..n), then the inserted ones in order (n + 1, ...); the liver gains the lesions;
    the vessel masks lose the voxels the lesions replaced.
    """
    import cc3d

    out = dict(ref)
    tumours = cc3d.connected_components((ref["tumours"] > 0).astype(np.uint8), connectivity=26).astype(np.uint16)
    n_real = int(tumours.max())
    liver = ref["liver"] > 0
    vessels = {key: ref[key].copy() for key in ("portal_vein", "hepatic_veins")}
    for k, les in enumerate(lesions, start=n_real + 1):
        tumours[les.box][les.mask] = k
        liver[les.box] |= les.mask
        for v in vessels.values():
            v[les.box][les.mask] = 0
    out.update(vessels, liver=liver.astype(np.uint8), tumours=tumours)
    return out, n_real
