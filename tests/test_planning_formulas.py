"""Thresholds and liver-volume formulas against hand-computed values from their sources."""

import ast
import math
from pathlib import Path

import pytest

from hepatoplan.errors import InputError
from hepatoplan.planning import liver_volume as lv
from hepatoplan.planning.thresholds import (
    PARENCHYMA_THRESHOLD_PERCENT,
    PARENCHYMA_THRESHOLD_RANGE_PERCENT,
    threshold_percent,
)

PLANNING_DIR = Path(__file__).resolve().parents[1] / "planning"


# --- thresholds (seed 000: 20 % normal, 30 % chemotherapy-injured, 40 % cirrhosis) ------------


def test_seed_thresholds_exact():
    assert PARENCHYMA_THRESHOLD_PERCENT == {"normal": 20.0, "chemotherapy": 30.0, "cirrhosis": 40.0}
    assert threshold_percent("normal") == 20.0
    assert threshold_percent("Chemotherapy ") == 30.0  # case and whitespace tolerated
    assert threshold_percent("cirrhosis") == 40.0


def test_threshold_ranges_are_the_seed_ranges():
    # seed 000: 20-25 %, 30-35 %, >= 40 %; each default is the low end of its range
    assert PARENCHYMA_THRESHOLD_RANGE_PERCENT == {
        "normal": (20.0, 25.0), "chemotherapy": (30.0, 35.0), "cirrhosis": (40.0, None)}
    for name, (low, _high) in PARENCHYMA_THRESHOLD_RANGE_PERCENT.items():
        assert threshold_percent(name) == low


def test_threshold_override_and_errors():
    assert threshold_percent("normal", override_percent=25) == 25.0
    with pytest.raises(InputError, match="parenchyma must be one of normal, chemotherapy, cirrhosis"):
        threshold_percent("steatosis")
    with pytest.raises(InputError, match="parenchyma"):
        threshold_percent("steatosis", override_percent=30)  # parenchyma still validated
    for bad in (0, -5, 120, float("nan")):
        with pytest.raises(InputError, match="threshold_percent"):
            threshold_percent("normal", override_percent=bad)


# --- BSA ---------------------------------------------------------------------------------------


def test_bsa_mosteller_hand_values():
    # Mosteller 1987: sqrt(H*W/3600). 180 cm, 80 kg -> sqrt(14400/3600) = sqrt(4) = 2 m² exactly;
    # 170 cm, 70 kg -> sqrt(11900/3600) = sqrt(3.30556) = 1.818119 m²
    assert lv.bsa_mosteller_m2(height_cm=180, weight_kg=80) == pytest.approx(2.0, abs=1e-12)
    assert lv.bsa_mosteller_m2(height_cm=170, weight_kg=70) == pytest.approx(1.818119, abs=1e-6)


def test_bsa_dubois_hand_value():
    # Du Bois 1916: 0.007184 * W^0.425 * H^0.725. 180 cm, 80 kg: 80^0.425 = e^(0.425*4.382027) = 6.43878;
    # 180^0.725 = e^(0.725*5.192957) = 43.1618; 0.007184 * 6.43878 * 43.1618 = 1.99642 m²
    assert lv.bsa_dubois_m2(height_cm=180, weight_kg=80) == pytest.approx(1.99642, abs=2e-5)


@pytest.mark.parametrize("func", [lv.bsa_mosteller_m2, lv.bsa_dubois_m2])
def test_bsa_rejects_non_positive(func):
    with pytest.raises(InputError, match="height_cm must be > 0"):
        func(height_cm=0, weight_kg=70)
    with pytest.raises(InputError, match="weight_kg must be > 0"):
        func(height_cm=170, weight_kg=-70)


# --- TELV, sFLR, FLR/BW, DH, KGR -----------------------------------------------------------------


def test_telv_vauthey_hand_value():
    # Vauthey 2002: TELV = -794.41 + 1267.28 * BSA; BSA 2.0 -> -794.41 + 2534.56 = 1740.15 mL
    assert lv.telv_vauthey_ml(bsa_m2=2.0) == pytest.approx(1740.15, abs=1e-9)
    # BSA 1.5 -> -794.41 + 1900.92 = 1106.51 mL
    assert lv.telv_vauthey_ml(bsa_m2=1.5) == pytest.approx(1106.51, abs=1e-9)
    with pytest.raises(InputError, match="outside the range of the Vauthey formula"):
        lv.telv_vauthey_ml(bsa_m2=0.5)  # -794.41 + 633.64 < 0


def test_telv_urata_hand_value():
    # Urata 1995: SLV = 706.2 * BSA + 2.4; BSA 2.0 -> 1412.4 + 2.4 = 1414.8 mL
    assert lv.telv_urata_ml(bsa_m2=2.0) == pytest.approx(1414.8, abs=1e-9)


def test_sflr_and_flr_to_body_weight_hand_values():
    # sFLR = FLR / TELV: 400 / 1600 = 25 %
    assert lv.sflr_percent(flr_ml=400, telv_ml=1600) == pytest.approx(25.0)
    # Truant 2007: FLR (g, 1 g/mL) / body weight: 400 g / 80 000 g = 0.5 %
    assert lv.flr_to_body_weight_percent(flr_ml=400, weight_kg=80) == pytest.approx(0.5)
    with pytest.raises(InputError, match="telv_ml must be > 0"):
        lv.sflr_percent(flr_ml=400, telv_ml=0)


def test_degree_of_hypertrophy_and_kgr_hand_values():
    # Shindoh 2013: DH = sFLR_after - sFLR_before (points); KGR = DH / weeks.
    # 15 % -> 25 % = 10 points; over 35 days (5 weeks) -> 2.0 %/week, exactly the cut-off
    dh = lv.degree_of_hypertrophy_percent(sflr_before_percent=15, sflr_after_percent=25)
    assert dh == pytest.approx(10.0)
    assert lv.kgr_percent_per_week(degree_of_hypertrophy_percent=dh, days=35) == pytest.approx(2.0)
    # a shrinking remnant gives a negative DH, not an error
    assert lv.degree_of_hypertrophy_percent(sflr_before_percent=20, sflr_after_percent=18) == pytest.approx(-2.0)
    with pytest.raises(InputError, match="days must be > 0"):
        lv.kgr_percent_per_week(degree_of_hypertrophy_percent=10, days=0)


def test_planning_is_pure_arithmetic():
    """planning/ imports neither pipeline nor numpy (plain arithmetic on volumes and times)."""
    for path in PLANNING_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                root = name.split(".")[0]
                assert root not in {"pipeline", "numpy"}, f"{path.name} imports {name}"
    assert math.isfinite(lv.G_PER_KG)
