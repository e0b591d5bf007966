"""Headless Chromium for the report tests: the DOM after the scripts ran, screenshots, console messages.

One browser per test process (started at first use, closed at exit), driven over the DevTools
protocol by :class:`hepatoplan.pipeline.report_pdf.Browser`; each page opens in a new tab of the
window size below, loads, then runs 10 s of virtual time (its timers and animation frames, as
``--virtual-time-budget=10000`` does on the command line) before the DOM and the screenshot are taken. Starting Chromium costs ~3 s of CPU in its
helper processes: once per process instead of once per page.
"""

import atexit
import base64
import functools
import io
import re
import time
from pathlib import Path

import numpy as np
import pytest

from hepatoplan.pipeline.report_pdf import CHROMIUM_FLAGS, Browser

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs /usr/bin/chromium (apt-get install chromium); CI installs it")
WINDOW_PX = (1280, 1400)
#: Real seconds a page may take past its 10 s of virtual time to leave "loading" (open_page).
LOADING_WAIT_S = 30.0
#: SwiftShader WebGL through ANGLE (no GPU needed); --disable-gpu would add a "GPU stall due to
#: ReadPixels" performance notice of Chromium's own to the console
FLAGS = (*(f for f in CHROMIUM_FLAGS if f != "--disable-gpu"), "--use-angle=swiftshader", "--enable-unsafe-swiftshader")


@functools.cache
def _browser() -> Browser:
    browser = Browser(CHROMIUM, flags=FLAGS)
    atexit.register(browser.close)
    return browser


def _console(event: dict) -> str | None:
    """A console message (console.* calls, uncaught exceptions, the browser's own log entries) as text."""
    params = event.get("params", {})
    if event["method"] == "Runtime.consoleAPICalled":
        return f"console.{params['type']}: " + " ".join(str(a.get("value", a.get("description", "")))
                                                        for a in params.get("args", []))
    if event["method"] == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        return f"uncaught: {details.get('exception', {}).get('description', details.get('text'))}"
    if event["method"] == "Log.entryAdded" and params["entry"]["level"] != "verbose":
        return f"log {params['entry']['level']} ({params['entry']['source']}): {params['entry']['text']}"
    return None


def open_page(url: str, *, screenshot: bool = False) -> tuple[str, np.ndarray | None, list[str]]:
    """Load ``url`` in a new tab; return the DOM after its scripts ran, a screenshot of the window
    (RGB floats 0-1) when asked, and the page's console messages."""
    import matplotlib.image as mpimg

    browser, events = _browser(), []
    with browser.lock:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for method in ("Page.enable", "Runtime.enable", "Log.enable"):
                browser.call(method, session=session, events=events)
            browser.call("Emulation.setDeviceMetricsOverride", {"width": WINDOW_PX[0], "height": WINDOW_PX[1],
                                                                 "deviceScaleFactor": 1, "mobile": False},
                         session=session, events=events)
            browser.call("Page.navigate", {"url": url}, session=session, until="Page.loadEventFired", events=events)
            browser.call("Emulation.setVirtualTimePolicy", {"policy": "pauseIfNetworkFetchesPending", "budget": 10000},
                         session=session, until="Emulation.virtualTimeBudgetExpired", events=events)
            # a viewer still "loading" (its data decoded or its first frame drawn in real time, later on a
            # loaded machine): more virtual time, up to LOADING_WAIT_S of real time
            deadline = time.monotonic() + LOADING_WAIT_S
            while time.monotonic() < deadline and browser.call(
                    "Runtime.evaluate", {"expression": "!!document.querySelector('[data-status=\"loading\"]')",
                                         "returnByValue": True}, session=session, events=events)["result"]["value"]:
                browser.call("Emulation.setVirtualTimePolicy", {"policy": "pauseIfNetworkFetchesPending",
                                                                "budget": 500},
                             session=session, until="Emulation.virtualTimeBudgetExpired", events=events)
            dom = browser.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                                    "returnByValue": True}, session=session, events=events)
            image = None
            if screenshot:
                png = browser.call("Page.captureScreenshot", {"format": "png"}, session=session, events=events)
                image = mpimg.imread(io.BytesIO(base64.b64decode(png["data"])), format="png")[..., :3]
        finally:
            browser.call("Target.closeTarget", {"targetId": target})
    return dom["result"]["value"], image, [m for m in map(_console, events) if m]


def page_dom(url: str) -> str:
    """The DOM of ``url`` after its scripts ran; asserts that the page logged nothing to the console."""
    dom, _, console = open_page(url)
    assert console == [], "console messages:\n" + "\n".join(console)
    return dom


def dom_and_screenshot(url: str) -> tuple[str, np.ndarray]:
    """The DOM after the scripts ran and a screenshot (RGB floats 0-1) of ``url``; asserts that
    the page logged nothing to the console."""
    dom, image, console = open_page(url, screenshot=True)
    assert console == [], "console messages:\n" + "\n".join(console)
    return dom, image


def element_attributes(dom: str, pattern: str) -> dict[str, str]:
    """``data-*`` attributes of the first start tag matching the regular expression ``pattern``."""
    tag = re.search(pattern, dom)
    assert tag, f"no element matching {pattern!r} in the DOM:\n{dom[:2000]}"
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', tag.group(0)))
