"""Resection specifications: named anatomical procedures, segment sets and tumour wedges.

A specification is parsed from the text users type (``--resect right-hepatectomy``,
``--resect segments:5,6``, ``--resect wedge:all``, ``--resect wedge:1,3@5``) into a small frozen
dataclass. Segment numbers follow Couinaud (1 = caudate ... 8); names follow the Brisbane 2000
terminology (Strasberg SM, HPB 2000;2:333-9).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hepatoplan.errors import InputError

#: Named anatomical resections → the Couinaud segments removed.
PROCEDURES: dict[str, frozenset[int]] = {
    "right-hepatectomy": frozenset({5, 6, 7, 8}),
    "left-hepatectomy": frozenset({2, 3, 4}),
    "extended-right-hepatectomy": frozenset({4, 5, 6, 7, 8}),
    "extended-left-hepatectomy": frozenset({2, 3, 4, 5, 8}),
    "right-anterior-sectionectomy": frozenset({5, 8}),
    "right-posterior-sectionectomy": frozenset({6, 7}),
    "left-lateral-sectionectomy": frozenset({2, 3}),
    "central-hepatectomy": frozenset({4, 5, 8}),
    "caudate-lobectomy": frozenset({1}),
    **{f"segmentectomy-{k}": frozenset({k}) for k in range(1, 9)},
}
COUINAUD_SEGMENTS = frozenset(range(1, 9))
DEFAULT_MARGIN_MM = 1.0


@dataclass(frozen=True)
class AnatomicalResection:
    """Removal of whole Couinaud segments."""

    segments: frozenset[int]
    name: str

    def describe(self) -> str:
        return f"{self.name} (segments {', '.join(map(str, sorted(self.segments)))})"


@dataclass(frozen=True)
class WedgeResection:
    """Non-anatomical removal of tumours plus a clear margin of parenchyma.

    ``tumour_ids`` is ``None`` for all tumours; ``margin_mm`` ``None`` means the run's default.
    """

    tumour_ids: tuple[int, ...] | None
    margin_mm: float | None
    text: str

    def describe(self) -> str:
        which = "all tumours" if self.tumour_ids is None else "tumours " + ", ".join(map(str, self.tumour_ids))
        margin = "default margin" if self.margin_mm is None else f"{self.margin_mm:g} mm margin"
        return f"wedge of {which} ({margin})"


ResectionSpec = AnatomicalResection | WedgeResection

_WEDGE = re.compile(r"^wedge:(?P<ids>all|\d+(?:,\d+)*)(?:@(?P<margin>[-+0-9.eE]+))?$")


def parse_resection(text: str) -> ResectionSpec:
    """Parse one ``--resect`` value.

    Accepted forms: a procedure name from :data:`PROCEDURES`; ``segments:5,6,7,8``;
    ``wedge:all``, ``wedge:1,3`` and either with ``@MARGIN_MM`` (``wedge:2@5``).

    Raises
    ------
    InputError
        Unknown name, segment outside 1-8, malformed wedge, negative margin.
    """
    spec = text.strip().lower()
    if spec in PROCEDURES:
        return AnatomicalResection(PROCEDURES[spec], spec)
    if spec.startswith("segments:"):
        try:
            segments = frozenset(int(s) for s in spec.removeprefix("segments:").split(","))
        except ValueError:
            raise InputError(
                f"--resect {text!r}: expected segment numbers such as 'segments:5,6,7,8'"
            ) from None
        if not segments <= COUINAUD_SEGMENTS:
            raise InputError(
                f"--resect {text!r}: segments must be Couinaud numbers 1-8, got "
                f"{sorted(segments - COUINAUD_SEGMENTS)}"
            )
        return AnatomicalResection(segments, f"segments:{','.join(map(str, sorted(segments)))}")
    match = _WEDGE.match(spec)
    if spec.startswith("wedge"):
        if not match:
            raise InputError(
                f"--resect {text!r}: expected 'wedge:all', 'wedge:1,3' or 'wedge:2@5' "
                "(tumour ids, optional margin in mm after '@')"
            )
        ids = None if match["ids"] == "all" else tuple(sorted({int(i) for i in match["ids"].split(",")}))
        margin = None
        if match["margin"] is not None:
            try:
                margin = float(match["margin"])
            except ValueError:
                raise InputError(f"--resect {text!r}: margin {match['margin']!r} is not a number") from None
            check_margin_mm(margin, flag=f"--resect {text}")
        if ids is not None and 0 in ids:
            raise InputError(f"--resect {text!r}: tumour ids start at 1")
        return WedgeResection(ids, margin, spec)
    raise InputError(
        f"--resect {text!r}: unknown resection. Use a procedure name ("
        + ", ".join(name for name in PROCEDURES if not name.startswith("segmentectomy-"))
        + ", segmentectomy-1 ... segmentectomy-8), 'segments:5,6' or 'wedge:all' / 'wedge:1,3@5'."
    )


def check_margin_mm(margin_mm: float, *, flag: str = "--margin-mm") -> float:
    """Validate a margin in mm: finite and >= 0."""
    if not (margin_mm == margin_mm and 0.0 <= margin_mm < 1e3):
        raise InputError(f"{flag}: margin must be a distance in mm >= 0, got {margin_mm:g}")
    return float(margin_mm)
