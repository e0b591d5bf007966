"""The slice viewer and QC montage of the report, and report.pdf: data, orientation, and pixels (Chromium, pdftoppm).

The phantom's tumours lie at known world positions; it is written with flipped axes and
anisotropic voxels and planned through the CLI, so the screenshots check the whole chain: reading,
canonical orientation, the viewer's radiological display and its overlay on the CT.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import binary_dilation, binary_erosion

from browser import dom_and_screenshot, element_attributes, needs_chromium, page_dom
from hepatoplan.data_samples.phantom import make_phantom
from hepatoplan.data_samples.write import write_study
from hepatoplan.errors import InputError
from hepatoplan.pipeline import io, report_html
from hepatoplan.pipeline.cli import main
from hepatoplan.pipeline.labels import (LIVER_COLOUR_RGB, RESECTED_COLOUR_RGB, SEGMENT_COLOURS_RGB, label_entry,
                                        label_map, tumour_colour_rgb)
from hepatoplan.pipeline.montage import MontageParams, qc_montage
from hepatoplan.pipeline import report_html
from hepatoplan.pipeline.report_html import write_plan_visuals, write_report_html
from hepatoplan.pipeline.slice_viewer import SliceViewerParams, slice_viewer_data

SPACING_MM = (1.8, 1.5, 2.5)
HIDE_ALL_BUT_TUMOURS = "sv-hide=segments,resected,portal%20vein,hepatic%20veins"


def _unpack(entry, shape):
    raw = np.frombuffer(zlib.decompress(base64.b64decode(entry["b64"])), entry["dtype"]).reshape(shape)
    if entry.get("delta_axis") == 0:
        raw = np.cumsum(raw, axis=0, dtype=np.uint8)  # wraps modulo 256, as the viewer adds them up
    return raw


def _grey(ct_hu, window, ct_range):
    """The viewer's grey level of a CT value: stored level (8 bit over ct_range), then the window."""
    lo, hi = ct_range
    stored = np.clip(np.rint((ct_hu.astype(np.float32) - lo) * (255.0 / (hi - lo))), 0, 255)
    value = lo + stored * (hi - lo) / 255
    level, width = window
    return np.clip(np.round((value - (level - width / 2)) / width * 255), 0, 255)


def _box_phantom():
    """A box 'liver' (segments 1-8 by octants, right half resected) with a tumour in the patient's
    right-anterior-superior part; CT 100 HU in the liver, 40 in the tumour, 0 elsewhere."""
    shape = (40, 36, 24)
    labels = np.zeros(shape, np.uint8)
    labels[5:35, 6:30, 4:20] = 9
    labels[5:20, 6:30, 4:20] = 19  # patient's left half (low i) resected
    labels[26:32, 20:27, 13:18] = 21
    ct = np.zeros(shape, np.int16)
    ct[labels > 0] = 100
    ct[labels == 21] = 40
    affine = np.diag([1.6, 0.9, 2.5, 1.0])
    affine[:3, 3] = (-30.0, -20.0, 10.0)
    return ct, labels, affine


# ---- the viewer's data -------------------------------------------------------------------------

