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
    chromium = chromium or find_chromium()
    if chromium is None:
        raise NotComputableError(
            f"no Chromium or Chrome found (tried ${CHROMIUM_ENV} and {', '.join(CHROMIUM_NAMES)} on the PATH): "
            "install it (Debian: apt-get install chromium) or set "
            f"{CHROMIUM_ENV}; printing report.html from a browser gives the same pages")
    pdf_path = Path(pdf_path)
    with tempfile.TemporaryDirectory(prefix="hp-chromium-") as profile, atomic_file(pdf_path) as tmp:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--no-pdf-header-footer",
               f"--print-to-pdf={tmp}", Path(html_path).resolve().as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise NotComputableError(f"{chromium} did not print {html_path} within {timeout_s:.0f} s") from None
        except OSError as exc:
            raise NotComputableError(f"{chromium} could not be started ({exc}); check the browser") from None
        if done.returncode != 0 or not tmp.is_file() or tmp.read_bytes()[:5] != b"%PDF-":
            tail = " ".join(done.stderr.strip().splitlines()[-2:])[:300]
            raise NotComputableError(
                f"{chromium} did not print {html_path} (exit status {done.returncode}: {tail}); "
                "check that the browser starts headless (run it with --headless --dump-dom on a file)")
    log.info("wrote %s (%.0f kB)", pdf_path, pdf_path.stat().st_size / 1024)
    return pdf_path
