"""``hepatoplan plan`` / ``demo`` end to end: orientation invariance, real data, bad input."""

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.data_samples.write import write_study
from hepatoplan.pipeline.cli import main


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(spacing_mm=(2.0, 2.2, 3.0), scale=0.6, seed=3)


def _flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _plan(study_dir, out, *extra):
    args = [str(study_dir / "ct.nii.gz"), "--out", str(out),
            "--liver", str(study_dir / "liver.nii.gz"), "--tumours", str(study_dir / "tumours.nii.gz"),
            "--segments", str(study_dir / "segments.nii.gz"), "--no-preview", *extra]
    assert main(["plan", *args]) == 0
    return json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_same_numbers_and_world_labels_whatever_the_file_orientation(phantom, tmp_path):
    reports, worlds = {}, {}
    for codes in ("RAS", "LPS", "PIR"):
        study = tmp_path / codes
        write_study(phantom, study, axcodes=codes)
        out = tmp_path / f"out_{codes}"
        reports[codes] = _plan(study, out, "--resect", "right-hepatectomy", "--resect", "wedge:3@2")
        img = nib.as_closest_canonical(nib.load(out / "labels.nii.gz"))
        worlds[codes] = (np.asanyarray(img.dataobj), img.affine)
        # outputs lie on the input's own grid
        assert np.allclose(nib.load(out / "labels.nii.gz").affine, nib.load(study / "ct.nii.gz").affine, atol=1e-4)
    base = reports["RAS"]
    for codes in ("LPS", "PIR"):
        r = reports[codes]
        assert _flat(r["volumes_ml"]) == pytest.approx(_flat(base["volumes_ml"]), rel=1e-9)
        assert r["resection"]["remnant_ml"] == pytest.approx(base["resection"]["remnant_ml"], rel=1e-9)
        assert r["resection"]["resected_ml"] == pytest.approx(base["resection"]["resected_ml"], rel=1e-9)
        assert np.array_equal(worlds[codes][0], worlds["RAS"][0])
        assert np.allclose(worlds[codes][1], worlds["RAS"][1], atol=1e-4)


def test_volumes_match_the_phantom_truth(phantom, tmp_path):
    write_study(phantom, tmp_path / "s", axcodes="LPS")
    report = _plan(tmp_path / "s", tmp_path / "o", "--resect", "left-lateral-sectionectomy")
    v = report["volumes_ml"]
    truth = phantom.truth["volumes_ml"]
    # report.json rounds mL and % to 0.01 (pipeline/report.py: rounded)
    assert v["liver"] == pytest.approx(truth["liver"], abs=0.005)
    assert v["functional_liver"] == pytest.approx(truth["functional_liver"], abs=0.005)
    assert sum(v["segments"].values()) == pytest.approx(v["liver"], abs=0.05)
    voxel_ml = np.prod(phantom.spacing_mm) / 1000
    removed = np.isin(phantom.segments, [2, 3]) & phantom.liver
    functional = phantom.liver & (phantom.tumours == 0)
    expected_remnant = (functional & ~removed).sum() * voxel_ml
    assert report["resection"]["remnant_ml"] == pytest.approx(expected_remnant, abs=0.005)
    assert report["resection"]["flr_percent"] == pytest.approx(100 * expected_remnant / (functional.sum() * voxel_ml),
                                                               abs=0.005)


