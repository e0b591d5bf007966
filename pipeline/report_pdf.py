"""``report.pdf``: the report on A4 pages, printed by headless Chromium.

The PDF is the HTML report's print layout (``@media print`` in ``pipeline/assets/report.css``:
A4, the interactive viewers left out, the QC montage and the previews in their place), printed
with Chromium's ``--print-to-pdf``. So the PDF and a report printed from any browser show the
same pages, and tables, text and images need no second layout engine. Chromium is a system
package (Debian ``chromium``) that a user's machine may lack: :func:`find_chromium` returns
``None`` then, and ``plan`` writes no PDF and says so in ``report.json``'s warnings (printing
``report.html`` from a browser gives the same pages). ``HEPATOPLAN_CHROMIUM`` names the browser
executable when it is not on the ``PATH`` under a usual name (e.g. Google Chrome on macOS).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from hepatoplan.errors import NotComputableError

from .outputs import atomic_file

log = logging.getLogger(__name__)

#: Executable names tried, in order, on the PATH.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
#: Environment variable naming the browser executable explicitly.
CHROMIUM_ENV = "HEPATOPLAN_CHROMIUM"
#: Flags of a quiet, private headless run (no sandbox: it may run as root in containers).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio")


def find_chromium() -> str | None:
    """The headless browser to print with: ``$HEPATOPLAN_CHROMIUM``, else the first of
    :data:`CHROMIUM_NAMES` on the PATH; ``None`` when there is none."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


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

    Raises
    ------
    NotComputableError
        No browser, or it could not be started (the message says how to fix).
    """

    def __init__(self, html_path: str | Path, pdf_path: str | Path, *, chromium: str | None = None,
                 timeout_s: float = 120.0) -> None:
        self.chromium = chromium or find_chromium()
        if self.chromium is None:
            raise NotComputableError(
                f"no Chromium or Chrome found (tried ${CHROMIUM_ENV} and {', '.join(CHROMIUM_NAMES)} on the PATH): "
                "install it (Debian: apt-get install chromium) or set "
                f"{CHROMIUM_ENV}; printing report.html from a browser gives the same pages")
        self.html_path, self.pdf_path = Path(html_path), Path(pdf_path)
        self._deadline = time.monotonic() + timeout_s
        self._timeout_s = timeout_s
        self._files = ExitStack()  # the browser profile and the PDF's temporary sibling
        profile = Path(self._files.enter_context(tempfile.TemporaryDirectory(prefix="hp-chromium-")))
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
