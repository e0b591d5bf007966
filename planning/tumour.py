"""Tumour growth during the wait for stage 2: exponential growth with a volume doubling time.

``V(t) = V0 · 2^(t / Td)``. The default doubling time is for colorectal liver metastases (CRLM):
Finlay et al. (1988) measured, on serial CT, a mean volume doubling time of 86 ± 12 days for occult
metastases and 155 ± 34 days for overt ones; we default to the faster **86 days** because the
question asked here ("may the tumour outrun the liver?") calls for the conservative figure. A
multi-centre series of metachronous CRLM found a similar mean of 71.4 days without chemotherapy
(Br J Surg 2019, PMID 30957066). Override with the patient's own doubling time when two
pre-treatment scans are available (:func:`doubling_days_from_volumes`).

Progression is judged against RECIST 1.1 (Eisenhauer 2009): a 20 % increase of the longest
diameter, i.e. a ``1.2³ = 1.728``-fold (+72.8 %) volume increase for a sphere.

References
----------
Finlay IG, Meek D, Brunton F, McArdle CS. Growth rate of hepatic metastases in colorectal
carcinoma. Br J Surg 1988;75:641-644.

Eisenhauer EA, Therasse P, Bogaerts J, et al. New response evaluation criteria in solid tumours:
revised RECIST guideline (version 1.1). Eur J Cancer 2009;45:228-247.
"""

from __future__ import annotations

import math

from hepatoplan.errors import InputError

from hepatoplan.planning import _validate

#: Default tumour volume doubling time for colorectal liver metastases, days (Finlay 1988, occult).
CRLM_DOUBLING_DAYS_DEFAULT = 86.0

#: Where :data:`CRLM_DOUBLING_DAYS_DEFAULT` comes from (reported with every outlook).
CRLM_DOUBLING_DAYS_SOURCE = (
    "colorectal liver metastases, Finlay et al. Br J Surg 1988;75:641-4 (occult 86 d, overt 155 d)"
)

#: Volume factor equivalent to RECIST 1.1 progressive disease (+20 % diameter) for a sphere.
RECIST_PROGRESSION_VOLUME_FACTOR = 1.2**3

#: Shortest doubling time accepted, days: the fastest-growing human tumours double in about a day.
MIN_DOUBLING_DAYS = 1.0


def tumour_volume_ml(*, tumour_ml: float, doubling_days: float, days: float) -> float:
    """Tumour volume after ``days`` of exponential growth: ``V0 · 2^(days / doubling_days)``.

    Parameters
    ----------
    tumour_ml : float
        Tumour volume now, mL (> 0).
    doubling_days : float
        Volume doubling time, days (> 0).
    days : float
        Elapsed time, days (>= 0).

    Returns
    -------
    float
        Volume in mL. Example: 50 mL, Td 86 days, 86 days -> 100 mL.

    Raises
    ------
    InputError
        Volume, doubling time or days outside their bounds (:data:`MIN_DOUBLING_DAYS`,
        :mod:`hepatoplan.planning._validate`), or a tumour that would outgrow any body
        (more than ``MAX_VOLUME_ML``) in that time.
    """
    v0 = _validate.volume_ml("tumour_ml", tumour_ml, hint="total tumour volume in mL")
    td = doubling(doubling_days)
    t = _validate.days("days", days)
    if math.log2(v0) + t / td > math.log2(_validate.MAX_VOLUME_ML):
        raise InputError(
            f"a {v0:g} mL tumour doubling every {td:g} days would exceed {_validate.MAX_VOLUME_ML:g} mL by day "
            f"{t:.1f}: no body holds that (check the doubling time and the volume)"
        )
    return v0 * 2.0 ** (t / td)


def doubling(doubling_days) -> float:
    """Return a doubling time in days (:data:`MIN_DOUBLING_DAYS` to ``MAX_DAYS``) or raise InputError."""
    return _validate.days("doubling_days", doubling_days, low=MIN_DOUBLING_DAYS,
                          hint="tumour volume doubling time in days")


def doubling_days_from_volumes(*, volume_before_ml: float, volume_after_ml: float, days: float) -> float:
    """Volume doubling time from two measurements: ``days · ln 2 / ln(V1 / V0)``.

    Raises
    ------
    InputError
        Non-positive inputs, or a tumour that did not grow (``V1 <= V0``: no doubling time).
    """
    v0 = _validate.volume_ml("volume_before_ml", volume_before_ml)
    v1 = _validate.volume_ml("volume_after_ml", volume_after_ml)
    t = _validate.days("days", days, low=_validate.MIN_INTERVAL_DAYS)
    if v1 <= v0:
        raise InputError(
            f"volume_after_ml ({v1:g}) must exceed volume_before_ml ({v0:g}) for a doubling time; "
            "a stable or shrinking tumour has none (give --doubling-days explicitly)"
        )
    return t * math.log(2.0) / math.log(v1 / v0)
