"""The plan's helper process (:class:`PlanHelper`): the meshes' decimations and report.pdf's pages, beside the plan.

Both jobs hold the GIL for long stretches: fast-simplification for the whole decimation (~1 s per default plan of
IRCADb 01), fpdf2's import and the layout (:class:`~hepatoplan.pipeline.report_pdf.PdfLayout`, ~0.5 s of Python);
in threads of the plan they stopped its main thread's renders and analysis (bench/RESULTS.md, pdf16 and the
decimation helper's stop). One child does both, so the plan pays one interpreter start and one numpy import
(two children did until the seventeenth stop, one17): its main thread runs
:mod:`~hepatoplan.pipeline.meshing`'s decimation loop on its standard input and output (the previews wait for the
decimations: each takes the child's GIL as it comes), a thread of it lays out and writes the pages through a
second pair of pipes. ``plan`` starts it once the masks are read and the vessel trees started (fpdf2 and numpy
imported beside the Couinaud division); this module imports neither fpdf2 nor the layout.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from hepatoplan.errors import NotComputableError

#: Put before meshing's decimation loop in the child: the PDF's thread, on the two descriptors given as arguments.
_PDF_THREAD = ("import sys, threading\nfrom hepatoplan.pipeline.helper_process import _serve_pdf\n"
               "threading.Thread(target=_serve_pdf, args=[int(fd) for fd in sys.argv[1:3]], daemon=True).start()\n")


class PlanHelper:
    """The child process, started when made, and made this process's decimation helper (the previous one ended);
    report.pdf's side: :meth:`lay_out` sends it the report (the pages are laid out there meanwhile), :meth:`write`
    the previews' JPEGs (the file is written there); the same ``previews``, ``write``, ``close`` and ``with`` as
    ``PdfLayout``. The child lives on as the decimation helper after :meth:`close` (ended at exit).

    Raises
    ------
    OSError, EOFError
        From :meth:`write` when the child failed or ended (the caller may lay the pages out itself).
    NotComputableError
        From :meth:`write` when the child could not lay out or write the pages (its message).
    """

    def __init__(self) -> None:
        from .meshing import _SIMPLIFIER, _helper_environment, _use_simplifier

        self.previews: list[Path] = []
        pdf_in, to_child = os.pipe()
        from_child, pdf_out = os.pipe()
        try:
            command = [sys.executable, "-c", _PDF_THREAD + _SIMPLIFIER, str(pdf_in), str(pdf_out)]
            self._process = subprocess.Popen(command, pass_fds=(pdf_in, pdf_out), env=_helper_environment(),
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        finally:
            os.close(pdf_in)
            os.close(pdf_out)
        self._to_child, self._from_child = open(to_child, "wb"), open(from_child, "rb")
        _use_simplifier(self._process)

    def lay_out(self, report: Mapping[str, Any], *, montage_png: str | Path | None = None,
                previews: Sequence[str | Path] = (), preview_size_px: tuple[int, int] = (1000, 800),
                growth_plot_png: str | Path | None = None, title: str | None = None) -> "PlanHelper":
        """Have the child lay the pages out (``PdfLayout``'s parameters; ``title``: its default)."""
        self.previews = [Path(p) for p in previews]
        _send(self._to_child, json.dumps(
            {"report": report, "montage_png": montage_png, "previews": self.previews,
             "preview_size_px": preview_size_px, "growth_plot_png": growth_plot_png, "title": title},
            default=str).encode())
        return self

    def write(self, path: str | Path, jpegs: Mapping[Path, bytes]) -> Path:
        """As ``PdfLayout.write``, in the child."""
        try:
            _send(self._to_child, str(path).encode(), *(jpegs[p] for p in self.previews))
            answer = json.loads(_receive(self._from_child))
        finally:
            self.close()
        if "error" in answer:
            raise NotComputableError(answer["error"])
        return Path(path)

    def close(self) -> None:
        """End the child's PDF side (its pipes closed: its thread stops at once)."""
        try:
            self._to_child.close()
        except OSError:  # what a dead child did not read
            pass
        self._from_child.close()

    def __enter__(self) -> "PlanHelper":
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


def _serve_pdf(fd_in: int, fd_out: int) -> None:
    """The child's PDF thread: lay the pages out, put the JPEGs in, write; answer with the path or the error.
    Its pipes are closed when it ends, however (the parent then reads the end of the file)."""
    with open(fd_in, "rb") as stdin, open(fd_out, "wb") as stdout:
        from .report_pdf import PdfLayout

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
