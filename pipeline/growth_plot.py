"""PNG plots of the regeneration outlook: predicted FLR over time, one curve per technique.

Uses matplotlib's object API on an Agg canvas (``Figure`` + ``FigureCanvasAgg``), so no global
backend is switched and nothing needs a display.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hepatoplan.planning.growth import GrowthFit, predict_flr_ml
from hepatoplan.planning.scenarios import Technique
from hepatoplan.planning.tumour import tumour_volume_ml

log = logging.getLogger(__name__)

_COLOURS = {"PVE": "tab:blue", "PVL": "tab:green", "LVD": "tab:purple", "ALPPS": "tab:red"}
_N = 200


def _grid(t_max: float) -> list[float]:
    return [t_max * i / (_N - 1) for i in range(_N)]


def plot_stage_outlook(
    path: str | Path,
    *,
    flr_ml: float,
    min_remnant_ml: float,
    techniques: Mapping[str, Technique],
    scenarios: list[dict] | None = None,
    tumour_ml: float | None = None,
    doubling_days: float | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of predicted FLR (mL) versus days after stage 1 for each technique.

    Draws the minimum safe remnant as a dashed line, each technique's stage-2 window as a thick
    segment of its curve, and the planned stage-2 day (from ``scenarios``) as a marker. With a
    tumour volume, a second panel shows the tumour's predicted growth with the same time axis.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    t_max = max(t.latest_stage2_days for t in techniques.values()) * 1.2
    days = _grid(t_max)
    with_tumour = tumour_ml is not None and doubling_days is not None
    fig = Figure(figsize=(10.0, 6.5 if with_tumour else 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    if with_tumour:
        ax, ax_t = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.3])
    else:
        ax, ax_t = fig.subplots(1, 1), None
    by_name = {s["technique"]: s for s in scenarios or []}
    y_top = max(min_remnant_ml, flr_ml)
    for name, tech in techniques.items():
        colour = _COLOURS.get(name, None)
        kqp = tech.kqp_ml2_per_day(flr_ml)
        curve = [predict_flr_ml(flr0_ml=flr_ml, kqp_ml2_per_day=kqp, days=d) for d in days]
        line, = ax.plot(days, curve, color=colour, lw=1.2, alpha=0.6)
        y_top = max(y_top, predict_flr_ml(flr0_ml=flr_ml, kqp_ml2_per_day=kqp, days=tech.latest_stage2_days))
        window = [d for d in days if tech.earliest_stage2_days <= d <= tech.latest_stage2_days]
        ax.plot(window, [predict_flr_ml(flr0_ml=flr_ml, kqp_ml2_per_day=kqp, days=d) for d in window],
                color=line.get_color(), lw=4, solid_capstyle="butt",
                label=f"{name} (+{tech.hypertrophy_percent:g} % at day {tech.at_days:g}; window "
                      f"{tech.earliest_stage2_days:g}-{tech.latest_stage2_days:g} d)")
        s = by_name.get(name)
        if s is not None:
            ax.plot([s["stage2_day"]], [s["flr_at_stage2_ml"]], marker="o" if s["target_reached_in_window"] else "x",
                    ms=8, color=line.get_color(), mec="black")
    ax.axhline(min_remnant_ml, color="black", ls="--", lw=1.2, label=f"minimum safe remnant {min_remnant_ml:.0f} mL")
    ax.axhline(flr_ml, color="grey", ls=":", lw=1, label=f"baseline FLR {flr_ml:.0f} mL")
    ax.set_ylabel("predicted FLR (mL)")
    ax.set_xlim(0, t_max)
    ax.set_ylim(min(flr_ml, min_remnant_ml) * 0.9, y_top * 1.1)  # curves beyond the windows are extrapolation
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title or "Staged hepatectomy: predicted FLR, dM/dt = k·Qp/M\n(thick = usual stage-2 window; "
                 "o = planned stage 2, target reached; x = window ends short of target)", fontsize=9)
    if ax_t is not None:
        ax_t.plot(days, [tumour_volume_ml(tumour_ml=tumour_ml, doubling_days=doubling_days, days=d) for d in days],
                  color="darkorange", lw=1.5, label=f"tumour, doubling time {doubling_days:g} d")
        ax_t.axhline(tumour_ml * 1.2**3, color="darkorange", ls="--", lw=1, label="RECIST progression (x1.73)")
        ax_t.set_ylabel("tumour (mL)")
        ax_t.grid(alpha=0.3)
        ax_t.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax_t.set_xlabel("days after stage 1")
    else:
        ax.set_xlabel("days after stage 1")
    fig.savefig(path, format="png")
    log.info("wrote %s", path)
    return path


def plot_growth_fit(path: str | Path, *, fit: GrowthFit, target_ml: float | None = None,
                    target_day: float | None = None) -> Path:
    """Write a PNG of the measured FLR volumes, the fitted curve and the target line.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    t_end = max(fit.days[-1], target_day or 0.0) * 1.25 + 1.0
    days = _grid(t_end)
    fig = Figure(figsize=(8.0, 4.8), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots(1, 1)
    ci = fit.kqp_ci95_ml2_per_day
    label = f"fit k·Qp = {fit.kqp_ml2_per_day:.0f} mL²/day"
    if ci is not None:
        label += f" (95 % CI {ci[0]:.0f}-{ci[1]:.0f})"
        lo = [_m(fit.intercept_ml2, ci[0], d) for d in days]
        hi = [_m(fit.intercept_ml2, ci[1], d) for d in days]
        ax.fill_between(days, lo, hi, color="tab:blue", alpha=0.15, lw=0, label="95 % CI of k·Qp (intercept fixed)")
    ax.plot(days, [_m(fit.intercept_ml2, fit.kqp_ml2_per_day, d) for d in days], color="tab:blue", label=label)
    ax.plot(fit.days, fit.flr_ml, "o", color="black", label="measured FLR")
    if target_ml is not None:
        ax.axhline(target_ml, color="black", ls="--", lw=1.2, label=f"target {target_ml:.0f} mL")
        if target_day is not None:
            ax.axvline(target_day, color="grey", ls=":", lw=1, label=f"t* = day {target_day:.1f}")
    ax.set_xlabel("days after stage 1")
    ax.set_ylabel("FLR (mL)")
    ax.set_xlim(0, t_end)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Serial FLR volumetry and the fitted regeneration model M² = M0² + 2·k·Qp·t", fontsize=9)
    fig.savefig(path, format="png")
    log.info("wrote %s", path)
    return path


def _m(intercept_ml2: float, kqp: float, day: float) -> float:
    m2 = intercept_ml2 + 2.0 * kqp * day
    return m2**0.5 if m2 > 0 else float("nan")
