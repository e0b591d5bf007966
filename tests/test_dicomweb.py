"""DICOMweb: plan from a real Orthanc, store the DICOM-SEG and the SR back, fail cleanly.

The real contrast series of ``../shared/data/totalsegmentator`` is uploaded with fresh UIDs (its
own Study/Series UIDs are empty, which Orthanc refuses), in three copies: one planned from its
URL and stored back, one without FrameOfReferenceUID, one for the other requests and a batch. The
masks are real too: the liver is TotalSegmentator's (matched to the series in physical space), split
into eight octant "segments" around its centre, with two spherical "tumours" (so the plan has segments to
resect, a wedge that splits a segment, and tumours to measure).

A few tests need no PACS: URL parsing, credential checks, and small local HTTP(S) servers that
check a bearer token, verify TLS and send a truncated series.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import ssl
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import DATA_DIR
from hepatoplan.errors import InputError
from hepatoplan.pipeline import dicomweb
from hepatoplan.pipeline.cli import main
from orthanc import PASSWORD, USER, copy_series_with_uids, free_port, orthanc_or_skip, start_orthanc

SERIES_DIR = DATA_DIR / "totalsegmentator" / "ct_contrast_dicom"
TOTALSEG = DATA_DIR / "totalsegmentator" / "ct_contrast_dicom_totalseg.nii.gz"
WRONG_PASSWORD = "wrong-Pw-never-to-be-printed"
TOKEN = "tok-3f9a-never-to-be-printed"
PLAN_ARGS = ("--resect", "right-hepatectomy", "--resect", "wedge:2", "--height-cm", "175",
             "--weight-kg", "80", "--no-preview")


def _need_series():
    if not SERIES_DIR.is_dir():
        pytest.skip(f"real data not found at {SERIES_DIR} (CI has it; see ../shared/data/README.md)")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """Basic-auth credentials of the test Orthanc and an empty cache, in the environment."""
    for name in (dicomweb.ENV_TOKEN, dicomweb.ENV_USER, dicomweb.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(dicomweb.ENV_USER, USER)
    monkeypatch.setenv(dicomweb.ENV_PASSWORD, PASSWORD)
    monkeypatch.setenv(dicomweb.ENV_CACHE, str(tmp_path / "cache"))
    return monkeypatch


@pytest.fixture
def quick_retries(monkeypatch):
    """Every request retried as by default (``max_attempts``) but after 10 ms, 20 ms instead of 1 s, 2 s:
    the tests of a server that does not answer prove the refusal, not the waiting. Returns the URLs
    requested, one per attempt."""
    import requests.adapters

    client, send, urls = dicomweb._client, requests.adapters.HTTPAdapter.send, []
    monkeypatch.setattr(dicomweb, "_client",
                        lambda base_url, params: client(base_url, dataclasses.replace(params, retry_wait_s=0.02)))
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send",
                        lambda self, request, **kwargs: urls.append(request.url) or send(self, request, **kwargs))
    return urls


# --------------------------------------------------------------------------- no server needed


def test_series_url_parsing():
    url = dicomweb.parse_series_url("https://pacs.example.org:8443/dicom-web/studies/1.2.3/series/4.5.6/")
    assert (url.base_url, url.study_uid, url.series_uid) == ("https://pacs.example.org:8443/dicom-web", "1.2.3",
                                                             "4.5.6")
    assert str(url) == "https://pacs.example.org:8443/dicom-web/studies/1.2.3/series/4.5.6"
    deep = dicomweb.parse_series_url("http://h/dcm4chee-arc/aets/DCM4CHEE/rs/studies/1.2/series/3")
    assert deep.base_url == "http://h/dcm4chee-arc/aets/DCM4CHEE/rs"
    assert dicomweb.ct_argument("study/ct.nii.gz") == Path("study/ct.nii.gz")
    assert dicomweb.ct_argument(str(url)) == url
    for bad in ("http://h/dicom-web/studies/1.2.3", "http://h/studies/1.2.a/series/3",
                "http://h/studies/1/series/2/instances/3", "ftp://h/studies/1/series/2",
                f"http://h/studies/{'1.' * 40}1/series/2", "http://h/studies/1/series/2?x=1"):
        with pytest.raises(InputError, match="DICOMweb|query"):
            dicomweb.parse_series_url(bad)


def test_credentials_in_a_url_are_refused_and_never_echoed(capsys):
    secret = "hunter2-in-url"
    with pytest.raises(InputError) as info:
        dicomweb.parse_series_url(f"http://alice:{secret}@pacs/dicom-web/studies/1/series/2")
    assert secret not in str(info.value) and "alice" not in str(info.value)
    assert dicomweb.ENV_PASSWORD in str(info.value)
    assert main(["plan", f"http://alice:{secret}@pacs/dicom-web/studies/1/series/2", "--out", "x"]) == 2
    assert main(["plan", "ct.nii.gz", "--out", "x", "--store", f"https://alice:{secret}@pacs/dicom-web"]) == 2
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    assert len(captured.err.strip().splitlines()) == 2


def test_store_needs_a_dicom_ct(tmp_path, capsys):
    nifti = tmp_path / "ct.nii.gz"
    nifti.write_bytes(b"")
    assert main(["plan", str(nifti), "--out", str(tmp_path / "out"), "--store", "http://127.0.0.1:1/dicom-web"]) == 2
    assert "is not a DICOM series" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_malformed_url_in_a_manifest_names_its_line(tmp_path, capsys):
    manifest = tmp_path / "cohort_in.csv"
    manifest.write_text("id,ct\nfine,ct.nii.gz\nbad,http://pacs/dicom-web/studies/1.2.3\n")
    assert main(["batch", str(manifest), "--out", str(tmp_path / "out")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "line 3" in line and "/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}" in line
    assert not (tmp_path / "out").exists()


def test_environment_credentials_are_checked(monkeypatch):
    for name in (dicomweb.ENV_TOKEN, dicomweb.ENV_USER, dicomweb.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(dicomweb.ENV_USER, "alice")
    with pytest.raises(InputError, match=dicomweb.ENV_PASSWORD):
        dicomweb.check_server("http://127.0.0.1:1/dicom-web")
    monkeypatch.setenv(dicomweb.ENV_PASSWORD, "x")
    monkeypatch.setenv(dicomweb.ENV_TOKEN, "y")
    with pytest.raises(InputError, match="both"):
        dicomweb.check_server("http://127.0.0.1:1/dicom-web")


class _Server:
    """A small local HTTP(S) server answering from ``routes`` (path without query → handler)."""

    def __init__(self, routes, *, tls: ssl.SSLContext | None = None):
        routes_ = routes

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                status, headers, body = routes_(self)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # keep the test output quiet
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}/dicom-web"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def _json(payload):
    return 200, {"Content-Type": "application/dicom+json"}, json.dumps(payload).encode()


def test_bearer_token_is_sent_and_a_wrong_one_is_refused(monkeypatch, caplog, capsys):
    seen = []

    def routes(request):
        seen.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"WWW-Authenticate": "Bearer"}, b""
        return _json([])

    caplog.set_level(logging.DEBUG)
    for name in (dicomweb.ENV_USER, dicomweb.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    with _Server(routes) as server:
        monkeypatch.setenv(dicomweb.ENV_TOKEN, TOKEN)
        dicomweb.check_server(server.url)  # accepted
        monkeypatch.setenv(dicomweb.ENV_TOKEN, TOKEN[::-1])
        with pytest.raises(dicomweb.DicomwebError, match="HTTP 401") as info:
            dicomweb.check_server(server.url)
    assert seen == [f"Bearer {TOKEN}", f"Bearer {TOKEN[::-1]}"]
    message = str(info.value)
    assert server.url in message and "\n" not in message and dicomweb.ENV_TOKEN in message
    captured = capsys.readouterr()
    for secret in (TOKEN, TOKEN[::-1]):
        assert secret not in message + caplog.text + captured.out + captured.err


@pytest.fixture
def tls_files(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the TLS test")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def test_tls_is_verified_and_a_ca_bundle_can_be_given(tls_files, monkeypatch, quick_retries):
    cert, key = tls_files
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    for name in (dicomweb.ENV_TOKEN, dicomweb.ENV_USER, dicomweb.ENV_PASSWORD, "REQUESTS_CA_BUNDLE",
                 "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    with _Server(lambda request: _json([]), tls=context) as server:
        with pytest.raises(dicomweb.DicomwebError, match="REQUESTS_CA_BUNDLE"):
            dicomweb.check_server(server.url)  # self-signed: refused by default
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        dicomweb.check_server(server.url)


def test_an_incomplete_retrieval_caches_nothing(tmp_path, monkeypatch):
    """The server lists three instances and sends two: an error, and no folder in the cache."""
    _need_series()
    study, series = generate_uid(), generate_uid()
    files = copy_series_with_uids(SERIES_DIR, tmp_path / "copy", study_uid=study, series_uid=series)[:3]
    listing = [{"00080018": {"vr": "UI", "Value": [pydicom.dcmread(f).SOPInstanceUID]}} for f in files]
    boundary = "hepatoplan-test-boundary"

    def routes(request):
        path, _, query = request.path.partition("?")
        if path.endswith("/instances"):
            return _json([] if "offset=3" in query else listing)
        body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + f.read_bytes()
                        + b"\r\n" for f in files[:2]) + f"--{boundary}--".encode()
        return 200, {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}, body

    for name in (dicomweb.ENV_TOKEN, dicomweb.ENV_USER, dicomweb.ENV_PASSWORD):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    with _Server(routes) as server:
        url = dicomweb.SeriesURL(server.url, study, series)
        with pytest.raises(dicomweb.DicomwebError, match="received 2 instances, the server lists 3"):
            dicomweb.retrieve_series(url, cache_dir=cache, progress=False)
        not_a_folder = tmp_path / "cache-file"
        not_a_folder.write_text("")
        with pytest.raises(InputError, match=f"cannot write there.*{dicomweb.ENV_CACHE}"):
            dicomweb.retrieve_series(url, cache_dir=not_a_folder, progress=False)
    assert list(cache.rglob("*")) == [cache / study]  # the study folder only: no series, no partial files


# --------------------------------------------------------------------------- a real Orthanc


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    _need_series()
    *_, reason = orthanc_or_skip()
    if reason:
        pytest.skip(reason)
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


def _masks(series: Path, folder: Path) -> dict[str, Path]:
    """Liver (TotalSegmentator's), octant segments and two spherical tumours on the series' grid."""
    from scipy import ndimage

    from hepatoplan.pipeline import io

    ct = io.read_image(series, name="CT")
    liver = io.read_labels(TOTALSEG, reference=ct, resample=True).array == 5
    centre = np.argwhere(liver).mean(axis=0)
    x, y, z = np.indices(liver.shape)
    right, anterior, superior = x >= centre[0], y >= centre[1], z >= centre[2]  # canonical RAS+
    octant = 4 * right + 2 * anterior + superior  # 0..7
    segments = (np.array([1, 2, 3, 4, 6, 7, 5, 8], np.uint8)[octant] * liver).astype(np.uint8)
    tumours = np.zeros(liver.shape, np.uint8)
    spacing = np.asarray(ct.spacing_mm)
    for tumour_id, segment, radius_mm in ((1, 6, 9.0), (2, 3, 6.0)):
        depth = ndimage.distance_transform_edt(segments == segment, sampling=spacing)
        centre_voxel = np.unravel_index(np.argmax(depth), depth.shape)
        d2 = sum(((axis - c) * s) ** 2 for axis, c, s in zip((x, y, z), centre_voxel, spacing))
        tumours[(d2 <= radius_mm ** 2) & liver] = tumour_id
    paths = {}
    for name, array in (("liver", liver.astype(np.uint8)), ("segments", segments), ("tumours", tumours)):
        paths[name] = io.write_labels(array, reference=ct, path=folder / f"{name}.nii.gz")
    return paths


@pytest.fixture(scope="module")
def masks(tmp_path_factory):
    _need_series()
    return _masks(SERIES_DIR, tmp_path_factory.mktemp("masks"))


@pytest.fixture(scope="module")
def cases(pacs, masks, tmp_path_factory):
    """Copies of the real series with fresh UIDs, uploaded: ``round`` (planned from its URL and
    stored back), ``nofor`` (no FrameOfReferenceUID), ``b`` (segment, cache, failures, a batch); and the masks."""
    root = tmp_path_factory.mktemp("series")
    out = {}
    for name in ("round", "nofor", "b"):
        study, series = generate_uid(), generate_uid()
        files = copy_series_with_uids(SERIES_DIR, root / name, study_uid=study, series_uid=series,
                                      frame_of_reference_uid=None if name == "nofor" else "keep")
        pacs.upload(files)
        out[name] = {"folder": root / name, "study": study,
                     "url": f"{pacs.dicomweb}/studies/{study}/series/{series}"}
    out["masks"] = masks
    return out


def _mask_args(masks):
    return ["--liver", str(masks["liver"]), "--segments", str(masks["segments"]), "--tumours", str(masks["tumours"])]


def _dciodvfy_errors(path: Path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]


@pytest.fixture(scope="module")
def round_trip(pacs, cases, tmp_path_factory):
    """``plan URL --store BASE`` on the ``round`` copy; its report and output folder."""
    out = tmp_path_factory.mktemp("round") / "plan"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(dicomweb.ENV_USER, USER)
        mp.setenv(dicomweb.ENV_PASSWORD, PASSWORD)
        mp.setenv(dicomweb.ENV_CACHE, str(out.parent / "cache"))
        mp.delenv(dicomweb.ENV_TOKEN, raising=False)
        status = main(["plan", cases["round"]["url"], "--out", str(out), *_mask_args(cases["masks"]), *PLAN_ARGS,
                       "--store", pacs.dicomweb])
    assert status == 0
    return json.loads((out / "report.json").read_text()), out


def test_round_trip_study_holds_ct_seg_and_sr(round_trip, pacs, cases, env):
    report, out = round_trip
    stored = report["dicomweb"]["stored"]
    assert report["dicomweb"]["source"] == cases["round"]["url"]
    assert stored["study_instance_uid"] == cases["round"]["study"]
    assert [i["modality"] for i in stored["instances"]] == ["SEG", "SR"]
    assert {"labels_seg.dcm", "measurements_sr.dcm"} <= set(report["outputs"])
    for item in stored["instances"]:
        ds = pydicom.dcmread(out / item["file"], stop_before_pixels=True)
        assert (ds.SOPInstanceUID, ds.SeriesInstanceUID) == (item["sop_instance_uid"], item["series_instance_uid"])
    # queried again, through DICOMweb (QIDO-RS) and through Orthanc's own index
    series = dicomweb.search_series(pacs.dicomweb, cases["round"]["study"])
    assert sorted(s["modality"] for s in series) == ["CT", "SEG", "SR"]
    assert pacs.study_modalities(cases["round"]["study"]) == ["CT", "SEG", "SR"]
    for path in out.rglob("*"):  # no credential in any output
        assert path.is_dir() or PASSWORD.encode() not in path.read_bytes(), path


def test_stored_seg_and_sr_pass_dciodvfy(round_trip, pacs, tmp_path):
    report, _ = round_trip
    for item in report["dicomweb"]["stored"]["instances"]:  # the copies Orthanc holds, not ours
        orthanc_id = pacs.rest("POST", "/tools/lookup", data=item["sop_instance_uid"]).json()[0]["ID"]
        path = tmp_path / item["file"]
        path.write_bytes(pacs.rest("GET", f"/instances/{orthanc_id}/file").content)
        assert _dciodvfy_errors(path) == [], item["file"]


def test_sr_reads_back_with_highdicom_and_references_the_seg_segments(round_trip):
    import highdicom as hd

    report, out = round_trip
    sr = hd.sr.srread(out / "measurements_sr.dcm")
    seg = pydicom.dcmread(out / "labels_seg.dcm", stop_before_pixels=True)
    segment_labels = {int(s.SegmentNumber): str(s.SegmentLabel) for s in seg.SegmentSequence}
    groups = {str(g.tracking_identifier): g for g in sr.content.get_volumetric_roi_measurement_groups()}
    volumes, resection = report["volumes_ml"], report["resection"]
    expected_ml = {"liver": volumes["liver"], "functional liver": volumes["functional_liver"],
                   **{f"segment {k}": v for k, v in volumes["segments"].items()},
                   **{f"tumour {k}": v for k, v in volumes["tumours"].items()},
                   "resected": resection["resected_ml"], "remnant": resection["remnant_ml"]}
    assert set(groups) == set(expected_ml)
    for key, group in groups.items():
        reference = group.referenced_segment
        assert reference.referenced_sop_instance_uid == seg.SOPInstanceUID
        (number,) = reference.referenced_segment_numbers
        label = segment_labels[number]
        # measured on its own region, or on the plan label that is exactly that region
        assert label == key or label.startswith(key + " ") or (key, label) == ("functional liver", "liver")
        (volume,) = group.get_measurements(name=pydicom.sr.codedict.codes.SCT.Volume)
        assert volume.value == expected_ml[key] and volume.unit.value == "mL"
    remnant = groups["remnant"]
    by_code = {m.name.value: m.value for m in remnant.get_measurements()}
    assert by_code["FLR"] == resection["flr_percent"]  # the FLR equals report.json's
    assert by_code["SFLR"] == report["assessment"]["sflr_percent"]
    assert by_code["FLRMIN"] == report["assessment"]["threshold_percent"]
    texts = [item.TextValue for item in remnant[0].ContentSequence if item.ValueType == "TEXT"]
    assert report["assessment"]["verdict"] in texts
    assert segment_labels[groups["segment 3"].referenced_segment.referenced_segment_numbers[0]] == "segment 3"


def test_file_based_plan_of_the_same_series_gives_the_same_numbers(round_trip, cases, tmp_path):
    report, _ = round_trip
    assert main(["plan", str(cases["round"]["folder"]), "--out", str(tmp_path / "file"),
                 *_mask_args(cases["masks"]), *PLAN_ARGS]) == 0
    local = json.loads((tmp_path / "file" / "report.json").read_text())
    for key in ("volumes_ml", "resection", "assessment", "geometry"):
        assert local[key] == report[key], key
    assert "dicomweb" not in local and (tmp_path / "file" / "measurements_sr.dcm").is_file()


def test_series_without_uids_gets_a_valid_sr(masks, tmp_path):
    """The real series as it is (empty Study/Series UIDs): the SR is written with derived UIDs,
    validates, and report.json says which UIDs were derived."""
    out = tmp_path / "plan"
    assert main(["plan", str(SERIES_DIR), "--out", str(out), *_mask_args(masks), *PLAN_ARGS]) == 0
    report = json.loads((out / "report.json").read_text())
    assert _dciodvfy_errors(out / "measurements_sr.dcm") == []
    assert "measurements_sr.dcm" in report["outputs"]
    assert any("derived" in w for w in report["warnings"])


def test_round_trip_without_frame_of_reference(pacs, cases, env, tmp_path):
    out = tmp_path / "plan"
    assert main(["plan", cases["nofor"]["url"], "--out", str(out), *_mask_args(cases["masks"]), *PLAN_ARGS,
                 "--store", pacs.dicomweb]) == 0
    assert pacs.study_modalities(cases["nofor"]["study"]) == ["CT", "SEG", "SR"]
    for name in ("labels_seg.dcm", "measurements_sr.dcm"):
        assert _dciodvfy_errors(out / name) == [], name


def test_segment_accepts_a_series_url(pacs, cases, env, tmp_path):
    assert main(["segment", cases["b"]["url"], "--out", str(tmp_path / "seg")]) == 0
    record = json.loads((tmp_path / "seg" / "segmentation.json").read_text())
    assert record["inputs"]["image"]["url"] == cases["b"]["url"]
    assert Path(record["inputs"]["image"]["path"]).parent.parent == tmp_path / "cache"
    assert record["liver"]["liver_volume_ml"] > 300


def test_a_cached_series_is_read_without_asking_the_server(pacs, cases, env, tmp_path):
    url = dicomweb.parse_series_url(cases["b"]["url"])
    folder = dicomweb.retrieve_series(url, progress=False)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f"{pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID}.dcm" for f in cases["b"]["folder"].iterdir())
    dead = dicomweb.SeriesURL(f"http://127.0.0.1:{free_port()}/dicom-web", url.study_uid, url.series_uid)
    assert dicomweb.retrieve_series(dead) == folder


@pytest.mark.parametrize("failure", ["pacs down", "unknown study", "wrong credentials", "store to a down pacs"])
def test_server_failures_exit_2_with_one_line_nothing_stored_no_secret(failure, pacs, cases, env, tmp_path,
                                                                       capsys, caplog, quick_retries):
    caplog.set_level(logging.DEBUG)  # every library's log, dicomweb-client's and urllib3's included
    down = f"http://127.0.0.1:{free_port()}/dicom-web"
    url, store = cases["b"]["url"], pacs.dicomweb
    if failure == "pacs down":
        url = url.replace(pacs.dicomweb, down)
    elif failure == "unknown study":
        url = url.replace(cases["b"]["study"], generate_uid())
    elif failure == "wrong credentials":
        env.setenv(dicomweb.ENV_PASSWORD, WRONG_PASSWORD)
    else:
        store = down
    before = pacs.instance_count()
    out = tmp_path / "plan"
    status = main(["plan", url, "--out", str(out), *_mask_args(cases["masks"]), *PLAN_ARGS, "--store", store])
    captured = capsys.readouterr()
    assert status == 2
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("hepatoplan: error: DICOMweb")
    assert (down if "down" in failure else pacs.dicomweb) in line
    assert {"pacs down": "cannot connect", "store to a down pacs": "cannot connect",
            "unknown study": "no instance", "wrong credentials": "HTTP 401"}[failure] in line
    assert pacs.instance_count() == before and not out.exists()
    assert not list((tmp_path / "cache").rglob("*.dcm"))
    for secret in (PASSWORD, WRONG_PASSWORD):
        assert secret not in captured.out + captured.err + caplog.text
    if "down" in failure:  # the refused connection was tried max_attempts times in all
        tries = [url for url in quick_retries if url.startswith(down)]
        assert len(tries) == dicomweb.DEFAULT_PARAMS.max_attempts, quick_retries


def test_batch_of_two_urls_one_unknown(pacs, cases, env, tmp_path):
    """The unknown series fails alone: the batch plans the other and stores its SEG and SR."""
    unknown = cases["b"]["url"].replace(cases["b"]["study"], generate_uid())
    masks = cases["masks"]
    rows = ["id,ct,liver,segments,tumours,resect"] + [
        f"{sid},{url},{masks['liver']},{masks['segments']},{masks['tumours']},right-hepatectomy"
        for sid, url in (("missing", unknown), ("b", cases["b"]["url"]))]
    manifest = tmp_path / "cohort_in.csv"
    manifest.write_text("\n".join(rows) + "\n")
    out = tmp_path / "batch"
    status = main(["batch", str(manifest), "--out", str(out), "--workers", "1", "--no-preview",
                   "--store", pacs.dicomweb])
    assert status == 1
    cohort = (out / "cohort.csv").read_text().splitlines()
    status_of = {line.split(",")[0]: line.split(",")[1] for line in cohort[1:]}
    assert status_of == {"missing": "failed", "b": "ok"}
    error = (out / "missing" / "error.txt").read_text()
    assert unknown in error and PASSWORD not in error
    for sid in ("b",):
        report = json.loads((out / sid / "report.json").read_text())
        assert report["dicomweb"]["stored"]["study_instance_uid"] == cases[sid]["study"]
        assert pacs.study_modalities(cases[sid]["study"]) == ["CT", "SEG", "SR"]
    assert not (out / "missing" / "report.json").exists()
    for path in out.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path
