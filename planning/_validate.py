"""Private validators shared by :mod:`planning`: each names the offending parameter.

Every message says what was expected, what was found and how to fix it, and every failure is a
:class:`hepatoplan.errors.InputError` (a ``ValueError``).

Volumes and times are also bounded (:data:`MIN_VOLUME_ML` to :data:`MAX_VOLUME_ML`, up to
:data:`MAX_DAYS`): numbers outside are typing errors (a unit slip, a missing decimal point), and the
bounds keep every derived quantity (squares of volumes, exponential tumour growth) finite, so no
result overflows and no computation grows with the size of a number.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hepatoplan.errors import InputError

#: Smallest volume accepted (mL): one cubic millimetre.
MIN_VOLUME_ML = 1e-3
#: Largest volume accepted (mL): no liver or tumour comes near it (an adult liver holds 1-2 L).
MAX_VOLUME_ML = 50_000.0
#: Longest time accepted (days): ten years, far beyond any wait for stage 2 or growth follow-up.
MAX_DAYS = 3650.0
#: Shortest duration accepted where a duration must be positive, and the shortest interval between
#: two scans (days): one hour, below which no volume change can be measured.
MIN_INTERVAL_DAYS = 1.0 / 24.0


def finite(name: str, value, *, hint: str = "") -> float:
    """Return ``value`` as a finite float or raise InputError naming ``name``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}{_hint(hint)}") from None
    if not math.isfinite(number):
        raise InputError(f"{name} must be finite, got {value!r}{_hint(hint)}")
    return number


def positive(name: str, value, *, hint: str = "") -> float:
    """Return ``value`` as a float > 0 or raise InputError naming ``name``."""
    number = finite(name, value, hint=hint)
    if number <= 0:
        raise InputError(f"{name} must be > 0, got {number:g}{_hint(hint)}")
    return number


def non_negative(name: str, value, *, hint: str = "") -> float:
    """Return ``value`` as a float >= 0 or raise InputError naming ``name``."""
    number = finite(name, value, hint=hint)
    if number < 0:
        raise InputError(f"{name} must be >= 0, got {number:g}{_hint(hint)}")
    return number


def percent(name: str, value, *, hint: str = "") -> float:
    """Return ``value`` as a float in (0, 100] or raise InputError naming ``name``."""
    number = positive(name, value, hint=hint)
    if number > 100:
        raise InputError(f"{name} must be a percentage in (0, 100], got {number:g}{_hint(hint)}")
    return number


def bounded(name: str, value, *, low: float, high: float, unit: str, hint: str = "") -> float:
    """Return ``value`` as a float in ``[low, high]`` (``unit`` for the message) or raise InputError."""
    number = finite(name, value, hint=hint)
    if number < low:
        raise InputError(f"{name} must be at least {low:g} {unit}, got {number:g}{_hint(hint)}")
    if number > high:
        raise InputError(f"{name} must be at most {high:g} {unit}, got {number:g}{_hint(hint)}")
    return number


def volume_ml(name: str, value, *, hint: str = "") -> float:
    """Return a volume in mL (> 0, within :data:`MIN_VOLUME_ML`..:data:`MAX_VOLUME_ML`) or raise InputError."""
    positive(name, value, hint=hint)
    return bounded(name, value, low=MIN_VOLUME_ML, high=MAX_VOLUME_ML, unit="mL", hint=hint)


def days(name: str, value, *, low: float = 0.0, hint: str = "") -> float:
    """Return a time in days (>= 0, or > 0 when ``low`` > 0; within ``low``..:data:`MAX_DAYS`) or
    raise InputError."""
    (positive if low > 0 else non_negative)(name, value, hint=hint)
    return bounded(name, value, low=low, high=MAX_DAYS, unit="days", hint=hint)


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""
