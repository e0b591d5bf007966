"""Staging scenarios (PVE, PVL, ALPPS, LVD) and the race against the tumour.

Each technique is described by a literature figure of relative FLR hypertrophy observed at a given
day, plus the usual window in which stage 2 is performed. The figure is converted to the growth
constant of the regeneration model (:mod:`hepatoplan.planning.growth`)

    k·Qp = M0² · ((1 + h/100)² − 1) / (2 · at_days)

so for a given baseline FLR and target volume each scenario gives the time to target
``t* = (T² − M0²) / (2·k·Qp)``, whether the target is reached within the window, the day of stage 2
(``t*`` clamped to the window, or the end of the window when the target is not reached) and the
predicted FLR on that day. With a tumour volume and doubling time (:mod:`hepatoplan.planning.tumour`) it also
predicts the tumour burden at stage 2 and flags a drop-out risk.

Defaults (override any of them with :func:`dataclasses.replace` or ``technique_overrides``):

======  ============  =========  ==============  ==============================================
name    hypertrophy   at day     stage-2 window  source
======  ============  =========  ==============  ==============================================
PVE     +37.9 %       28         21–42 days      van Lienden 2013 (mean of 44 series, 1791 pts);
                                                 seed 000: 3–6 weeks
PVL     +30 %         28         21–42 days      moderate, as PVE or somewhat less (Aussilhou
                                                 2008; Heil & Schadde 2020); *pragmatic default*
ALPPS   +74 %         9          7–10 days       Schnitzbauer 2012 (median +74 % in 9 days);
                                                 seed 000: +60–80 % in 7–10 days
LVD     +50 %         21         14–28 days      between PVE and ALPPS (Guiu 2016; Heil & Schadde
                                                 2020 review of PVE/HVE); *pragmatic default*
======  ============  =========  ==============  ==============================================

The PVL and LVD figures are round values inside the published ranges, not a single study's mean;
a centre should replace them with its own series.

Drop-out risk (the TSH-versus-ALPPS trade-off of seed 000) is flagged when the wait until stage 2
exceeds ``dropout_wait_days`` (default 28 days, the boundary between the 1–3-week ALPPS/LVD and
the 3–6-week PVE/PVL waits; a design choice, not a published cut-off — 20–40 % of PVE/PVL patients
drop out, mostly from tumour progression during the wait, Heil & Schadde 2020) or when the
predicted tumour volume reaches RECIST progression (x1.728, :mod:`hepatoplan.planning.tumour`).

References
----------
van Lienden KP, van den Esschert JW, de Graaf W, et al. Portal vein embolization before liver
resection: a systematic review. Cardiovasc Intervent Radiol 2013;36:25-34.

Schnitzbauer AA, Lang SA, Goessmann H, et al. Right portal vein ligation combined with in situ
splitting induces rapid left lateral liver lobe hypertrophy enabling 2-staged extended right
hepatic resection in small-for-size settings. Ann Surg 2012;255:405-414.

Aussilhou B, Lesurtel M, Sauvanet A, et al. Right portal vein ligation is as efficient as portal
vein embolization to induce hypertrophy of the left liver remnant. J Gastrointest Surg
2008;12:297-303.

Guiu B, Chevallier P, Denys A, et al. Simultaneous trans-hepatic portal and hepatic vein
embolization before major hepatectomy: the liver venous deprivation technique. Eur Radiol
2016;26:4259-4267.

Heil J, Schadde E. Simultaneous portal and hepatic vein embolization before major liver resection.
Langenbecks Arch Surg 2021;406:1295-1305.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from hepatoplan.errors import InputError

from hepatoplan.planning import _validate
from hepatoplan.planning.growth import (
    MAX_HYPERTROPHY_PERCENT,
    MIN_HYPERTROPHY_PERCENT,
    days_to_target,
    kqp_from_hypertrophy,
    predict_flr_ml,
)
from hepatoplan.planning.tumour import (
    CRLM_DOUBLING_DAYS_DEFAULT,
    CRLM_DOUBLING_DAYS_SOURCE,
    RECIST_PROGRESSION_VOLUME_FACTOR,
    doubling,
    tumour_volume_ml,
)

#: Default maximum wait (days) before stage 2 without a drop-out-risk flag (design choice).
DROPOUT_WAIT_DAYS_DEFAULT = 28.0


@dataclass(frozen=True)
class Technique:
    """A hypertrophy technique as a literature growth figure plus its stage-2 window.

    Attributes
    ----------
    name : str
        Short name (``"PVE"``).
    label : str
        Long name for reports.
    hypertrophy_percent : float
        Relative FLR increase observed ``at_days`` after the procedure, percent (> 0).
    at_days : float
        Day of that observation (> 0).
    earliest_stage2_days, latest_stage2_days : float
        Usual window for stage 2, days after the procedure (0 < earliest <= latest).
    reference : str
        Source of the figures.
    """

    name: str
    label: str
    hypertrophy_percent: float
    at_days: float
    earliest_stage2_days: float
    latest_stage2_days: float
    reference: str

    def __post_init__(self):
        _validate.bounded(f"{self.name} hypertrophy_percent", self.hypertrophy_percent, low=MIN_HYPERTROPHY_PERCENT,
                          high=MAX_HYPERTROPHY_PERCENT, unit="%")
        _validate.days(f"{self.name} at_days", self.at_days, low=_validate.MIN_INTERVAL_DAYS)
        early = _validate.days(f"{self.name} earliest_stage2_days", self.earliest_stage2_days,
                               low=_validate.MIN_INTERVAL_DAYS)
        late = _validate.days(f"{self.name} latest_stage2_days", self.latest_stage2_days,
                              low=_validate.MIN_INTERVAL_DAYS)
        if late < early:
            raise InputError(
                f"{self.name}: latest_stage2_days ({late:g}) must be >= earliest_stage2_days ({early:g})"
            )

    def kqp_ml2_per_day(self, flr_ml: float) -> float:
        """k·Qp this technique gives a remnant of ``flr_ml`` (mL²/day)."""
        return kqp_from_hypertrophy(flr0_ml=flr_ml, hypertrophy_percent=self.hypertrophy_percent, days=self.at_days)

    def to_dict(self) -> dict:
        return asdict(self)


#: Literature defaults, in order of increasing speed (see the module docstring for sources).
DEFAULT_TECHNIQUES: dict[str, Technique] = {
    t.name: t
    for t in (
        Technique("PVE", "portal vein embolization", 37.9, 28.0, 21.0, 42.0,
                  "van Lienden 2013 (mean +37.9 %); seed 000: 3-6 weeks"),
        Technique("PVL", "portal vein ligation", 30.0, 28.0, 21.0, 42.0,
                  "moderate, as PVE or less (Aussilhou 2008; Heil & Schadde 2020); pragmatic default"),
        Technique("LVD", "liver venous deprivation (portal + hepatic vein embolization)", 50.0, 21.0, 14.0, 28.0,
                  "between PVE and ALPPS (Guiu 2016; Heil & Schadde 2020); pragmatic default"),
        Technique("ALPPS", "associating liver partition and portal vein ligation", 74.0, 9.0, 7.0, 10.0,
                  "Schnitzbauer 2012 (median +74 % in 9 days); seed 000: +60-80 % in 7-10 days"),
    )
}


def techniques_with_overrides(overrides: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Technique]:
    """Default techniques with some fields replaced, e.g. ``{"PVE": {"hypertrophy_percent": 45}}``.

    Raises
    ------
    InputError
        Unknown technique or field name, or an invalid value.
    """
    out = dict(DEFAULT_TECHNIQUES)
    allowed = ("hypertrophy_percent", "at_days", "earliest_stage2_days", "latest_stage2_days")
    for name, fields in (overrides or {}).items():
        key = str(name).upper()
        if key not in out:
            raise InputError(f"unknown technique {name!r}; choose from {', '.join(DEFAULT_TECHNIQUES)}")
        bad = [f for f in fields if f not in allowed]
        if bad:
            raise InputError(f"cannot override {', '.join(bad)} of {key}; overridable: {', '.join(allowed)}")
        out[key] = replace(out[key], **{f: float(v) for f, v in fields.items()},
                           reference=out[key].reference + " (overridden by user)")
    return out


def evaluate_scenario(
    technique: Technique,
    *,
    flr_ml: float,
    target_ml: float,
    tumour_ml: float | None = None,
    doubling_days: float = CRLM_DOUBLING_DAYS_DEFAULT,
    dropout_wait_days: float = DROPOUT_WAIT_DAYS_DEFAULT,
) -> dict:
    """One technique's outlook for a remnant of ``flr_ml`` that must reach ``target_ml``.

    Returns
    -------
    dict
        ``technique``, ``label``, ``hypertrophy_percent``, ``at_days``, ``window_days``
        ``[earliest, latest]``, ``kqp_ml2_per_day``, ``days_to_target`` (t*),
        ``target_reached_in_window``, ``stage2_day``, ``flr_at_stage2_ml``,
        ``flr_at_window_end_ml``, ``tumour_at_stage2_ml`` and ``tumour_growth_percent`` (None
        without a tumour volume), ``dropout_risk`` (bool) and ``dropout_reasons`` (list of str),
        ``reference``.
    """
    flr = _validate.volume_ml("flr_ml", flr_ml)
    target = _validate.volume_ml("target_ml", target_ml)
    wait = _validate.days("dropout_wait_days", dropout_wait_days, low=_validate.MIN_INTERVAL_DAYS)
    kqp = technique.kqp_ml2_per_day(flr)
    t_star = days_to_target(flr0_ml=flr, target_ml=target, kqp_ml2_per_day=kqp)
    early, late = technique.earliest_stage2_days, technique.latest_stage2_days
    reached = t_star <= late
    stage2 = min(max(t_star, early), late) if reached else late
    tumour_at = growth_pct = None
    reasons = []
    if stage2 > wait:
        reasons.append(f"wait until stage 2 ({stage2:.0f} days) exceeds {wait:g} days")
    if tumour_ml is not None:
        tumour_at = tumour_volume_ml(tumour_ml=tumour_ml, doubling_days=doubling_days, days=stage2)
        growth_pct = 100.0 * (tumour_at / tumour_ml - 1.0)
        if tumour_at >= RECIST_PROGRESSION_VOLUME_FACTOR * tumour_ml:
            reasons.append(
                f"tumour grows {growth_pct:.0f} % by stage 2, beyond RECIST progression (+72.8 % volume)"
            )
    if not reached:
        reasons.append(f"target not reached within the {late:g}-day window")
    return {
        "technique": technique.name,
        "label": technique.label,
        "hypertrophy_percent": technique.hypertrophy_percent,
        "at_days": technique.at_days,
        "window_days": [early, late],
        "kqp_ml2_per_day": kqp,
        "days_to_target": t_star,
        "target_reached_in_window": bool(reached),
        "stage2_day": stage2,
        "flr_at_stage2_ml": predict_flr_ml(flr0_ml=flr, kqp_ml2_per_day=kqp, days=stage2),
        "flr_at_window_end_ml": predict_flr_ml(flr0_ml=flr, kqp_ml2_per_day=kqp, days=late),
        "tumour_at_stage2_ml": tumour_at,
        "tumour_growth_percent": growth_pct,
        "dropout_risk": bool(reasons),
        "dropout_reasons": reasons,
        "reference": technique.reference,
    }


def growth_outlook(
    *,
    flr_ml: float,
    target_ml: float,
    tumour_ml: float | None = None,
    doubling_days: float | None = None,
    techniques: Mapping[str, Technique] | None = None,
    dropout_wait_days: float = DROPOUT_WAIT_DAYS_DEFAULT,
) -> dict:
    """Outlook of every staging technique for a remnant that must grow to ``target_ml``.

    Parameters
    ----------
    flr_ml : float
        Current (baseline) future liver remnant, mL (> 0).
    target_ml : float
        Volume the verdict needs (``RemnantAssessment.min_remnant_ml``), mL (>= ``flr_ml``).
    tumour_ml : float, optional
        Current total tumour volume, mL (> 0), for the race against the tumour.
    doubling_days : float, optional
        Tumour volume doubling time, days (> 0). Default 86 days for colorectal liver metastases
        (Finlay 1988) when ``tumour_ml`` is given.
    techniques : mapping of str to Technique, optional
        Scenarios to evaluate; default :data:`DEFAULT_TECHNIQUES`
        (see :func:`techniques_with_overrides`).
    dropout_wait_days : float
        Wait before stage 2 beyond which drop-out risk is flagged (default 28 days).

    Returns
    -------
    dict
        JSON-ready: ``flr_ml``, ``target_ml``, ``model``, ``tumour_ml``, ``doubling_days``,
        ``doubling_days_source``, ``dropout_wait_days``, ``scenarios`` (one dict per technique,
        see :func:`evaluate_scenario`), ``fastest_to_target`` (technique name or None) and
        ``reachable_without_dropout_risk`` (names).

    Raises
    ------
    InputError
        Non-positive volumes or times, ``target_ml`` below ``flr_ml``.
    """
    flr = _validate.volume_ml("flr_ml", flr_ml, hint="future liver remnant volume in mL")
    target = _validate.volume_ml("target_ml", target_ml, hint="volume the remnant must reach, mL")
    if target < flr:
        raise InputError(
            f"target_ml ({target:g}) is below flr_ml ({flr:g}): the remnant is already adequate, "
            "no staging outlook is needed"
        )
    if tumour_ml is not None:
        _validate.volume_ml("tumour_ml", tumour_ml, hint="total tumour volume in mL")
    if doubling_days is None:
        td, source = CRLM_DOUBLING_DAYS_DEFAULT, CRLM_DOUBLING_DAYS_SOURCE
    else:
        td, source = doubling(doubling_days), "user"
    techs = DEFAULT_TECHNIQUES if techniques is None else techniques
    scenarios = [
        evaluate_scenario(t, flr_ml=flr, target_ml=target, tumour_ml=tumour_ml, doubling_days=td,
                          dropout_wait_days=dropout_wait_days)
        for t in techs.values()
    ]
    in_window = [s for s in scenarios if s["target_reached_in_window"]]
    fastest = min(in_window, key=lambda s: s["days_to_target"])["technique"] if in_window else None
    return {
        "flr_ml": flr,
        "target_ml": target,
        "model": "M(t)^2 = M0^2 + 2*k*Qp*t; k*Qp from each technique's literature hypertrophy",
        "tumour_ml": tumour_ml,
        "doubling_days": td,
        "doubling_days_source": source,
        "dropout_wait_days": float(dropout_wait_days),
        "scenarios": scenarios,
        "fastest_to_target": fastest,
        "reachable_without_dropout_risk": [s["technique"] for s in scenarios if not s["dropout_risk"]],
    }


def outlook_for_assessment(
    assessment,
    *,
    tumour_ml: float | None = None,
    doubling_days: float | None = None,
    techniques: Mapping[str, Technique] | None = None,
    dropout_wait_days: float = DROPOUT_WAIT_DAYS_DEFAULT,
) -> tuple[dict | None, str | None]:
    """Growth outlook for a :class:`hepatoplan.planning.assessment.RemnantAssessment`, or why there is none.

    Returns
    -------
    (dict or None, str or None)
        ``(growth_outlook(...), None)`` when the remnant is short of ``min_remnant_ml``;
        ``(None, reason)`` when it is adequate, or big enough but failing a non-volume criterion
        (KGR), where growth cannot fix the verdict.
    """
    if assessment.shortfall_ml > 0:
        outlook = growth_outlook(
            flr_ml=assessment.remnant_ml, target_ml=assessment.min_remnant_ml, tumour_ml=tumour_ml,
            doubling_days=doubling_days, techniques=techniques, dropout_wait_days=dropout_wait_days,
        )
        return outlook, None
    if assessment.verdict == "adequate":
        return None, "the remnant is adequate: no staging needed"
    failed = ", ".join(c.name for c in assessment.criteria if not c.passed)
    return None, f"the remnant is large enough but {failed} failed: growing it further will not fix that"
