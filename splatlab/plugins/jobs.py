"""Background jobs: ``fn(progress)`` in a worker thread, with progress, cancel and one job per slot.

A :class:`Job` runs ``fn(progress)`` on its own thread. ``progress(fraction, message)`` records
the state (and forwards it, throttled, to ``on_progress``) and raises
:class:`~splatlab.plugins.base.Cancelled` once :meth:`Job.cancel` was called, so a plugin that
reports progress every ~0.5 s stops within about that time. A result that arrives after a cancel
is discarded. A :class:`JobSlot` holds at most one running job (one per viewer panel).

No GUI here: the viewer binds ``on_progress`` / ``on_finish`` to its progress bar and buttons.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Literal

from ..errors import SplatlabError
from .base import Cancelled

__all__ = ["Job", "JobSlot", "JobBusyError", "JobState"]

logger = logging.getLogger(__name__)

JobState = Literal["pending", "running", "done", "failed", "cancelled"]


class JobBusyError(SplatlabError, RuntimeError):
    """A job is already running in this slot (panel)."""


class Job:
    """One background run of ``fn(progress)``.

    Attributes (read from any thread): ``state``, ``fraction`` in [0, 1], ``message``,
    ``result`` (after "done"), ``error`` (the exception, after "failed"), ``traceback``,
    ``started`` / ``ended`` (time.monotonic()), ``cancel_requested_at``.

    Callbacks run on the worker thread: ``on_progress(fraction, message)`` at most every
    ``min_interval`` s (and always for fraction 0 and 1); ``on_finish(job)`` once at the end,
    whatever the outcome (check ``job.state``).
    """

    def __init__(
        self,
        fn: Callable[[Callable[..., None]], Any],
        *,
        name: str = "job",
        on_progress: Callable[[float, str], None] | None = None,
        on_finish: Callable[[Job], None] | None = None,
        min_interval: float = 0.1,
    ) -> None:
        self.fn = fn
        self.name = name
        self.on_progress = on_progress
        self.on_finish = on_finish
        self.min_interval = float(min_interval)
        self.state: JobState = "pending"
        self.fraction = 0.0
        self.message = ""
        self.result: Any = None
        self.error: BaseException | None = None
        self.traceback = ""
        self.started: float | None = None
        self.ended: float | None = None
        self.cancel_requested_at: float | None = None
        self.progress_calls = 0
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._last_emit = 0.0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control
    def start(self) -> Job:
        if self._thread is not None:
            raise RuntimeError(f"job {self.name!r} was already started")
        self._thread = threading.Thread(target=self._main, name=f"job-{self.name}", daemon=True)
        self.state = "running"
        self.started = time.monotonic()
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the job to stop: its next ``progress`` call raises Cancelled."""
        if self.cancel_requested_at is None:
            self.cancel_requested_at = time.monotonic()
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def running(self) -> bool:
        return self.state in ("pending", "running") and not self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ended (True) or ``timeout`` passed (False)."""
        return self._done.wait(timeout)

    # ------------------------------------------------------------------ worker side
    def progress(self, fraction: float, message: str = "") -> None:
        """The :class:`~splatlab.plugins.base.Progress` handed to ``fn``."""
        self.progress_calls += 1
        if self._cancel.is_set():
            raise Cancelled(f"{self.name}: cancelled")
        f = min(max(float(fraction), 0.0), 1.0)
        self.fraction, self.message = f, str(message)
        now = time.monotonic()
        if self.on_progress is not None and (
            f in (0.0, 1.0) or now - self._last_emit >= self.min_interval
        ):
            self._last_emit = now
            try:
                self.on_progress(f, self.message)
            except Exception as e:  # a GUI that went away must not kill the job
                logger.warning("progress display of %s failed: %s", self.name, e)

    def _main(self) -> None:
        try:
            result = self.fn(self.progress)
            if self._cancel.is_set():  # finished after the click: the result is not used
                self.state = "cancelled"
            else:
                self.result = result
                self.state = "done"
        except Cancelled:
            self.state = "cancelled"
        except BaseException as e:  # noqa: BLE001 - reported to the viewer, never re-raised
            self.error = e
            self.traceback = traceback.format_exc()
            self.state = "failed"
            logger.error("job %s failed: %s\n%s", self.name, e, self.traceback)
        finally:
            self.ended = time.monotonic()
            try:
                if self.on_finish is not None:
                    self.on_finish(self)
            except Exception as e:
                logger.error(
                    "on_finish of job %s failed: %s\n%s", self.name, e, traceback.format_exc()
                )
            finally:
                self._done.set()


class JobSlot:
    """At most one running :class:`Job` (a viewer panel's)."""

    def __init__(self, name: str = "job") -> None:
        self.name = name
        self.current: Job | None = None
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        j = self.current
        return j is not None and j.running

    def start(self, fn: Callable[[Callable[..., None]], Any], **kw: Any) -> Job:
        """Start ``Job(fn, **kw)``; JobBusyError while the previous one runs."""
        with self._lock:
            if self.busy:
                raise JobBusyError(
                    f"{self.name}: a job is already running; wait for it or press Cancel"
                )
            job = Job(fn, name=kw.pop("name", self.name), **kw)
            self.current = job
            job.start()
            return job

    def cancel(self) -> None:
        j = self.current
        if j is not None and j.running:
            j.cancel()
