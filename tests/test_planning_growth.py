"""Regeneration model dM/dt = k·Qp/M (seed 000), its least-squares fit, scenarios and the tumour race."""

import json
import math
import random

import pytest

from hepatoplan.errors import InputError
from hepatoplan.planning.growth import days_to_target, fit_growth, kqp_from_hypertrophy, predict_flr_ml
from hepatoplan.planning.scenarios import DEFAULT_TECHNIQUES, evaluate_scenario, growth_outlook, techniques_with_overrides
from hepatoplan.planning.tumour import (
    CRLM_DOUBLING_DAYS_DEFAULT,
    RECIST_PROGRESSION_VOLUME_FACTOR,
    doubling_days_from_volumes,
    tumour_volume_ml,
)

# --- closed forms -------------------------------------------------------------------------------


def test_t_star_formula_seed_000():
    # t* = (M_target² - M0²) / (2 k Qp). With k·Qp = 1000 mL²/day:
    # 200 -> 400: (160000 - 40000) / 2000 = 60 days; 800 -> 1000: (1e6 - 640000) / 2000 = 180 days
    fast = days_to_target(flr0_ml=200, target_ml=400, kqp_ml2_per_day=1000)
    slow = days_to_target(flr0_ml=800, target_ml=1000, kqp_ml2_per_day=1000)
    assert fast == 60.0 and slow == 180.0
    assert fast < slow  # the seed: same 200 g gain, growing a small remnant is faster


def test_prediction_inverts_t_star():
    # M(t) = sqrt(M0² + 2 kQp t): 200 mL, kQp 1000, 60 days -> sqrt(40000 + 120000) = 400 mL
    assert predict_flr_ml(flr0_ml=200, kqp_ml2_per_day=1000, days=60) == pytest.approx(400.0)
    assert predict_flr_ml(flr0_ml=200, kqp_ml2_per_day=1000, days=0) == 200.0


def test_kqp_from_hypertrophy_hand_value():
    # k·Qp = M0² ((1 + h)² - 1) / (2 t): 400 mL, +50 % in 25 days -> 160000 * 1.25 / 50 = 4000 mL²/day
    kqp = kqp_from_hypertrophy(flr0_ml=400, hypertrophy_percent=50, days=25)
    assert kqp == pytest.approx(4000.0)
    assert predict_flr_ml(flr0_ml=400, kqp_ml2_per_day=kqp, days=25) == pytest.approx(600.0)


def test_closed_form_errors():
    with pytest.raises(InputError, match="target_ml .* is below the baseline FLR"):
        days_to_target(flr0_ml=500, target_ml=400, kqp_ml2_per_day=1000)
    with pytest.raises(InputError, match="kqp_ml2_per_day must be > 0"):
        days_to_target(flr0_ml=400, target_ml=500, kqp_ml2_per_day=0)
    with pytest.raises(InputError, match="flr0_ml must be > 0"):
        predict_flr_ml(flr0_ml=0, kqp_ml2_per_day=1000, days=3)


# --- fit ----------------------------------------------------------------------------------------


def test_fit_two_points_seed_cli_example():
    # 380 -> 520 mL in 21 days: k·Qp = (520² - 380²) / (2*21) = 126000 / 42 = 3000 mL²/day
    fit = fit_growth(days=[0, 21], flr_ml=[380, 520])
    assert fit.kqp_ml2_per_day == pytest.approx(3000.0)
    assert fit.kqp_se_ml2_per_day is None and "3 or more" in fit.uncertainty_reason
    t = fit.days_to_target(600)
    # (600² - 380²) / 6000 = 215600 / 6000 = 35.933 days
    assert t["day"] == pytest.approx(215600 / 6000) and t["days_after_last_scan"] == pytest.approx(215600 / 6000 - 21)
    json.dumps(fit.to_dict(), allow_nan=False)


@pytest.mark.parametrize("kqp, m0, days", [
    (2500.0, 350.0, [0, 7, 14, 21, 28]),
    (800.0, 900.0, [3, 10, 24, 40]),
    (12000.0, 300.0, [0, 4, 9]),
])
def test_fit_recovers_kqp_on_noiseless_data(kqp, m0, days):
    flr = [math.sqrt(m0 * m0 + 2 * kqp * t) for t in days]
    fit = fit_growth(days=days, flr_ml=flr)
    assert fit.kqp_ml2_per_day == pytest.approx(kqp, rel=0.01)  # acceptance: within 1 %
    assert fit.kqp_ml2_per_day == pytest.approx(kqp, rel=1e-9)  # in fact exact up to rounding
    assert fit.fitted_flr0_ml == pytest.approx(m0, rel=1e-9)
    assert fit.kqp_se_ml2_per_day == pytest.approx(0.0, abs=1e-6 * kqp)


