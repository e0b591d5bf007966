"""Headless Chromium for the report tests: the DOM after the scripts ran, screenshots, console lines."""

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium); CI installs it")


def chromium(args, timeout_s=120):
    """Run headless Chromium on ``args``; return (stdout, stderr)."""
    profile = tempfile.mkdtemp(prefix="hp-chromium-")
    try:
        # SwiftShader WebGL through ANGLE (no GPU needed); --disable-gpu would add a
        # "GPU stall due to ReadPixels" performance notice of Chromium's own to the console
        cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--use-angle=swiftshader",
               "--enable-unsafe-swiftshader", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
               f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               "--window-size=1280,1400", "--virtual-time-budget=10000", *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        return done.stdout, done.stderr
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def console_lines(log: str) -> list[str]:
    """The page's console messages in Chromium's log (errors, warnings, logs)."""
    return [line for line in log.splitlines() if ":CONSOLE" in line]


def dom_and_screenshot(url: str, shot: Path) -> tuple[str, np.ndarray]:
    """The DOM after the scripts ran and a screenshot (RGB floats 0-1) of ``url``; asserts that
    the page logged nothing to the console."""
    import matplotlib.image as mpimg

    dom, log = chromium(["--dump-dom", f"--screenshot={shot}", url])  # one launch: the DOM and the screenshot
    assert console_lines(log) == [], "console messages:\n" + "\n".join(console_lines(log))
    return dom, mpimg.imread(shot)[..., :3]


def element_attributes(dom: str, pattern: str) -> dict[str, str]:
    """``data-*`` attributes of the first start tag matching the regular expression ``pattern``."""
    tag = re.search(pattern, dom)
    assert tag, f"no element matching {pattern!r} in the DOM:\n{dom[:2000]}"
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag.group(0)))