def test_viewer_data_is_the_crop_of_ct_and_labels():
    ct, labels, affine = _box_phantom()
    ct = ct + np.random.default_rng(0).normal(0, 30, ct.shape).astype(np.int16)  # noise: every grey level
    vessels = {"portal vein": np.zeros(ct.shape, bool), "hepatic veins": np.zeros(ct.shape, bool)}
    vessels["portal vein"][20, 10:20, 8] = True
    vessels["hepatic veins"][20, 15:25, 8] = True
    report = {"resection": {"tumours": [{"id": 1, "volume_ml": 0.5, "status": "left in remnant",
                                         "min_margin_mm": None}]}}
    data = slice_viewer_data(ct, labels, affine_ras=affine, vessels=vessels, report=report,
                             params=SliceViewerParams(margin_mm=3.0))
    pad = [2, 4, 2]  # ceil(3 mm / spacing)
    assert data["offset"] == [5 - pad[0], 6 - pad[1], 4 - pad[2]] and data["step"] == [1, 1, 1]
    box = tuple(slice(o, o + n) for o, n in zip(data["offset"], data["shape"]))
    assert data["shape"] == [30 + 2 * pad[0], 24 + 2 * pad[1], 16 + 2 * pad[2]]
    assert data["spacing_mm"] == [1.6, 0.9, 2.5]
    stored = np.array(data["affine_ras"])  # stored index -> RAS mm: the same world point as the full grid's
    assert stored @ [3, 2, 1, 1] == pytest.approx(affine @ [3 + data["offset"][0], 2 + data["offset"][1], 1 + data["offset"][2], 1])
    shape = data["shape"]
    lo, hi = data["ct_range"]
    expected = np.clip(np.rint((ct[box].astype(np.float64) - lo) * 255 / (hi - lo)), 0, 255)
    assert np.array_equal(_unpack(data["ct"], shape), expected.astype(np.uint8))  # the int16 table = the formula
    assert np.array_equal(_unpack(data["labels"], shape), labels[box])
    layer = _unpack(data["vessels"], shape)
    assert np.array_equal(layer & 1, vessels["portal vein"][box]) and np.array_equal(layer >> 1, vessels["hepatic veins"][box])
    assert [c["value"] for c in data["classes"]] == [9, 19, 21]
    assert [c["group"] for c in data["classes"]] == ["segments", "resected", "tumours"]
    (tumour,) = data["tumours"]
    assert tumour["status"] == "left in remnant" and tumour["rgb"] == list(tumour_colour_rgb(1))
    assert labels[tuple(np.add(tumour["at"], data["offset"]))] == 21 and data["start"] == tumour["at"]
    assert data["windows"] == {"liver": [90.0, 150.0], "soft tissue": [40.0, 400.0]} and data["ct_unit"] == "HU"


def test_viewer_data_fits_the_voxel_budget_and_windows_mr():
    ct, labels, affine = _box_phantom()
    data = slice_viewer_data(ct.astype(np.float32) * 3.7, labels, affine_ras=affine, modality="MR",
                             params=SliceViewerParams(margin_mm=0.0, max_voxels=2000))
    assert np.prod(data["shape"]) <= 2000 and data["step"][0] == data["step"][1] > 1
    assert data["spacing_mm"] == pytest.approx(np.multiply([1.6, 0.9, 2.5], data["step"]))
    assert np.array(data["affine_ras"]) @ [1, 1, 1, 1] == pytest.approx(affine @ [5 + data["step"][0], 6 + data["step"][1],
                                                                                  4 + data["step"][2], 1])
    assert set(data["windows"]) == {"full", "contrast"} and data["ct_unit"] == "arbitrary units"
    assert data["ct_range"] == pytest.approx([40 * 3.7, 100 * 3.7])  # percentiles 0.5 / 99.5 of the crop
    lab = _unpack(data["labels"], data["shape"])
    assert np.array_equal(lab, labels[5:35:data["step"][0], 6:30:data["step"][1], 4:20:data["step"][2]])


def test_viewer_data_refuses_what_it_cannot_show():
    ct, labels, affine = _box_phantom()
    with pytest.raises(InputError, match="one grid"):
        slice_viewer_data(ct[:-1], labels, affine_ras=affine)
    with pytest.raises(InputError, match="no labelled voxel|found none"):
        slice_viewer_data(ct, np.zeros_like(labels), affine_ras=affine)


# ---- the montage -------------------------------------------------------------------------------

def _panel_pixels(image, panel):
    left, top, width, height = panel["box_px"]
    return image[top:top + height, left:left + width]


def _is_colour(pixels, rgb):
    return (pixels == np.asarray(rgb, np.uint8)).all(axis=-1)


