"""``report.pdf``: the report on A4 pages, printed by headless Chromium.

The PDF is the HTML report's print layout (``@media print`` in ``pipeline/assets/report.css``:
A4, the interactive viewers left out, the QC montage and the previews in their place), printed
with Chromium's ``--print-to-pdf``. So the PDF and a report printed from any browser show the
same pages, and tables, text and images need no second layout engine. Chromium is a system
package (Debian ``chromium-headless-shell`` or ``chromium``) that a user's machine may lack: :func:`find_chromium` returns
``None`` then, and ``plan`` writes no PDF and says so in ``report.json``'s warnings (printing
``report.html`` from a browser gives the same pages). ``HEPATOPLAN_CHROMIUM`` names the browser
executable when it is not on the ``PATH`` under a usual name (e.g. Google Chrome on macOS).

Chromium's start-up takes 1-2 s of wall time; ``plan`` therefore starts a :class:`Browser` at its
beginning (headless, driven over the DevTools protocol on a pipe), and :class:`PdfPrint` has it
load the print page and print it (``Page.printToPDF`` with the page's CSS size, backgrounds, no
header or footer: the same pages as ``--print-to-pdf``) when the page is ready. Without a
started browser, or when it fails, :class:`PdfPrint` runs one ``--print-to-pdf`` as before.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from concurrent.futures import Future
from contextlib import ExitStack
from pathlib import Path
from typing import Sequence

from hepatoplan.errors import NotComputableError

from .outputs import atomic_file

log = logging.getLogger(__name__)

#: Executable names tried, in order, on the PATH. Chromium's old headless mode first (Debian
#: ``chromium-headless-shell``, Google's ``chrome-headless-shell``: the same Blink and Skia without
#: the browser's UI): it prints the same pages, pixel for pixel, with ~0.4 s less CPU per plan
#: (0.98 -> 0.58 s for IRCADb 01's report.pdf, bench/RESULTS.md "twelfth stop").
CHROMIUM_NAMES = ("chromium-headless-shell", "chrome-headless-shell", "chromium", "chromium-browser",
                  "google-chrome", "google-chrome-stable", "chrome")
#: Environment variable naming the browser executable explicitly.
CHROMIUM_ENV = "HEPATOPLAN_CHROMIUM"
#: Flags of a quiet, private headless run (no sandbox: it may run as root in containers). Chromium
#: 156 builds its address bar's two WebUI popups at start-up, headless too (a renderer process of
#: their own, ~0.6 s of Chromium's CPU; no page needs them): ``--disable-features`` leaves them out; one
#: renderer process for every page (the start-up tab's and the printed one's). Together ~0.85 s
#: less of Chromium's CPU per plan (bench/RESULTS.md, "eleventh stop"). Features a version does
#: not know are ignored.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio", "--renderer-process-limit=1",
                  "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup")


#: Where Chromium's profile and the print page go when it is a writable folder (a RAM file system
#: on Linux): the profile's ~130 files (SQLite databases, caches) are removed at the end of every
#: plan: ``Browser.close`` took 0.47 s of wall time with them on an ext4 disk mounted with
#: ``discard``, 0.10 s there (bench/RESULTS.md, "eleventh stop"); elsewhere the system's temporary folder.
SCRATCH_PARENT = "/dev/shm"
SCRATCH_MIN_FREE_BYTES = 256 << 20  # a profile and a print page take ~5-20 MB; room for the fonts' caches and more


def scratch_folder(prefix: str) -> tempfile.TemporaryDirectory:
    """A new, empty temporary folder for Chromium's files (:data:`SCRATCH_PARENT` if usable),
    removed by its ``cleanup`` (errors ignored: never fails a plan). A RAM folder with less than
    :data:`SCRATCH_MIN_FREE_BYTES` free is passed over: a full ``/dev/shm`` would cost the PDF."""
    usable = os.path.isdir(SCRATCH_PARENT) and os.access(SCRATCH_PARENT, os.W_OK | os.X_OK)
    parent = SCRATCH_PARENT if usable and shutil.disk_usage(SCRATCH_PARENT).free >= SCRATCH_MIN_FREE_BYTES else None
    return tempfile.TemporaryDirectory(prefix=prefix, dir=parent, ignore_cleanup_errors=True)


def find_chromium() -> str | None:
    """The headless browser to print with: ``$HEPATOPLAN_CHROMIUM``, else the first of
    :data:`CHROMIUM_NAMES` on the PATH; ``None`` when there is none."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


