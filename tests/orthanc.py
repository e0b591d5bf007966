"""A real PACS for the DICOMweb tests: Orthanc with its DICOMweb plugin on a free localhost port.

:func:`start_orthanc` writes a configuration into a temporary folder (storage, index and log
there too), starts ``Orthanc`` on ``127.0.0.1`` with HTTP basic authentication, waits until its
REST API answers and returns an :class:`Orthanc`; :meth:`Orthanc.stop` ends that process (by its
own id) and waits for it. :func:`orthanc_or_skip` gives the reason to skip where Orthanc or the
plugin is not installed (Debian: ``apt-get install orthanc orthanc-dicomweb``; ``.ci/run`` does).

:func:`copy_series_with_uids` makes the uploadable copy of a series: the real contrast series in
``../shared/data`` has empty StudyInstanceUID/SeriesInstanceUID (and SOPInstanceUIDs only in its
file meta), which Orthanc refuses, as anonymised exports often are.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ORTHANC_CANDIDATES = ("Orthanc", "/usr/sbin/Orthanc")
PLUGIN_CANDIDATES = ("/usr/share/orthanc/plugins/libOrthancDicomWeb.so",
                     "/usr/lib/orthanc/libOrthancDicomWeb.so")
USER, PASSWORD = "surgeon", "s3cret-Pw-4-tests"


def orthanc_or_skip() -> tuple[str | None, str | None, str]:
    """(Orthanc executable, DICOMweb plugin, reason when either is missing)."""
    exe = next((shutil.which(c) for c in ORTHANC_CANDIDATES if shutil.which(c)), None)
    plugin = next((p for p in PLUGIN_CANDIDATES if Path(p).exists()), None)
    reason = "" if exe and plugin else (
        "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb; "
        f"found Orthanc: {exe}, plugin: {plugin})")
    return exe, plugin, reason


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Orthanc:
    """A running Orthanc: its REST root ``url``, DICOMweb root ``dicomweb``, process and folder."""

    url: str
    dicomweb: str
    process: subprocess.Popen
    folder: Path

    def rest(self, method: str, path: str, **kwargs) -> requests.Response:
        response = requests.request(method, f"{self.url}{path}", auth=(USER, PASSWORD), timeout=30, **kwargs)
        response.raise_for_status()
        return response

    def upload(self, files) -> None:
        """Store DICOM files through the REST API (not DICOMweb: what is tested is ours)."""
        for f in files:
            self.rest("POST", "/instances", data=Path(f).read_bytes())

    def study_modalities(self, study_uid: str) -> list[str]:
        """Modality of each series of a study, sorted (Orthanc's own index, not DICOMweb)."""
        found = self.rest("POST", "/tools/lookup", data=study_uid).json()
        if not found:
            return []
        series = self.rest("GET", f"/studies/{found[0]['ID']}/series").json()
        return sorted(s["MainDicomTags"].get("Modality", "") for s in series)

    def instance_count(self) -> int:
        return int(self.rest("GET", "/statistics").json()["CountInstances"])

    def log_text(self) -> str:
        return (self.folder / "orthanc.log").read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_orthanc(folder: Path, *, timeout_s: float = 30.0) -> Orthanc:
    """Start Orthanc with DICOMweb and basic authentication (``USER``/``PASSWORD``) in ``folder``."""
    exe, plugin, reason = orthanc_or_skip()
    if reason:
        raise RuntimeError(reason)
    folder.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # a port taken between free_port() and Orthanc's bind: try another
        port = free_port()
        config = {
            "Name": "hepatoplan-test", "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"), "HttpPort": port, "DicomServerEnabled": False,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD}, "Plugins": [plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
        with open(folder / "orthanc.log", "w") as log:
            process = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL)
        server = Orthanc(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/dicom-web", process, folder)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if requests.get(f"{server.url}/system", auth=(USER, PASSWORD), timeout=2).ok:
                    return server
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        server.stop()
    raise RuntimeError(f"Orthanc did not start; its log:\n{server.log_text()[-2000:]}")


def copy_series_with_uids(source: Path, target: Path, *, study_uid: str, series_uid: str,
                          frame_of_reference_uid: str | None = "keep") -> list[Path]:
    """Copy a DICOM series with the given Study/Series UIDs and fresh SOP Instance UIDs.

    ``frame_of_reference_uid``: ``"keep"`` the source's, ``None`` to delete the attribute (an
    anonymised series without one), or a UID to set.
    """
    import pydicom
    from pydicom.uid import generate_uid

    target.mkdir(parents=True, exist_ok=True)
    written = []
    for f in sorted(p for p in source.iterdir() if p.is_file()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if frame_of_reference_uid is None:
            ds.pop("FrameOfReferenceUID", None)
        elif frame_of_reference_uid != "keep":
            ds.FrameOfReferenceUID = frame_of_reference_uid
        path = target / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        written.append(path)
    return written
