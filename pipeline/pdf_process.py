"""report.pdf's pages laid out and written by a child process (:class:`PdfHelper`), beside the plan.

fpdf2's import and the layout (:class:`~hepatoplan.pipeline.report_pdf.PdfLayout`) are ~0.5 s of Python:
in a thread of the plan they held the GIL that the main thread's renders and mesh files wait for
(bench/RESULTS.md, pdf16). ``plan`` starts the child at its beginning (as it started Chromium before),
so its imports are done when its pages are asked for. This module imports neither fpdf2 nor the layout.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from hepatoplan.errors import NotComputableError


class PdfHelper:
    """:class:`~hepatoplan.pipeline.report_pdf.PdfLayout` in a child process, started when made: :meth:`lay_out` sends it the report
    (the pages are laid out there meanwhile), :meth:`write` the previews' JPEGs (the file is written
    there); the same ``previews``, ``write``, ``close`` and ``with`` as ``PdfLayout``.

    Raises
    ------
    OSError, EOFError
        From :meth:`write` when the child failed or ended (the caller may lay the pages out itself).
    NotComputableError
        From :meth:`write` when the child could not lay out or write the pages (its message).
    """

    def __init__(self) -> None:
        self.previews: list[Path] = []
        self._process = subprocess.Popen([sys.executable, "-c", "from hepatoplan.pipeline.pdf_process import _serve; _serve()"],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL)

    def lay_out(self, report: Mapping[str, Any], *, montage_png: str | Path | None = None,
                previews: Sequence[str | Path] = (), preview_size_px: tuple[int, int] = (1000, 800),
                growth_plot_png: str | Path | None = None, title: str | None = None) -> "PdfHelper":
        """Have the child lay the pages out (``PdfLayout``'s parameters; ``title``: its default)."""
        self.previews = [Path(p) for p in previews]
        _send(self._process.stdin, json.dumps(
            {"report": report, "montage_png": montage_png, "previews": self.previews,
             "preview_size_px": preview_size_px, "growth_plot_png": growth_plot_png, "title": title},
            default=str).encode())
        return self

    def write(self, path: str | Path, jpegs: Mapping[Path, bytes]) -> Path:
        """As ``PdfLayout.write``, in the child; the child ends after it."""
        try:
            _send(self._process.stdin, str(path).encode(), *(jpegs[p] for p in self.previews))
            answer = json.loads(_receive(self._process.stdout))
        finally:
            self.close()
        if "error" in answer:
            raise NotComputableError(answer["error"])
        return Path(path)

    def close(self) -> None:
        """End the child (its input closed: it stops at once)."""
        try:
            self._process.stdin.close()
        except OSError:  # what a dead child did not read
            pass
        self._process.wait()
        self._process.stdout.close()

    def __enter__(self) -> "PdfHelper":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _send(pipe, *messages: bytes) -> None:
    for message in messages:
        pipe.write(struct.pack("<q", len(message)) + message)
    pipe.flush()


def _receive(pipe) -> bytes:
    header = pipe.read(8)
    if len(header) < 8:
        raise EOFError("report.pdf's helper process ended")
    return pipe.read(struct.unpack("<q", header)[0])


def _serve() -> None:
    """The child of :class:`PdfHelper`: lay the pages out, put the JPEGs in, write; answer with the path
    or the error."""
    from .report_pdf import PdfLayout

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    request = json.loads(_receive(stdin))
    previews = [Path(p) for p in request["previews"]]
    layout, error = None, None
    try:
        title = {} if request["title"] is None else {"title": request["title"]}
        layout = PdfLayout(request["report"], montage_png=request["montage_png"], previews=previews,
                           preview_size_px=tuple(request["preview_size_px"]),
                           growth_plot_png=request["growth_plot_png"], **title)
    except Exception as exc:  # noqa: BLE001 (answered after the write's request: the parent says it)
        error = exc
    path = _receive(stdin).decode()
    jpegs = {p: _receive(stdin) for p in previews}
    try:
        if error is not None:
            raise error
        layout.write(path, jpegs)
        answer = {"path": path}
    except Exception as exc:  # noqa: BLE001
        answer = {"error": f"{type(exc).__name__}: {exc}"}
    _send(stdout, json.dumps(answer).encode())
