"""``hepatoplan batch``: manifest checks, isolated failures, cohort table, resume after a kill."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.data_samples.write import write_study
from hepatoplan.pipeline.batch import ROW_FILE
from hepatoplan.pipeline.cli import main

COLUMNS = "id,ct,liver,tumours,segments,resect,margin_mm,parenchyma,height_cm,weight_kg"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, ircadb_dir):
    root = tmp_path_factory.mktemp("cohort")
    lines = [COLUMNS]
    for i, codes in enumerate(("RAS", "LPS", "PIR", "LAS")):
        d = root / f"ph{i}"
        write_study(make_phantom(spacing_mm=(2.5, 2.5, 3.0), scale=0.55, seed=i), d, axcodes=codes)
        lines.append(f"ph{i},ph{i}/ct.nii.gz,ph{i}/liver.nii.gz,ph{i}/tumours.nii.gz,ph{i}/segments.nii.gz,"
                     f"right-hepatectomy;wedge:3,2,chemotherapy,170,70")
    case = ircadb_dir / "01"
    lines.append(f"ircadb01,{case}/ct.nii.gz,{case}/liver.nii.gz,{case}/tumours.nii.gz,"
                 f"{case}/couinaud_reference.nii.gz,wedge:all,,normal,,")
    lines.append("broken,ph0/ct.nii.gz,ph0/missing_liver.nii.gz,,,,,,,")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    # the same without IRCADb 01: what a kill and a resume do needs no real study
    (root / "phantoms.csv").write_text("\n".join(line for line in lines if not line.startswith("ircadb01")) + "\n",
                                       encoding="utf-8")
    return root


def _rows(out):
    with open(out / "cohort.csv", encoding="utf-8") as fh:
        return {r["id"]: r for r in csv.DictReader(fh)}


def test_batch_isolates_the_broken_study_and_resumes(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["batch", str(cohort / "manifest.csv"), "--out", str(out), "--workers", "2", "--no-preview"]) == 1
    rows = _rows(out)
    assert [r["status"] for r in rows.values()].count("ok") == 5
    assert rows["broken"]["status"] == "failed" and "missing_liver" in rows["broken"]["error"]
    assert (out / "broken" / "error.txt").is_file() and not (out / "broken" / "report.json").exists()
    for sid in ("ph0", "ph1", "ph2", "ph3", "ircadb01"):
        report = json.loads((out / sid / "report.json").read_text(encoding="utf-8"))
        assert float(rows[sid]["flr_percent"]) == pytest.approx(report["resection"]["flr_percent"], abs=1e-3)
    # the same phantom anatomy (seeds change only the CT noise) in four orientations: same numbers
    for key in ("liver_ml", "remnant_ml", "flr_percent"):
        assert len({rows[f"ph{i}"][key] for i in range(4)}) == 1
    assert "FAILED" in capsys.readouterr().out
    # rerun: finished studies are skipped (their files untouched), the broken one is retried
    stamp = (out / "ph0" / "report.json").stat().st_mtime_ns
    assert main(["batch", str(cohort / "manifest.csv"), "--out", str(out), "--no-preview"]) == 1
    assert (out / "ph0" / "report.json").stat().st_mtime_ns == stamp
    timing = ("seconds", "cpu_seconds", "worker_pid")  # only studies run in this invocation have them
    strip = lambda rs: {k: {c: v for c, v in r.items() if c not in timing} for k, r in rs.items()}  # noqa: E731
    assert strip(_rows(out)) == strip(rows)


def test_killed_run_resumes_without_recomputing(cohort, tmp_path):
    out = tmp_path / "out"
    manifest = cohort / "phantoms.csv"
    cmd = [sys.executable, "-m", "hepatoplan.pipeline.cli", "batch", str(manifest), "--out", str(out),
           "--workers", "1", "--no-preview"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    # a study is complete once its row file follows its report.json (batch.is_complete): a kill between
    # the two leaves it to be planned again
    while time.time() < deadline and not list(out.glob(f"*/{ROW_FILE}")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.parent.name: (p.parent / "report.json").stat().st_mtime_ns for p in out.glob(f"*/{ROW_FILE}")}
    assert done, "no study finished before the kill"
    import nibabel as nib

    for p in out.glob("*/*.nii.gz"):  # no torn outputs: every NIfTI in a study folder is readable
        nib.load(p).get_fdata()
    assert main(["batch", str(manifest), "--out", str(out), "--no-preview"]) == 1
    for sid, stamp in done.items():
        assert (out / sid / "report.json").stat().st_mtime_ns == stamp
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary folders left behind"
    assert sum(r["status"] == "ok" for r in _rows(out).values()) == 4


def test_manifest_errors(tmp_path, capsys):
    bad = tmp_path / "m.csv"
    bad.write_text("id,ct,liver,colour\na,x.nii.gz,y.nii.gz,red\n", encoding="utf-8")
    assert main(["batch", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown column(s) colour" in err and "known columns: id, ct" in err
    bad.write_text("id,ct\na,x.nii.gz\na,y.nii.gz\n", encoding="utf-8")
    assert main(["batch", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "appears twice" in capsys.readouterr().err
    bad.write_text("id,ct,margin_mm\na,x.nii.gz,wide\n", encoding="utf-8")
    assert main(["batch", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "not a number" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_largest_studies_are_submitted_first(cohort, tmp_path):
    """Studies are ranked by input bytes (largest first); missing files count as 0 bytes."""
    from hepatoplan.pipeline.batch import input_bytes, read_manifest

    jobs = {job.id: job for job in read_manifest(cohort / "manifest.csv", out_dir=tmp_path)}
    sizes = {sid: input_bytes(job) for sid, job in jobs.items()}
    assert max(sizes, key=sizes.get) == "ircadb01"
    # the broken study's CT exists, its liver mask does not: counted, not an error
    assert 0 < sizes["broken"] < sizes["ph0"]


def test_changed_rows_are_recomputed_and_failures_keep_no_old_report(cohort, tmp_path, capsys):
    """A study whose manifest row changed is planned again; one that fails in an --overwrite rerun
    loses its earlier report.json, so the next plain rerun does not report the old volumes as ok."""
    row = ("{sid},{root}/{sid}/ct.nii.gz,{root}/{sid}/liver.nii.gz,{root}/{sid}/tumours.nii.gz,"
           "{root}/{sid}/segments.nii.gz,right-hepatectomy,{margin},normal,,")
    manifest = tmp_path / "m.csv"

    def write(margin0=2, margin1=2, liver0="liver"):
        lines = [COLUMNS, row.format(sid="ph0", root=cohort, margin=margin0).replace("/liver.", f"/{liver0}."),
                 row.format(sid="ph1", root=cohort, margin=margin1)]
        manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def batch(*extra):
        status = main(["batch", str(manifest), "--out", str(out), "--workers", "1", "--no-preview", *extra])
        capsys.readouterr()
        return status, _rows(out)

    out = tmp_path / "out"
    write()
    assert batch()[0] == 0
    stamp = {sid: (out / sid / "report.json").stat().st_mtime_ns for sid in ("ph0", "ph1")}
    write(margin1=3)
    status, rows = batch()
    assert status == 0 and rows["ph1"]["status"] == "ok"
    assert (out / "ph0" / "report.json").stat().st_mtime_ns == stamp["ph0"]  # unchanged row: skipped
    assert (out / "ph1" / "report.json").stat().st_mtime_ns != stamp["ph1"]  # changed row: planned again
    report = json.loads((out / "ph1" / "report.json").read_text(encoding="utf-8"))
    assert report["provenance"]["options"]["margin_mm"] == 3
    write(margin1=3, liver0="missing_liver")
    status, rows = batch("--overwrite")
    assert status == 1 and rows["ph0"]["status"] == "failed"
    assert not (out / "ph0" / "report.json").exists()
    status, rows = batch()
    assert status == 1 and rows["ph0"]["status"] == "failed" and rows["ph1"]["status"] == "ok"
