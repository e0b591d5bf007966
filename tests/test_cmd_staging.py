"""``hepatoplan growth`` and ``hepatoplan stage``: in-process with capsys, once as a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hepatoplan.pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_growth_issue_example_two_scans(capsys, tmp_path):
    out_json = tmp_path / "growth.json"
    rc = main(["growth", "--days", "0,21", "--flr-ml", "380,520", "--target-ml", "600", "--json", str(out_json)])
    assert rc == 0
    text = capsys.readouterr().out
    # k·Qp = (520² - 380²) / (2*21) = 3000 mL²/day; t* = (600² - 380²) / 6000 = 35.93 days
    assert "3000.0 mL²/day" in text and "day 35.9" in text
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["fit"]["kqp_ml2_per_day"] == pytest.approx(3000.0)
    assert data["target"]["day"] == pytest.approx(215600 / 6000)
    assert data["fit"]["kqp_se_ml2_per_day"] is None and data["fit"]["uncertainty_reason"]


def test_growth_with_parenchyma_target_kgr_and_plot(capsys, tmp_path):
    out_json, out_png = tmp_path / "g.json", tmp_path / "g.png"
    rc = main(["growth", "--days", "0,14,28", "--flr-ml", "380,470,540", "--functional-liver-ml", "1500",
               "--parenchyma", "chemotherapy", "--height-cm", "180", "--weight-kg", "80",
               "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    data = json.loads(out_json.read_text(encoding="utf-8"))
    # TELV = -794.41 + 1267.28 * 2.0 = 1740.15 mL; sFLR 380 -> 540 mL = 21.84 -> 31.03 %: DH 9.19 points
    # over 4 weeks -> KGR 2.30 %/week
    kgr = data["kgr"]
    assert kgr["telv_ml"] == pytest.approx(1740.15)
    assert kgr["kgr_percent_per_week"] == pytest.approx(100 * 160 / 1740.15 / 4)
    # target = the binding minimum: sFLR 30 % of 1740.15 = 522.045 mL (> 30 % of 1500 = 450 mL)
    assert data["target"]["target_ml"] == pytest.approx(522.045)
    assert data["assessment"]["binding_criterion"] == "sflr_percent"
    assert data["fit"]["kqp_se_ml2_per_day"] > 0
    assert "Target 522.0 mL" in text and "KGR" in text
    assert out_png.read_bytes()[:8] == PNG_MAGIC


def test_stage_seed_patient_a_and_b(capsys, tmp_path):
    # seed 004 patient A: remnant 525 of 1500 mL, minimum 30 %: reserve 75 mL, a 150 mL salvage is not affordable
    out_json = tmp_path / "a.json"
    assert main(["stage", "--flr-ml", "525", "--functional-liver-ml", "1500", "--parenchyma", "normal",
                 "--threshold-percent", "30", "--salvage-ml", "150", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "ADEQUATE" in text and "450.0 mL" in text and "recurrence reserve:      75.0 mL" in text
    assert "leaves 375.0 mL" in text and "NOT affordable" in text
    a = json.loads(out_json.read_text(encoding="utf-8"))
    assert a["recurrence_reserve"]["reserve_ml"] == 75.0 and a["recurrence_reserve"]["salvage_affordable"] is False
    assert a["growth_outlook"] is None and "no staging needed" in a["growth_outlook_reason"]
    # patient B: remnant 975 mL -> 825 mL after the salvage, affordable
    assert main(["stage", "--flr-ml", "975", "--functional-liver-ml", "1500", "--parenchyma", "chemotherapy",
                 "--salvage-ml", "150"]) == 0
    text = capsys.readouterr().out
    assert "recurrence reserve:      525.0 mL" in text and "leaves 825.0 mL" in text and ": affordable" in text


def test_stage_inadequate_prints_one_row_per_technique(capsys, tmp_path):
    out_json, out_png = tmp_path / "s.json", tmp_path / "s.png"
    rc = main(["stage", "--flr-ml", "330", "--functional-liver-ml", "1500", "--parenchyma", "chemotherapy",
               "--tumour-ml", "40", "--doubling-days", "60", "--technique", "PVE:45:28",
               "--json", str(out_json), "--plot", str(out_png)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "INADEQUATE" in text and "shortfall:               120.0 mL" in text
    rows = [line.split()[0] for line in text.splitlines() if line.strip().split(" ")[0] in {"PVE", "PVL", "LVD", "ALPPS"}
            and "@" in line]
    assert rows == ["PVE", "PVL", "LVD", "ALPPS"]
    data = json.loads(out_json.read_text(encoding="utf-8"))
    scen = {s["technique"]: s for s in data["growth_outlook"]["scenarios"]}
    assert scen["PVE"]["hypertrophy_percent"] == 45.0  # the override reached the scenario
    assert data["growth_outlook"]["doubling_days"] == 60.0
    assert data["techniques"]["PVE"]["hypertrophy_percent"] == 45.0
    assert out_png.read_bytes()[:8] == PNG_MAGIC


BAD_INPUTS = [
    (["growth", "--days", "0,-21", "--flr-ml", "380,520"], "days[1] must be >= 0"),
    (["growth", "--days", "0,21,14", "--flr-ml", "380,520,480"], "strictly increasing"),
    (["growth", "--days", "0,21", "--flr-ml", "0,520"], "flr_ml[0] must be > 0"),
    (["growth", "--days", "0,21", "--flr-ml", "380,520", "--target-ml", "300"], "below the baseline FLR"),
    (["growth", "--days", "0,21", "--flr-ml", "380,520", "--functional-liver-ml", "1500", "--parenchyma", "fatty"],
     "parenchyma must be one of"),
    (["growth", "--days", "0,x", "--flr-ml", "380,520"], "--days expects comma-separated numbers"),
    (["growth", "--days", "0,21", "--flr-ml", "380,520", "--functional-liver-ml", "1500"], "needs --parenchyma"),
    (["stage", "--flr-ml", "0", "--functional-liver-ml", "1500", "--parenchyma", "normal"], "remnant_ml must be > 0"),
    (["stage", "--flr-ml", "330", "--functional-liver-ml", "1500", "--parenchyma", "cirrhotic"],
     "parenchyma must be one of"),
    (["stage", "--flr-ml", "330", "--functional-liver-ml", "1500", "--parenchyma", "normal",
      "--tumour-ml", "-2"], "tumour_ml must be > 0"),
    (["stage", "--flr-ml", "330", "--functional-liver-ml", "1500", "--parenchyma", "normal",
      "--technique", "PVE:lots:28"], "hypertrophy_percent must be a number"),
    (["stage", "--flr-ml", "330", "--parenchyma", "normal"], "--functional-liver-ml"),
]


@pytest.mark.parametrize("argv, message", BAD_INPUTS)
def test_bad_input_exit_2_one_line_no_file(argv, message, capsys, tmp_path):
    out_json, out_png = tmp_path / "out.json", tmp_path / "out.png"
    rc = main(argv + ["--json", str(out_json), "--plot", str(out_png)])
    assert rc == 2
    captured = capsys.readouterr()
    err_lines = captured.err.strip().splitlines()
    assert len(err_lines) == 1 and message in err_lines[0], captured.err
    assert "Traceback" not in captured.err
    assert not out_json.exists() and not out_png.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary leftovers either


def test_bad_output_paths(capsys, tmp_path):
    assert main(["growth", "--days", "0,21", "--flr-ml", "380,520", "--json", str(tmp_path / "nope" / "x.json")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["growth", "--days", "0,21", "--flr-ml", "380,520", "--plot", str(tmp_path / "x.pdf")]) == 2
    assert "must name a .png file" in capsys.readouterr().err


def test_subprocess_stage(tmp_path):
    out_json = tmp_path / "stage.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hepatoplan.pipeline.cli", "stage", "--flr-ml", "330", "--functional-liver-ml", "1500",
         "--parenchyma", "chemotherapy", "--tumour-ml", "40", "--json", str(out_json)],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "ALPPS" in proc.stdout and "INADEQUATE" in proc.stdout
    data = json.loads(out_json.read_text(encoding="utf-8"))
    assert data["assessment"]["verdict"] == "inadequate"
    bad = subprocess.run(
        [sys.executable, "-m", "hepatoplan.pipeline.cli", "growth", "--days", "0,21", "--flr-ml", "380,520", "--target-ml", "100"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "below the baseline" in bad.stderr
