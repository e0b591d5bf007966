"""Benchmark the PACS round trip on a full-size series: retrieval, DICOM outputs, store.

    python bench/bench_dicomweb.py [--runs 3] [--write]

IRCADb 01's CT (512×512×129, ../shared/data) is written as a DICOM series into a temporary
folder (SimpleITK, fresh UIDs), uploaded to a local Orthanc with its DICOMweb plugin
(``tests/orthanc.py``) and planned from its reference masks (``--resect right-hepatectomy``
``--resect wedge:1``). Measured, median of ``--runs``: WADO-RS retrieval into an empty cache
(:func:`hepatoplan.pipeline.dicomweb.retrieve_series`); the DICOM-SEG as ``plan`` writes it (plan
labels + vessels + the measured regions the SR references) against the same SEG without the
measured regions (size and time, to show what the SR's references cost); the SR; STOW-RS of SEG +
SR. ``--write`` replaces the "## DICOMweb round trip" section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IRCADB = ROOT.parent / "shared" / "data" / "ircadb" / "01"
sys.path.insert(0, str(ROOT / "tests"))  # the Orthanc the tests use

from bench_plan import write_section  # noqa: E402


def write_dicom_series(nifti: Path, folder: Path) -> None:
    """The CT as a DICOM series (one file per axial slice, the NIfTI's geometry)."""
    import SimpleITK as sitk
    from pydicom.uid import generate_uid

    image = sitk.ReadImage(str(nifti))
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    d = image.GetDirection()
    orientation = "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7]))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    folder.mkdir(parents=True)
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        for tag, value in (("0008|0060", "CT"), ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"),
                           ("0008|0018", generate_uid()), ("0020|000d", study), ("0020|000e", series),
                           ("0020|0052", frame), ("0020|0013", str(k + 1)), ("0020|0037", orientation),
                           ("0020|0032", "\\".join(f"{v:.4f}" for v in position)),
                           ("0018|0050", f"{image.GetSpacing()[2]:.4f}"), ("0010|0020", "IRCADB01")):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{k:04d}.dcm"))
        writer.Execute(plane)


def median_time(fn, runs: int):
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md")
    opts = parser.parse_args()
    if not IRCADB.is_dir():
        raise SystemExit(f"IRCADb 01 not found at {IRCADB}")
    import pydicom

    from hepatoplan.pipeline import dicom_seg, dicom_sr, dicomweb, io
    from hepatoplan.pipeline.cli import main as cli
    from orthanc import PASSWORD, USER, start_orthanc

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_dicom_series(IRCADB / "ct.nii.gz", tmp / "series")
        files = sorted((tmp / "series").iterdir())
        first = pydicom.dcmread(files[0], stop_before_pixels=True)
        series_mb = sum(f.stat().st_size for f in files) / 1e6
        server = start_orthanc(tmp / "orthanc")
        os.environ.update({dicomweb.ENV_USER: USER, dicomweb.ENV_PASSWORD: PASSWORD})
        try:
            server.upload(files)
            url = dicomweb.SeriesURL(server.dicomweb, first.StudyInstanceUID, first.SeriesInstanceUID)
            caches = iter(tmp / f"cache{i}" for i in range(opts.runs))
            seconds, _ = median_time(lambda: dicomweb.retrieve_series(url, cache_dir=next(caches), progress=False),
                                     opts.runs)
            rows.append(("WADO-RS retrieval into an empty cache", f"{len(files)} files, {series_mb:.1f} MB",
                         seconds))
            out = tmp / "plan"
            masks = {"--liver": "liver", "--tumours": "tumours", "--segments": "couinaud_reference",
                     "--portal": "portal_vein", "--hepatic": "hepatic_veins"}
            args = [a for flag, name in masks.items() for a in (flag, str(IRCADB / f"{name}.nii.gz"))]
            if cli(["plan", str(tmp / "series"), "--out", str(out), *args, "--resect", "right-hepatectomy",
                    "--resect", "wedge:1", "--no-preview"]) != 0:
                raise SystemExit("plan failed")
            report = json.loads((out / "report.json").read_text())
            ct = io.read_image(tmp / "series", name="CT")
            labels = io.read_labels(out / "labels.nii.gz", reference=ct).array
            remnant = io.read_labels(out / "remnant.nii.gz", reference=ct).array
            vessels = {name: io.read_labels(IRCADB / f"{file}.nii.gz", reference=ct).array > 0
                       for name, file in (("portal vein", "portal_vein"), ("hepatic veins", "hepatic_veins"))}
            regions = dicom_sr.measured_regions(labels, remnant=remnant)
            extras = dicom_sr.seg_extra_structures(regions)
            for name, extra in (("DICOM-SEG without the measured regions", vessels),
                                (f"DICOM-SEG as plan writes it (+ {len(extras)} measured regions: "
                                 f"{', '.join(extras)})", {**vessels, **extras})):
                path = tmp / "seg.dcm"
                seconds, _ = median_time(lambda: dicom_seg.write_dicom_seg(
                    labels, affine_ras=ct.affine_ras, source_dicom_files=ct.dicom_files, path=path,
                    extra_structures=extra), opts.runs)
                seg = pydicom.dcmread(path, stop_before_pixels=True)
                rows.append((name, f"{len(seg.SegmentSequence)} segments, {int(seg.NumberOfFrames)} frames, "
                                   f"{path.stat().st_size / 1e6:.1f} MB", seconds))
            seconds, _ = median_time(lambda: dicom_sr.write_measurement_report(
                tmp / "sr.dcm", report=report, regions=regions, seg_path=tmp / "seg.dcm"), opts.runs)
            rows.append(("SR (TID 1500)", f"{len(regions)} measurement groups, "
                                          f"{(tmp / 'sr.dcm').stat().st_size / 1e3:.0f} kB", seconds))
            (tmp / "store").mkdir()
            for name in ("seg.dcm", "sr.dcm"):
                (tmp / name).rename(tmp / "store" / name)
            seconds, _ = median_time(lambda: dicomweb.store_outputs(server.dicomweb, tmp / "store",
                                                                    files=("seg.dcm", "sr.dcm")), opts.runs)
            rows.append(("STOW-RS of SEG + SR", "to the same local Orthanc", seconds))
        finally:
            server.stop()
    load = os.getloadavg()[0]
    table = "\n".join(["| step | size | seconds (median) |", "|---|---|---|"]
                      + [f"| {step} | {size} | {s:.2f} |" for step, size, s in rows])
    table += f"\n\nload average at the end: {load:.1f} on {os.cpu_count()} cores"
    print(table)
    if opts.write:
        write_section("DICOMweb round trip", f"`python bench/bench_dicomweb.py --runs {opts.runs} --write` "
                      f"({time.strftime('%Y-%m-%d')}, IRCADb 01 as a DICOM series, local Orthanc 1.10 with "
                      f"its DICOMweb plugin)\n\n{table}\n")


if __name__ == "__main__":
    main()
