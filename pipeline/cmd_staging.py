"""``hepatoplan growth`` and ``hepatoplan stage``: staged-hepatectomy planning from typed-in volumes.

``growth`` fits the regeneration model ``M(t)² = M0² + 2·k·Qp·t`` to serial FLR volumes and says
when the remnant reaches its target::

    hepatoplan growth --days 0,21 --flr-ml 380,520 --target-ml 600
    hepatoplan growth --days 0,14,28 --flr-ml 380,470,540 --functional-liver-ml 1500 \\
        --parenchyma chemotherapy --json growth.json --plot growth.png

``stage`` gives the verdict on a planned remnant, the minimum safe remnant, the recurrence reserve
and, when the remnant is too small, one row per staging technique (PVE, PVL, LVD, ALPPS) with the
race against the tumour::

    hepatoplan stage --flr-ml 330 --functional-liver-ml 1500 --parenchyma chemotherapy \\
        --tumour-ml 40 --doubling-days 60 --json stage.json --plot stage.png

Tables go to stdout, the same content as JSON to ``--json``. Every input is checked before any
file is written; bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from hepatoplan.errors import InputError
from hepatoplan.planning.assessment import RemnantAssessment, assess_remnant
from hepatoplan.planning.growth import GrowthFit, fit_growth
from hepatoplan.planning.liver_volume import bsa_mosteller_m2, telv_vauthey_ml
from hepatoplan.planning.reserve import salvage_reserve
from hepatoplan.planning.scenarios import (
    DEFAULT_TECHNIQUES,
    DROPOUT_WAIT_DAYS_DEFAULT,
    outlook_for_assessment,
    techniques_with_overrides,
)
from hepatoplan.planning.thresholds import PARENCHYMA_CHOICES
from hepatoplan.planning.tumour import CRLM_DOUBLING_DAYS_DEFAULT
from hepatoplan.units import DAYS_PER_WEEK

from .outputs import atomic_file, write_atomic


# --------------------------------------------------------------------------------------------
# parsing helpers


def _number_list(flag: str, text: str) -> list[float]:
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(
            f"{flag} expects comma-separated numbers, got {text!r} (e.g. {flag} 0,21)"
        ) from None
    bad = [p for p, v in zip(parts, values) if not math.isfinite(v)]
    if bad:
        raise InputError(f"{flag} values must be finite numbers, got {', '.join(bad)}")
    return values


def _parse_technique(text: str) -> tuple[str, dict]:
    """``NAME:HYPERTROPHY_PERCENT:AT_DAYS[:EARLIEST:LATEST]`` -> (name, fields)."""
    parts = str(text).split(":")
    if len(parts) not in (3, 5):
        raise InputError(
            f"--technique expects NAME:HYPERTROPHY_PERCENT:AT_DAYS[:EARLIEST_DAYS:LATEST_DAYS], got {text!r} "
            "(e.g. --technique PVE:45:28 or --technique ALPPS:80:9:7:14)"
        )
    keys = ("hypertrophy_percent", "at_days", "earliest_stage2_days", "latest_stage2_days")
    fields = {}
    for key, value in zip(keys, parts[1:]):
        try:
            fields[key] = float(value)
        except ValueError:
            raise InputError(f"--technique {text!r}: {key} must be a number, got {value!r}") from None
    return parts[0], fields


def _techniques(args):
    overrides: dict[str, dict] = {}
    for spec in args.technique or []:
        name, fields = _parse_technique(spec)
        overrides.setdefault(name.upper(), {}).update(fields)
    return techniques_with_overrides(overrides)


def _output_path(flag: str, value: str | None, suffix: str) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if path.suffix.lower() != suffix:
        raise InputError(f"{flag} must name a {suffix} file, got {value!r} (e.g. {flag} out{suffix})")
    if not path.parent.is_dir():
        raise InputError(f"{flag}: folder {str(path.parent)!r} does not exist (create it first)")
    if path.is_dir():
        raise InputError(f"{flag}: {value!r} is a folder, give a file name")
    return path


# --------------------------------------------------------------------------------------------
# table helpers


def _fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _table(headers: list[str], rows: list[list], *, indent: str = "  ") -> str:
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for k, row in enumerate(cells):
        lines.append(indent + "  ".join(c.rjust(w) if k and i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))))
        if k == 0:
            lines.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _assessment_lines(assessment) -> list[str]:
    a = assessment
    lines = [f"Remnant assessment ({a.parenchyma} parenchyma, threshold {a.threshold_percent:g} % of functional liver)"]
    rows = [
        [c.name, f"{c.value:.2f} {c.unit}", f"{c.threshold:g} {c.unit}", _fmt(c.required_ml), _fmt(c.passed)]
        for c in a.criteria
    ]
    lines.append(_table(["criterion", "value", "threshold", "required mL", "passed"], rows))
    lines.append(f"  verdict:                 {a.verdict.upper()}")
    lines.append(f"  remnant:                 {a.remnant_ml:.1f} mL of {a.functional_liver_ml:.1f} mL ({a.flr_percent:.1f} %)")
    lines.append(f"  minimum safe remnant:    {a.min_remnant_ml:.1f} mL (binding criterion: {a.binding_criterion})")
    lines.append(f"  shortfall:               {a.shortfall_ml:.1f} mL")
    lines.append(f"  recurrence reserve:      {a.recurrence_reserve_ml:.1f} mL")
    if a.bsa_m2 is not None:
        lines.append(f"  BSA (Mosteller):         {a.bsa_m2:.3f} m²;  TELV ({a.telv_formula}): {a.telv_ml:.1f} mL")
    return lines


def _scenario_lines(outlook: dict) -> list[str]:
    tum = outlook["tumour_ml"]
    head = f"Staging scenarios: grow {outlook['flr_ml']:.1f} -> {outlook['target_ml']:.1f} mL"
    if tum is not None:
        src = "user" if outlook["doubling_days_source"] == "user" else "CRLM default, Finlay 1988"
        head += f"; tumour {tum:g} mL, doubling time {outlook['doubling_days']:g} days ({src})"
    lines = [head]
    rows = []
    for s in outlook["scenarios"]:
        rows.append([
            s["technique"],
            f"+{s['hypertrophy_percent']:g} % @ {s['at_days']:g} d",
            f"{s['kqp_ml2_per_day']:.0f}",
            f"{s['days_to_target']:.1f}",
            f"{s['window_days'][0]:g}-{s['window_days'][1]:g}",
            _fmt(s["target_reached_in_window"]),
            f"{s['stage2_day']:.1f}",
            f"{s['flr_at_stage2_ml']:.1f}",
            _fmt(s["tumour_at_stage2_ml"]),
            "YES" if s["dropout_risk"] else "no",
        ])
    lines.append(_table(
        ["technique", "literature", "k·Qp mL²/d", "t* days", "window d", "reached", "stage 2 day",
         "FLR stage 2 mL", "tumour stage 2 mL", "drop-out risk"], rows))
    for s in outlook["scenarios"]:
        for reason in s["dropout_reasons"]:
            lines.append(f"  {s['technique']}: {reason}")
    fastest = outlook["fastest_to_target"]
    lines.append(f"  fastest to target within its window: {fastest or 'none'}")
    safe = outlook["reachable_without_dropout_risk"]
    lines.append(f"  without drop-out risk flag (wait <= {outlook['dropout_wait_days']:g} d): {', '.join(safe) or 'none'}")
    return lines


# --------------------------------------------------------------------------------------------
# growth


@dataclass(frozen=True)
class _Growth:
    """Everything ``growth`` computed: the fit, the KGR, the target and the predicted curve."""

    fit: GrowthFit
    kgr: dict | None
    assessment: RemnantAssessment | None
    target_ml: float | None
    target_source: str | None
    target: dict | None
    prediction: list[dict]


def run_growth(args) -> int:
    json_path = _output_path("--json", args.json, ".json")
    plot_path = _output_path("--plot", args.plot, ".png")
    days = _number_list("--days", args.days)
    flr = _number_list("--flr-ml", args.flr_ml)
    _check_growth_args(args)
    fit = fit_growth(days=days, flr_ml=flr)
    kgr = _kgr(fit, args)
    assessment, target_ml, target_source = _growth_target(fit, args, kgr)
    target = fit.days_to_target(target_ml) if target_ml is not None else None
    growth = _Growth(fit, kgr, assessment, target_ml, target_source, target, _prediction(fit, target))
    print("\n".join(_growth_lines(growth)))

    payload = {
        "command": "growth",
        "inputs": {"days": days, "flr_ml": flr, "target_ml": args.target_ml,
                   "functional_liver_ml": args.functional_liver_ml, "parenchyma": args.parenchyma,
                   "threshold_percent": args.threshold_percent, "height_cm": args.height_cm,
                   "weight_kg": args.weight_kg},
        "fit": fit.to_dict(),
        "kgr": kgr,
        "assessment": assessment.to_dict() if assessment else None,
        "target": dict(target, source=target_source) if target else None,
        "prediction": growth.prediction,
    }
    if plot_path is not None:
        from hepatoplan.pipeline.growth_plot import plot_growth_fit

        with atomic_file(plot_path) as tmp:
            plot_growth_fit(tmp, fit=fit, target_ml=target_ml,
                            target_day=target["day"] if target else None)
        payload["plot"] = str(plot_path)
    if json_path is not None:
        write_atomic(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return 0


def _check_growth_args(args) -> None:
    if args.target_ml is not None and args.functional_liver_ml is not None:
        raise InputError("give either --target-ml or --functional-liver-ml with --parenchyma, not both")
    if args.functional_liver_ml is not None and args.parenchyma is None:
        raise InputError(
            f"--functional-liver-ml needs --parenchyma ({'|'.join(PARENCHYMA_CHOICES)}) to set the threshold"
        )
    if args.parenchyma is not None and args.functional_liver_ml is None:
        raise InputError("--parenchyma needs --functional-liver-ml (the threshold is a percentage of it)")
    if (args.height_cm is None) != (args.weight_kg is None):
        raise InputError("give both --height-cm and --weight-kg (for the standardized FLR and KGR), or neither")


def _kgr(fit: GrowthFit, args) -> dict | None:
    """Kinetic growth rate between the first and last scan (Shindoh 2013), on the sFLR when
    height and weight are given, else on the FLR % of the given functional liver; None without."""
    if args.height_cm is not None:
        telv = telv_vauthey_ml(bsa_m2=bsa_mosteller_m2(height_cm=args.height_cm, weight_kg=args.weight_kg))
        before, after = 100 * fit.flr_ml[0] / telv, 100 * fit.flr_ml[-1] / telv
        kgr = {"basis": "sFLR (FLR / TELV Vauthey, BSA Mosteller; Shindoh 2013)", "telv_ml": telv}
    elif args.functional_liver_ml is not None:
        before = 100 * fit.flr_ml[0] / args.functional_liver_ml
        after = 100 * fit.flr_ml[-1] / args.functional_liver_ml
        kgr = {"basis": "FLR % of the given functional liver volume (not standardized; give height/weight "
                        "for Shindoh's sFLR-based KGR)", "telv_ml": None}
    else:
        return None
    weeks = (fit.days[-1] - fit.days[0]) / DAYS_PER_WEEK
    dh = after - before
    kgr.update(first_percent=before, last_percent=after, degree_of_hypertrophy_percent=dh, weeks=weeks,
               kgr_percent_per_week=dh / weeks, passed=dh / weeks >= 2.0, threshold_percent_per_week=2.0)
    return kgr


def _growth_target(fit: GrowthFit, args, kgr: dict | None):
    """``(assessment at the last scan or None, target mL or None, where the target came from)``."""
    if args.target_ml is not None:
        return None, args.target_ml, "--target-ml"
    if args.functional_liver_ml is None:
        return None, None, None
    assessment = assess_remnant(
        remnant_ml=fit.flr_ml[-1], functional_liver_ml=args.functional_liver_ml, parenchyma=args.parenchyma,
        threshold_percent=args.threshold_percent, height_cm=args.height_cm, weight_kg=args.weight_kg,
        kgr_percent_per_week=kgr["kgr_percent_per_week"] if kgr and kgr["telv_ml"] else None,
    )
    source = f"minimum safe remnant ({assessment.binding_criterion}, {assessment.parenchyma})"
    return assessment, assessment.min_remnant_ml, source


def _prediction(fit: GrowthFit, target: dict | None) -> list[dict]:
    """Measured and model FLR on the scan days and weekly up to the target day (at most
    ``MAX_TABLE_ROWS`` rows: :meth:`GrowthFit.table_days`)."""
    return [{"day": d, "flr_ml": fit.predict_flr_ml(d),
             "measured_flr_ml": fit.flr_ml[fit.days.index(d)] if d in fit.days else None}
            for d in fit.table_days(target["day"] if target else None)]


def _growth_lines(growth: _Growth) -> list[str]:
    fit, kgr, target = growth.fit, growth.kgr, growth.target
    out = [
        "Regeneration model dM/dt = k·Qp/M  =>  M(t)² = M0² + 2·k·Qp·t  (least squares on M²)",
        f"  scans:                   {fit.n_points} (days {', '.join(f'{d:g}' for d in fit.days)})",
        f"  k·Qp:                    {fit.kqp_ml2_per_day:.1f} mL²/day"
        + (f" ± {fit.kqp_se_ml2_per_day:.1f} (SE); 95 % CI {fit.kqp_ci95_ml2_per_day[0]:.1f} to "
           f"{fit.kqp_ci95_ml2_per_day[1]:.1f}" if fit.kqp_se_ml2_per_day is not None else ""),
    ]
    if fit.uncertainty_reason:
        out.append(f"  uncertainty:             not computable: {fit.uncertainty_reason}")
    if fit.r_squared is not None:
        out.append(f"  R² (on M²):              {fit.r_squared:.4f}")
    out.append(f"  model FLR at day 0:      {_fmt(fit.fitted_flr0_ml)} mL")
    if kgr is not None:
        out.append(f"  KGR:                     {kgr['kgr_percent_per_week']:.2f} %/week over {kgr['weeks']:.1f} weeks "
                   f"(DH {kgr['degree_of_hypertrophy_percent']:.2f} points; >= 2 %/week: {_fmt(kgr['passed'])}; "
                   f"basis: {kgr['basis'].split(' (')[0]})")
    if growth.assessment is not None:
        out += ["", "At the last scan:", *_assessment_lines(growth.assessment)]
    if target is not None:
        out += ["", f"Target {target['target_ml']:.1f} mL ({growth.target_source})"]
        if target["day"] is None:
            out.append(f"  t*: not computable: {target['reason']}")
        else:
            se = f" ± {target['day_se']:.1f} (SE)" if target["day_se"] is not None else ""
            out.append(f"  t* (from day 0):         day {target['day']:.1f}{se}")
            after = target["days_after_last_scan"]
            out.append(f"  after the last scan:     {after:.1f} days" if after > 0 else
                       f"  after the last scan:     reached {-after:.1f} days before the last scan")
    out += ["", "Measured and predicted FLR",
            _table(["day", "measured mL", "model mL"],
                   [[f"{p['day']:g}", _fmt(p["measured_flr_ml"]), _fmt(p["flr_ml"])] for p in growth.prediction])]
    return out


# --------------------------------------------------------------------------------------------
# stage


def run_stage(args) -> int:
    json_path = _output_path("--json", args.json, ".json")
    plot_path = _output_path("--plot", args.plot, ".png")
    if (args.height_cm is None) != (args.weight_kg is None):
        raise InputError("give both --height-cm and --weight-kg (for the standardized FLR), or neither")
    if args.doubling_days is not None and args.tumour_ml is None:
        raise InputError("--doubling-days needs --tumour-ml (the tumour volume now, in mL)")
    if not (math.isfinite(args.dropout_wait_days) and args.dropout_wait_days > 0):
        raise InputError(f"--dropout-wait-days must be > 0, got {args.dropout_wait_days:g}")
    techniques = _techniques(args)
    assessment = assess_remnant(
        remnant_ml=args.flr_ml, functional_liver_ml=args.functional_liver_ml, parenchyma=args.parenchyma,
        threshold_percent=args.threshold_percent, height_cm=args.height_cm, weight_kg=args.weight_kg,
        kgr_percent_per_week=args.kgr_percent_per_week,
    )
    reserve = salvage_reserve(
        remnant_ml=args.flr_ml, min_remnant_ml=assessment.min_remnant_ml, salvage_ml=args.salvage_ml
    )
    outlook, reason = outlook_for_assessment(
        assessment, tumour_ml=args.tumour_ml, doubling_days=args.doubling_days, techniques=techniques,
        dropout_wait_days=args.dropout_wait_days,
    )
    out = _assessment_lines(assessment)
    if reserve["salvage_ml"] is not None:
        out.append(
            f"  salvage of {reserve['salvage_ml']:.1f} mL:".ljust(27) + f"leaves {reserve['remnant_after_salvage_ml']:.1f} mL "
            f"(minimum {reserve['min_remnant_ml']:.1f} mL): {'affordable' if reserve['salvage_affordable'] else 'NOT affordable'}"
            f"; {reserve['salvages_affordable']} such salvage(s) in a row stay above the minimum"
        )
    out.append("")
    if outlook is not None:
        out.extend(_scenario_lines(outlook))
    else:
        out.append(f"Staging scenarios: not computed: {reason}")
    print("\n".join(out))

    payload = {
        "command": "stage",
        "inputs": {k: getattr(args, k) for k in (
            "flr_ml", "functional_liver_ml", "parenchyma", "threshold_percent", "tumour_ml", "doubling_days",
            "height_cm", "weight_kg", "kgr_percent_per_week", "salvage_ml", "dropout_wait_days")},
        "assessment": assessment.to_dict(),
        "recurrence_reserve": reserve,
        "techniques": {k: t.to_dict() for k, t in techniques.items()},
        "growth_outlook": outlook,
        "growth_outlook_reason": reason,
    }
    if plot_path is not None:
        from hepatoplan.pipeline.growth_plot import plot_stage_outlook

        td = None
        if args.tumour_ml is not None:
            td = outlook["doubling_days"] if outlook else (args.doubling_days or CRLM_DOUBLING_DAYS_DEFAULT)
        with atomic_file(plot_path) as tmp:
            plot_stage_outlook(
                tmp, flr_ml=args.flr_ml, min_remnant_ml=assessment.min_remnant_ml, techniques=techniques,
                scenarios=outlook["scenarios"] if outlook else None, tumour_ml=args.tumour_ml, doubling_days=td)
        payload["plot"] = str(plot_path)
    if json_path is not None:
        write_atomic(json_path, json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return 0


# --------------------------------------------------------------------------------------------
# registration


def register(subparsers) -> None:
    """Add the ``growth`` and ``stage`` subcommands."""
    g = subparsers.add_parser(
        "growth",
        help="fit the regeneration model to serial FLR volumes; time to reach the target",
        description="Fit M(t)² = M0² + 2·k·Qp·t (dM/dt = k·Qp/M) to serial FLR volumes by least squares on "
                    "M², predict the FLR and the day t* it reaches the target.",
    )
    g.add_argument("--days", required=True, help="scan days since stage 1, comma-separated, e.g. 0,21")
    g.add_argument("--flr-ml", required=True, help="FLR volume at each scan in mL, comma-separated, e.g. 380,520")
    g.add_argument("--target-ml", type=float, help="volume to reach, mL")
    g.add_argument("--functional-liver-ml", type=float,
                   help="functional liver volume (mL); with --parenchyma the target is the minimum safe remnant")
    g.add_argument("--parenchyma", help=f"liver quality: {', '.join(PARENCHYMA_CHOICES)} (threshold 20/30/40 %%)")
    g.add_argument("--threshold-percent", type=float, help="override the parenchyma threshold (percent)")
    g.add_argument("--height-cm", type=float, help="height (cm), with --weight-kg: standardized FLR and KGR")
    g.add_argument("--weight-kg", type=float, help="body weight (kg)")
    g.add_argument("--json", metavar="FILE", help="write the results as JSON")
    g.add_argument("--plot", metavar="FILE.png", help="write a PNG of the fit")
    g.set_defaults(func=run_growth)

    s = subparsers.add_parser(
        "stage",
        help="verdict on a remnant, recurrence reserve and PVE/PVL/LVD/ALPPS scenarios vs the tumour",
        description="Assess a future liver remnant; when it is too small, predict for each staging technique "
                    "the FLR at stage 2, the time to target and the tumour burden (race against the tumour).",
    )
    s.add_argument("--flr-ml", type=float, required=True, help="future liver remnant volume, mL")
    s.add_argument("--functional-liver-ml", type=float, required=True,
                   help="functional liver volume (total liver minus tumour), mL")
    s.add_argument("--parenchyma", required=True, help=f"liver quality: {', '.join(PARENCHYMA_CHOICES)}")
    s.add_argument("--threshold-percent", type=float, help="override the parenchyma threshold (percent)")
    s.add_argument("--tumour-ml", type=float, help="total tumour volume now, mL (race against the tumour)")
    s.add_argument("--doubling-days", type=float,
                   help=f"tumour volume doubling time, days (default {CRLM_DOUBLING_DAYS_DEFAULT:g}: colorectal "
                        "liver metastases, Finlay 1988)")
    s.add_argument("--height-cm", type=float, help="height (cm), with --weight-kg: sFLR criterion")
    s.add_argument("--weight-kg", type=float, help="body weight (kg): FLR/body-weight >= 0.5 %% criterion")
    s.add_argument("--kgr-percent-per-week", type=float, help="measured KGR after PVE: adds KGR >= 2 %%/week")
    s.add_argument("--salvage-ml", type=float, help="volume a future salvage resection would remove, mL")
    s.add_argument("--dropout-wait-days", type=float, default=DROPOUT_WAIT_DAYS_DEFAULT,
                   help=f"flag drop-out risk when stage 2 waits longer (default {DROPOUT_WAIT_DAYS_DEFAULT:g} days)")
    s.add_argument("--technique", action="append", metavar="NAME:PERCENT:DAYS[:EARLIEST:LATEST]",
                   help="override a technique's literature figures, e.g. PVE:45:28 (repeatable; "
                        f"techniques: {', '.join(DEFAULT_TECHNIQUES)})")
    s.add_argument("--json", metavar="FILE", help="write the results as JSON")
    s.add_argument("--plot", metavar="FILE.png", help="write a PNG of predicted FLR per technique")
    s.set_defaults(func=run_stage)