def test_montage_outlines_every_panel_in_radiological_orientation():
    ct, labels, affine = _box_phantom()
    image, panels = qc_montage(ct, labels, affine_ras=affine, params=MontageParams(n_axial=6, columns=3))
    assert [p["plane"] for p in panels] == ["axial"] * 6 + ["coronal"]
    assert all(4 <= p["index"] < 20 for p in panels[:6]) and len({p["index"] for p in panels[:6]}) == 6
    tumour = tumour_colour_rgb(1)
    for panel in panels:
        pixels = _panel_pixels(image, panel)
        assert _is_colour(pixels, LIVER_COLOUR_RGB).sum() > 50, panel  # the liver's border
        assert _is_colour(pixels, RESECTED_COLOUR_RGB).sum() > 10, panel  # the cut
        rows, cols = np.nonzero(_is_colour(pixels, tumour))
        if panel["plane"] == "axial" and 13 <= panel["index"] < 18:
            # the tumour lies in the patient's right (screen left) and anterior (screen top) part
            assert rows.size and cols.max() < pixels.shape[1] / 2 and rows.max() < pixels.shape[0] / 2, panel
        elif panel["plane"] == "axial":
            assert rows.size == 0, panel
    # coronal panel through the liver's centre (j = 17.5 -> 18): the tumour (j 20-26) is not on it;
    # the resected half (patient's left) is on the screen's right: tinted red
    coronal = _panel_pixels(image, panels[-1]).astype(int)
    red_excess = coronal[..., 0] - coronal[..., 1]
    h, w = red_excess.shape
    middle = red_excess[h // 3:2 * h // 3]
    assert middle[:, w // 2 + 20:w - 30].mean() > middle[:, 30:w // 2 - 20].mean() + 10


def test_montage_outlines_are_the_full_image_rule():
    """The outlines drawn from the differing neighbours alone equal the rule applied to every pixel in
    turn (each outline's test, each 4-neighbour in turn, later ones painting over earlier ones) on
    random label maps holding every kind of label and edge."""
    from hepatoplan.pipeline.labels import RESECTED_LABEL_OFFSET, TUMOUR_LABEL_OFFSET
    from hepatoplan.pipeline.montage import _colour_table, outlined_panel

    rng = np.random.default_rng(7)
    values = np.array([0, 1, 2, 5, 9, 11, 15, 19, TUMOUR_LABEL_OFFSET + 1, TUMOUR_LABEL_OFFSET + 3])
    for size in ((1, 1), (1, 9), (23, 31)):
        labels = values[rng.integers(0, len(values), size)]
        grey = rng.integers(0, 256, size, dtype=np.uint8)
        expected = np.repeat(grey[..., None], 3, axis=2)
        table = _colour_table(int(labels.max()))
        parenchyma = (labels > 0) & (labels < TUMOUR_LABEL_OFFSET)
        resected = parenchyma & (labels > RESECTED_LABEL_OFFSET)
        tinted = ((1 - 0.18) * expected[resected] + 0.18 * np.array(RESECTED_COLOUR_RGB)).astype(np.uint8)
        expected[resected] = tinted
        rules = [(lambda P, Q: P > 0 and Q == 0, lambda P, Q: LIVER_COLOUR_RGB),
                 (lambda P, Q: 0 < P < TUMOUR_LABEL_OFFSET and 0 < Q < TUMOUR_LABEL_OFFSET
                  and P % RESECTED_LABEL_OFFSET != Q % RESECTED_LABEL_OFFSET, lambda P, Q: table[P]),
                 (lambda P, Q: 0 < P < TUMOUR_LABEL_OFFSET and 0 < Q < TUMOUR_LABEL_OFFSET
                  and (P > RESECTED_LABEL_OFFSET) != (Q > RESECTED_LABEL_OFFSET), lambda P, Q: RESECTED_COLOUR_RGB),
                 (lambda P, Q: P > TUMOUR_LABEL_OFFSET and P != Q, lambda P, Q: table[P]),
                 (lambda P, Q: Q > TUMOUR_LABEL_OFFSET and P != Q, lambda P, Q: table[Q])]
        h, w = size
        for test, colour in rules:
            for dr, dc in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                for r in range(h):
                    for c in range(w):
                        if 0 <= r + dr < h and 0 <= c + dc < w and test(labels[r, c], labels[r + dr, c + dc]):
                            expected[r, c] = colour(labels[r, c], labels[r + dr, c + dc])
        assert np.array_equal(outlined_panel(grey, labels), expected), size


def test_montage_pixels_are_square_mm():
    ct, labels, affine = _box_phantom()
    image, panels = qc_montage(ct, labels, affine_ras=affine, params=MontageParams(margin_mm=0.0))
    left, top, width, height = panels[0]["box_px"]
    assert height / width == pytest.approx((24 * 0.9) / (30 * 1.6), abs=0.02)  # axial: A-P mm / R-L mm
    left, top, width, height = panels[-1]["box_px"]
    assert height / width == pytest.approx((16 * 2.5) / (30 * 1.6), abs=0.02)  # coronal: S-I mm / R-L mm


# ---- a phantom planned through the CLI -----------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_plan(tmp_path_factory):
    """The phantom written with flipped axes (LPI) and anisotropic voxels, planned with a right
    hepatectomy; returns (study, output folder)."""
    study = make_phantom(spacing_mm=SPACING_MM, scale=0.6, noise_hu=8.0)
    folder = tmp_path_factory.mktemp("phantom")
    files = write_study(study, folder / "in", axcodes="LPI")
    out = folder / "out"
    assert main(["plan", str(files["ct"]), "--out", str(out), "--liver", str(files["liver"]),
                 "--tumours", str(files["tumours"]), "--portal", str(files["portal_vein"]),
                 "--hepatic", str(files["hepatic_veins"]), "--segments", str(files["segments"]),
                 "--resect", "right-hepatectomy"]) == 0
    return study, out


def _view(dom, name):
    attrs = element_attributes(dom, rf'<figure class="sv-view" data-view="{name}">\s*<canvas[^>]*>')
    rect = [float(v) for v in attrs["data-rect"].split(",")]
    x0, ax, y0, ay = (float(v) for v in attrs["data-map"].split(","))
    return rect, (x0, ax, y0, ay)


def _page_px(mapping, u, v):
    x0, ax, y0, ay = mapping
    return x0 + ax * np.asarray(u, float), y0 + ay * np.asarray(v, float)


@needs_chromium
def test_phantom_tumour_overlay_on_the_axial_view_where_the_tumour_is(phantom_plan, tmp_path):
    """Tumour 1 of the phantom (LPI file, anisotropic voxels, planned through the CLI): the viewer goes
    to it; on the axial view its colour lies over its centre and only on its voxels (area within 25 %);
    with the overlay off the hypodense tumour is darker than the liver; no console message either way."""
    study, out = phantom_plan
    report = json.loads((out / "report.json").read_text())
    assert {"qc_montage.png", "report.pdf", "report.html"} <= set(report["outputs"])
    url = (out / "report.html").resolve().as_uri()
    dom, shot = dom_and_screenshot(f"{url}#sv-goto=tumour-1&sv-opacity=100&sv-crosshair=off&{HIDE_ALL_BUT_TUMOURS}")
    root = element_attributes(dom, r'<div id="hp-slices"[^>]*>')
    assert root["data-status"] == "ready" and root["data-testid"] == "slice-viewer"
    position = [int(v) for v in root["data-position"].split(",")]
    assert study.tumours[tuple(position)] == 1  # the views went to tumour 1
    rect, mapping = _view(dom, "axial")
    assert mapping[1] < 0 and mapping[3] < 0  # patient's right (+i) to the screen's left, anterior (+j) up

    # where tumour 1 is, by construction: its centre in world mm -> canonical index -> page pixel
    centre_ijk = np.linalg.solve(study.affine_ras, [*study.truth["tumours"][0]["centre_mm"], 1.0])[:3]
    assert abs(centre_ijk[2] - position[2]) <= 1.0  # the axial slice shown passes through its centre
    x, y = _page_px(mapping, centre_ijk[0], centre_ijk[1])
    colour = np.asarray(tumour_colour_rgb(1)) / 255
    patch = shot[int(round(y)) - 2:int(round(y)) + 3, int(round(x)) - 2:int(round(x)) + 3]
    assert np.abs(patch - colour).max() < 0.03, patch

    # ... and nowhere else: tumour-coloured pixels of the axial canvas all lie on tumour 1's voxels of this slice
    k = position[2]
    left, top, width, height = rect
    canvas = shot[int(top) + 1:int(top + height) - 1, int(left) + 1:int(left + width) - 1]
    ys, xs = np.nonzero(np.abs(canvas - colour).max(axis=2) < 0.03)
    assert xs.size > 50
    x0, ax, y0, ay = mapping
    i = np.rint((xs + int(left) + 1.5 - x0) / ax).astype(int)  # pixel centre -> voxel
    j = np.rint((ys + int(top) + 1.5 - y0) / ay).astype(int)
    tumour = study.tumours[:, :, k] == 1
    assert tumour[i, j].mean() > 0.95, tumour[i, j].mean()
    assert binary_dilation(tumour)[i, j].all()  # off by at most one voxel, at its edge
    assert xs.size == pytest.approx(tumour.sum() * abs(ax * ay), rel=0.25)  # its area in px

    # the CT under it, opacity 0: the hypodense tumour (45 HU) is darker than the liver (105 HU) around it
    _, ct_shot = dom_and_screenshot(f"{url}#sv-goto=tumour-1&sv-opacity=0&sv-crosshair=off")

    def grey(mask):
        ii, jj = np.nonzero(binary_erosion(mask))
        px, py = _page_px(mapping, ii, jj)
        return ct_shot[np.floor(py).astype(int), np.floor(px).astype(int)].mean()

    parenchyma = study.liver[:, :, k].astype(bool) & ~tumour & (study.tumours[:, :, k] == 0) \
        & (study.portal[:, :, k] == 0) & (study.hepatic[:, :, k] == 0)
    assert grey(parenchyma) - grey(tumour) > 0.25, (grey(tumour), grey(parenchyma))


@needs_chromium
def test_phantom_views_to_scale_and_in_radiological_convention(phantom_plan):
    study, out = phantom_plan
    dom = page_dom((out / "report.html").resolve().as_uri())  # and no console message
    data = json.loads(re.search(r'<script type="application/json" id="hp-slice-data">(.*?)</script>', dom,
                                re.S).group(1))
    size_mm = np.multiply(data["shape"], data["spacing_mm"])
    for name, (u, v), signs in (("axial", (0, 1), (-1, -1)), ("coronal", (0, 2), (-1, -1)),
                                ("sagittal", (1, 2), (-1, -1))):
        rect, mapping = _view(dom, name)
        assert rect[3] / rect[2] == pytest.approx(size_mm[v] / size_mm[u], rel=0.02), name  # square mm
        assert np.sign(mapping[1]) == signs[0] and np.sign(mapping[3]) == signs[1], name


@needs_chromium
def test_phantom_views_follow_clicks_wheel_and_the_tumour_table(phantom_plan, tmp_path):
    """Real DOM events (clicks, wheel) dispatched by a script added to a copy of the report."""
    study, out = phantom_plan
    script = """<script>(function poll() {
      var r = document.getElementById("hp-slices");
      if (r.getAttribute("data-status") !== "ready") { setTimeout(poll, 20); return; }
      function record(name) { r.setAttribute("data-after-" + name, r.getAttribute("data-position")); }
      document.querySelector('tr[data-tumour="2"]').click(); record("tumour");
      var c = document.querySelector('.sv-view[data-view="axial"] canvas'), b = c.getBoundingClientRect();
      c.dispatchEvent(new MouseEvent("click", {clientX: b.left + 0.25 * b.width, clientY: b.top + 0.5 * b.height, bubbles: true}));
      record("click");
      c.dispatchEvent(new WheelEvent("wheel", {deltaY: -100, bubbles: true, cancelable: true})); record("wheel");
      document.querySelector('button[data-window="soft tissue"]').click();
      r.setAttribute("data-window", document.querySelector("button.active").getAttribute("data-window"));
      r.setAttribute("data-sagittal", document.querySelector('.sv-view[data-view="sagittal"] .sv-slider').value);
    })();</script>"""
    page = tmp_path / "report.html"
    page.write_text((out / "report.html").read_text().replace("</body>", script + "</body>"))
    dom = page_dom(page.resolve().as_uri())  # and no console message
    root = element_attributes(dom, r'<div id="hp-slices"[^>]*>')
    data = json.loads(re.search(r'id="hp-slice-data">(.*?)</script>', dom, re.S).group(1))
    after = {k: [int(v) for v in root[f"data-after-{k}"].split(",")] for k in ("tumour", "click", "wheel")}
    assert study.tumours[tuple(after["tumour"])] == 2
    # a click at a quarter of the axial view's width: the patient's right part (high i); k unchanged
    width = data["shape"][0]
    expected_i = data["offset"][0] + width - 1 - int(0.25 * width)
    assert abs(after["click"][0] - expected_i) <= 1 and after["click"][2] == after["tumour"][2]
    assert int(root["data-sagittal"]) == after["wheel"][0] - data["offset"][0]  # the sagittal view moved there
    assert after["wheel"][:2] == after["click"][:2] and after["wheel"][2] == after["click"][2] + 1  # wheel up: superior
    assert root["data-window"] == "soft tissue"


def test_phantom_montage_outlines_on_every_panel(phantom_plan):
    import matplotlib.image as mpimg

    study, out = phantom_plan
    montage = (mpimg.imread(out / "qc_montage.png")[..., :3] * 255).round().astype(np.uint8)
    colours = [LIVER_COLOUR_RGB, RESECTED_COLOUR_RGB, *SEGMENT_COLOURS_RGB.values(),
               *(label_entry(20 + i).colour_rgb for i in (1, 2, 3))]
    outline = np.zeros(montage.shape[:2], bool)
    for rgb in colours:
        outline |= _is_colour(montage, rgb)
    ct = io.read_image(out.parent / "in" / "ct.nii.gz")
    labels = io.read_labels(out / "labels.nii.gz", reference=ct).array
    _, panels = qc_montage(ct.array, labels, affine_ras=ct.affine_ras)  # the same layout as the file
    assert len(panels) == 13
    for panel in panels:
        assert _panel_pixels(outline, panel).sum() > 100, panel
    html = (out / "report.html").read_text()
    assert "id='montage'" in html and "data-testid='slice-viewer'" in html


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="needs pdftoppm (apt-get install poppler-utils); "
                    "CI installs it")
def test_phantom_pdf_renders_with_pdftoppm(phantom_plan, tmp_path):
    import matplotlib.image as mpimg

    _, out = phantom_plan
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(out / "report.pdf"), str(tmp_path / "page")], check=True,
                   capture_output=True)
    pages = [mpimg.imread(p)[..., :3] for p in sorted(tmp_path.glob("page*.png"))]
    assert len(pages) >= 3
    assert all(p.shape[0] / p.shape[1] == pytest.approx(297 / 210, rel=0.01) for p in pages)  # A4 portrait
    green_banner = (pages[0][..., 1] > pages[0][..., 0] + 0.15) & (pages[0][..., 1] > pages[0][..., 2] + 0.15)
    assert green_banner.sum() > 100  # the verdict banner of an adequate remnant, in colour
    # the montage (a dark picture) and the previews are printed: dark pixels on some page
    assert max((p.mean(axis=2) < 0.15).mean() for p in pages) > 0.15
    # the four previews embedded as JPEG (as they are), the montage as deflated pixels
    images = subprocess.run(["pdfimages", "-list", str(out / "report.pdf")], check=True, capture_output=True,
                            text=True).stdout.splitlines()[2:]
    jpegs = [tuple(int(v) for v in line.split()[3:5]) for line in images if line.split()[8] == "jpeg"]
    assert jpegs == [report_html.PREVIEW_SIZE_PX] * 4 and len(images) >= 5


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="needs pdftotext (apt-get install poppler-utils); "
                    "CI installs it")
