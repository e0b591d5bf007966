"""The plan's results as data: ``report.json``'s sections and the printed summary.

The label map written beside it (``labels.nii.gz``) is built by
:func:`hepatoplan.pipeline.labels.label_map`, whose module holds the label-value scheme.
"""

from __future__ import annotations

import math
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from hepatoplan import __version__


def volumes_section(*, liver_ml, tumour_ml: dict, functional_ml, segments_ml, segments_given_ml,
                    filled_ml) -> dict:
    section = {
        "liver": liver_ml,
        "tumours": {str(k): v for k, v in tumour_ml.items()},
        "tumours_total": float(sum(tumour_ml.values())),
        "functional_liver": functional_ml,
    }
    if segments_ml is not None:
        section["segments"] = {str(k): segments_ml.get(k, 0.0) for k in range(1, 9)}
        section["segments_as_given"] = {str(k): segments_given_ml.get(k, 0.0) for k in range(1, 9)}
        section["segments_filled"] = filled_ml
    return section


def provenance(inputs: dict[str, str], hashes: dict[str, str], *, options: dict,
               parameters: dict) -> dict:
    """``report.json``'s ``provenance``: when, inputs (path, SHA-256), options, algorithm
    parameters and library versions.

    Parameters
    ----------
    inputs, hashes : dict of str to str
        Input name -> path, and -> SHA-256 of its content.
    options : dict
        Every option of the run (e.g. ``dataclasses.asdict(PlanOptions)``); paths become strings.
    parameters : dict
        Algorithm name -> the values of its parameters that ran (``Study.parameters``).
    """
    from importlib.metadata import version  # nibabel's own import takes ~0.2 s

    import scipy
    import SimpleITK

    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": {name: {"path": path, "sha256": hashes.get(name)} for name, path in inputs.items()},
        "options": _jsonable(options),
        "parameters": _jsonable(parameters),
        "versions": {
            "hepatoplan": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "SimpleITK": SimpleITK.Version_VersionString(), "nibabel": version("nibabel"),
        },
    }


