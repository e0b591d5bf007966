"""DICOMweb: plan from a PACS series and store the results back (QIDO-RS, WADO-RS, STOW-RS).

A CT argument may be a DICOMweb **series URL**,
``http(s)://HOST[:PORT]/PREFIX/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}``
(what OHIF, Orthanc Explorer 2 or a QIDO answer show); ``PREFIX`` is the server's DICOMweb root
(Orthanc ``/dicom-web``, dcm4chee ``/dcm4chee-arc/aets/DCM4CHEE/rs``). :func:`retrieve_series`
retrieves it with WADO-RS (``dicomweb-client``) in the transfer syntax the server stores, with a
progress bar on stderr, into a cache folder, and returns that folder: the usual DICOM checks of
:func:`hepatoplan.pipeline.io.read_image` then apply as to any folder. :func:`store_instances`
sends the plan's DICOM-SEG and SR back with STOW-RS (``--store BASE_URL``).

Cache
    ``$HEPATOPLAN_DICOMWEB_CACHE``, else ``$XDG_CACHE_HOME/hepatoplan/dicomweb``, else
    ``~/.cache/hepatoplan/dicomweb``; one folder per series, ``STUDY_UID/SERIES_UID/``, holding
    ``SOP_INSTANCE_UID.dcm`` files. A series is retrieved into a temporary sibling folder and
    renamed into place only once every instance the server lists (QIDO-RS) has arrived, so a
    folder in the cache is complete (one rename of the whole folder: :mod:`hepatoplan.pipeline.outputs`
    moves files into a folder one by one, which would show a partial series); a later plan of the
    same series reads it without asking the server again (UIDs name immutable data). Delete the
    folder to retrieve it anew.

Authentication
    From the environment, never from the command line or the URL (a URL holding ``user:password@``
    is refused): ``HEPATOPLAN_DICOMWEB_TOKEN`` (sent as ``Authorization: Bearer TOKEN``) or
    ``HEPATOPLAN_DICOMWEB_USER`` and ``HEPATOPLAN_DICOMWEB_PASSWORD`` (HTTP basic). The values are
    never printed, logged or written to any output.

TLS
    Certificates are verified (``requests``' default, its ``certifi`` bundle). A hospital CA is
    given with the standard ``REQUESTS_CA_BUNDLE=/path/to/ca.pem``; there is no switch that turns
    verification off.

Timeouts and retries
    :class:`DicomwebParams`: each request waits at most ``connect_timeout_s`` to connect and
    ``read_timeout_s`` between bytes; a refused or timed-out connection and the answers 408, 429,
    502, 503 and 504 are retried ``max_attempts`` times in all, waiting 1 s, then 2 s, ...
    Any other failure is a :class:`DicomwebError`: one line naming the transaction and the URL
    (never a credential), what went wrong and what to do; the CLI exits with status 2.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence
from urllib.parse import urlsplit

from hepatoplan.errors import HepatoplanError, InputError

log = logging.getLogger(__name__)

ENV_TOKEN = "HEPATOPLAN_DICOMWEB_TOKEN"
ENV_USER = "HEPATOPLAN_DICOMWEB_USER"
ENV_PASSWORD = "HEPATOPLAN_DICOMWEB_PASSWORD"
ENV_CACHE = "HEPATOPLAN_DICOMWEB_CACHE"

#: A DICOM UID: dot-separated numbers, at most 64 characters (PS3.5 9.1).
_UID = r"[0-9]+(?:\.[0-9]+)*"
_SERIES_PATH = re.compile(rf"^(?P<prefix>.*?)/studies/(?P<study>{_UID})/series/(?P<series>{_UID})/?$")


class DicomwebError(HepatoplanError, ConnectionError):
    """A DICOMweb server could not be reached, refused a request or answered unexpectedly."""


@dataclass(frozen=True)
class DicomwebParams:
    """Timeouts and retries of every DICOMweb request.

    Engineering choices, not tuned on data: a PACS on a hospital network answers a QIDO query
    in well under a second and streams a CT series at tens of MB/s, so these bounds only stop a
    dead or overloaded server from hanging a plan. The worst case of one request is
    ``max_attempts * (connect_timeout_s + read_timeout_s)`` plus the waits between attempts
    (``retry_wait_s``, doubling: 1 s + 2 s with the defaults).

    Attributes
    ----------
    connect_timeout_s : float
        Seconds to wait for a TCP/TLS connection.
    read_timeout_s : float
        Seconds to wait for the next bytes of an answer (not for the whole answer).
    max_attempts : int
        Attempts per request, the first included, for refused or timed-out connections and
        the transient answers in ``retry_status_codes``.
    retry_wait_s : float
        Wait before the second attempt; doubled before each further one.
    retry_status_codes : tuple of int
        HTTP answers worth another attempt (request timeout, too many requests, bad gateway,
        service unavailable, gateway timeout).
    """

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    max_attempts: int = 3
    retry_wait_s: float = 1.0
    retry_status_codes: tuple[int, ...] = (408, 429, 502, 503, 504)


DEFAULT_PARAMS = DicomwebParams()


@dataclass(frozen=True)
class SeriesURL:
    """A DICOMweb series: the server's DICOMweb root and the two UIDs naming the series."""

    base_url: str
    study_uid: str
    series_uid: str

    def __str__(self) -> str:
        return f"{self.base_url}/studies/{self.study_uid}/series/{self.series_uid}"