def test_phantom_pdf_shows_every_number_of_report_json(phantom_plan):
    """Every number of the plan's report.json, as the report formats it, is in report.pdf's text
    (the stage times excepted: they are written after the PDF)."""
    from test_report_pdf import _numbers, shows_every_number

    _, out = phantom_plan
    report = json.loads((out / "report.json").read_text())
    assert len(_numbers(report, skip=("timing_s",))) > 60
    assert shows_every_number(out / "report.pdf", report, skip=("timing_s",)) == []


def test_no_preview_reads_the_ct_header_only_and_writes_no_montage(tmp_path, monkeypatch):
    study = make_phantom(spacing_mm=(3.0, 3.0, 4.0), scale=0.5, noise_hu=5.0)
    files = write_study(study, tmp_path / "in", axcodes="RAS")
    calls = []
    read_image = io.read_image
    monkeypatch.setattr(io, "read_image", lambda *a, **k: calls.append((k.get("header_only"), k.get("check_voxels", True)))
                        or read_image(*a, **k))
    out = tmp_path / "out"
    assert main(["plan", str(files["ct"]), "--out", str(out), "--liver", str(files["liver"]), "--tumours",
                 str(files["tumours"]), "--segments", str(files["segments"]), "--portal", str(files["portal_vein"]),
                 "--hepatic", str(files["hepatic_veins"]), "--no-preview"]) == 0
    # the grid from the header (voxels not decoded) for the masks, and the whole file checked beside them:
    # neither keeps the voxels
    assert sorted(calls) == [(True, False), (True, True)]
    assert not (out / "qc_montage.png").exists() and not (out / "report.pdf").exists()
    assert "slice-viewer" not in (out / "report.html").read_text()