class Browser:
    """Headless Chromium started ahead and driven over the DevTools protocol (``--remote-debugging-pipe``:
    JSON messages ending in a NUL byte, commands on the browser's fd 3, answers on its fd 4), to
    print pages later without its start-up time (:meth:`print_page`); a context manager that
    closes it.

    Parameters
    ----------
    chromium : str, optional
        Browser executable; default :func:`find_chromium`.
    flags : sequence of str
        Command-line flags; default :data:`CHROMIUM_FLAGS`.

    Raises
    ------
    NotComputableError
        No browser, or it could not be started.
    """

    def __init__(self, chromium: str | None = None, flags: Sequence[str] = CHROMIUM_FLAGS) -> None:
        self.chromium = chromium or find_chromium()
        bash = shutil.which("bash")  # hands the pipes to the browser as its fds 3 and 4
        if self.chromium is None or bash is None:
            raise NotComputableError("no Chromium (or no bash to start it with its DevTools pipe)")
        # never fails a plan: a profile file Chromium still holds is left behind
        self._profile = scratch_folder("hp-chromium-")
        commands, self._to_browser = os.pipe()
        self._from_browser, answers = os.pipe()
        cmd = [bash, "-c", f'exec "$0" "$@" 3<&{commands} 4>&{answers}', self.chromium, *flags,
               f"--user-data-dir={self._profile.name}", "--remote-debugging-pipe", "about:blank"]
        try:
            self._process = subprocess.Popen(cmd, pass_fds=(commands, answers), stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                             start_new_session=True)  # its helpers stopped with it (close)
        except OSError as exc:
            self.close()
            raise NotComputableError(f"{self.chromium} could not be started ({exc})") from None
        finally:
            os.close(commands)
            os.close(answers)
        self.lock = threading.Lock()  # one page at a time
        self._buffer, self._last_id = b"", 0

    def print_page(self, html_path: str | Path, pdf_path: str | Path) -> Path:
        """Load ``html_path`` in a new tab, wait for its load event, print it to ``pdf_path``.

        Raises
        ------
        NotComputableError
            The browser failed or closed (the caller may fall back to ``--print-to-pdf``).
        """
        with self.lock:
            try:
                target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
                session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
                self.call("Page.enable", session=session)
                self.call("Page.navigate", {"url": Path(html_path).resolve().as_uri()}, session=session,
                          until="Page.loadEventFired")
                pdf = self.call("Page.printToPDF", {"printBackground": True, "preferCSSPageSize": True,
                                                    "displayHeaderFooter": False}, session=session)["data"]
                self.call("Target.closeTarget", {"targetId": target})
            except (OSError, EOFError, ValueError, KeyError) as exc:
                raise NotComputableError(f"{self.chromium} (DevTools) did not print {html_path}: {exc}") from None
        Path(pdf_path).write_bytes(base64.b64decode(pdf))
        return Path(pdf_path)

    def call(self, method: str, params: dict | None = None, *, session: str | None = None,
             until: str | None = None, events: list | None = None) -> dict:
        """Send one DevTools command (to the page ``session``, else the browser); return its result,
        after the event ``until`` of that session when given. Events read meanwhile are appended to
        ``events`` when given (else dropped). Hold :attr:`lock` around a page's commands."""
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        result, waiting = None, until
        while result is None or waiting:
            answer = self._read()
            if answer.get("id") == self._last_id:
                if "error" in answer:
                    raise ValueError(f"{method}: {answer['error'].get('message')}")
                result = answer["result"]
            elif waiting and answer.get("method") == waiting and answer.get("sessionId") == session:
                waiting = None
            elif events is not None and "method" in answer:
                events.append(answer)
        return result

    def _read(self) -> dict:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("the browser closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        """Stop the browser and its helper processes (its process group), then remove its profile.

        Killing the browser alone left its helpers writing into the profile while it was removed
        ("Default: Directory not empty" ended a plan)."""
        process = getattr(self, "_process", None)
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
            for _ in range(100):  # the helpers' exit: at most ~2 s
                if not group_running(process.pid):
                    break
                time.sleep(0.02)
        for fd in ("_to_browser", "_from_browser"):
            if getattr(self, fd, None) is not None:
                os.close(getattr(self, fd))
                setattr(self, fd, None)
        self._profile.cleanup()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def group_running(pgid: int) -> bool:
    """Whether a process of the process group ``pgid`` is still running.

    A killed browser's helpers are reparented to init and stay zombies (dead, their files closed)
    until it reaps them: in a container whose init is slow at it, 1.5-2 s after the kill. Zombies
    therefore do not count where ``/proc`` tells them apart (Linux); elsewhere the group counts
    until it is gone.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not (proc / "self" / "stat").is_file():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        state, _, group = text[text.rindex(")") + 2:].split()[:3]  # after "pid (comm) "
        if int(group) == pgid and state not in ("Z", "X"):
            return True
    return False


def start_browser() -> Browser | None:
    """A :class:`Browser` started now, or ``None`` when there is none (then :class:`PdfPrint`
    finds out, and says so, itself)."""
    try:
        return Browser()
    except NotComputableError:
        return None


class PdfPrint:
    """Headless Chromium printing one HTML file to PDF in the background: started when made,
    finished by :meth:`wait` (or stopped by :meth:`close`; also a context manager that closes).

    Chromium's start-up and layout take 1-3 s of wall time, most of it outside this process, so
    ``plan`` starts the print as soon as the print page's images exist and writes its other
    outputs meanwhile.

    Parameters
    ----------
    html_path : str or Path
        A self-contained HTML file; it must stay until :meth:`wait` returns.
    pdf_path : str or Path
        Output, written atomically (moved into place by :meth:`wait`).
    chromium : str, optional
        Browser executable; default :func:`find_chromium`.
    timeout_s : float
        :meth:`wait` gives up this many seconds after the start.
    browser : Browser, optional
        A browser started ahead: it prints the page in a thread (falling back to a
        ``--print-to-pdf`` run if it fails).

    Raises
    ------
    NotComputableError
        No browser, or it could not be started (the message says how to fix).
    """

    def __init__(self, html_path: str | Path, pdf_path: str | Path, *, chromium: str | None = None,
                 timeout_s: float = 120.0, browser: Browser | None = None) -> None:
        self._by_browser: Future | None = None
        if browser is not None:
            self.html_path, self.pdf_path, self._browser = Path(html_path), Path(pdf_path), browser
            self._chromium, self._timeout_s = chromium, timeout_s
            self._by_browser = Future()
            threading.Thread(target=self._print_in_browser, daemon=True).start()
            return
        self._start(html_path, pdf_path, chromium=chromium, timeout_s=timeout_s)

    def _print_in_browser(self) -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="hp-pdf-") as folder:
                pdf = self._browser.print_page(self.html_path, Path(folder) / "report.pdf")
                if pdf.read_bytes()[:5] != b"%PDF-":
                    raise NotComputableError("not a PDF")
                with atomic_file(self.pdf_path) as tmp:
                    shutil.move(pdf, tmp)
            self._by_browser.set_result(self.pdf_path)
        except Exception as exc:  # noqa: BLE001 (any failure: wait() prints without the browser)
            self._by_browser.set_exception(exc)

    def _start(self, html_path, pdf_path, *, chromium, timeout_s) -> None:
        """Run one ``--print-to-pdf``."""
        self._by_browser = None
        self.chromium = chromium or find_chromium()
        if self.chromium is None:
            raise NotComputableError(
                f"no Chromium or Chrome found (tried ${CHROMIUM_ENV} and {', '.join(CHROMIUM_NAMES)} on the PATH): "
                "install it (Debian: apt-get install chromium-headless-shell, or chromium) or set "
                f"{CHROMIUM_ENV}; printing report.html from a browser gives the same pages")
        self.html_path, self.pdf_path = Path(html_path), Path(pdf_path)
        self._deadline = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._files = ExitStack()  # the browser profile and the PDF's temporary sibling
        profile = Path(self._files.enter_context(scratch_folder("hp-chromium-")))
        self._tmp = self._files.enter_context(atomic_file(self.pdf_path))
        self._stderr = open(profile / "stderr.txt", "w+")
        self._files.callback(self._stderr.close)
        cmd = [self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               f"--print-to-pdf={self._tmp}", self.html_path.resolve().as_uri()]
        try:
            self._process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=self._stderr)
        except OSError as exc:
            self._files.__exit__(type(exc), exc, None)
            raise NotComputableError(f"{self.chromium} could not be started ({exc}); check the browser") from None

    def wait(self) -> Path:
        """Wait for the PDF and move it into place; return its path.

        Raises
        ------
        NotComputableError
            The browser failed, timed out or wrote no PDF (the message says which and how to fix).
        """
        if self._by_browser is not None:
            try:
                return self._by_browser.result(timeout=self._timeout_s)
            except Exception as exc:  # noqa: BLE001 (the started browser failed: print the usual way)
                log.info("printing with the started browser failed (%s); printing with --print-to-pdf", exc)
                self._start(self.html_path, self.pdf_path, chromium=self._chromium, timeout_s=self._timeout_s)
        try:
            status = self._process.wait(timeout=max(self._deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            self.close()
            raise NotComputableError(
                f"{self.chromium} did not print {self.html_path} within {self._timeout_s:.0f} s") from None
        if status != 0 or not self._tmp.is_file() or self._tmp.read_bytes()[:5] != b"%PDF-":
            self._stderr.seek(0)
            tail = " ".join(self._stderr.read().strip().splitlines()[-2:])[:300]
            self.close()
            raise NotComputableError(
                f"{self.chromium} did not print {self.html_path} (exit status {status}: {tail}); "
                "check that the browser starts headless (run it with --headless --dump-dom on a file)")
        self._files.close()  # moves the PDF into place, removes the profile
        log.info("wrote %s (%.0f kB)", self.pdf_path, self.pdf_path.stat().st_size / 1024)
        return self.pdf_path

    def close(self) -> None:
        """Stop the browser if it still runs; nothing is moved into place after this."""
        if self._by_browser is not None:
            return  # the started browser's owner closes it
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        error = NotComputableError("printing stopped")
        self._files.__exit__(type(error), error, None)  # an exception: atomic_file moves nothing

    def __enter__(self) -> "PdfPrint":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def print_to_pdf(html_path: str | Path, pdf_path: str | Path, *, chromium: str | None = None,
                 timeout_s: float = 120.0) -> Path:
    """Print an HTML file to PDF with headless Chromium (its print stylesheet, no header/footer).

    Parameters
    ----------
    html_path : str or Path
        A self-contained HTML file.
    pdf_path : str or Path
        Output, written atomically.
    chromium : str, optional
        Browser executable; default :func:`find_chromium`.
    timeout_s : float
        Give up after this many seconds.

    Returns
    -------
    Path

    Raises
    ------
    NotComputableError
        No browser, or it failed, timed out or wrote no PDF (the message says which and how to fix).
    """
    with PdfPrint(html_path, pdf_path, chromium=chromium, timeout_s=timeout_s) as job:
        return job.wait()