def test_ircadb01_volumes_are_voxel_counts_and_right_hepatectomy_flr(ircadb_dir, tmp_path):
    case = ircadb_dir / "01"
    out = tmp_path / "o"
    assert main(["plan", str(case / "ct.nii.gz"), "--out", str(out), "--liver", str(case / "liver.nii.gz"),
                 "--tumours", str(case / "tumours.nii.gz"), "--segments", str(case / "couinaud_reference.nii.gz"),
                 "--resect", "right-hepatectomy", "--parenchyma", "chemotherapy", "--height-cm", "170",
                 "--weight-kg", "70", "--no-preview"]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    img = nib.load(case / "liver.nii.gz")
    liver = np.asanyarray(img.dataobj) > 0  # nibabel's (Fortran) order: no C-order copies, the same counts
    tumours = np.asanyarray(nib.load(case / "tumours.nii.gz").dataobj)
    segments = np.asanyarray(nib.load(case / "couinaud_reference.nii.gz").dataobj)
    voxel_ml = float(np.prod(img.header.get_zooms()[:3])) / 1000
    v = report["volumes_ml"]
    # equal up to report.json's rounding to 0.01 mL
    assert v["liver"] == pytest.approx(liver.sum() * voxel_ml, abs=0.005)
    for t in range(1, 8):
        assert v["tumours"][str(t)] == pytest.approx(((tumours == t) & liver).sum() * voxel_ml, abs=0.005)
    for k in range(1, 9):
        assert v["segments_as_given"][str(k)] == pytest.approx(((segments == k) & liver).sum() * voxel_ml, abs=0.005)
    assert sum(v["segments"].values()) == pytest.approx(v["liver"], abs=0.05)
    # right hepatectomy FLR, done independently: unlabelled liver voxels join the nearest segment
    from scipy import ndimage
    from scipy.spatial import cKDTree
    sp = np.asarray(img.header.get_zooms()[:3], float)
    # in the box holding the liver and every label: each liver voxel's nearest label lies in it
    box = tuple(slice(i.min(), i.max() + 1) for i in np.nonzero(liver | (segments > 0)))
    liver, tumours, segments = liver[box], tumours[box], segments[box]
    # the nearest labelled voxel of an unlabelled one is a border voxel of the labels (one step from it
    # towards the unlabelled voxel is closer, so it is unlabelled): a k-d tree of those
    labelled = segments > 0
    border = np.argwhere(labelled & ~ndimage.binary_erosion(labelled, np.ones((3, 3, 3), bool), border_value=1))
    gaps = np.argwhere(liver & ~labelled)
    _, nearest = cKDTree(border * sp, balanced_tree=False, compact_nodes=False).query(gaps * sp)
    filled = np.where(liver, segments, 0)
    filled[tuple(gaps.T)] = segments[tuple(border[nearest].T)]
    functional = liver & (tumours == 0)
    remnant = functional & ~np.isin(filled, [5, 6, 7, 8])
    flr = 100.0 * remnant.sum() / functional.sum()
    assert report["resection"]["flr_percent"] == pytest.approx(flr, abs=0.01)  # ties in the fill
    a = report["assessment"]
    assert a["threshold_percent"] == 30.0 and a["sflr_percent"] is not None
    assert a["verdict"] == ("adequate" if a["shortfall_ml"] == 0 else "inadequate")
    statuses = {t["id"]: t["status"] for t in report["resection"]["tumours"]}
    assert "left in remnant" in statuses.values()  # case 01 has tumours in the left liver
    labels = nib.load(out / "labels.nii.gz")
    assert labels.shape == img.shape and np.allclose(labels.affine, img.affine, atol=1e-4)
    assert np.asanyarray(labels.dataobj).dtype == np.uint8


def test_seed_minimum_remnant_is_450_ml(tmp_path):
    from hepatoplan.planning.assessment import assess_remnant

    a = assess_remnant(remnant_ml=525, functional_liver_ml=1500, parenchyma="chemotherapy")
    assert a.min_remnant_ml == pytest.approx(450.0) and a.verdict == "adequate"


def test_demo_runs_and_subprocess_entry_point(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "hepatoplan.pipeline.cli", "demo", "--out", str(out), "--no-preview"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "verdict" in proc.stdout
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert report["assessment"]["verdict"] in ("adequate", "inadequate")
    assert all(t["resected"] for t in report["resection"]["tumours"])
    assert {p.name for p in out.iterdir()} >= {"report.json", "labels.nii.gz", "remnant.nii.gz"}


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux's /proc/self/maps")
def test_the_cli_maps_simpleitk_before_its_import():
    """``preload_libraries`` maps SimpleITK's extension in a thread, without importing SimpleITK; a
    package that is not installed is skipped."""
    code = ("import sys; from hepatoplan.pipeline import cli; "
            "cli.PRELOADED += (('no_such_package_xyz', '*.so'),); cli.preload_libraries().join(60); "
            "assert 'SimpleITK' not in sys.modules; "
            "print(any('_SimpleITK' in line for line in open('/proc/self/maps')))")
    assert _python_prints(code) == "True"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_fork_waits_for_the_library_thread():
    """``batch`` forks its workers: a fork must not happen while the preload thread is in ``dlopen``
    (the child could hang on the loader's lock), so the parent joins the thread first."""
    code = ("import os; from hepatoplan.pipeline import cli; "
            "thread = cli.preload_libraries(); pid = os.fork()\n"
            "if pid == 0: os._exit(0)\n"
            "print(thread.is_alive()); os.waitpid(pid, 0)")
    assert _python_prints(code) == "False"


@pytest.mark.parametrize("given", [None, "2"])
def test_the_cli_runs_openblas_on_one_thread_unless_told_otherwise(given):
    """``main`` sets ``OPENBLAS_NUM_THREADS`` to 1 before numpy's import when the environment does not set it (the
    idle workers spun after each small product), and leaves a value the user gave; numpy's and scipy's OpenBLAS
    follow it."""
    code = ("import ctypes, contextlib, io, os; from hepatoplan.pipeline.cli import main\n"
            "with contextlib.redirect_stderr(io.StringIO()):\n"
            "    assert main([]) == 2\n"
            "names = ('scipy_openblas_get_num_threads64_', 'scipy_openblas_get_num_threads', 'openblas_get_num_threads')\n"
            "libraries = {line.split()[-1] for line in open('/proc/self/maps') if 'openblas' in line}\n"
            "threads = {getattr(ctypes.CDLL(path), name)() for path in libraries for name in names\n"
            "           if hasattr(ctypes.CDLL(path), name)}\n"
            "print(os.environ['OPENBLAS_NUM_THREADS'], ','.join(map(str, sorted(threads))) or 'None')")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"} | ({"OPENBLAS_NUM_THREADS": given} if given else {})
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    value, threads = proc.stdout.split()
    assert value == (given or "1")
    if given is None:
        assert threads in ("1", "None")  # numpy's and scipy's OpenBLAS (None: another BLAS)


def test_a_command_runs_with_its_modules_out_of_the_collector(tmp_path, monkeypatch):
    """``main`` freezes what the subcommand's imports made (the cyclic collector's passes skip it while the command
    runs) and unfreezes it when the command ends, also on an error (an in-process caller's objects are collected as
    before); a freeze the caller made is left as it is."""
    import gc

    from hepatoplan.pipeline import cmd_plan

    frozen = []
    monkeypatch.setattr(cmd_plan, "run_demo", lambda args: frozen.append(gc.get_freeze_count()) or 0)
    assert main(["demo", "--out", str(tmp_path / "o")]) == 0
    assert frozen[0] > 10_000 and gc.get_freeze_count() == 0
    monkeypatch.setattr(cmd_plan, "run_demo", lambda args: 1 / 0)
    assert main(["demo", "--out", str(tmp_path / "o")]) == 3 and gc.get_freeze_count() == 0
    gc.freeze()  # a caller's own freeze stays
    try:
        count = gc.get_freeze_count()
        assert main(["demo", "--out", str(tmp_path / "o")]) == 3 and gc.get_freeze_count() == count
    finally:
        gc.unfreeze()


def test_numpys_unused_modules_are_not_run_by_a_plan(study_dir, tmp_path):
    """``defer_unused_modules`` leaves numpy.f2py and numpy.testing lazy through a whole plan (previews, the
    vascular analysis: scipy.ndimage copies numpy's namespace), and they work when used."""
    out = tmp_path / "o"
    flags = " ".join(f"'--{flag}', '{study_dir / name}.nii.gz'," for flag, name in (
        ("liver", "liver"), ("tumours", "tumours"), ("portal", "portal_vein"), ("hepatic", "hepatic_veins")))
    code = ("import contextlib, io, sys; from hepatoplan.pipeline.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['plan', '{study_dir / 'ct.nii.gz'}', {flags} '--resect', 'right-hepatectomy', "
            f"'--out', '{out}']) == 0\n"
            "assert 'scipy.ndimage' in sys.modules\n"
            "print(*(type(sys.modules[m]).__name__ for m in ('numpy.f2py', 'numpy.testing')))\n"
            "import numpy; numpy.testing.assert_equal(numpy.f2py.__name__, 'numpy.f2py')\n"
            "from numpy.testing import assert_allclose; assert_allclose(1.0, 1.0)\n"
            "print(*(type(sys.modules[m]).__name__ for m in ('numpy.f2py', 'numpy.testing')))")
    assert _python_prints(code).splitlines() == ["_LazyModule _LazyModule", "module module"]
    # a module imported before is left as it is
    assert _python_prints("import sys, numpy.testing; from hepatoplan.pipeline import cli; cli.defer_unused_modules(); "
                          "print(type(sys.modules['numpy.testing']).__name__)") == "module"


def _python_prints(code: str) -> str:
    """What a fresh interpreter running ``code`` prints (it must exit 0)."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


# --------------------------------------------------------------------------- bad input corpus


@pytest.fixture(scope="module")
def study_dir(phantom, tmp_path_factory):
    d = tmp_path_factory.mktemp("study")
    write_study(phantom, d, axcodes="LPS")
    affine = nib.load(d / "liver.nii.gz").affine
    liver = np.asanyarray(nib.load(d / "liver.nii.gz").dataobj)
    bad = {
        "truncated.nii.gz": None,
        "flat.nii.gz": nib.Nifti1Image(np.zeros(liver.shape[:2] + (1,), np.uint8), affine),
        "4d.nii.gz": nib.Nifti1Image(np.zeros(liver.shape + (2,), np.uint8), affine),
        "nan_ct.nii.gz": nib.Nifti1Image(np.where(liver > 0, np.nan, 0).astype(np.float32), affine),
        "float_labels.nii.gz": nib.Nifti1Image(liver.astype(np.float32) * 0.5, affine),
        "negative.nii.gz": nib.Nifti1Image(liver.astype(np.int16) * -1, affine),
        "empty.nii.gz": nib.Nifti1Image(np.zeros_like(liver), affine),
        "shifted.nii.gz": nib.Nifti1Image(liver, affine @ np.diag([1, 1, 1, 1]) + np.array(
            [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 7.0], [0, 0, 0, 0]])),
    }
    for name, img in bad.items():
        if img is not None:
            img.to_filename(d / name)
    raw = (d / "liver.nii.gz").read_bytes()
    (d / "truncated.nii.gz").write_bytes(gzip.compress(gzip.decompress(raw)[: len(gzip.decompress(raw)) // 3]))
    ct = gzip.decompress((d / "ct.nii.gz").read_bytes())
    (d / "truncated_ct.nii.gz").write_bytes(gzip.compress(ct[: len(ct) // 2]))
    return d


BAD_CASES = {
    "missing file": (["--liver", "{d}/nope.nii.gz"], "no such file"),
    "truncated": (["--liver", "{d}/truncated.nii.gz"], "truncated"),
    "2D image": (["--liver", "{d}/flat.nii.gz"], "3D"),
    "4D image": (["--liver", "{d}/4d.nii.gz"], "4D"),
    "float labels": (["--liver", "{d}/float_labels.nii.gz"], "non-integer"),
    "negative labels": (["--liver", "{d}/negative.nii.gz"], "negative"),
    "empty liver": (["--liver", "{d}/empty.nii.gz"], "empty"),
    "other grid": (["--liver", "{d}/shifted.nii.gz"], "--resample-masks"),
    "unknown procedure": (["--liver", "{d}/liver.nii.gz", "--resect", "left-trisectionectomy"], "unknown resection"),
    "negative margin": (["--liver", "{d}/liver.nii.gz", "--margin-mm", "-1"], "--margin-mm"),
    "anatomical without segments": (["--liver", "{d}/liver.nii.gz", "--resect", "right-hepatectomy"], "segments"),
    "unknown flag": (["--liver", "{d}/liver.nii.gz", "--margin", "2"], "unrecognized"),
    # refused after the label files were started, beside the vascular analysis: the folder goes with them
    "the whole liver resected": (["--liver", "{d}/liver.nii.gz", "--segments", "{d}/segments.nii.gz", "--portal",
                                  "{d}/portal_vein.nii.gz", "--resect", "segments:1,2,3,4,5,6,7,8"], "nothing remains"),
    "NaN voxels in the CT": (["--liver", "{d}/liver.nii.gz"], "NaN"),
    # the CT is read beside the masks: its own error comes first
    "truncated CT and a mask on another grid": (["--liver", "{d}/shifted.nii.gz"], "truncated_ct.nii.gz: holds"),
    # checked beside the computation (only its grid is needed): refused before anything is written,
    # its error first also when the computation fails
    "truncated CT, the masks fine": (["--liver", "{d}/liver.nii.gz"], "truncated_ct.nii.gz: holds"),
    "truncated CT and no segments": (["--liver", "{d}/liver.nii.gz", "--resect", "right-hepatectomy"],
                                     "truncated_ct.nii.gz: holds"),
    # the masks checked while the CT's voxels are still read: its error first
    "truncated CT and an empty liver": (["--liver", "{d}/empty.nii.gz"], "truncated_ct.nii.gz: holds"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(study_dir, tmp_path, capsys, case):
    flags, expected = BAD_CASES[case]
    out = tmp_path / "new" / "out"  # its parent made for it, removed with it
    ct = study_dir / ("nan_ct.nii.gz" if "NaN" in case else "truncated_ct.nii.gz" if "truncated CT" in case
                      else "ct.nii.gz")
    argv = ["plan", str(ct), "--out", str(out), "--no-preview", "--no-auto"] + [f.format(d=study_dir) for f in flags]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hepatoplan: error:") and expected in err
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir()), "output, a temporary folder or its parent left behind"


def test_totalsegmentator_multilabel_on_a_dicom_series(ircadb_dir, tmp_path):
    """--totalsegmentator supplies the liver (label 5) of a DICOM CT; its header is y-flipped."""
    folder = ircadb_dir.parent / "totalsegmentator"
    out = tmp_path / "o"
    assert main(["plan", str(folder / "ct_contrast_dicom"), "--out", str(out), "--no-preview",
                 "--totalsegmentator", str(folder / "ct_contrast_dicom_totalseg.nii.gz")]) == 0
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    img = nib.load(folder / "ct_contrast_dicom_totalseg.nii.gz")
    liver_voxels = int((np.asanyarray(img.dataobj) == 5).sum())
    assert report["volumes_ml"]["liver"] == pytest.approx(
        liver_voxels * float(np.prod(img.header.get_zooms()[:3])) / 1000, abs=0.005)
    assert "TotalSegmentator" in report["sources"]["liver"]
    assert (out / "labels_seg.dcm").is_file()  # DICOM input: a DICOM-SEG referencing the series


def test_inputs_are_never_modified(study_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in study_dir.iterdir() if p.suffix == ".gz"}
    _plan(study_dir, tmp_path / "o", "--resect", "wedge:all")
    assert before == {p.name: p.read_bytes() for p in study_dir.iterdir() if p.suffix == ".gz"}


def test_anatomical_resection_says_when_automatic_vessels_were_not_found(study_dir, tmp_path, capsys, monkeypatch):
    """A scan where the automatic vessel segmentation finds no hepatic veins (e.g. no IVC in the
    field of view): the error says so, instead of only asking for masks."""
    from hepatoplan import segmentation

    def no_hepatic(image, liver, *, spacing_mm, **_):
        portal = np.zeros(np.shape(image), np.uint8)
        portal[tuple(s // 2 for s in np.shape(image))] = 1
        return portal, np.zeros(np.shape(image), np.uint8), {"qc_flags": ["no hepatic-vein seed"]}

    monkeypatch.setattr(segmentation, "segment_vessels", no_hepatic)
    out = tmp_path / "out"
    argv = ["plan", str(study_dir / "ct.nii.gz"), "--out", str(out), "--no-preview", "--liver",
            str(study_dir / "liver.nii.gz"), "--tumours", str(study_dir / "tumours.nii.gz"), "--resect",
            "right-hepatectomy"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "the automatic segmentation found no hepatic veins (IVC or dome veins) in this scan" in err
    assert not out.exists()
    # without an anatomical resection the plan runs, and the segmentation's QC flags are warnings
    assert main(argv[:-2]) == 0
    report = json.loads((out / "report.json").read_text())
    assert "automatic segmentation QC: vessels: no hepatic-vein seed" in report["warnings"]


def test_provenance_records_every_option_and_hashes_every_input(study_dir, tmp_path):
    """provenance.options is dataclasses.asdict(PlanOptions), paths as strings; the function map
    is an input like the masks (path and SHA-256); provenance.parameters is present."""
    import dataclasses
    import hashlib

    from hepatoplan.pipeline.study import PlanOptions

    fmap = study_dir / "liver.nii.gz"  # any non-negative map on the CT grid
    report = _plan(study_dir, tmp_path / "o", "--resect", "left-lateral-sectionectomy",
                   "--function-map", str(fmap), "--margin-mm", "2.5")
    prov = report["provenance"]
    options = prov["options"]
    assert set(options) == {f.name for f in dataclasses.fields(PlanOptions)}
    assert options["function_map"] == str(fmap) and options["margin_mm"] == 2.5
    assert options["masks"]["liver"] == str(study_dir / "liver.nii.gz") and options["masks"]["portal"] is None
    assert options["resect"] == ["left-lateral-sectionectomy"] and options["preview"] is False
    assert prov["inputs"]["function_map"] == {
        "path": str(fmap), "sha256": hashlib.sha256(fmap.read_bytes()).hexdigest()}
    assert set(prov["inputs"]) == {"ct", "liver", "tumours", "segments", "function_map"}
    assert prov["parameters"] == {}  # no automatic step ran: masks and segments were given


def test_the_slicer_label_files_start_with_the_label_map(study_dir, tmp_path, monkeypatch):
    """labels.ctbl and labels.seg.nrrd are started as soon as the label map is known (beside the vascular
    analysis and the assessment), not in the writing stage: here the assessment waits until they have begun."""
    import threading

    from hepatoplan.pipeline import cmd_plan, report_html

    begun, written = threading.Event(), []
    write, write_both, assess = report_html.write_label_files, report_html._write_label_files, cmd_plan._assess

    def label_files(*args, **kwargs):
        begun.set()
        return write(*args, **kwargs)

    def both(*args, **kwargs):
        written.append(1)
        return write_both(*args, **kwargs)

    def assessed(*args, **kwargs):
        assert begun.wait(30), "the label files were not started before the assessment"
        return assess(*args, **kwargs)

    monkeypatch.setattr(report_html, "write_label_files", label_files)
    monkeypatch.setattr(cmd_plan, "_assess", assessed)
    monkeypatch.setattr(report_html, "_write_label_files", both)
    report = _plan(study_dir, tmp_path / "o", "--resect", "right-hepatectomy")
    assert {"labels.ctbl", "labels.seg.nrrd"} <= set(report["outputs"]) and len(written) == 1  # and only then
    assert (tmp_path / "o" / "labels.seg.nrrd").stat().st_size > 0


def test_the_ct_voxels_arrive_after_the_masks_steps(study_dir, tmp_path):
    """Given every mask and a NIfTI CT, the masks' steps (the study's checks, ``on_masks``: the vessel trees'
    start, the Couinaud segments) run on the CT's header while its voxels are read; the study returned
    holds the voxels (the previews need them), equal to a read of the CT alone."""
    from hepatoplan.pipeline import io
    from hepatoplan.pipeline.study import MaskPaths, PlanOptions, load_study

    d = study_dir
    options = PlanOptions(ct=d / "ct.nii.gz", out=tmp_path / "o", preview=True, auto=False,
                          masks=MaskPaths(d / "liver.nii.gz", d / "tumours.nii.gz", d / "portal_vein.nii.gz",
                                          d / "hepatic_veins.nii.gz"))
    calls = []
    study = load_study(options, needs_segments=True, on_masks_read=lambda names: calls.append(sorted(names)),
                       on_masks=lambda s: calls.append(s.ct))
    names, header = calls
    assert names == ["hepatic", "liver", "portal", "tumours"]
    ct = io.read_image(d / "ct.nii.gz", name="CT")
    assert header.array is None and np.array_equal(header.affine_ras, ct.affine_ras) and header.grid == ct.grid
    assert study.segments is not None and np.array_equal(study.ct.array, ct.array)
    assert study.ct.grid == ct.grid and study.ct.notes == ct.notes == ()


def test_the_helper_process_starts_after_the_vessel_trees(study_dir, tmp_path, monkeypatch):
    """The plan's helper process (decimations, report.pdf) is started once the vessel trees have been, not at the
    plan's start: its interpreter and imports took a core from the reads and from scipy's import."""
    from hepatoplan.pipeline import cmd_plan

    order = []
    trees = cmd_plan._vessel_trees

    class Helper(cmd_plan.PlanHelper):
        def __init__(self):
            order.append("helper")
            super().__init__()

    monkeypatch.setattr(cmd_plan, "PlanHelper", Helper)
    monkeypatch.setattr(cmd_plan, "_vessel_trees", lambda *args, **kwargs: order.append("trees") or trees(*args, **kwargs))
    d = study_dir
    assert main(["plan", str(d / "ct.nii.gz"), "--out", str(tmp_path / "o"), "--liver", str(d / "liver.nii.gz"),
                 "--tumours", str(d / "tumours.nii.gz"), "--portal", str(d / "portal_vein.nii.gz"),
                 "--hepatic", str(d / "hepatic_veins.nii.gz"), "--resect", "right-hepatectomy"]) == 0
    assert order[:2] == ["trees", "helper"] and (tmp_path / "o" / "report.pdf").is_file()