def test_a_process_group_of_zombies_is_not_running():
    """The tests' Browser.close waits for the helpers it killed, not for init to reap them: a group
    whose processes are all zombies (dead, not yet reaped) no longer runs; a live one does."""
    import signal

    from browser import group_running

    live = subprocess.Popen(["sleep", "30"], start_new_session=True)
    done = subprocess.Popen(["true"], start_new_session=True)
    try:
        assert group_running(live.pid)
        for _ in range(500):  # until ``true`` has exited: a zombie of this process, not reaped yet
            with open(f"/proc/{done.pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        os.killpg(done.pid, 0)  # the group still exists ...
        assert not group_running(done.pid)  # ... but nothing in it runs
    finally:
        os.killpg(live.pid, signal.SIGKILL)
        live.wait(), done.wait()
    assert not group_running(live.pid) and not group_running(done.pid)


# ---- the demo and IRCADb 01: the overlay on the CT, pixel by pixel -----------------------------------

def _demo_study():
    from hepatoplan.data_samples.write import demo_files

    files = demo_files()
    return files["ct"], {"liver": files["liver"], "tumours": files["tumours"], "segments": files["segments"]}


def _ircadb_study(ircadb_dir):
    case = ircadb_dir / "01"
    return case / "ct.nii.gz", {"liver": case / "liver.nii.gz", "tumours": case / "tumours.nii.gz",
                                "segments": case / "couinaud_reference.nii.gz"}


@needs_chromium
@pytest.mark.parametrize("case", ["demo", "ircadb01"])
def test_overlay_aligned_with_the_ct(case, request, tmp_path):
    """The demo and full-size IRCADb 01: the axial view shows the CT voxel for voxel in the liver window
    (a left-right flip would be seen), and at opacity 100 each label's colour on the same pixels, the CT
    elsewhere; no console message in either state."""
    ct_path, masks = _demo_study() if case == "demo" else _ircadb_study(request.getfixturevalue("ircadb_dir"))
    ct = io.read_image(ct_path)
    arrays = {k: io.read_labels(p, reference=ct).array for k, p in masks.items()}
    liver = arrays["liver"] > 0
    labels = label_map(liver=liver, segments=np.where(liver, arrays["segments"], 0),
                       tumours=np.where(liver, arrays["tumours"], 0), resected=None)
    data = slice_viewer_data(ct.array, labels, affine_ras=ct.affine_ras)
    path = write_report_html({}, out_path=tmp_path / "report.html", slice_viewer=data)
    url = path.resolve().as_uri()
    dom, grey_shot = dom_and_screenshot(f"{url}#sv-opacity=0&sv-crosshair=off")
    _, overlay_shot = dom_and_screenshot(f"{url}#sv-opacity=100&sv-crosshair=off")
    position = [int(v) for v in element_attributes(dom, r'<div id="hp-slices"[^>]*>')["data-position"].split(",")]
    rect, mapping = _view(dom, "axial")
    # every 2nd voxel of the axial slice shown, whose 3x3 neighbourhood shares its label (edges left out)
    k = position[2]
    box = [slice(o, o + n) for o, n in zip(data["offset"], data["shape"])]
    i, j = np.meshgrid(np.arange(box[0].start + 1, box[0].stop - 1, 2), np.arange(box[1].start + 1, box[1].stop - 1, 2),
                       indexing="ij")
    i, j = i.ravel(), j.ravel()
    plane = labels[:, :, k]
    uniform = np.all([plane[i + di, j + dj] == plane[i, j] for di in (-1, 0, 1) for dj in (-1, 0, 1)], axis=0)
    i, j = i[uniform], j[uniform]
    x, y = (np.floor(v).astype(int) for v in _page_px(mapping, i, j))  # the pixel holding the voxel's centre
    left, top, width, height = rect  # not under the orientation letters at the middle of each edge
    letters = (((np.abs(y - top - height / 2) < 12) & ((x - left < 20) | (left + width - x < 20)))
               | ((np.abs(x - left - width / 2) < 12) & ((y - top < 20) | (top + height - y < 20))))
    i, j, x, y = i[~letters], j[~letters], x[~letters], y[~letters]
    expected_grey = _grey(ct.array[i, j, k], data["windows"]["liver"], data["ct_range"]) / 255
    seen_grey = grey_shot[y, x].mean(axis=1)
    assert np.abs(seen_grey - expected_grey).max() < 0.02  # the CT, voxel for voxel
    flipped = grey_shot[y, (2 * x.mean() - x).astype(int)].mean(axis=1)
    assert np.abs(flipped - expected_grey).mean() > 5 * np.abs(seen_grey - expected_grey).mean()  # the check can fail
    labelled = plane[i, j] > 0
    assert labelled.sum() > 100
    expected_rgb = np.array([label_entry(v).colour_rgb for v in plane[i, j][labelled]]) / 255
    assert np.abs(overlay_shot[y[labelled], x[labelled]] - expected_rgb).max() < 0.02  # the labels on the same pixels
    assert np.abs(overlay_shot[y[~labelled], x[~labelled]] - grey_shot[y[~labelled], x[~labelled]]).max() < 0.02


def test_script_json_is_the_json_text():
    """The page's JSON with its base64 strings spliced in is json.dumps' text ("</" escaped), also with strings
    that start with a NUL (the splice's marker) or hold "</", and base64 keys in nested lists."""
    import json

    from hepatoplan.pipeline.slice_viewer import script_json

    cases = [{"ct": {"b64": "QUJD", "dtype": "uint8"}, "labels": {"b64": "Zm9v"}, "vessels": None, "name": "a</b"},
             {"structures": [{"positions_b64": "AAAA", "indices_b64": "", "n": 3}, {"positions_b64": "BB=="}],
              "t": (1, 2.5, None, True)},
             {"b64": "QUJD", "odd": ["\x00zz", 'a"\x00'], "more_b64": 7}]
    for data in cases:
        assert script_json(data) == json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
