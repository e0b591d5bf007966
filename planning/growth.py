"""Regeneration growth model of the future liver remnant: dM/dt = k·Qp / M.

Seed 000: the stimulus per gram of liver is the portal flow ``Qp`` spread over the remnant mass
``M``, so the remnant grows as ``dM/dt = k·Qp / M`` with ``k`` a regenerative efficiency. Integrating
gives

    M(t)² = M0² + 2·k·Qp·t                    (1)
    t*    = (M_target² − M0²) / (2·k·Qp)        (2)

so the time to grow depends on the difference of the *squares*: growing 200 → 400 g takes
(400² − 200²) / (2·k·Qp) = 120 000 / (2·k·Qp) while 800 → 1000 g takes 360 000 / (2·k·Qp), three
times longer for the same 200 g gain.

Masses are taken as volumes in mL (liver density 1 g/mL, the usual volumetry convention), so
``k·Qp`` is in mL²/day (``kqp_ml2_per_day``) and times are in days from the stage-1 procedure.

Fitting (:func:`fit_growth`): (1) is a straight line in ``M²`` versus ``t``; ordinary least squares
of ``M²`` on ``t`` gives the intercept ``M0²`` and the slope ``2·k·Qp``. With two volumes the line is
exact and there is no uncertainty; with three or more the slope's standard error comes from the
residual variance (n − 2 degrees of freedom) and a Student-t 95 % interval is reported.

References
----------
Seed document 000 (staged hepatectomy: the ``dM/dt = k·Qp/M`` model and ``t*``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from hepatoplan.errors import InputError

from hepatoplan.planning import _validate

_DAYS_HINT = "days since the stage-1 procedure, e.g. 0,21"
_FLR_HINT = "FLR volumes in mL, e.g. 380,520"

#: Relative FLR growth a technique may be credited with, percent: from 0.1 % (below, no staging
#: technique is described) to 1000 % (an elevenfold remnant; published means are below 100 %).
MIN_HYPERTROPHY_PERCENT, MAX_HYPERTROPHY_PERCENT = 0.1, 1000.0
#: The growth table lists one row a week (or coarser) and at most this many rows.
MAX_TABLE_ROWS = 120


def predict_flr_ml(*, flr0_ml: float, kqp_ml2_per_day: float, days: float) -> float:
    """Predicted FLR volume ``sqrt(M0² + 2·k·Qp·t)`` (equation 1).

    Parameters
    ----------
    flr0_ml : float
        FLR volume at day 0 in mL (> 0).
    kqp_ml2_per_day : float
        Growth constant k·Qp in mL²/day (>= 0).
    days : float
        Time since day 0 in days (>= 0).

    Returns
    -------
    float
        Predicted FLR volume in mL.

    Raises
    ------
    InputError
        ``flr0_ml`` or ``days`` outside their bounds (:mod:`hepatoplan.planning._validate`), negative
        ``kqp_ml2_per_day``, or a prediction that overflows.
    """
    m0 = _validate.volume_ml("flr0_ml", flr0_ml)
    kqp = _validate.non_negative("kqp_ml2_per_day", kqp_ml2_per_day)
    t = _validate.days("days", days, hint=_DAYS_HINT)
    return _validate.finite("predicted FLR (mL)", math.sqrt(m0 * m0 + 2.0 * kqp * t),
                            hint="k·Qp is too large for this model")


def days_to_target(*, flr0_ml: float, target_ml: float, kqp_ml2_per_day: float) -> float:
    """Time to grow from ``flr0_ml`` to ``target_ml``: ``(T² − M0²) / (2·k·Qp)`` (equation 2).

    Parameters
    ----------
    flr0_ml : float
        Baseline FLR in mL (> 0).
    target_ml : float
        Volume to reach in mL (>= ``flr0_ml``).
    kqp_ml2_per_day : float
        Growth constant in mL²/day (> 0).

    Returns
    -------
    float
        t* in days (0 when the target equals the baseline). Example: 200 → 400 mL at k·Qp =
        1000 mL²/day takes 60 days; 800 → 1000 mL takes 180 days.

    Raises
    ------
    InputError
        ``target_ml`` below ``flr0_ml``, non-positive volumes or ``kqp_ml2_per_day``.
    """
    m0 = _validate.volume_ml("flr0_ml", flr0_ml)
    target = _validate.volume_ml("target_ml", target_ml)
    kqp = _validate.positive("kqp_ml2_per_day", kqp_ml2_per_day, hint="the remnant must grow")
    _check_target(target, m0)
    return _validate.finite("days to target", (target * target - m0 * m0) / (2.0 * kqp),
                            hint="k·Qp is too small for this model")


def kqp_from_hypertrophy(*, flr0_ml: float, hypertrophy_percent: float, days: float) -> float:
    """k·Qp that makes the FLR grow by ``hypertrophy_percent`` in ``days``.

    From (1): ``k·Qp = M0² · ((1 + h/100)² − 1) / (2·t)``. Literature figures for a technique
    ("PVE: +38 % in 4 weeks") are relative, so the same technique gives a larger k·Qp to a larger
    remnant.

    Parameters
    ----------
    flr0_ml : float
        Baseline FLR in mL (> 0).
    hypertrophy_percent : float
        Relative FLR increase ``100 · (M(t) − M0) / M0`` in percent (> 0).
    days : float
        Time at which that increase is observed, days (> 0).

    Returns
    -------
    float
        k·Qp in mL²/day. Example: 400 mL, +50 % at 25 days -> 400²·(1.5² − 1)/50 = 4000 mL²/day.

    Raises
    ------
    InputError
        Non-positive arguments.
    """
    m0 = _validate.volume_ml("flr0_ml", flr0_ml)
    h = _validate.bounded("hypertrophy_percent", hypertrophy_percent, low=MIN_HYPERTROPHY_PERCENT,
                          high=MAX_HYPERTROPHY_PERCENT, unit="%")
    t = _validate.days("days", days, low=_validate.MIN_INTERVAL_DAYS)
    return m0 * m0 * ((1.0 + h / 100.0) ** 2 - 1.0) / (2.0 * t)


def _check_target(target_ml: float, baseline_ml: float) -> None:
    if target_ml < baseline_ml:
        raise InputError(
            f"target_ml ({target_ml:g}) is below the baseline FLR ({baseline_ml:g} mL): the remnant "
            "already exceeds the target, there is nothing to grow (check the target or the volumes)"
        )


def check_series(days: Sequence[float], flr_ml: Sequence[float]) -> tuple[list[float], list[float]]:
    """Validate a serial-volumetry series; return ``(days, flr_ml)`` as float lists.

    Raises
    ------
    InputError
        Fewer than 2 points, different lengths, days outside 0..``MAX_DAYS`` or less than an
        hour apart, volumes outside ``MIN_VOLUME_ML``..``MAX_VOLUME_ML``
        (:mod:`hepatoplan.planning._validate`).
    """
    try:
        t, m = list(days), list(flr_ml)
    except TypeError:
        raise InputError(f"days and flr_ml must be sequences of numbers ({_DAYS_HINT}; {_FLR_HINT})") from None
    t = [_validate.days(f"days[{i}]", v, hint=_DAYS_HINT) for i, v in enumerate(t)]
    m = [_validate.volume_ml(f"flr_ml[{i}]", v, hint=_FLR_HINT) for i, v in enumerate(m)]
    if len(t) != len(m):
        raise InputError(
            f"days and flr_ml must have the same length, got {len(t)} days and {len(m)} volumes "
            "(one FLR volume per scan day)"
        )
    if len(t) < 2:
        raise InputError(
            f"at least 2 serial FLR volumes are needed to fit the growth model, got {len(t)} "
            f"({_DAYS_HINT}; {_FLR_HINT})"
        )
    for i in range(1, len(t)):
        if t[i] - t[i - 1] < _validate.MIN_INTERVAL_DAYS:
            raise InputError(
                f"days must be strictly increasing, by at least {_validate.MIN_INTERVAL_DAYS:.4g} (one hour) from scan "
                "to scan, got "
                f"days[{i - 1}] = {t[i - 1]:g} then days[{i}] = {t[i]:g} (list the scans in chronological "
                "order, one per day)"
            )
    return t, m


@dataclass(frozen=True)
class GrowthFit:
    """Least-squares fit of ``M² = a + 2·k·Qp·t`` to serial FLR volumes.

    Attributes
    ----------
    days, flr_ml : tuple of float
        The data (days since stage 1, volumes in mL).
    kqp_ml2_per_day : float
        Fitted k·Qp in mL²/day (slope / 2). May be <= 0 when the remnant did not grow.
    kqp_se_ml2_per_day : float or None
        Standard error of k·Qp; None with ``uncertainty_reason`` when n = 2.
    kqp_ci95_ml2_per_day : tuple of float or None
        Student-t 95 % confidence interval of k·Qp (n >= 3).
    intercept_ml2 : float
        Fitted ``M0²`` in mL² (the model's volume squared at day 0).
    r_squared : float or None
        Coefficient of determination of the line in ``M²`` (None when n = 2).
    uncertainty_reason : str or None
        Why the uncertainty is not computable.
    """

    days: tuple[float, ...]
    flr_ml: tuple[float, ...]
    kqp_ml2_per_day: float
    kqp_se_ml2_per_day: float | None
    kqp_ci95_ml2_per_day: tuple[float, float] | None
    intercept_ml2: float
    intercept_se_ml2: float | None
    cov_intercept_slope_ml4_per_day: float | None
    r_squared: float | None
    uncertainty_reason: str | None

    @property
    def n_points(self) -> int:
        return len(self.days)

    @property
    def fitted_flr0_ml(self) -> float | None:
        """Model FLR at day 0, ``sqrt(intercept)``; None when the intercept is not positive."""
        return math.sqrt(self.intercept_ml2) if self.intercept_ml2 > 0 else None

    def predict_flr_ml(self, days: float) -> float | None:
        """Model FLR in mL at ``days`` (None when ``M²`` would be negative)."""
        t = _validate.finite("days", days)
        m2 = self.intercept_ml2 + 2.0 * self.kqp_ml2_per_day * t
        return math.sqrt(m2) if m2 > 0 else None

    def days_to_target(self, target_ml: float) -> dict:
        """Day at which the fitted curve reaches ``target_ml`` and its uncertainty.

        Returns a dict with ``target_ml``, ``day`` (t* since day 0, from the fitted line:
        ``(T² − a) / (2·k·Qp)``), ``days_after_last_scan`` (may be negative when the target was
        passed between scans), ``day_se`` (delta method on the intercept/slope covariance, n >= 3)
        and ``reason`` (why ``day`` is None, e.g. the remnant is not growing).

        Raises
        ------
        InputError
            ``target_ml`` below the first measured FLR, or not positive.
        """
        target = _validate.volume_ml("target_ml", target_ml)
        _check_target(target, self.flr_ml[0])
        out = {"target_ml": target, "day": None, "days_after_last_scan": None, "day_se": None, "reason": None}
        if self.kqp_ml2_per_day <= 0:
            out["reason"] = (
                f"the fitted k·Qp is {self.kqp_ml2_per_day:.4g} mL²/day: the remnant is not growing, "
                "so the target is never reached under this model"
            )
            return out
        slope = 2.0 * self.kqp_ml2_per_day
        gap = target * target - self.intercept_ml2
        day = gap / slope
        if day > _validate.MAX_DAYS:
            out["reason"] = (
                f"the fitted k·Qp is {self.kqp_ml2_per_day:.4g} mL²/day: the target would be reached only after "
                f"{_validate.MAX_DAYS:g} days (ten years), beyond what this model can predict"
            )
            return out
        out["day"] = day
        out["days_after_last_scan"] = day - self.days[-1]
        if self.kqp_se_ml2_per_day is not None:
            var_a = self.intercept_se_ml2**2
            var_b = (2.0 * self.kqp_se_ml2_per_day) ** 2
            cov_ab = self.cov_intercept_slope_ml4_per_day  # cov(intercept, slope)
            g_a = -1.0 / slope
            g_b = -gap / slope**2
            out["day_se"] = math.sqrt(max(0.0, g_a * g_a * var_a + g_b * g_b * var_b + 2 * g_a * g_b * cov_ab))
        else:
            out["reason"] = self.uncertainty_reason
        return out

    def table_days(self, target_day: float | None = None) -> list[float]:
        """Days of the growth table: every scan day, and one day a week from the first scan's week
        to a week past the target day (or the last scan), at most :data:`MAX_TABLE_ROWS` rows (the
        step grows by whole weeks when needed)."""
        end = max(self.days[-1], target_day if target_day is not None else self.days[-1]) + 7.0
        first = 7.0 * math.floor(self.days[0] / 7.0)
        step = 7.0 * max(1, math.ceil((end - first) / 7.0 / MAX_TABLE_ROWS))
        weekly = {first + step * k for k in range(int((end - first) // step) + 1)}
        return sorted(d for d in set(self.days) | weekly if d >= self.days[0])

    def to_dict(self) -> dict:
        return {
            "model": "M(t)^2 = M0^2 + 2*k*Qp*t  (dM/dt = k*Qp/M)",
            "days": list(self.days),
            "flr_ml": list(self.flr_ml),
            "n_points": self.n_points,
            "kqp_ml2_per_day": self.kqp_ml2_per_day,
            "kqp_se_ml2_per_day": self.kqp_se_ml2_per_day,
            "kqp_ci95_ml2_per_day": list(self.kqp_ci95_ml2_per_day) if self.kqp_ci95_ml2_per_day else None,
            "intercept_ml2": self.intercept_ml2,
            "fitted_flr0_ml": self.fitted_flr0_ml,
            "r_squared": self.r_squared,
            "uncertainty_reason": self.uncertainty_reason,
        }


def fit_growth(*, days: Sequence[float], flr_ml: Sequence[float]) -> GrowthFit:
    """Fit k·Qp to serial FLR volumes by least squares on ``M²`` (see module docstring).

    Parameters
    ----------
    days : sequence of float
        Scan days since the stage-1 procedure, >= 0 and strictly increasing.
    flr_ml : sequence of float
        FLR volume at each scan in mL (> 0).

    Returns
    -------
    GrowthFit

    Raises
    ------
    InputError
        See :func:`check_series`.
    """
    t, m = check_series(days, flr_ml)
    y = [v * v for v in m]
    n = len(t)
    t_mean = sum(t) / n
    y_mean = sum(y) / n
    sxx = sum((ti - t_mean) ** 2 for ti in t)
    sxy = sum((ti - t_mean) * (yi - y_mean) for ti, yi in zip(t, y))
    slope = sxy / sxx
    intercept = y_mean - slope * t_mean
    kqp = slope / 2.0
    if n == 2:
        return GrowthFit(
            days=tuple(t), flr_ml=tuple(m), kqp_ml2_per_day=kqp, kqp_se_ml2_per_day=None,
            kqp_ci95_ml2_per_day=None, intercept_ml2=intercept, intercept_se_ml2=None,
            cov_intercept_slope_ml4_per_day=None, r_squared=None,
            uncertainty_reason="two volumes define the line exactly; give 3 or more scans for an uncertainty",
        )
    residuals = [yi - (intercept + slope * ti) for ti, yi in zip(t, y)]
    ssr = sum(r * r for r in residuals)
    sst = sum((yi - y_mean) ** 2 for yi in y)
    dof = n - 2
    s2 = ssr / dof
    se_slope = math.sqrt(s2 / sxx)
    se_intercept = math.sqrt(s2 * (1.0 / n + t_mean * t_mean / sxx))
    cov_ab = -t_mean * s2 / sxx
    from scipy import stats  # deferred: only fits with >= 3 scans need the t quantile

    tq = float(stats.t.ppf(0.975, dof))
    kqp_se = se_slope / 2.0
    return GrowthFit(
        days=tuple(t), flr_ml=tuple(m), kqp_ml2_per_day=kqp, kqp_se_ml2_per_day=kqp_se,
        kqp_ci95_ml2_per_day=(kqp - tq * kqp_se, kqp + tq * kqp_se), intercept_ml2=intercept,
        intercept_se_ml2=se_intercept, cov_intercept_slope_ml4_per_day=cov_ab,
        r_squared=(1.0 - ssr / sst) if sst > 0 else None, uncertainty_reason=None,
    )
