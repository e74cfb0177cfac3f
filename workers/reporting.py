"""Progress, heartbeat and cancellation against the Job row, throttled so a tight ml loop
calling ``progress`` thousands of times costs a handful of database writes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import update

from app.config import get_settings
from app.db import session_scope
from app.models import Job
from app.models.types import utcnow


class JobCancelled(Exception):
    pass


def heartbeat_period(timeout_s: float) -> float:
    # Several beats per reaper timeout, so one slow database write never gets a live job
    # reaped; at most every 10 s, so a long job costs a handful of writes a minute.
    return max(0.2, min(10.0, timeout_s / 4))


class JobReporter:
    def __init__(
        self,
        job_id: int,
        *,
        min_interval_s: float = 0.5,
        heartbeat_s: float | None = None,
        time_limit_s: float | None = None,
        listener: Callable[[float, float, str], None] | None = None,
    ):
        self.job_id = job_id
        self._listener = listener
        self.min_interval_s = min_interval_s
        if heartbeat_s is None:
            heartbeat_s = heartbeat_period(get_settings().heartbeat_timeout_s)
        self.heartbeat_s = heartbeat_s
        self.time_limit_s = time_limit_s
        self._deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
        self.timed_out = False
        self._last_write = 0.0
        self._last_cancel_check = 0.0
        self._cancelled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ml/ sees only these two callables: it never learns there is a database.
    def progress(self, done: float, total: float, message: str = "") -> None:
        if self._listener is not None:
            self._listener(done, total, message)
        now = time.monotonic()
        if now - self._last_write < self.min_interval_s and done < total:
            return
        self._last_write = now
        fraction = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
        with session_scope() as db:
            db.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(progress=fraction, message=message[:500], heartbeat_at=utcnow())
            )

    def should_stop(self) -> bool:
        """True once the job is cancelled or its attempt ran past the time limit; the ml loop
        then stops cleanly (`timed_out` tells the runner which)."""
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline:
            self.timed_out = True
            return True
        if not self._cancelled and now - self._last_cancel_check >= self.min_interval_s:
            self._last_cancel_check = now
            with session_scope() as db:
                job = db.get(Job, self.job_id)
                self._cancelled = bool(job and job.cancel_requested)
        return self._cancelled

    def progress_callbacks(self) -> tuple[Callable[[float, float, str], None], Callable[[], bool]]:
        return self.progress, self.should_stop

    # A heartbeat thread keeps the row fresh through long steps that report no progress, so
    # the reaper can tell a slow job from a dead worker.
    def __enter__(self) -> JobReporter:
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{self.job_id}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            with session_scope() as db:
                db.execute(update(Job).where(Job.id == self.job_id).values(heartbeat_at=utcnow()))
