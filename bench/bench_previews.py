"""Time the output side of ``plan`` (label exports, meshes, previews, HTML report, montage, PDF).

Studies: the shipped demo phantom (``data_samples/demo``, its own masks) and IRCADb 01 from
``../shared/data`` (reference masks). Labels are made here as ``plan`` makes them for a right
hepatectomy (segments 5-8 resected, unlabelled liver kept, tumours over everything); vessels are
the given portal and hepatic masks. Prints one Markdown table row per study, then a second table
of what the CT adds (``qc_montage.png``, the slice viewer's data, ``report.html`` with the
viewer and ``report.pdf`` written by fpdf2): seconds wall and CPU (this process's), sizes.

    python bench/bench_previews.py [--out DIR] [--phantom DIR ...] [--dicom-seg]
    python bench/bench_previews.py --plan-ab PYTHON_A PYTHON_B [--runs N]

``--plan-ab``: the default ``plan`` on IRCADb 01 (its four masks, derived Couinaud, ``--resect
right-hepatectomy``), with previews and with ``--no-preview``, run by two Pythons (e.g. main's
venv and this branch's) interleaved, each a fresh process; prints per run the output stages of
``report.json`` ``provenance.timing_s`` (``previews``, ``report``, ``writing``), its ``total``,
and the process's wall, CPU (user + system, children included) and peak RSS.

``--dicom-seg``: also time ``write_dicom_seg`` on IRCADb 01 against a synthetic DICOM series
written on the grid of its NIfTI files (without and with the vessels as overlapping segments).
``--phantom DIR``: also a phantom written by ``python -m data_samples --out DIR ...`` (e.g.
``--spacing-mm 0.75,0.75,2.0 --shape 512,512,300``).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]

from hepatoplan.pipeline.labels import structures_from_labels  # noqa: E402
from hepatoplan.pipeline.mesh_files import write_meshes  # noqa: E402
from hepatoplan.pipeline.meshing import mesh_volume_mm3, structure_meshes  # noqa: E402
from hepatoplan.pipeline.rendering import render_previews  # noqa: E402
from hepatoplan.pipeline.seg_nrrd import write_colour_table, write_seg_nrrd  # noqa: E402
from hepatoplan.pipeline.report_html import write_report_html  # noqa: E402

IRCADB_01 = ROOT.parent / "shared" / "data" / "ircadb" / "01"
DEMO = ROOT / "data_samples" / "demo"


def _load(path: Path):
    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj), img.affine


def _clock() -> tuple[float, float]:
    """(wall s, CPU s of this process and its finished children)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter(), me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


def _since(start: tuple[float, float]) -> str:
    wall, cpu = _clock()
    return f"{wall - start[0]:.1f} / {cpu - start[1]:.1f}"


def study_labels(folder: Path, names: dict[str, str]):
    liver, affine = _load(folder / names["liver"])
    segments, _ = _load(folder / names["segments"])
    tumours, _ = _load(folder / names["tumours"])
    portal, _ = _load(folder / names["portal"])
    hepatic, _ = _load(folder / names["hepatic"])
    liver = liver > 0
    labels = np.zeros(liver.shape, np.uint8)
    labels[liver] = 9
    seg = np.where(liver, segments, 0).astype(np.uint8)
    for k in range(1, 9):
        labels[seg == k] = k + (10 if k >= 5 else 0)
    for i in np.unique(tumours[(tumours > 0) & liver]):
        labels[(tumours == i) & liver] = 20 + int(i)
    return labels, affine, {"portal vein": portal > 0, "hepatic veins": hepatic > 0}


