"""hepatoplan.pipeline.timing: exclusive seconds per stage of one run."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from hepatoplan.pipeline import timing


@timing.timed("outer")
def _outer(inner_s: float, own_s: float) -> str:
    time.sleep(own_s)
    with timing.stage("inner"):
        time.sleep(inner_s)
    return "done"


def test_nested_stages_count_exclusively_and_add_up_to_the_total():
    with timing.timed_run() as timer:
        assert _outer(0.06, 0.03) == "done"
        time.sleep(0.02)
        seconds = timer.seconds()
    assert seconds["inner"] == pytest.approx(0.06, abs=0.02)
    assert seconds["outer"] == pytest.approx(0.03, abs=0.02)  # the inner stage is not counted twice
    assert seconds["other"] >= 0.015
    parts = sum(v for k, v in seconds.items() if k != "total")
    assert parts == pytest.approx(seconds["total"], abs=0.003)  # rounding of each stage to 1 ms


def test_an_open_stage_counts_up_to_now():
    with timing.timed_run(), timing.stage("writing"):
        time.sleep(0.03)
        seconds = timing.current_seconds()
    assert seconds["writing"] >= 0.025 and seconds["other"] < 0.02


def test_outside_a_run_and_in_worker_threads_nothing_is_recorded():
    assert timing.current_seconds() is None
    assert _outer(0.0, 0.0) == "done"  # no timer: the stages are no-ops
    with timing.timed_run() as timer, ThreadPoolExecutor(1) as pool:
        pool.submit(_outer, 0.0, 0.0).result()
        assert set(timer.seconds()) == {"other", "total"}
