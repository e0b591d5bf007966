"""The self-contained HTML report: content, escaping, no network, and the 3D view in Chromium."""

import re

import numpy as np
import pytest

from browser import dom_and_screenshot, needs_chromium, open_page
from output_phantom import phantom_structures
from hepatoplan.pipeline.meshing import structure_meshes
from hepatoplan.pipeline.report_html import DicomSegSource, viewer_data, write_plan_visuals, write_report_html


REPORT = {
    "volumes_ml": {"liver": 1523.456, "functional_liver": 1490.2, "tumours": {"1": 20.1, "2": 3.3},
                   "segments": {str(k): 100.0 + k for k in range(1, 9)}},
    "resection": {
        "specs": ["right-hepatectomy", "wedge:2@5"], "resected_ml": 900.1, "remnant_ml": 590.1,
        "flr_percent": 39.6,
        "tumours": [{"id": 1, "volume_ml": 20.1, "resected": True, "min_margin_mm": 12.3},
                    {"id": 2, "volume_ml": 3.3, "resected": False, "min_margin_mm": None}]},
    "assessment": {"parenchyma": "chemotherapy", "threshold_percent": 30.0, "verdict": "adequate",
                   "shortfall_ml": 0.0, "min_remnant_ml": 447.06,
                   "criteria": [{"name": "FLR", "value": 39.6, "ok": True}]},
    "growth_outlook": {"weeks_to_threshold": None, "model": {"name": "exp", "rate_per_week": 0.031}},
    "inputs": {"ct": {"path": "/data/<script>alert(1)</script>.nii.gz", "sha256": "ab" * 32}},
    "warnings": ["tumour 2 left in the remnant (not R0) & <b>flagged</b>"],
}


def _png(path, colour):
    import matplotlib.image as mpimg

    img = np.ones((30, 40, 3)) * np.asarray(colour, float)
    mpimg.imsave(path, img)
    return path


@pytest.fixture(scope="module")
def small_meshes():
    structures, _, affine = phantom_structures()
    keep = ("remnant", "resected", "tumour 1", "tumour 2", "portal vein", "hepatic veins")
    return structure_meshes({k: structures[k] for k in keep}, affine_ras=affine,
                            target_reduction=0.5)


def test_report_content_escaping_and_offline(tmp_path, small_meshes):
    previews = [_png(tmp_path / "preview_before_anterior.png", (1, 0, 0)),
                _png(tmp_path / "preview_after_anterior.png", (0, 1, 0))]
    growth = _png(tmp_path / "growth.png", (0, 0, 1))
    path = write_report_html(REPORT, out_path=tmp_path / "out" / "report.html", previews=previews,
                             meshes=small_meshes, growth_plot_png=growth)
    text = path.read_text(encoding="utf-8")
    assert "data-verdict='adequate'" in text and "Future liver remnant adequate" in text
    assert "39.60" in text and "30.00" in text  # FLR and threshold
    assert "min margin (mm)" in text and "12.30" in text  # tumour records table
    assert "<table class='row'><thead><tr><th>1</th><th>2</th><th>3</th>" in text  # segments
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    assert "&lt;b&gt;flagged&lt;/b&gt;" in text
    assert text.count("data:image/png;base64,") == 3
    # self-contained: no resource is fetched from anywhere but the page itself
    assert not re.search(r"""<[^>]*\s(?:src|href)\s*=\s*['"](?!data:|#)""", text)
    assert "http://" not in text and "https://" not in text and "@import" not in text
    assert "id='hp-mesh-data'" in text
    assert path.stat().st_size < 3_000_000
    assert not list(path.parent.glob("*.part"))


def test_verdict_variants(tmp_path):
    bad = {"resection": {"flr_percent": 18.0, "remnant_ml": 270.0},
           "assessment": {"verdict": "inadequate", "threshold_percent": 30.0, "shortfall_ml": 180.0}}
    text = write_report_html(bad, out_path=tmp_path / "a.html").read_text()
    assert "data-verdict='inadequate'" in text and "INADEQUATE" in text and "180.0" in text
    assert "id='hp-viewer'" not in text  # no meshes, no 3D view
    text = write_report_html({}, out_path=tmp_path / "b.html").read_text()
    assert "No FLR verdict" in text
    # any other verdict text is shown as given, in the banner
    odd = {"assessment": {"verdict": "unverified: review the automatic segmentation"}}
    text = write_report_html(odd, out_path=tmp_path / "c.html").read_text()
    assert "data-verdict='other'" in text and "Verdict: unverified: review the automatic segmentation" in text


def test_viewer_data_budget_and_quantisation(small_meshes):
    data = viewer_data(small_meshes, max_triangles=3000)
    total = sum(s["n_triangles"] for s in data["structures"])
    assert total <= 3000 + 600 * len(small_meshes)
    import base64

    s = next(s for s in data["structures"] if s["name"] == "tumour 1")
    q = np.frombuffer(base64.b64decode(s["positions_b64"]), "<u2").reshape(-1, 3)
    lo, hi = np.array(s["lo_mm"]), np.array(s["hi_mm"])
    pos = lo + q / 65535 * (hi - lo)
    original = small_meshes["tumour 1"].vertices_mm
    assert np.abs(pos.min(axis=0) - original.min(axis=0)).max() < 1.0
    assert data["scenes"]["after"]["resected"] < 1
    assert {s["name"] for s in data["structures"] if s["visible"]} == set(data["scenes"]["after"])


