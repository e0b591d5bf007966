"""The plan's results as data: ``report.json``, the label map, the printed summary.

Label map values (uint8, or uint16 beyond 235 tumours), written as ``labels.nii.gz``:

======  ===========================================
0       background
1-8     Couinaud segment k, kept (remnant)
9       liver kept, no segment label
11-18   Couinaud segment k, resected
19      liver resected, no segment label
20+i    tumour instance i (i >= 1), resected or not
======  ===========================================
"""

from __future__ import annotations

import platform
from datetime import datetime, timezone

import numpy as np

from hepatoplan import __version__

LIVER_KEPT, LIVER_RESECTED, RESECTED_OFFSET, TUMOUR_OFFSET = 9, 19, 10, 20


def label_map(*, liver, segments, tumours, resected) -> np.ndarray:
    """Combine segments, resection and tumours into one label map (see module docstring)."""
    n_tumours = 0 if tumours is None else int(tumours.max(initial=0))
    dtype = np.uint8 if n_tumours + TUMOUR_OFFSET < 256 else np.uint16
    labels = np.zeros(liver.shape, dtype)
    kept = LIVER_KEPT if segments is None else np.where(segments > 0, segments, LIVER_KEPT)
    np.copyto(labels, kept, where=liver, casting="unsafe")
    if resected is not None:
        np.add(labels, RESECTED_OFFSET, out=labels, where=resected & liver)
    if tumours is not None:
        np.add(tumours, TUMOUR_OFFSET, out=labels, where=tumours > 0, dtype=dtype, casting="unsafe")
    return labels


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


def provenance(inputs: dict[str, str], hashes: dict[str, str], options: dict) -> dict:
    from importlib.metadata import version  # nibabel's own import takes ~0.2 s

    import scipy
    import SimpleITK

    return {
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": {name: {"path": path, "sha256": hashes.get(name)} for name, path in inputs.items()},
        "options": options,
        "versions": {
            "hepatoplan": __version__, "python": platform.python_version(),
            "numpy": np.__version__, "scipy": scipy.__version__,
            "SimpleITK": SimpleITK.Version_VersionString(), "nibabel": version("nibabel"),
        },
    }


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
            rows.append(("devascularised", f"{r['devascularised_ml']:.1f} mL (subtracted); congested "
                                           f"{r['congested_ml']:.1f} mL"))
        rows.append(("remnant (FLR)", f"{r['remnant_ml']:.1f} mL = {r['flr_percent']:.1f} %"))
        if report.get("function"):
            rows.append(("functional FLR", f"{report['function']['functional_flr_percent']:.1f} % of liver function"))
        for t in r["tumours"]:
            margin = "-" if t["min_margin_mm"] is None else f"{t['min_margin_mm']:.1f} mm"
            rows.append((f"tumour {t['id']}", f"{t['volume_ml']:.2f} mL, {t['status']}, margin {margin}"))
        a = report["assessment"]
        rows.append(("verdict", f"{a['verdict'].upper()} (FLR threshold {a['threshold_percent']:g} %; "
                                f"minimum remnant {a['min_remnant_ml']:.0f} mL set by "
                                f"{a.get('binding_criterion', 'flr_percent')}; shortfall "
                                f"{a['shortfall_ml']:.0f} mL)"))
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
