"""Body surface area, estimated total liver volume, standardized FLR, hypertrophy and KGR.

Plain arithmetic on scalars; volumes in mL, heights in cm, weights in kg, BSA in m², times in days.

References
----------
Mosteller RD. Simplified calculation of body-surface area. N Engl J Med 1987;317:1098.

Du Bois D, Du Bois EF. A formula to estimate the approximate surface area if height and weight be
known. Arch Intern Med 1916;17:863-871.

Vauthey JN, Abdalla EK, Doherty DA, et al. Body surface area and body weight predict total liver
volume in Western adults. Liver Transpl 2002;8:233-240.

Urata K, Kawasaki S, Matsunami H, et al. Calculation of child and adult standard liver volume for
liver transplantation. Hepatology 1995;21:1317-1321.

Truant S, Oberlin O, Sergent G, et al. Remnant liver volume to body weight ratio > or = 0.5%.
J Am Coll Surg 2007;204:22-33.

Shindoh J, Truty MJ, Aloia TA, et al. Kinetic growth rate after portal vein embolization predicts
posthepatectomy outcomes. J Am Coll Surg 2013;216:201-209.
"""

from __future__ import annotations

import math

from hepatoplan.errors import InputError
from hepatoplan.units import DAYS_PER_WEEK

from hepatoplan.planning import _validate

#: Liver density assumed when a volume in mL is compared with a body weight (1 g/mL; Truant 2007
#: and most volumetry papers make the same assumption).
LIVER_DENSITY_G_PER_ML = 1.0

#: Grams per kilogram (body weight to grams).
G_PER_KG = 1000.0

_HEIGHT_HINT = "height in centimetres, e.g. 172"
_WEIGHT_HINT = "body weight in kilograms, e.g. 70"

#: Heights, weights and body surface areas accepted: beyond any patient (typing errors, unit slips).
HEIGHT_RANGE_CM, WEIGHT_RANGE_KG, BSA_RANGE_M2 = (30.0, 300.0), (1.0, 700.0), (0.1, 10.0)


def _height_weight(height_cm, weight_kg) -> tuple[float, float]:
    return _in_range("height_cm", height_cm, HEIGHT_RANGE_CM, "cm", _HEIGHT_HINT), _weight(weight_kg)


def _weight(weight_kg) -> float:
    return _in_range("weight_kg", weight_kg, WEIGHT_RANGE_KG, "kg", _WEIGHT_HINT)


def _bsa(bsa_m2) -> float:
    return _in_range("bsa_m2", bsa_m2, BSA_RANGE_M2, "m²", "")


def _in_range(name: str, value, limits: tuple[float, float], unit: str, hint: str) -> float:
    _validate.positive(name, value, hint=hint)
    return _validate.bounded(name, value, low=limits[0], high=limits[1], unit=unit, hint=hint)


def bsa_mosteller_m2(*, height_cm: float, weight_kg: float) -> float:
    """Body surface area by Mosteller (1987): ``sqrt(height_cm * weight_kg / 3600)``.

    Parameters
    ----------
    height_cm : float
        Height in cm (> 0).
    weight_kg : float
        Body weight in kg (> 0).

    Returns
    -------
    float
        BSA in m². Example: 170 cm, 70 kg -> sqrt(11900 / 3600) = 1.8181 m².

    Raises
    ------
    InputError
        Non-positive or non-finite height or weight.
    """
    h, w = _height_weight(height_cm, weight_kg)
    return math.sqrt(h * w / 3600.0)


def bsa_dubois_m2(*, height_cm: float, weight_kg: float) -> float:
    """Body surface area by Du Bois & Du Bois (1916): ``0.007184 * W^0.425 * H^0.725``.

    Parameters
    ----------
    height_cm : float
        Height in cm (> 0).
    weight_kg : float
        Body weight in kg (> 0).

    Returns
    -------
    float
        BSA in m².

    Raises
    ------
    InputError
        Non-positive or non-finite height or weight.
    """
    h, w = _height_weight(height_cm, weight_kg)
    return 0.007184 * w**0.425 * h**0.725


def telv_vauthey_ml(*, bsa_m2: float) -> float:
    """Estimated total liver volume by Vauthey (2002): ``-794.41 + 1267.28 * BSA``.

    Derived on Western adults; the standard denominator of the standardized FLR (sFLR).

    Parameters
    ----------
    bsa_m2 : float
        Body surface area in m² (> 0).

    Returns
    -------
    float
        TELV in mL. Example: BSA 2.0 m² -> 1740.15 mL.

    Raises
    ------
    InputError
        Non-positive BSA, or a BSA so small (< 0.627 m²) that the formula gives a volume <= 0
        (the regression does not apply to small children).
    """
    bsa = _bsa(bsa_m2)
    telv = -794.41 + 1267.28 * bsa
    if telv <= 0:
        raise InputError(
            f"bsa_m2 = {bsa:g} m² is outside the range of the Vauthey formula (TELV would be "
            f"{telv:.1f} mL); it was derived on adults, use telv_urata_ml for small patients"
        )
    return telv


