"""hepatoplan.pipeline.timing: exclusive seconds per stage of one run (on a clock the test moves)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from hepatoplan.pipeline import timing


@pytest.fixture
def clock(monkeypatch):
    """A clock that moves only when the test says so: ``clock.now += seconds``."""

    class Clock:
        now = 100.0

        def __call__(self):
            return self.now

    fake = Clock()
    monkeypatch.setattr(timing, "perf_counter", fake)
    return fake


@timing.timed("outer")
def _outer(clock, inner_s: float, own_s: float) -> str:
    clock.now += own_s
    with timing.stage("inner"):
        clock.now += inner_s
    return "done"


def test_nested_stages_count_exclusively_and_add_up_to_the_total(clock):
    with timing.timed_run() as timer:
        assert _outer(clock, 0.25, 0.5) == "done"
        assert _outer(clock, 0.125, 0.0) == "done"  # a stage met twice adds up
        clock.now += 2.0
        seconds = timer.seconds()
    assert seconds == {"outer": 0.5, "inner": 0.375, "other": 2.0, "total": 2.875}


def test_an_open_stage_counts_up_to_now(clock):
    with timing.timed_run(), timing.stage("writing"):
        clock.now += 1.0
        with timing.stage("dicom_seg"):
            clock.now += 0.5
            seconds = timing.current_seconds()
    assert seconds == {"writing": 1.0, "dicom_seg": 0.5, "other": 0.0, "total": 1.5}


def test_outside_a_run_and_in_worker_threads_nothing_is_recorded(clock):
    assert timing.current_seconds() is None
    assert _outer(clock, 1.0, 1.0) == "done"  # no timer: the stages are no-ops
    with timing.timed_run() as timer, ThreadPoolExecutor(1) as pool:
        pool.submit(_outer, clock, 0.0, 0.0).result()
        assert timer.seconds() == {"other": 0.0, "total": 0.0}
