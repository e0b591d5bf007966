"""Headless Chromium for the report tests: the DOM after the scripts ran, screenshots, console messages.

One browser per test process (started at first use, closed at exit), driven over the DevTools
protocol by :class:`Browser`; each page opens in a new tab of the
window size below, loads, then runs 10 s of virtual time (its timers and animation frames, as
``--virtual-time-budget=10000`` does on the command line) before the DOM and the screenshot are taken. Starting Chromium costs ~3 s of CPU in its
helper processes: once per process instead of once per page.
"""

from __future__ import annotations

import atexit
import base64
import functools
import io
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from hepatoplan.errors import NotComputableError

#: Flags of a quiet, private headless run (no sandbox: it may run as root in containers). Chromium
#: 156 builds its address bar's two WebUI popups at start-up, headless too (a renderer process of
#: their own, ~0.6 s of Chromium's CPU; no page needs them): ``--disable-features`` leaves them out; one
#: renderer process for every page. Together ~0.85 s less of Chromium's CPU per browser (measured when
#: it printed report.pdf: bench/RESULTS.md, "eleventh stop"). Features a version does not know are ignored.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio", "--renderer-process-limit=1",
                  "--disable-features=WebUIOmniboxPopup,WebUIOmniboxAimPopup")

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


class Browser:
    """Headless Chromium driven over the DevTools protocol (``--remote-debugging-pipe``: JSON
    messages ending in a NUL byte, commands on the browser's fd 3, answers on its fd 4); a context
    manager that closes it.

    Parameters
    ----------
    chromium : str
        Browser executable.
    flags : sequence of str
        Command-line flags; default :data:`CHROMIUM_FLAGS`.

    Raises
    ------
    NotComputableError
        It could not be started.
    """

    def __init__(self, chromium: str, flags: Sequence[str] = CHROMIUM_FLAGS) -> None:
        self.chromium = chromium
        bash = shutil.which("bash")  # hands the pipes to the browser as its fds 3 and 4
        if bash is None:
            raise NotComputableError("no bash to start Chromium with its DevTools pipe")
        # a profile file Chromium still holds is left behind
        self._profile = tempfile.TemporaryDirectory(prefix="hp-chromium-", ignore_cleanup_errors=True)
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
