"""Remnant assessment and recurrence reserve: seed numbers exactly, every criterion listed."""

import json

import pytest

from hepatoplan.errors import InputError
from hepatoplan.planning.assessment import assess_remnant
from hepatoplan.planning.reserve import recurrence_reserve, salvage_reserve

REQUIRED_KEYS = {
    "parenchyma", "threshold_percent", "flr_percent", "min_remnant_ml", "verdict", "shortfall_ml",
    "recurrence_reserve_ml", "bsa_m2", "telv_ml", "sflr_percent", "flr_to_body_weight_percent", "criteria",
}


def test_seed_000_chemotherapy_patient_is_inadequate():
    # seed 000: a chemotherapy-injured liver needing 30 % has a predicted FLR of 22 %
    a = assess_remnant(remnant_ml=330, functional_liver_ml=1500, parenchyma="chemotherapy")
    assert a.flr_percent == pytest.approx(22.0)
    assert a.verdict == "inadequate"
    assert a.min_remnant_ml == pytest.approx(450.0)
    assert a.shortfall_ml == pytest.approx(120.0)
    assert a.recurrence_reserve_ml == pytest.approx(-120.0)
    # the same remnant in a normal liver (20 %) is adequate
    assert assess_remnant(remnant_ml=330, functional_liver_ml=1500, parenchyma="normal").verdict == "adequate"


def test_to_dict_keys_and_json_ready():
    a = assess_remnant(remnant_ml=525, functional_liver_ml=1500, parenchyma="chemotherapy")
    d = a.to_dict()
    assert REQUIRED_KEYS <= set(d)
    json.dumps(d, allow_nan=False)
    assert d["bsa_m2"] is None and d["telv_ml"] is None and d["flr_to_body_weight_percent"] is None
    assert d["criteria"] == [{
        "name": "flr_percent", "value": 35.0, "threshold": 30.0, "unit": "%", "passed": True,
        "required_ml": 450.0, "reference": d["criteria"][0]["reference"]}]


def test_exact_threshold_passes():
    # 450 mL of 1500 mL is exactly 30 %: adequate, reserve 0 (no float-rounding failure)
    a = assess_remnant(remnant_ml=450, functional_liver_ml=1500, parenchyma="chemotherapy")
    assert a.verdict == "adequate" and a.shortfall_ml == 0.0 and a.recurrence_reserve_ml == pytest.approx(0.0)


def test_optional_criteria_all_listed_and_binding():
    # 180 cm / 80 kg: BSA (Mosteller) = 2.0 m², TELV (Vauthey) = 1740.15 mL.
    # remnant 450 of functional 1500, chemotherapy 30 %:
    #   flr_percent 30.0 % -> passes (needs 450 mL)
    #   sFLR 450/1740.15 = 25.86 % -> fails (needs 0.30 * 1740.15 = 522.045 mL)
    #   FLR/BW 450/80000 = 0.5625 % -> passes (needs 400 mL)
    a = assess_remnant(remnant_ml=450, functional_liver_ml=1500, parenchyma="chemotherapy",
                       height_cm=180, weight_kg=80, kgr_percent_per_week=1.5)
    names = [c.name for c in a.criteria]
    assert names == ["flr_percent", "sflr_percent", "flr_to_body_weight_percent", "kgr_percent_per_week"]
    by = {c.name: c for c in a.criteria}
    assert a.bsa_m2 == pytest.approx(2.0) and a.telv_ml == pytest.approx(1740.15)
    assert by["sflr_percent"].value == pytest.approx(100 * 450 / 1740.15)
    assert not by["sflr_percent"].passed and by["sflr_percent"].required_ml == pytest.approx(522.045)
    assert by["flr_to_body_weight_percent"].value == pytest.approx(0.5625) and by["flr_to_body_weight_percent"].passed
    assert not by["kgr_percent_per_week"].passed and by["kgr_percent_per_week"].required_ml is None
    assert a.verdict == "inadequate"
    assert a.binding_criterion == "sflr_percent"
    assert a.min_remnant_ml == pytest.approx(522.045)
    assert a.shortfall_ml == pytest.approx(72.045)


def test_kgr_alone_can_fail_the_verdict_without_shortfall():
    a = assess_remnant(remnant_ml=600, functional_liver_ml=1500, parenchyma="normal", kgr_percent_per_week=1.0)
    assert a.verdict == "inadequate" and a.shortfall_ml == 0.0
    a = assess_remnant(remnant_ml=600, functional_liver_ml=1500, parenchyma="normal", kgr_percent_per_week=2.0)
    assert a.verdict == "adequate"  # KGR >= 2 %/week passes at the cut-off


@pytest.mark.parametrize("kwargs, match", [
    (dict(remnant_ml=0, functional_liver_ml=1500), "remnant_ml must be > 0"),
    (dict(remnant_ml=-3, functional_liver_ml=1500), "remnant_ml must be > 0, got -3"),
    (dict(remnant_ml=300, functional_liver_ml=0), "functional_liver_ml must be > 0"),
    (dict(remnant_ml=1600, functional_liver_ml=1500), "must not exceed functional_liver_ml"),
    (dict(remnant_ml=300, functional_liver_ml=1500, parenchyma="fatty"), "parenchyma must be one of"),
    (dict(remnant_ml=300, functional_liver_ml=1500, height_cm=170), "without weight_kg"),
    (dict(remnant_ml=300, functional_liver_ml=1500, telv_formula="heinemann"), "telv_formula"),
])
def test_assessment_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        assess_remnant(**kwargs)


def test_seed_004_patients_a_and_b_exactly():
    # seed 004: functional liver 1500 mL, minimum FLR 30 % (450 mL), salvage resection of 150 mL
    a = recurrence_reserve(remnant_ml=525, functional_liver_ml=1500, threshold_percent=30, salvage_ml=150)
    assert a["min_remnant_ml"] == 450.0
    assert a["reserve_ml"] == 75.0
    assert a["remnant_after_salvage_ml"] == 375.0
    assert a["salvage_affordable"] is False and a["salvages_affordable"] == 0
    b = recurrence_reserve(remnant_ml=975, functional_liver_ml=1500, threshold_percent=30, salvage_ml=150)
    assert b["reserve_ml"] == 525.0
    assert b["remnant_after_salvage_ml"] == 825.0
    assert b["salvage_affordable"] is True
    # "may even have enough reserve for a third": 975 - 3*150 = 525 >= 450, a fourth would leave 375
    assert b["salvages_affordable"] == 3
    # the assessment's reserve agrees (35 % and 65 % of the functional liver)
    for remnant, pct, reserve in ((525, 35.0, 75.0), (975, 65.0, 525.0)):
        r = assess_remnant(remnant_ml=remnant, functional_liver_ml=1500, threshold_percent=30)
        assert r.flr_percent == pytest.approx(pct) and r.recurrence_reserve_ml == reserve


def test_salvage_reserve_exact_boundary_and_errors():
    assert salvage_reserve(remnant_ml=600, min_remnant_ml=450, salvage_ml=150)["salvage_affordable"] is True
    assert salvage_reserve(remnant_ml=600, min_remnant_ml=450)["salvage_affordable"] is None
    with pytest.raises(InputError, match="salvage_ml must be > 0"):
        salvage_reserve(remnant_ml=600, min_remnant_ml=450, salvage_ml=0)