def _jsonable(value):
    """``value`` with paths as strings and tuples as lists, recursively (for ``json.dumps``)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


#: report.json's rounding: decimals kept by the unit a number's key names (its suffix: ``_ml``,
#: ``remnant_ml``; or the key itself: ``seconds``), or, for a key without one (``"1"`` under
#: ``volumes_ml.segments``, a list item), the unit of the nearest enclosing key that has one.
#: A dict with a ``unit`` field (``{"value": 28.2, "unit": "%"}``) gives its numbers that unit.
#: 0.01 mL, mm, %, cm, kg, m², days, s and voxel index; 0.1 HU.
DECIMALS_BY_UNIT = {"ml": 2, "mm": 2, "percent": 2, "pct": 2, "cm": 2, "kg": 2, "m2": 2, "days": 2,
                    "s": 2, "seconds": 2, "index": 2, "hu": 1}
#: Numbers under no unit (criteria ``value``/``threshold``) and dimensionless ones (keys ending in
#: :data:`DIMENSIONLESS`: fractions 0-1, ratios, probabilities) keep this many significant digits.
SIGNIFICANT_DIGITS = 4
DIMENSIONLESS = ("fraction", "ratio", "fill", "probability", "confidence", "share")
#: The grid's exact geometry (``geometry.spacing_mm``, ``geometry.voxel_volume_mm3``) keeps this
#: many significant digits: a spacing of 0.5703125 mm is a fact of the file, not a measurement.
GEOMETRY_KEYS, GEOMETRY_SIGNIFICANT_DIGITS = ("spacing_mm", "voxel_volume_mm3"), 6
#: Sections written as given (the options and parameters of the run are exact inputs).
UNROUNDED_KEYS = ("provenance",)


def rounded(value, *, decimals: int | None = None):
    """``value`` (a report, JSON-ready) with every float rounded to its meaning; a new object.

    Rules: :data:`DECIMALS_BY_UNIT` by the key's unit suffix (inherited by keys without one),
    :data:`SIGNIFICANT_DIGITS` where no key names a unit, :data:`GEOMETRY_SIGNIFICANT_DIGITS`
    for :data:`GEOMETRY_KEYS`, nothing under :data:`UNROUNDED_KEYS`. So ``699.4400024414062`` mL
    is written ``699.44`` and no two outputs of a plan (report.json, the SR, report.html, the
    summary) show different digits. Integers, strings, ``None``, NaN and infinities are kept.
    """
    if isinstance(value, dict):
        unit = str(value.get("unit", "")).lower().replace("%", "percent")  # {"value": 28.2, "unit": "%"}
        decimals = DECIMALS_BY_UNIT.get(unit, decimals)
        return {k: value[k] if k in UNROUNDED_KEYS else rounded(value[k], decimals=_decimals(k, decimals))
                for k in value}
    if isinstance(value, (list, tuple)):
        return [rounded(v, decimals=decimals) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value != 0.0:
        if decimals is None or decimals < 0:
            digits = SIGNIFICANT_DIGITS if decimals is None else -decimals
            return float(f"{value:.{digits}g}")
        return round(value, decimals)
    return value


def _decimals(key, inherited: int | None) -> int | None:
    """Decimals for numbers under ``key`` (negative: significant digits)."""
    key = str(key).lower()
    if key in GEOMETRY_KEYS:
        return -GEOMETRY_SIGNIFICANT_DIGITS
    if key.endswith(DIMENSIONLESS):
        return None
    for unit, decimals in DECIMALS_BY_UNIT.items():
        if key == unit or key.endswith("_" + unit):
            return decimals
    return inherited


def summary_text(report: dict) -> str:
    """A short human-readable table of the key numbers."""
    v = report["volumes_ml"]
    tumours = ("not assessed" if v["tumours_total"] is None
               else f"{v['tumours_total']:.1f} mL ({len(v['tumours'])} lesions)")
    rows = [("liver", f"{v['liver']:.1f} mL"), ("tumours", tumours),
            ("functional liver", f"{v['functional_liver']:.1f} mL")]
    if "segments" in v:
        rows.append(("segments", "  ".join(f"{k}:{ml:.0f}" for k, ml in v["segments"].items()) + " mL"))
    r = report.get("resection")
    if r:
        rows += [("resection", "; ".join(r["specs"])), ("resected", f"{r['resected_ml']:.1f} mL")]
        if r.get("devascularised_ml") is not None:
            congested = "-" if r["congested_ml"] is None else f"{r['congested_ml']:.1f} mL"
            rows.append(("devascularised", f"{r['devascularised_ml']:.1f} mL (subtracted); congested {congested}"))
        rows.append(("remnant (FLR)", f"{r['remnant_ml']:.1f} mL = {r['flr_percent']:.1f} %"))
        if report.get("function"):
            rows.append(("functional FLR", f"{report['function']['functional_flr_percent']:.1f} % of liver function"))
        for t in r["tumours"]:
            margin = "-" if t["min_margin_mm"] is None else f"{t['min_margin_mm']:.1f} mm"
            rows.append((f"tumour {t['id']}", f"{t['volume_ml']:.2f} mL, {t['status']}, margin {margin}"))
        a = report["assessment"]
        flr_alone = f"FLR alone: {a['flr_verdict'].upper()}; " if "flr_verdict" in a else ""
        rows.append(("verdict", f"{a['verdict'].upper() if 'flr_verdict' not in a else a['verdict']} ({flr_alone}"
                                f"FLR threshold {a['threshold_percent']:g} %; "
                                f"minimum remnant {a['min_remnant_ml']:.0f} mL set by "
                                f"{a.get('binding_criterion', 'flr_percent')}; shortfall "
                                f"{a['shortfall_ml']:.0f} mL)"))
        rows += [("unverified because", reason) for reason in a.get("unverified_reasons", [])]
        if a.get("sflr_percent") is not None:
            rows.append(("sFLR", f"{a['sflr_percent']:.1f} % of TELV {a['telv_ml']:.0f} mL"))
        outlook = report.get("growth_outlook")
        if outlook:
            best = outlook.get("fastest_to_target")
            rows.append(("growth outlook", f"fastest to target: {best or 'none within its window'}"))
    for w in report.get("warnings", []):
        rows.append(("warning", w))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {val}" for k, val in rows)
