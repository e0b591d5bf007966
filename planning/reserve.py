"""Recurrence reserve: how much more liver a future salvage resection could take.

Seed 004 (parenchymal-sparing surgery): with a functional liver of 1500 mL and a 30 % minimum
(450 mL), patient A (remnant 525 mL) has a reserve of 75 mL and cannot afford a 150 mL salvage
resection (375 mL would be left), whereas patient B (remnant 975 mL) has 525 mL of reserve: the
salvage leaves 825 mL and there is room for three such resections in all.

The minimum is measured against the *original* functional liver volume, as in the seed; the
regeneration after the first resection is a safety margin this arithmetic does not take credit for.
:func:`salvage_reserve` takes the minimum directly (e.g. ``RemnantAssessment.min_remnant_ml``,
which also accounts for the sFLR and body-weight criteria); :func:`recurrence_reserve` derives it
from the parenchyma threshold.
"""

from __future__ import annotations

import math

from hepatoplan.planning import _validate
from hepatoplan.planning.thresholds import check_parenchyma
from hepatoplan.planning.thresholds import threshold_percent as _threshold_percent

_REL_TOL = 1e-9


def salvage_reserve(*, remnant_ml: float, min_remnant_ml: float, salvage_ml: float | None = None) -> dict:
    """Reserve ``remnant − minimum`` and whether a salvage resection of ``salvage_ml`` is affordable.

    Parameters
    ----------
    remnant_ml : float
        Remnant after the first resection, mL (> 0).
    min_remnant_ml : float
        Minimum safe remnant, mL (> 0).
    salvage_ml : float, optional
        Volume a future salvage resection would remove, mL (> 0).

    Returns
    -------
    dict
        ``remnant_ml``, ``min_remnant_ml``, ``reserve_ml`` (negative when already below),
        ``salvage_ml``, ``remnant_after_salvage_ml``, ``salvage_affordable`` (remnant after
        salvage >= minimum) and ``salvages_affordable`` (how many such salvages in a row stay
        above the minimum); the salvage keys are None without ``salvage_ml``.

    Raises
    ------
    InputError
        Non-positive volumes.
    """
    remnant = _validate.volume_ml("remnant_ml", remnant_ml)
    min_ml = _validate.volume_ml("min_remnant_ml", min_remnant_ml)
    reserve = remnant - min_ml
    out = {
        "remnant_ml": remnant,
        "min_remnant_ml": min_ml,
        "reserve_ml": reserve,
        "salvage_ml": None,
        "remnant_after_salvage_ml": None,
        "salvage_affordable": None,
        "salvages_affordable": None,
    }
    if salvage_ml is not None:
        salvage = _validate.volume_ml("salvage_ml", salvage_ml, hint="volume the salvage resection removes")
        after = remnant - salvage
        tol = _REL_TOL * min_ml
        out.update(
            salvage_ml=salvage,
            remnant_after_salvage_ml=after,
            salvage_affordable=bool(after >= min_ml - tol),
            salvages_affordable=max(0, math.floor((reserve + tol) / salvage)),
        )
    return out


def recurrence_reserve(
    *,
    remnant_ml: float,
    functional_liver_ml: float,
    parenchyma: str = "normal",
    threshold_percent: float | None = None,
    salvage_ml: float | None = None,
) -> dict:
    """Reserve above the parenchyma minimum, and whether a salvage resection is affordable.

    Parameters
    ----------
    remnant_ml : float
        Remnant after the first resection, mL (> 0).
    functional_liver_ml : float
        Functional liver volume the threshold refers to, mL (> 0).
    parenchyma : {"normal", "chemotherapy", "cirrhosis"}
        Sets the threshold (20 / 30 / 40 %).
    threshold_percent : float, optional
        Override of the threshold, percent in (0, 100].
    salvage_ml : float, optional
        Volume a future salvage resection would remove, mL (> 0).

    Returns
    -------
    dict
        The keys of :func:`salvage_reserve` plus ``parenchyma``, ``threshold_percent`` and
        ``functional_liver_ml``. Seed 004: (525 mL, 1500 mL, 30 %, salvage 150 mL) -> reserve 75 mL,
        375 mL left, not affordable; (975 mL, ...) -> reserve 525 mL, 825 mL left, affordable.

    Raises
    ------
    InputError
        Non-positive volumes, unknown parenchyma, threshold outside (0, 100].
    """
    functional = _validate.volume_ml("functional_liver_ml", functional_liver_ml)
    key = check_parenchyma(parenchyma)
    thr = _threshold_percent(key, override_percent=threshold_percent)
    out = {"parenchyma": key, "threshold_percent": thr, "functional_liver_ml": functional}
    out.update(salvage_reserve(remnant_ml=remnant_ml, min_remnant_ml=thr / 100.0 * functional, salvage_ml=salvage_ml))
    return out