@needs_chromium
def test_the_test_browser_sees_console_messages_timers_and_failed_loads(tmp_path):
    """The report tests' "no console message" can fail: a log line, a warning from a timer 3 s later
    (virtual time), an uncaught error and a missing image are all reported, and the DOM is the one
    after the timers ran."""
    page = tmp_path / "probe.html"
    page.write_text("""<html><body><div id="x" data-status="start"></div><img src="missing.png"><script>
      console.log("a log line", 3);
      setTimeout(function () { document.getElementById("x").setAttribute("data-status", "later");
                               console.warn("late"); null.boom(); }, 3000);
    </script></body></html>""")
    dom, image, console = open_page(page.resolve().as_uri(), screenshot=True)
    assert 'data-status="later"' in dom and image.shape == (1400, 1280, 3)
    assert len(console) == 4 and any("ERR_FILE_NOT_FOUND" in m for m in console), console
    assert any("a log line 3" in m for m in console) and any("late" in m for m in console)
    assert any("boom" in m for m in console), console


@needs_chromium
def test_report_loads_in_headless_chromium(tmp_path, small_meshes):
    path = write_report_html(REPORT, out_path=tmp_path / "report.html", meshes=small_meshes)
    dom, img = dom_and_screenshot(path.resolve().as_uri())  # and no console message
    viewer = re.search(r'<div id="hp-viewer"[^>]*>', dom)
    assert viewer, dom[:2000]
    attrs = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', viewer.group(0)))
    assert attrs["data-status"] == "rendered", attrs
    assert int(attrs["data-triangles"]) > 1000
    left, top, width, height = (int(v) for v in attrs["data-rect"].split(","))
    canvas = img[top + 2:top + height - 2, left + 2:left + width - 2]
    covered = np.abs(canvas - 1.0).max(axis=2) > 0.05
    assert 0.05 < covered.mean() < 0.9, covered.mean()
    # the model is drawn in colour: green remnant and red resected part both show
    r, g = canvas[..., 0], canvas[..., 1]
    assert ((g > r + 0.08) & covered).mean() > 0.01
    assert ((r > g + 0.08) & covered).mean() > 0.01


def test_write_plan_visuals_bundle(tmp_path, monkeypatch):
    from hepatoplan.pipeline import report_html
    from hepatoplan.pipeline.labels import structures_from_labels

    monkeypatch.setattr(report_html, "PREVIEW_SIZE_PX", (300, 240))

    structures, labels, affine = phantom_structures()
    vessels = {"portal vein": structures["portal vein"], "hepatic veins": structures["hepatic veins"]}
    names = list(structures_from_labels(labels, vessels=vessels))
    assert names == [f"segment {k}" for k in range(1, 9)] + [
        "remnant", "resected", "tumour 1", "tumour 2", "portal vein", "hepatic veins"]
    out = write_plan_visuals(tmp_path, report=REPORT, labels=labels, affine_ras=affine,
                             vessels=vessels)
    assert [p.name for p in out["labels"]] == ["labels.ctbl", "labels.seg.nrrd"]
    assert out["meshes"][0].name == "plan.glb" and len(out["previews"]) == 4
    assert out["report"][0].read_text().count("data:image/png;base64,") == 4
    quick = write_plan_visuals(tmp_path / "quick", report=REPORT, labels=labels, affine_ras=affine,
                               meshes_and_previews=False)
    assert quick["meshes"] == [] and quick["previews"] == []
    assert "id='hp-viewer'" not in quick["report"][0].read_text()


@needs_chromium
def test_viewer_state_from_link(tmp_path, small_meshes):
    """Superior view of the 'before' scene with the veins hidden, opened from the URL."""
    path = write_report_html({}, out_path=tmp_path / "report.html", meshes=small_meshes)
    url = path.resolve().as_uri() + "#view=superior&scene=before&hide=portal%20vein,hepatic%20veins"
    dom, shot = dom_and_screenshot(url)  # and no console message
    viewer = re.search(r'<div id="hp-viewer"[^>]*>', dom).group(0)
    attrs = dict(re.findall(r'(data-[a-z]+)="([^"]*)"', viewer))
    assert attrs["data-status"] == "rendered" and attrs["data-view"] == "superior"
    left, top, width, height = (int(v) for v in attrs["data-rect"].split(","))
    canvas = shot[top + 2:top + height - 2, left + 2:left + width - 2]
    r, g, b = canvas[..., 0], canvas[..., 1], canvas[..., 2]
    covered = np.abs(canvas - 1.0).max(axis=2) > 0.05
    assert covered.mean() > 0.05
    blue = (b > r + 0.25) & (b > g + 0.1)  # the veins' blue and violet are hidden
    assert blue.mean() < 0.002, blue.mean()  # with the veins shown: about 0.005


