"""Private validators shared by :mod:`planning`: each names the offending parameter.

Every message says what was expected, what was found and how to fix it, and every failure is a
:class:`hepatoplan.errors.InputError` (a ``ValueError``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from hepatoplan.errors import InputError


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


def series(name: str, values: Sequence[float], *, positive_values: bool, hint: str = "") -> list[float]:
    """Return ``values`` as a list of finite floats (> 0 if ``positive_values``, else >= 0)."""
    try:
        items = list(values)
    except TypeError:
        raise InputError(f"{name} must be a sequence of numbers, got {values!r}{_hint(hint)}") from None
    check = positive if positive_values else non_negative
    return [check(f"{name}[{i}]", v, hint=hint) for i, v in enumerate(items)]


def _hint(hint: str) -> str:
    return f" ({hint})" if hint else ""