def is_url(value) -> bool:
    """Whether a CT argument is an ``http(s)://`` URL rather than a path."""
    return isinstance(value, (str, SeriesURL)) and str(value).lower().startswith(("http://", "https://"))


def parse_base_url(text: str, *, flag: str = "--store") -> str:
    """Check a DICOMweb root URL (``http(s)://HOST[:PORT][/PREFIX]``); return it without a final ``/``.

    Raises
    ------
    InputError
        Not http(s), no host, a query or fragment, or credentials in the URL (they belong in
        the environment variables, where they are never echoed).
    """
    parts = urlsplit(text.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(f"{flag} {_redact(text)}: expected a DICOMweb URL http(s)://HOST[:PORT]/PREFIX")
    if parts.username is not None or parts.password is not None:
        raise InputError(
            f"{flag} {_redact(text)}: credentials are not accepted in a URL (they would be shown in "
            f"logs and reports); set {ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN}, instead")
    if parts.query or parts.fragment:
        raise InputError(f"{flag} {_redact(text)}: a DICOMweb URL takes no '?query' or '#fragment'; remove it")
    try:
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise InputError(f"{flag} {_redact(text)}: the port is not a number") from None
    return text.strip().rstrip("/")


def parse_series_url(text: str, *, flag: str = "CT") -> SeriesURL:
    """Parse ``http(s)://HOST/PREFIX/studies/{StudyInstanceUID}/series/{SeriesInstanceUID}``.

    Raises
    ------
    InputError
        As :func:`parse_base_url`, or the path does not end in ``/studies/UID/series/UID``.
    """
    base = parse_base_url(text, flag=flag)
    scheme_host = f"{urlsplit(base).scheme}://{urlsplit(base).netloc}"
    match = _SERIES_PATH.match(base[len(scheme_host):])
    if match is None or max(len(match["study"]), len(match["series"])) > 64:
        raise InputError(
            f"{flag} {base}: expected a DICOMweb series URL ending in "
            "/studies/{StudyInstanceUID}/series/{SeriesInstanceUID} (UIDs are digits and dots, "
            "at most 64 characters)")
    return SeriesURL(scheme_host + match["prefix"], match["study"], match["series"])


def ct_argument(text: str):
    """argparse type of a CT argument: a :class:`SeriesURL` for a URL, else a :class:`Path`."""
    return parse_series_url(text) if is_url(text) else Path(text)


def cache_root() -> Path:
    """The cache folder (see the module docstring)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "hepatoplan" / "dicomweb"


def retrieve_series(url: SeriesURL, *, cache_dir: str | Path | None = None, progress: bool | None = None,
                    params: DicomwebParams = DEFAULT_PARAMS) -> Path:
    """The local folder holding the series at ``url``, retrieved with WADO-RS unless cached.

    Parameters
    ----------
    url : SeriesURL
    cache_dir : path, optional
        Cache folder (default :func:`cache_root`).
    progress : bool, optional
        Show a progress bar on stderr (default: when stderr is a terminal).
    params : DicomwebParams

    Returns
    -------
    Path
        ``CACHE/STUDY_UID/SERIES_UID``, complete.

    Raises
    ------
    DicomwebError
        The server is unreachable, refuses the credentials, does not know the series, or sends
        fewer instances than it lists or instances of another series; nothing is cached then.
    """
    from tqdm import tqdm

    folder = Path(cache_dir or cache_root()) / url.study_uid / url.series_uid
    if folder.is_dir():
        log.info("DICOMweb series %s: cached in %s", url, folder)
        return folder
    client = _client(url.base_url, params)
    with _errors("QIDO-RS search for the instances of", url, params):
        listed = client.search_for_instances(url.study_uid, url.series_uid, fields=["SOPInstanceUID"],
                                             get_remaining=True)
    if not listed:
        raise DicomwebError(
            f"DICOMweb series {url}: the server lists no instance of this series; check the "
            "StudyInstanceUID and SeriesInstanceUID (the server's QIDO-RS /studies/UID/series answers "
            "which series it has)")
    with _cache_errors(folder.parent):
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=f".{url.series_uid}.", dir=folder.parent))
    try:
        with _errors("WADO-RS retrieval of", url, params), tqdm(
                total=len(listed), desc="retrieving series", unit="image", leave=False,
                disable=None if progress is None else not progress) as bar:  # None: when a terminal
            # the server's stored transfer syntax ("*"): asking for another one makes a server
            # transcode, which Orthanc refuses for JPEG 2000 (HTTP 500)
            for ds in client.iter_series(url.study_uid, url.series_uid,
                                         media_types=(("application/dicom", "*"),)):
                _save_instance(ds, partial, url)
                bar.update(1)
        received = len(list(partial.glob("*.dcm")))
        if received != len(listed):
            raise DicomwebError(
                f"DICOMweb series {url}: received {received} instances, the server lists "
                f"{len(listed)}; retry later (nothing was cached)")
        try:
            partial.rename(folder)
        except OSError:
            if not folder.is_dir():  # not simply another process that cached it first
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log.info("DICOMweb series %s: %d instances cached in %s", url, len(listed), folder)
    return folder


def _save_instance(ds, folder: Path, url: SeriesURL) -> None:
    uid = str(ds.get("SOPInstanceUID", ""))
    if not re.fullmatch(_UID, uid) or len(uid) > 64:
        raise DicomwebError(f"DICOMweb series {url}: the server sent an instance whose SOPInstanceUID "
                            f"{uid[:70]!r} is not a valid UID")
    if str(ds.get("SeriesInstanceUID", "")) != url.series_uid:
        raise DicomwebError(f"DICOMweb series {url}: the server sent instance {uid} of another series "
                            f"({ds.get('SeriesInstanceUID', '')})")
    with _cache_errors(folder.parent):
        ds.save_as(folder / f"{uid}.dcm", enforce_file_format=True)


@contextmanager
def _cache_errors(folder: Path):
    try:
        yield
    except OSError as exc:
        raise InputError(f"DICOMweb cache {folder}: cannot write there ({exc.strerror or exc}); set "
                         f"{ENV_CACHE} to a writable folder with room for the series") from None


def check_server(base_url: str, *, params: DicomwebParams = DEFAULT_PARAMS) -> None:
    """Ask the server one cheap question (QIDO-RS, one study) to check it answers and accepts us.

    Raises
    ------
    DicomwebError
        Unreachable, credentials refused, or not a DICOMweb server.
    """
    with _errors("QIDO-RS query of", f"{base_url}/studies", params):
        _client(base_url, params).search_for_studies(limit=1)


def store_instances(base_url: str, files: Sequence[str | Path], *,
                    params: DicomwebParams = DEFAULT_PARAMS) -> list[dict]:
    """Store DICOM files of one study with STOW-RS (into ``/studies/{StudyInstanceUID}``).

    Parameters
    ----------
    base_url : str
        The DICOMweb root (checked by :func:`parse_base_url`).
    files : sequence of path
        DICOM files sharing one StudyInstanceUID.

    Returns
    -------
    list of dict
        Per file: ``file`` (its name), ``modality``, ``sop_class_uid``, ``sop_instance_uid``,
        ``series_instance_uid``, ``study_instance_uid``.

    Raises
    ------
    InputError
        The files do not share one non-empty StudyInstanceUID.
    DicomwebError
        The server refused the request or any instance.
    """
    import pydicom

    datasets = [pydicom.dcmread(f) for f in files]
    studies = {str(ds.get("StudyInstanceUID", "")) for ds in datasets}
    if len(studies) != 1 or not next(iter(studies)):
        raise InputError(f"--store: the files {[Path(f).name for f in files]} must share one non-empty "
                         f"StudyInstanceUID, found {sorted(studies)}")
    study_uid = studies.pop()
    url = f"{base_url}/studies/{study_uid}"
    with _errors("STOW-RS store into", url, params):
        answer = _client(base_url, params).store_instances(datasets, study_instance_uid=study_uid)
    failed = [str(item.get("ReferencedSOPInstanceUID", "")) for item in answer.get("FailedSOPSequence", [])]
    stored = {str(item.get("ReferencedSOPInstanceUID", "")) for item in answer.get("ReferencedSOPSequence", [])}
    missing = [str(ds.SOPInstanceUID) for ds in datasets if str(ds.SOPInstanceUID) not in stored]
    if failed or missing:
        raise DicomwebError(f"DICOMweb STOW-RS store into {url}: the server refused instance(s) "
                            f"{', '.join(failed or missing)}; see the server's log")
    log.info("stored %d instance(s) into %s", len(datasets), url)
    return [{"file": Path(f).name, "modality": str(ds.get("Modality", "")),
             "sop_class_uid": str(ds.SOPClassUID), "sop_instance_uid": str(ds.SOPInstanceUID),
             "series_instance_uid": str(ds.SeriesInstanceUID), "study_instance_uid": study_uid}
            for f, ds in zip(files, datasets)]


def search_series(base_url: str, study_uid: str, *, params: DicomwebParams = DEFAULT_PARAMS) -> list[dict]:
    """The series of a study (QIDO-RS): ``series_instance_uid``, ``modality``, ``instances`` each."""
    with _errors("QIDO-RS search for the series of", f"{base_url}/studies/{study_uid}", params):
        found = _client(base_url, params).search_for_series(
            study_uid, fields=["Modality", "NumberOfSeriesRelatedInstances"])

    def value(item, tag):
        return (item.get(tag, {}).get("Value") or [None])[0]

    return [{"series_instance_uid": value(s, "0020000E"), "modality": value(s, "00080060"),
             "instances": value(s, "00201209")} for s in found]


# --------------------------------------------------------------------------- client and errors


def _credentials() -> tuple[str | None, tuple[str, str] | None]:
    """(bearer token, (user, password)) from the environment; at most one of them."""
    token = os.environ.get(ENV_TOKEN) or None
    user, password = os.environ.get(ENV_USER) or None, os.environ.get(ENV_PASSWORD)
    if token and user:
        raise InputError(f"both {ENV_TOKEN} and {ENV_USER} are set: keep the one your server expects")
    if (user is None) != (password is None):
        raise InputError(f"set both {ENV_USER} and {ENV_PASSWORD} (HTTP basic authentication), or neither")
    return token, (user, password) if user else None


def _client(base_url: str, params: DicomwebParams):
    import requests
    from dicomweb_client import DICOMwebClient

    token, basic = _credentials()
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    session.auth = basic
    client = DICOMwebClient(base_url, session=session,
                            timeout=(params.connect_timeout_s, params.read_timeout_s))
    client.set_http_retry_params(
        retry=True, max_attempts=params.max_attempts,
        # dicomweb-client waits multiplier * 2**attempt ms: 1 s, 2 s, ... for retry_wait_s = 1
        wait_exponential_multiplier=int(params.retry_wait_s * 1000 / 2),
        retriable_error_codes=params.retry_status_codes,
    )
    return client


def _redact(url: str) -> str:
    """``url`` without any ``user:password@``."""
    parts = urlsplit(url.strip())
    if parts.username is None and parts.password is None:
        return url.strip()
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


_HTTP_ADVICE = {
    400: "the server rejected the request as malformed",
    401: f"authentication required or refused: set {ENV_USER} and {ENV_PASSWORD}, or {ENV_TOKEN}",
    403: "these credentials may not do this on the server (ask its administrator for the right)",
    404: "not found: check the UIDs and the DICOMweb root of the URL (e.g. .../dicom-web)",
    409: "the server refused the instances (a conflict with what it stores)",
    413: "the request is too large for the server",
    415: "the server does not accept this media type (is this a DICOMweb root?)",
}


@contextmanager
def _errors(action: str, url, params: DicomwebParams):
    """Turn the failures of one DICOMweb transaction into a one-line :class:`DicomwebError`."""
    import requests
    from pydicom.errors import InvalidDicomError

    where = f"DICOMweb {action} {url}"
    try:
        yield
    except requests.HTTPError as exc:
        status = exc.response.status_code if exc.response is not None else None
        advice = _HTTP_ADVICE.get(status) or (
            "server error: see the server's log, or retry later" if status and status >= 500 else "")
        raise DicomwebError(f"{where}: HTTP {status} {getattr(exc.response, 'reason', '')}: {advice}"
                            .rstrip(": ")) from None
    except requests.exceptions.SSLError:
        raise DicomwebError(f"{where}: TLS certificate verification failed; give your hospital's CA "
                            "bundle with REQUESTS_CA_BUNDLE=/path/to/ca.pem") from None
    except requests.Timeout:
        raise DicomwebError(f"{where}: no answer within the timeout after "
                            f"{params.max_attempts} attempts; is the server overloaded?") from None
    except requests.ConnectionError:
        host = urlsplit(str(url)).netloc
        raise DicomwebError(f"{where}: cannot connect to {host} (refused or unreachable after "
                            f"{params.max_attempts} attempts); is the server running there?") from None
    except requests.RequestException as exc:  # e.g. the connection broke in the middle of an answer
        raise DicomwebError(f"{where}: the transfer failed ({type(exc).__name__}); retry later") from None
    except (ValueError, KeyError, InvalidDicomError) as exc:
        if isinstance(exc, HepatoplanError):
            raise
        raise DicomwebError(f"{where}: unexpected answer ({type(exc).__name__}: {str(exc)[:200]}); is "
                            "this the server's DICOMweb root?") from None


# --------------------------------------------------------------------------- plan integration


def prepare(options):
    """Check ``options.store``'s server and retrieve a URL CT, before any work.

    Parameters
    ----------
    options : hepatoplan.pipeline.study.PlanOptions

    Returns
    -------
    (PlanOptions, dict)
        The options with ``ct`` a local path (the cache folder for a URL), and the report's
        ``dicomweb`` section (``source`` URL and ``cache`` folder when retrieved; empty otherwise).

    Raises
    ------
    InputError
        ``--store`` with a CT that is not a DICOM series.
    DicomwebError
        A server is unreachable, refuses the credentials or lacks the series.
    """
    from dataclasses import replace

    section: dict = {}
    if options.store:
        options = replace(options, store=parse_base_url(options.store))
        if not isinstance(options.ct, SeriesURL) and not Path(options.ct).is_dir():
            raise InputError(f"--store {options.store}: the CT {options.ct} is not a DICOM series; the DICOM-SEG "
                             "and SR reference the source images, so give a DICOM folder or a DICOMweb series URL")
        check_server(options.store)
    if isinstance(options.ct, SeriesURL):
        folder = retrieve_series(options.ct)
        section = {"source": str(options.ct), "cache": str(folder)}
        options = replace(options, ct=folder)
    return options, section


def store_outputs(base_url: str, folder: Path, files=("labels_seg.dcm", "measurements_sr.dcm")) -> dict:
    """STOW-RS the plan's DICOM outputs in ``folder`` into their study; the report's ``stored`` section.

    Raises
    ------
    InputError
        A file is missing (the DICOM-SEG or the SR could not be made: the report's warnings say why).
    DicomwebError
        The server refused them.
    """
    missing = [name for name in files if not (Path(folder) / name).is_file()]
    if missing:
        raise InputError(f"--store {base_url}: {', '.join(missing)} could not be written for this plan "
                         "(rerun without --store and see the warnings in report.json), so nothing was stored")
    instances = store_instances(base_url, [Path(folder) / name for name in files])
    return {"url": base_url, "study_instance_uid": instances[0]["study_instance_uid"], "instances": instances}