def test_fit_uncertainty_is_calibrated_on_noisy_data():
    """95 % CI of k·Qp covers the truth in about 95 % of seeded noisy series (2 % volume noise)."""
    rng = random.Random(20240611)
    true_kqp, m0, days = 2500.0, 350.0, [0, 5, 10, 15, 20, 25, 30]
    covered, ses, estimates = 0, [], []
    n_rep = 400
    for _ in range(n_rep):
        flr = [math.sqrt(m0 * m0 + 2 * true_kqp * t) * (1 + rng.gauss(0, 0.02)) for t in days]
        fit = fit_growth(days=days, flr_ml=flr)
        lo, hi = fit.kqp_ci95_ml2_per_day
        covered += lo <= true_kqp <= hi
        ses.append(fit.kqp_se_ml2_per_day)
        estimates.append(fit.kqp_ml2_per_day)
    coverage = covered / n_rep
    assert 0.90 <= coverage <= 0.99, coverage
    mean = sum(estimates) / n_rep
    empirical_sd = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (n_rep - 1))
    mean_se = sum(ses) / n_rep
    assert mean_se == pytest.approx(empirical_sd, rel=0.25)  # reported SE matches the real spread
    assert mean == pytest.approx(true_kqp, rel=0.03)


def test_fit_t_star_uncertainty_on_noisy_series():
    fit = fit_growth(days=[0, 7, 14, 21], flr_ml=[380, 430, 470, 520])
    t = fit.days_to_target(600)
    assert t["day"] > 21 and t["day_se"] > 0


def test_fit_not_growing_is_not_computable_not_zero():
    fit = fit_growth(days=[0, 14, 28], flr_ml=[400, 395, 398])
    t = fit.days_to_target(500)
    assert t["day"] is None and "not growing" in t["reason"]


@pytest.mark.parametrize("days, flr, match", [
    ([0, -7], [380, 420], r"days\[1\] must be >= 0"),
    ([0, 21, 14], [380, 520, 480], "days must be strictly increasing"),
    ([0, 0], [380, 520], "days must be strictly increasing"),
    ([0, 21], [0, 520], r"flr_ml\[0\] must be > 0"),
    ([0, 21], [380, -520], r"flr_ml\[1\] must be > 0"),
    ([0], [380], "at least 2 serial FLR volumes"),
    ([0, 21, 28], [380, 520], "same length"),
])
def test_fit_bad_series(days, flr, match):
    with pytest.raises(InputError, match=match):
        fit_growth(days=days, flr_ml=flr)


def test_fit_target_below_baseline():
    fit = fit_growth(days=[0, 21], flr_ml=[380, 520])
    with pytest.raises(InputError, match="below the baseline FLR"):
        fit.days_to_target(300)


# --- tumour -------------------------------------------------------------------------------------


def test_tumour_growth_hand_values():
    # V = V0 * 2^(t/Td): 50 mL, Td 86 days (Finlay 1988), 86 days -> 100 mL; 43 days -> 50*sqrt(2)
    assert CRLM_DOUBLING_DAYS_DEFAULT == 86.0
    assert tumour_volume_ml(tumour_ml=50, doubling_days=86, days=86) == pytest.approx(100.0)
    assert tumour_volume_ml(tumour_ml=50, doubling_days=86, days=43) == pytest.approx(50 * math.sqrt(2))
    # Td = t ln2 / ln(V1/V0): 10 -> 20 mL in 60 days -> 60 days; 10 -> 40 mL in 60 days -> 30 days
    assert doubling_days_from_volumes(volume_before_ml=10, volume_after_ml=20, days=60) == pytest.approx(60.0)
    assert doubling_days_from_volumes(volume_before_ml=10, volume_after_ml=40, days=60) == pytest.approx(30.0)
    # RECIST 1.1 progression: +20 % diameter -> 1.2³ = 1.728 in volume
    assert RECIST_PROGRESSION_VOLUME_FACTOR == pytest.approx(1.728)
    with pytest.raises(InputError, match="must exceed volume_before_ml"):
        doubling_days_from_volumes(volume_before_ml=10, volume_after_ml=9, days=60)


# --- scenarios ----------------------------------------------------------------------------------


def test_technique_defaults_reproduce_their_literature_figures():
    for t in DEFAULT_TECHNIQUES.values():
        m0 = 330.0
        grown = predict_flr_ml(flr0_ml=m0, kqp_ml2_per_day=t.kqp_ml2_per_day(m0), days=t.at_days)
        assert grown == pytest.approx(m0 * (1 + t.hypertrophy_percent / 100))
    pve, alpps = DEFAULT_TECHNIQUES["PVE"], DEFAULT_TECHNIQUES["ALPPS"]
    assert pve.hypertrophy_percent == 37.9  # van Lienden 2013
    assert alpps.hypertrophy_percent == 74.0 and alpps.at_days == 9.0  # Schnitzbauer 2012
    assert (pve.earliest_stage2_days, pve.latest_stage2_days) == (21.0, 42.0)  # seed: 3-6 weeks
    assert (alpps.earliest_stage2_days, alpps.latest_stage2_days) == (7.0, 10.0)  # seed: 7-10 days


