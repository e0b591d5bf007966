"""Is the future liver remnant big enough? A verdict with every criterion listed.

:func:`assess_remnant` evaluates the primary criterion (FLR as a percentage of the functional liver
volume against the parenchyma threshold of :mod:`hepatoplan.planning.thresholds`) and, when their inputs are
given, the optional ones: standardized FLR (height and weight), FLR-to-body-weight ratio (weight)
and kinetic growth rate (a KGR measured after PVE). The verdict is ``"adequate"`` only when every
evaluated criterion passes.

``min_remnant_ml`` is the largest remnant volume any *volume* criterion requires (the primary one
alone when height/weight are not given: ``threshold_percent / 100 * functional_liver_ml``).
``shortfall_ml`` and ``recurrence_reserve_ml`` are measured against it, so a patient whose
standardized FLR is the binding constraint is not told that a smaller remnant would do. KGR is
not a volume criterion: a failed KGR makes the verdict inadequate with ``shortfall_ml`` 0 (the
remnant is big enough but does not regenerate as it should).

All volumes in mL, percentages in percent (0–100). The seed's example (seed 004): functional
liver 1500 mL, chemotherapy threshold 30 % -> minimum 450 mL; remnant 525 mL (35 %) is adequate
with a recurrence reserve of 75 mL.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hepatoplan.errors import InputError

from hepatoplan.planning import _validate
from hepatoplan.planning.liver_volume import (
    G_PER_KG,
    LIVER_DENSITY_G_PER_ML,
    bsa_mosteller_m2,
    flr_to_body_weight_percent,
    telv_urata_ml,
    telv_vauthey_ml,
)
from hepatoplan.planning.thresholds import (
    FLR_TO_BODY_WEIGHT_MIN_PERCENT,
    KGR_MIN_PERCENT_PER_WEEK,
    check_parenchyma,
)
from hepatoplan.planning.thresholds import threshold_percent as _threshold_percent

#: Relative tolerance when comparing a volume with its requirement (450 mL vs 30 % of 1500 mL
#: must pass despite binary floating point).
_REL_TOL = 1e-9

#: TELV formulas accepted by :func:`assess_remnant`.
TELV_FORMULAS = {"vauthey": telv_vauthey_ml, "urata": telv_urata_ml}


@dataclass(frozen=True)
class Criterion:
    """One evaluated criterion of the remnant assessment.

    Attributes
    ----------
    name : str
        ``"flr_percent"``, ``"sflr_percent"``, ``"flr_to_body_weight_percent"`` or
        ``"kgr_percent_per_week"``.
    value, threshold : float
        Measured value and the minimum it must reach, in ``unit``.
    unit : str
        ``"%"`` or ``"%/week"``.
    passed : bool
        ``value >= threshold`` (with a 1e-9 relative tolerance).
    required_ml : float or None
        Remnant volume (mL) this criterion requires; None for KGR.
    reference : str
        Where the threshold comes from.
    """

    name: str
    value: float
    threshold: float
    unit: str
    passed: bool
    required_ml: float | None
    reference: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RemnantAssessment:
    """Result of :func:`assess_remnant`; :meth:`to_dict` gives the JSON-ready form.

    Volumes in mL, percentages 0–100. Optional quantities are None when their inputs were not
    given (never 0).
    """

    parenchyma: str
    threshold_percent: float
    remnant_ml: float
    functional_liver_ml: float
    flr_percent: float
    min_remnant_ml: float
    binding_criterion: str
    verdict: str
    shortfall_ml: float
    recurrence_reserve_ml: float
    bsa_m2: float | None
    telv_ml: float | None
    telv_formula: str | None
    sflr_percent: float | None
    flr_to_body_weight_percent: float | None
    kgr_percent_per_week: float | None
    criteria: tuple[Criterion, ...]

    @property
    def adequate(self) -> bool:
        return self.verdict == "adequate"

    def to_dict(self) -> dict:
        """JSON-ready dict; ``criteria`` is a list of dicts."""
        out = {k: v for k, v in asdict(self).items() if k != "criteria"}
        out["criteria"] = [c.to_dict() for c in self.criteria]
        return out


def _passes(value: float, threshold: float) -> bool:
    return value >= threshold - _REL_TOL * abs(threshold)


def _volume_criterion(name: str, value_percent: float, threshold_percent: float, remnant_ml: float,
                      required_ml: float, reference: str) -> Criterion:
    """A criterion met when the remnant reaches ``required_ml`` (its value and threshold in %)."""
    return Criterion(name=name, value=value_percent, threshold=threshold_percent, unit="%",
                     passed=_passes(remnant_ml, required_ml), required_ml=required_ml, reference=reference)


def _kgr_criterion(kgr_percent_per_week: float) -> Criterion:
    """Kinetic growth rate after PVE >= 2 %/week (Shindoh 2013); not a volume criterion."""
    return Criterion(
        name="kgr_percent_per_week",
        value=kgr_percent_per_week,
        threshold=KGR_MIN_PERCENT_PER_WEEK,
        unit="%/week",
        passed=_passes(kgr_percent_per_week, KGR_MIN_PERCENT_PER_WEEK),
        required_ml=None,
        reference="kinetic growth rate after PVE >= 2 %/week (Shindoh 2013)",
    )


def assess_remnant(
    *,
    remnant_ml: float,
    functional_liver_ml: float,
    parenchyma: str = "normal",
    threshold_percent: float | None = None,
    height_cm: float | None = None,
    weight_kg: float | None = None,
    kgr_percent_per_week: float | None = None,
    telv_formula: str = "vauthey",
) -> RemnantAssessment:
    """Verdict on a future liver remnant, with every criterion evaluated.

    Parameters
    ----------
    remnant_ml : float
        Future liver remnant (FLR) volume in mL (> 0), tumour excluded.
    functional_liver_ml : float
        Functional liver volume in mL (total liver minus tumour; >= ``remnant_ml``).
    parenchyma : {"normal", "chemotherapy", "cirrhosis"}
        Parenchymal quality; sets the default threshold (20 / 30 / 40 %).
    threshold_percent : float, optional
        Override of the parenchyma threshold, percent in (0, 100].
    height_cm, weight_kg : float, optional
        Both given: BSA (Mosteller), TELV (``telv_formula``) and the sFLR criterion. ``weight_kg``
        alone is enough for the FLR-to-body-weight criterion (>= 0.5 %, Truant 2007).
    kgr_percent_per_week : float, optional
        KGR measured after PVE (:func:`hepatoplan.planning.liver_volume.kgr_percent_per_week`); adds the
        criterion KGR >= 2 %/week (Shindoh 2013).
    telv_formula : {"vauthey", "urata"}
        Formula for the estimated total liver volume.

    Returns
    -------
    RemnantAssessment

    Raises
    ------
    InputError
        Non-positive volumes, a remnant larger than the functional liver, unknown parenchyma or
        formula, height without weight, non-positive height/weight.
    """
    remnant = _validate.positive("remnant_ml", remnant_ml, hint="future liver remnant volume in mL")
    functional = _validate.positive(
        "functional_liver_ml", functional_liver_ml, hint="total liver minus tumour, in mL"
    )
    if remnant > functional * (1 + _REL_TOL):
        raise InputError(
            f"remnant_ml ({remnant:g}) must not exceed functional_liver_ml ({functional:g}): the "
            "remnant is part of the functional liver; check that the two volumes are not swapped"
        )
    key = check_parenchyma(parenchyma)
    thr = _threshold_percent(key, override_percent=threshold_percent)
    if telv_formula not in TELV_FORMULAS:
        raise InputError(f"telv_formula must be one of {', '.join(TELV_FORMULAS)}, got {telv_formula!r}")
    if height_cm is not None and weight_kg is None:
        raise InputError("height_cm was given without weight_kg: give both to compute the sFLR")

    flr_pct = 100.0 * remnant / functional
    source = "user override" if threshold_percent is not None else f"{key} parenchyma default"
    criteria = [_volume_criterion(
        "flr_percent", flr_pct, thr, remnant, thr / 100.0 * functional,
        f"FLR / functional liver volume >= {thr:g} % ({source}; hepatoplan.planning.thresholds)")]
    bsa = telv = sflr = fbw = kgr = None
    if height_cm is not None:
        bsa = bsa_mosteller_m2(height_cm=height_cm, weight_kg=weight_kg)
        telv = TELV_FORMULAS[telv_formula](bsa_m2=bsa)
        sflr = 100.0 * remnant / telv
        criteria.append(_volume_criterion(
            "sflr_percent", sflr, thr, remnant, thr / 100.0 * telv,
            f"standardized FLR = FLR / TELV ({telv_formula}, BSA Mosteller) >= {thr:g} % (Vauthey 2002; Kishi 2009)"))
    if weight_kg is not None:
        fbw = flr_to_body_weight_percent(flr_ml=remnant, weight_kg=weight_kg)
        w = _validate.positive("weight_kg", weight_kg)
        criteria.append(_volume_criterion(
            "flr_to_body_weight_percent", fbw, FLR_TO_BODY_WEIGHT_MIN_PERCENT, remnant,
            FLR_TO_BODY_WEIGHT_MIN_PERCENT / 100.0 * w * G_PER_KG / LIVER_DENSITY_G_PER_ML,
            "FLR (1 g/mL) / body weight >= 0.5 % (Truant 2007)"))
    if kgr_percent_per_week is not None:
        kgr = _validate.finite("kgr_percent_per_week", kgr_percent_per_week)
        criteria.append(_kgr_criterion(kgr))

    volume_criteria = [c for c in criteria if c.required_ml is not None]
    binding = max(volume_criteria, key=lambda c: c.required_ml)
    min_ml = binding.required_ml
    adequate = all(c.passed for c in criteria)
    shortfall = 0.0 if _passes(remnant, min_ml) else min_ml - remnant
    return RemnantAssessment(
        parenchyma=key, threshold_percent=thr, remnant_ml=remnant, functional_liver_ml=functional,
        flr_percent=flr_pct, min_remnant_ml=min_ml, binding_criterion=binding.name,
        verdict="adequate" if adequate else "inadequate", shortfall_ml=shortfall,
        recurrence_reserve_ml=remnant - min_ml, bsa_m2=bsa, telv_ml=telv,
        telv_formula=telv_formula if telv is not None else None, sflr_percent=sflr,
        flr_to_body_weight_percent=fbw, kgr_percent_per_week=kgr, criteria=tuple(criteria),
    )
