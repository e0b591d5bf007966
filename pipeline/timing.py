"""Wall-clock seconds per stage of one run, for ``report.json`` (``provenance.timing_s``).

A run opens a timer with :func:`timed_run`; functions on its path mark their stage with the
:func:`timed` decorator (or ``with stage("name"):``). Stages nest and count *exclusively*: time
spent in an inner stage is not counted again in the outer one, so the stages and ``other`` (the
run's time in no stage) add up to ``total``. Outside a run, or in a worker thread (the timer is a
:class:`~contextvars.ContextVar`, which threads do not inherit), a stage costs nothing and records
nothing: a thread's work shows as the time its caller waits for it.

Stages of ``hepatoplan plan``: ``read`` (images and masks), ``checks`` (the study's grid and
label checks), ``segmentation`` (automatic masks), ``couinaud`` (derived segments),
``volumetry``, ``resection``, ``vascular``, ``assessment``, ``writing`` (label maps, NIfTI,
``.seg.nrrd``, the SR, report.json), ``dicom_seg`` (DICOM input only), ``previews`` (meshes, their
files and the PNG renders) and ``report`` (QC montage, slice viewer, report.pdf, report.html).
"""

from __future__ import annotations

import functools
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from time import perf_counter

_TIMER: ContextVar[StageTimer | None] = ContextVar("hepatoplan_stage_timer", default=None)


class StageTimer:
    """Exclusive wall-clock seconds per stage name since the timer was made."""

    def __init__(self) -> None:
        self._start = perf_counter()
        self._seconds: dict[str, float] = {}
        self._open: list[list] = []  # [name, start, seconds spent in inner stages]

    @contextmanager
    def stage(self, name: str):
        self._open.append([name, perf_counter(), 0.0])
        try:
            yield
        finally:
            _, start, inner = self._open.pop()
            elapsed = perf_counter() - start
            self._seconds[name] = self._seconds.get(name, 0.0) + elapsed - inner
            if self._open:
                self._open[-1][2] += elapsed

    def seconds(self) -> dict[str, float]:
        """Seconds per stage so far (open stages up to now), ``other`` and ``total``, rounded to ms."""
        now = perf_counter()
        out = dict(self._seconds)
        inner_open = 0.0  # elapsed of the open stage nested in the current one
        for name, start, inner in reversed(self._open):
            elapsed = now - start
            out[name] = out.get(name, 0.0) + elapsed - inner - inner_open
            inner_open = elapsed
        total = now - self._start
        out["other"] = total - sum(out.values())
        out["total"] = total
        return {name: round(value, 3) for name, value in out.items()}


@contextmanager
def timed_run():
    """Open a timer for the stages run in this context (this thread); yields the :class:`StageTimer`."""
    timer = StageTimer()
    token = _TIMER.set(timer)
    try:
        yield timer
    finally:
        _TIMER.reset(token)


def stage(name: str):
    """Context manager counting its time under ``name`` in the open run (nothing outside a run)."""
    timer = _TIMER.get()
    return nullcontext() if timer is None else timer.stage(name)


def timed(name: str):
    """Decorator: every call of the function counts under stage ``name``."""

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            with stage(name):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def current_seconds() -> dict[str, float] | None:
    """:meth:`StageTimer.seconds` of the open run, ``None`` outside one."""
    timer = _TIMER.get()
    return None if timer is None else timer.seconds()