def test_growth_outlook_hand_values_and_race():
    # 330 -> 450 mL (seed 000 chemotherapy patient). PVE: kQp = 330² (1.379² - 1) / 56 = 1753.37 mL²/day;
    # t* = (450² - 330²) / (2 kQp) = 93600 / 3506.74 = 26.69 days: reached within 21-42 days.
    out = growth_outlook(flr_ml=330, target_ml=450, tumour_ml=40)
    json.dumps(out, allow_nan=False)
    by = {s["technique"]: s for s in out["scenarios"]}
    assert set(by) == {"PVE", "PVL", "LVD", "ALPPS"}
    pve = by["PVE"]
    assert pve["kqp_ml2_per_day"] == pytest.approx(330**2 * (1.379**2 - 1) / 56)
    assert pve["days_to_target"] == pytest.approx(93600 / (2 * pve["kqp_ml2_per_day"]))
    assert pve["target_reached_in_window"] and pve["stage2_day"] == pytest.approx(pve["days_to_target"])
    assert pve["flr_at_stage2_ml"] == pytest.approx(450.0)
    # tumour at stage 2: 40 * 2^(26.69/86)
    assert pve["tumour_at_stage2_ml"] == pytest.approx(40 * 2 ** (pve["stage2_day"] / 86))
    assert out["doubling_days"] == 86.0 and "Finlay" in out["doubling_days_source"]
    # ALPPS reaches the target before its earliest stage 2 (day 7): stage 2 on day 7, FLR above target
    alpps = by["ALPPS"]
    assert alpps["days_to_target"] < 7 and alpps["stage2_day"] == 7.0 and alpps["flr_at_stage2_ml"] > 450
    assert alpps["tumour_at_stage2_ml"] < pve["tumour_at_stage2_ml"]
    # PVL needs ~35 days: drop-out risk for the long wait (TSH vs ALPPS trade-off)
    assert by["PVL"]["dropout_risk"] and not alpps["dropout_risk"]
    assert out["fastest_to_target"] == "ALPPS"


def test_growth_outlook_unreachable_target_and_fast_tumour():
    out = growth_outlook(flr_ml=250, target_ml=450, tumour_ml=40, doubling_days=40)
    by = {s["technique"]: s for s in out["scenarios"]}
    pve = by["PVE"]
    assert not pve["target_reached_in_window"] and pve["stage2_day"] == 42.0
    assert pve["flr_at_stage2_ml"] < 450 and pve["flr_at_stage2_ml"] == pve["flr_at_window_end_ml"]
    # 2^(42/40) = 2.07 > 1.728: RECIST progression before stage 2
    assert any("RECIST" in r for r in pve["dropout_reasons"])
    assert out["doubling_days_source"] == "user"


def test_technique_overrides():
    techs = techniques_with_overrides({"pve": {"hypertrophy_percent": 60}})
    assert techs["PVE"].hypertrophy_percent == 60 and "overridden" in techs["PVE"].reference
    assert DEFAULT_TECHNIQUES["PVE"].hypertrophy_percent == 37.9  # defaults untouched
    s = evaluate_scenario(techs["PVE"], flr_ml=330, target_ml=450)
    assert s["days_to_target"] < evaluate_scenario(DEFAULT_TECHNIQUES["PVE"], flr_ml=330, target_ml=450)["days_to_target"]
    with pytest.raises(InputError, match="unknown technique"):
        techniques_with_overrides({"TACE": {"at_days": 3}})
    with pytest.raises(InputError, match="latest_stage2_days"):
        techniques_with_overrides({"PVE": {"earliest_stage2_days": 50}})


def test_growth_outlook_errors():
    with pytest.raises(InputError, match="below flr_ml"):
        growth_outlook(flr_ml=500, target_ml=450)
    with pytest.raises(InputError, match="tumour_ml must be > 0"):
        growth_outlook(flr_ml=330, target_ml=450, tumour_ml=0)
    with pytest.raises(InputError, match="doubling_days must be > 0"):
        growth_outlook(flr_ml=330, target_ml=450, tumour_ml=10, doubling_days=-1)


def test_outlook_for_assessment():
    from hepatoplan.planning.assessment import assess_remnant
    from hepatoplan.planning.scenarios import outlook_for_assessment

    short = assess_remnant(remnant_ml=330, functional_liver_ml=1500, parenchyma="chemotherapy")
    outlook, reason = outlook_for_assessment(short, tumour_ml=40)
    assert reason is None and outlook["target_ml"] == pytest.approx(450.0) and outlook["flr_ml"] == 330.0
    ok = assess_remnant(remnant_ml=600, functional_liver_ml=1500, parenchyma="chemotherapy")
    assert outlook_for_assessment(ok) == (None, "the remnant is adequate: no staging needed")
    slow = assess_remnant(remnant_ml=600, functional_liver_ml=1500, kgr_percent_per_week=1.2)
    outlook, reason = outlook_for_assessment(slow)
    assert outlook is None and "kgr_percent_per_week failed" in reason