def test_write_plan_visuals_dicom_seg_and_uid_warning(tmp_path):
    import nibabel as nib

    from output_phantom import write_ct_series

    def canonical(array, affine):
        ornt = nib.orientations.io_orientation(affine)
        return (nib.orientations.apply_orientation(array, ornt),
                affine @ nib.orientations.inv_ornt_aff(ornt, array.shape))

    for blank in ((), ("StudyInstanceUID",)):
        folder = tmp_path / ("blank" if blank else "ok")
        (folder / "ct").mkdir(parents=True)
        files, affine_native, shape, _ = write_ct_series(folder / "ct", blank_uids=blank)
        native = np.zeros(shape, np.uint8)
        native[4:15, 5:18, 1:5] = 9
        native[8:11, 8:12, 2:4] = 21
        labels, affine = canonical(native, affine_native)
        report = {"warnings": ["earlier warning"]}
        out = write_plan_visuals(folder / "out", report=report, labels=labels, affine_ras=affine,
                                 dicom_seg=DicomSegSource(files), meshes_and_previews=False)
        assert out["dicom_seg"] == [folder / "out" / "labels_seg.dcm"]
        if not blank:
            assert report["warnings"] == ["earlier warning"]
        else:
            assert "no StudyInstanceUID" in report["warnings"][1] and "derived" in report["warnings"][1]
            assert "no StudyInstanceUID" in out["report"][0].read_text()


def test_plan_meshes_with_vessel_meshes_made_ahead():
    """``plan`` meshes the vessels before the label map exists: the same meshes, in the same order."""
    from concurrent.futures import Future

    from hepatoplan.pipeline.labels import label_boxes
    from hepatoplan.pipeline.report_html import plan_meshes

    structures, labels, affine = phantom_structures()
    vessels = {name: structures[name] for name in ("portal vein", "hepatic veins")}
    boxes = label_boxes(labels)
    ahead = Future()
    ahead.set_result(structure_meshes(vessels, affine_ras=affine))
    direct = plan_meshes(labels, boxes=boxes, affine_ras=affine, vessels=vessels)
    early = plan_meshes(labels, boxes=boxes, affine_ras=affine, vessels=ahead)
    assert list(early) == list(direct) and list(direct)[-2:] == ["portal vein", "hepatic veins"]
    for name, mesh in direct.items():
        assert np.array_equal(early[name].vertices_mm, mesh.vertices_mm), name
        assert np.array_equal(early[name].faces, mesh.faces), name


def test_meshes_made_before_the_resection_and_the_before_scene_rendered_from_them(tmp_path, monkeypatch):
    """``plan`` meshes the segments and tumours from the label map without the resection, then the rest:
    the same meshes in the same order; the "before" scene is rendered from them alone, and every preview
    is the one rendered from all meshes at once."""
    from concurrent.futures import Future

    from hepatoplan.pipeline import rendering, report_html
    from hepatoplan.pipeline.labels import label_boxes
    from hepatoplan.pipeline.report_html import StartedAhead, meshes_before_resection, plan_meshes

    monkeypatch.setattr(report_html, "PREVIEW_SIZE_PX", (300, 240))
    structures, labels, affine = phantom_structures()
    unresected = np.where((labels > 10) & (labels < 20), labels - 10, labels)  # label_map(resected=None)
    vessels = {name: structures[name] for name in ("portal vein", "hepatic veins")}
    boxes = label_boxes(labels)

    def done(value) -> Future:
        future = Future()
        future.set_result(value)
        return future

    ahead = done(structure_meshes(vessels, affine_ras=affine))
    first = meshes_before_resection(lambda: unresected, affine_ras=affine, vessels=ahead)
    assert list(first) == [f"segment {k}" for k in range(1, 9)] + ["tumour 1", "tumour 2", "portal vein",
                                                                     "hepatic veins"]
    direct = plan_meshes(labels, boxes=boxes, affine_ras=affine, vessels=vessels)
    later = plan_meshes(labels, boxes=boxes, affine_ras=affine, vessels=ahead, made=done(first))
    assert list(later) == list(direct)
    for name, mesh in direct.items():
        assert np.array_equal(later[name].vertices_mm, mesh.vertices_mm), name
        assert np.array_equal(later[name].faces, mesh.faces), name
        assert name not in first or later[name] is first[name]

    calls = []
    render = rendering.render_previews
    monkeypatch.setattr(rendering, "render_previews", lambda meshes, *a, **k: calls.append(
        (set(meshes), list(k["scenes"]))) or render(meshes, *a, **k))
    written = {}
    for name, started in (("together", StartedAhead(boxes, done(direct))),
                          ("first", StartedAhead(boxes, done(later), first=done(first)))):
        out = write_plan_visuals(tmp_path / name, report=REPORT, labels=labels, affine_ras=affine,
                                 vessels=vessels, meshes_and_previews=started)
        written[name] = {p.name: p.read_bytes() for p in out["previews"]}
    assert calls[0] == (set(direct), ["before", "after"])
    assert calls[1] == (set(first), ["before"]) and calls[2] == (set(direct), ["after"])
    assert list(written["first"]) == list(written["together"]) and written["first"] == written["together"]