def run(name: str, labels, affine, vessels, out: Path, ct=None) -> tuple[str, str | None]:
    out.mkdir(parents=True, exist_ok=True)
    times = {}
    t0 = t = time.perf_counter()
    write_colour_table(labels, path=out / "labels.ctbl")
    write_seg_nrrd(labels, affine_ras=affine, path=out / "labels.seg.nrrd", extra_structures=vessels)
    times["seg.nrrd"] = time.perf_counter() - t
    t = time.perf_counter()
    structures = structures_from_labels(labels, vessels=vessels)
    meshes = structure_meshes(structures, affine_ras=affine)
    times["meshes"] = time.perf_counter() - t
    t = time.perf_counter()
    files = write_meshes(meshes, out)
    times["GLB/STL/OBJ"] = time.perf_counter() - t
    t = time.perf_counter()
    previews = render_previews(meshes, out)
    times["4 PNGs"] = time.perf_counter() - t
    t = time.perf_counter()
    html = write_report_html({"resection": {"flr_percent": 0.0}}, out_path=out / "report.html",
                             previews=previews, meshes=meshes)
    times["report.html"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    html_mb = html.stat().st_size / 1e6
    ct_row = None if ct is None else run_ct_outputs(name, ct, labels, affine, vessels, meshes, previews, out)
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    ratios = {k: mesh_volume_mm3(meshes[k]) / (structures[k].sum() * voxel_mm3)
              for k in ("remnant", "resected")}
    spacing = "×".join(f"{s:.2f}" for s in np.linalg.norm(affine[:3, :3], axis=0))
    return (f"| {name} | {'×'.join(map(str, labels.shape))} @ {spacing} mm | "
            + " | ".join(f"{times[k]:.1f}" for k in ("seg.nrrd", "meshes", "GLB/STL/OBJ", "4 PNGs",
                                                     "report.html"))
            + f" | {total:.1f} | {sum(len(m.faces) for m in meshes.values()):,} | "
            f"{files[0].stat().st_size / 1e6:.1f} | {html_mb:.1f} | "
            f"{ratios['remnant']:.4f} / {ratios['resected']:.4f} |"), ct_row


def run_ct_outputs(name: str, ct, labels, affine, vessels, meshes, previews, out: Path) -> str:
    """What the CT adds: the montage, the slice viewer's data, report.html with it, report.pdf."""
    from hepatoplan.pipeline.labels import label_boxes
    from hepatoplan.pipeline.montage import write_qc_montage
    from hepatoplan.pipeline.report_html import PREVIEW_SIZE_PX, _jpeg_bytes
    from hepatoplan.pipeline.report_pdf import PdfLayout
    from hepatoplan.pipeline.slice_viewer import slice_viewer_data

    report = {"resection": {"flr_percent": 0.0}}
    start = _clock()
    montage = write_qc_montage(out / "qc_montage.png", ct, labels, affine_ras=affine)
    montage_s = _since(start)
    start = _clock()
    viewer = slice_viewer_data(ct, labels, affine_ras=affine, vessels=vessels, boxes=label_boxes(labels))
    viewer_s = _since(start)
    start = _clock()
    html = write_report_html(report, out_path=out / "report.html", previews=previews, meshes=meshes,
                             slice_viewer=viewer, montage_png=montage)
    html_s = _since(start)
    start = _clock()
    pdf = PdfLayout(report, montage_png=montage, previews=previews, preview_size_px=PREVIEW_SIZE_PX).write(
        out / "report.pdf", {p: _jpeg_bytes(p) for p in previews})
    pdf_s = _since(start)
    slices_mb = sum(len(viewer[k]["b64"]) for k in ("ct", "labels", "vessels") if viewer[k]) / 1e6
    return (f"| {name} | {'×'.join(map(str, viewer['shape']))} (step {'×'.join(map(str, viewer['step']))}) | "
            f"{montage_s} | {viewer_s} | {html_s} | {pdf_s} | {html.stat().st_size / 1e6:.1f} | {slices_mb:.1f} | "
            f"{montage.stat().st_size / 1e6:.2f} | {pdf.stat().st_size / 1e6:.1f} |")


def synthetic_series(native_nifti: Path, folder: Path) -> list[Path]:
    """Empty-pixel CT series whose grid is the NIfTI file's own grid (any orientation)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    img = nib.load(native_nifti)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine  # RAS -> LPS
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    cols, rows, n = img.shape
    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(n):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Bench^Series", "BENCH"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "", "O", "20260101", "1200"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = "", "1", ""
        ds.SeriesNumber, ds.InstanceNumber = 1, k + 1
        ds.ImageOrientationPatient = [float(v) for v in np.concatenate(
            [lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]])]
        ds.ImagePositionPatient = [float(v) for v in (lps @ [0, 0, k, 1])[:3]]
        ds.PixelSpacing = [float(spacing[1]), float(spacing[0])]
        ds.SliceThickness = float(spacing[2])
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.zeros((rows, cols), np.int16).tobytes()
        path = folder / f"{k:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return files


def bench_dicom_seg(labels, affine, vessels, out: Path) -> None:
    import highdicom as hd

    from hepatoplan.pipeline.dicom_seg import write_dicom_seg

    files = synthetic_series(IRCADB_01 / "liver.nii.gz", out / "series")
    print("\n| DICOM-SEG on IRCADb 01 | segments | s | MB | read back s | frames |")
    print("|---|---|---|---|---|---|")
    for extras in ({}, vessels):
        t = time.perf_counter()
        path = write_dicom_seg(labels, affine_ras=affine, source_dicom_files=files,
                               path=out / "labels_seg.dcm", extra_structures=extras)
        seconds = time.perf_counter() - t
        t = time.perf_counter()
        seg = hd.seg.segread(path)
        read_s = time.perf_counter() - t
        what = "labels + vessels (overlapping)" if extras else "labels"
        print(f"| {what} | {len(seg.SegmentSequence)} | {seconds:.1f} | "
              f"{path.stat().st_size / 1e6:.1f} | {read_s:.1f} | {seg.NumberOfFrames} |")


def plan_ab(pythons: list[str], runs: int, out: Path) -> None:
    """Interleaved default plans on IRCADb 01 by each Python in ``pythons`` (see the docstring)."""
    import json
    import subprocess

    d = IRCADB_01
    args = ["plan", str(d / "ct.nii.gz"), "--liver", str(d / "liver.nii.gz"), "--tumours", str(d / "tumours.nii.gz"),
            "--portal", str(d / "portal_vein.nii.gz"), "--hepatic", str(d / "hepatic_veins.nii.gz"),
            "--resect", "right-hepatectomy"]
    print("| python | run | options | load | previews s | report s | writing s | output stages s | total s | "
          "wall s | CPU s | peak GB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in range(1, runs + 1):
        for n, python in enumerate(pythons):
            for options in ([], ["--no-preview"]):
                folder = out / f"ab-{n}-{run}{'-np' if options else ''}"
                load = os.getloadavg()[0]
                timed = subprocess.run(["/usr/bin/time", "-f", "%e %U %S %M", python, "-m", "hepatoplan.pipeline.cli",
                                        *args, *options, "--out", str(folder), "--overwrite"],
                                       capture_output=True, text=True, check=True)
                wall, user, system, peak_kb = timed.stderr.strip().splitlines()[-1].split()
                t = json.loads((folder / "report.json").read_text())["provenance"]["timing_s"]
                stages = [t.get(k, 0.0) for k in ("previews", "report", "writing")]
                print(f"| {python} | {run} | {' '.join(options) or 'default'} | {load:.1f} | "
                      + " | ".join(f"{v:.2f}" for v in stages)
                      + f" | {sum(stages):.2f} | {t['total']:.2f} | {float(wall):.1f} | "
                      f"{float(user) + float(system):.1f} | {int(peak_kb) / 1e6:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs here")
    parser.add_argument("--dicom-seg", action="store_true", help="also time DICOM-SEG on IRCADb 01")
    parser.add_argument("--phantom", type=Path, action="append", default=[],
                        help="a phantom folder written by `python -m data_samples --out DIR`")
    parser.add_argument("--plan-ab", nargs="+", metavar="PYTHON", default=None,
                        help="time the default plan on IRCADb 01 with each Python, interleaved")
    parser.add_argument("--runs", type=int, default=3, help="rounds of --plan-ab")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hp-bench-previews-"))
    if args.plan_ab:
        plan_ab(args.plan_ab, args.runs, out)
        return
    print("| study | grid | seg.nrrd s | meshes s | GLB/STL/OBJ s | 4 PNGs s | report.html s | "
          "total s | triangles | GLB MB | HTML MB | mesh/mask volume remnant / resected |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    phantom_names = {"liver": "liver.nii.gz", "segments": "segments.nii.gz",
                     "tumours": "tumours.nii.gz", "portal": "portal_vein.nii.gz",
                     "hepatic": "hepatic_veins.nii.gz"}
    ct_rows = []
    for folder in args.phantom:
        labels, affine, vessels = study_labels(folder, phantom_names)
        row, ct_row = run(f"phantom {folder.name}", labels, affine, vessels, out / folder.name,
                          ct=_load(folder / "ct.nii.gz")[0])
        print(row, flush=True)
        ct_rows.append(ct_row)
        del labels, vessels
    if DEMO.is_dir():
        labels, affine, vessels = study_labels(DEMO, {
            "liver": "liver.nii.gz", "segments": "segments.nii.gz", "tumours": "tumours.nii.gz",
            "portal": "portal_vein.nii.gz", "hepatic": "hepatic_veins.nii.gz"})
        row, ct_row = run("demo phantom", labels, affine, vessels, out / "demo", ct=_load(DEMO / "ct.nii.gz")[0])
        print(row, flush=True)
        ct_rows.append(ct_row)
    if IRCADB_01.is_dir():
        labels, affine, vessels = study_labels(IRCADB_01, {
            "liver": "liver.nii.gz", "segments": "couinaud_reference.nii.gz",
            "tumours": "tumours.nii.gz", "portal": "portal_vein.nii.gz",
            "hepatic": "hepatic_veins.nii.gz"})
        row, ct_row = run("IRCADb 01", labels, affine, vessels, out / "ircadb01", ct=_load(IRCADB_01 / "ct.nii.gz")[0])
        print(row, flush=True)
        ct_rows.append(ct_row)
        if args.dicom_seg:
            bench_dicom_seg(labels, affine, vessels, out / "ircadb01")
    else:
        print(f"(IRCADb 01 not found at {IRCADB_01})")
    print("\n| study | slice viewer grid | qc_montage.png s | viewer data s | report.html s | report.pdf s | "
          "HTML MB | slice data MB | montage MB | PDF MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(ct_rows) + "\n\n(seconds: wall / CPU; report.pdf: fpdf2's layout, the JPEGs and the write)")
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"\npeak RSS of the whole run: {peak_gb:.2f} GB; outputs in {out}")


if __name__ == "__main__":
    main()
