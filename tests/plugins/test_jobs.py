"""Background jobs: progress, cancel within one progress period, errors, one job per slot."""

from __future__ import annotations

import time

import pytest

from splatlab.plugins.base import Cancelled
from splatlab.plugins.jobs import Job, JobBusyError, JobSlot


def _loop(seconds: float, period: float = 0.05, result: str = "ok"):
    def fn(progress):
        t0 = time.monotonic()
        while time.monotonic() - t0 < seconds:
            progress((time.monotonic() - t0) / seconds, "working")
            time.sleep(period)
        progress(1.0, "done")
        return result

    return fn


def test_job_runs_reports_progress_and_result():
    seen = []
    finished = []
    job = Job(
        _loop(0.5),
        name="t",
        on_progress=lambda f, m: seen.append((f, m)),
        on_finish=finished.append,
        min_interval=0.1,
    ).start()
    assert job.running
    assert job.wait(5.0)
    assert job.state == "done" and job.result == "ok" and finished == [job]
    fr = [f for f, _ in seen]
    assert fr[0] < 0.05 and fr[-1] == 1.0 and fr == sorted(fr)
    # throttled: ~10 calls of on_progress for ~10 progress calls per 0.1 s over 0.5 s
    assert job.progress_calls >= 8 and len(seen) <= 0.5 / 0.1 + 3
    assert job.ended - job.started >= 0.5


def test_cancel_stops_within_a_progress_period_and_drops_the_result():
    job = Job(_loop(10.0, period=0.1)).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    job.cancel()
    assert job.wait(2.0), "the job must stop within about one progress period"
    assert time.monotonic() - t0 < 0.5
    assert job.state == "cancelled" and job.result is None and job.error is None

    # a job that ignores progress and returns after the cancel: its result is not used
    def stubborn(progress):
        time.sleep(0.3)
        return "late"

    j2 = Job(stubborn).start()
    j2.cancel()
    assert j2.wait(2.0) and j2.state == "cancelled" and j2.result is None

    # progress called after a cancel raises Cancelled in the worker
    j3 = Job(lambda p: None)
    j3.cancel()
    with pytest.raises(Cancelled):
        j3.progress(0.5)


def test_error_is_kept_not_raised_and_slot_allows_one_job():
    def boom(progress):
        raise RuntimeError("boom")

    job = Job(boom).start()
    assert job.wait(2.0) and job.state == "failed"
    assert isinstance(job.error, RuntimeError) and "boom" in job.traceback

    slot = JobSlot("panel")
    j = slot.start(_loop(1.0))
    with pytest.raises(JobBusyError, match="already running"):
        slot.start(_loop(0.1))
    slot.cancel()
    assert j.wait(2.0) and j.state == "cancelled" and not slot.busy
    j2 = slot.start(_loop(0.1, result="again"))
    assert j2.wait(2.0) and j2.result == "again" and slot.current is j2
    with pytest.raises(RuntimeError, match="already started"):
        j2.start()
