"""Progress, heartbeat and cancellation against the Job row, throttled so a tight ml loop
calling ``progress`` thousands of times costs a handful of database writes.

Every write is made under the attempt's lease (workers/leases.py). An attempt that lost it (its
job was requeued and another attempt started, or the job was reaped or ended) must not write
again, to the row or to the run folder it shares with the new attempt: ``should_stop`` then
says stop and ``progress`` raises `LeaseLost`, and the runner records no outcome.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from app.config import get_settings
from app.db import session_scope
from app.jobs.heartbeats import heartbeat_period
from workers.leases import Lease, read, renew

log = logging.getLogger(__name__)
# The worker's log gets a progress line at most this often per job (and at the end), so a log
# file or `docker logs` shows a long job moving without a line per step.
LOG_EVERY_S = 5.0

__all__ = ["JobCancelled", "JobReporter", "LeaseLost", "StopCheck", "heartbeat_period"]


class JobCancelled(Exception):
    pass


class LeaseLost(Exception):
    """Another attempt owns the job now, or it was requeued or ended without this one."""


class StopCheck:
    """The `should_stop` an ml loop gets: throttled when called, unthrottled through `now()`,
    which loops call right before writing a checkpoint or a log line
    (`ml.training.run_log.stop_before_write`)."""

    def __init__(self, reporter: JobReporter) -> None:
        self._reporter = reporter

    def __call__(self) -> bool:
        return self._reporter.should_stop()

    def now(self) -> bool:
        return self._reporter.should_stop(fresh=True)


class JobReporter:
    def __init__(
        self,
        lease: Lease,
        *,
        min_interval_s: float = 0.5,
        heartbeat_s: float | None = None,
        time_limit_s: float | None = None,
        listener: Callable[[float, float, str], None] | None = None,
    ):
        self.lease = lease
        self.job_id = lease.job_id
        self._listener = listener
        self.min_interval_s = min_interval_s
        if heartbeat_s is None:
            heartbeat_s = heartbeat_period(get_settings().heartbeat_timeout_s)
        self.heartbeat_s = heartbeat_s
        self.time_limit_s = time_limit_s
        self._deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
        self.timed_out = False
        self.lost = False
        self._last_write = 0.0
        self._last_log = float("-inf")
        self._last_check = 0.0
        self._cancelled = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stop_check = StopCheck(self)

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            log.warning("%s lost its lease (requeued, taken over or ended); stopping", self.lease)

    # ml/ sees only these two callables: it never learns there is a database.
    def progress(self, done: float, total: float, message: str = "") -> None:
        if self.lost:
            raise LeaseLost(str(self.lease))
        if self._listener is not None:
            self._listener(done, total, message)
        now = time.monotonic()
        if now - self._last_write < self.min_interval_s and done < total:
            return
        self._last_write = now
        fraction = 0.0 if total <= 0 else max(0.0, min(1.0, done / total))
        with session_scope() as db:
            held = renew(db, self.lease, progress=fraction, message=message[:500])
        if not held:
            self._lose()
            raise LeaseLost(str(self.lease))
        if now - self._last_log >= LOG_EVERY_S or done >= total:
            self._last_log = now
            log.info("job %s: %3.0f%% %s", self.job_id, 100 * fraction, message[:200])

    def should_stop(self, *, fresh: bool = False) -> bool:
        """True once the job is cancelled, its attempt ran past the time limit (`timed_out`
        tells the runner which) or lost its lease (`lost`). Reads the row at most every
        `min_interval_s`, unless `fresh`: right before a write, the answer must be current."""
        if self.lost:
            return True
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline:
            self.timed_out = True
            return True
        if fresh or (not self._cancelled and now - self._last_check >= self.min_interval_s):
            self._last_check = now
            with session_scope() as db:
                held, cancelled = read(db, self.lease)
            if not held:
                self._lose()
                return True
            self._cancelled = self._cancelled or cancelled
        return self._cancelled

    def progress_callbacks(self) -> tuple[Callable[[float, float, str], None], StopCheck]:
        return self.progress, self.stop_check

    # A heartbeat thread keeps the row fresh through long steps that report no progress, so
    # a slow job is never taken for a dead one.
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
        while not self.lost and not self._stop.wait(self.heartbeat_s):
            try:
                with session_scope() as db:
                    held = renew(db, self.lease)
            except Exception:
                # A database hiccup must not end the beats for good: the next one may pass,
                # and a lease lost meanwhile is found then.
                log.exception("%s: heartbeat failed; trying again", self.lease)
                continue
            if not held:
                self._lose()