def telv_urata_ml(*, bsa_m2: float) -> float:
    """Standard liver volume by Urata (1995): ``706.2 * BSA + 2.4``.

    Derived on Japanese children and adults; tends to underestimate Western adults' livers.

    Parameters
    ----------
    bsa_m2 : float
        Body surface area in m² (> 0).

    Returns
    -------
    float
        Standard liver volume in mL. Example: BSA 2.0 m² -> 1414.8 mL.

    Raises
    ------
    InputError
        Non-positive BSA.
    """
    bsa = _bsa(bsa_m2)
    return 706.2 * bsa + 2.4


def sflr_percent(*, flr_ml: float, telv_ml: float) -> float:
    """Standardized FLR: ``100 * flr_ml / telv_ml`` (Vauthey 2002; Kishi 2009).

    Parameters
    ----------
    flr_ml : float
        Measured future liver remnant volume in mL (> 0).
    telv_ml : float
        Estimated total liver volume in mL (> 0), e.g. :func:`telv_vauthey_ml`.

    Returns
    -------
    float
        sFLR in percent.

    Raises
    ------
    InputError
        Non-positive volumes.
    """
    flr = _validate.volume_ml("flr_ml", flr_ml)
    telv = _validate.volume_ml("telv_ml", telv_ml)
    return 100.0 * flr / telv


def flr_to_body_weight_percent(*, flr_ml: float, weight_kg: float) -> float:
    """FLR-to-body-weight ratio (Truant 2007): ``100 * flr_ml * 1 g/mL / (weight_kg * 1000)``.

    Parameters
    ----------
    flr_ml : float
        Future liver remnant volume in mL (> 0); converted to grams at 1 g/mL.
    weight_kg : float
        Body weight in kg (> 0).

    Returns
    -------
    float
        Ratio in percent; the published safety cut-off is >= 0.5 %. Example: 400 mL, 80 kg ->
        0.5 %.

    Raises
    ------
    InputError
        Non-positive volume or weight.
    """
    flr = _validate.volume_ml("flr_ml", flr_ml)
    w = _weight(weight_kg)
    return 100.0 * flr * LIVER_DENSITY_G_PER_ML / (w * G_PER_KG)


def degree_of_hypertrophy_percent(*, sflr_before_percent: float, sflr_after_percent: float) -> float:
    """Degree of hypertrophy (Shindoh 2013): ``sflr_after_percent - sflr_before_percent``.

    DH is a difference of standardized FLRs, in percentage points of the TELV (not the relative
    growth of the FLR). It is negative when the remnant shrank.

    Parameters
    ----------
    sflr_before_percent : float
        sFLR before portal vein embolization (or any stage-1 procedure), percent (> 0).
    sflr_after_percent : float
        sFLR at the follow-up volumetry, percent (> 0).

    Returns
    -------
    float
        DH in percentage points. Example: 15 % -> 25 % gives DH = 10 points.

    Raises
    ------
    InputError
        Non-positive or non-finite percentages.
    """
    before = _validate.positive("sflr_before_percent", sflr_before_percent)
    after = _validate.positive("sflr_after_percent", sflr_after_percent)
    return after - before


def kgr_percent_per_week(*, degree_of_hypertrophy_percent: float, days: float) -> float:
    """Kinetic growth rate (Shindoh 2013): ``DH / (days / 7)``, percentage points per week.

    ``days`` is the time from the stage-1 procedure (PVE) to the follow-up volumetry. A KGR
    >= 2 %/week predicts a low risk of liver insufficiency.

    Parameters
    ----------
    degree_of_hypertrophy_percent : float
        DH from :func:`degree_of_hypertrophy_percent`, percentage points (may be negative).
    days : float
        Days between the procedure and the follow-up volumetry (> 0).

    Returns
    -------
    float
        KGR in percentage points of sFLR per week. Example: DH 10 points in 35 days -> 2 %/week.

    Raises
    ------
    InputError
        Non-finite DH or non-positive ``days``.
    """
    dh = _validate.finite("degree_of_hypertrophy_percent", degree_of_hypertrophy_percent)
    d = _validate.days("days", days, low=_validate.MIN_INTERVAL_DAYS,
                       hint="days between the procedure and the follow-up CT")
    return dh / (d / DAYS_PER_WEEK)
