"""When a job attempt counts as alive, and when its job is taken over or given up.

An attempt holds its job (the lease: the row's worker name and attempt number, status running)
for as long as it keeps the row's heartbeat fresh. Once the heartbeat is older than the
timeout, a live worker of the job's queue requeues it (workers/recovery.py) and the next
attempt resumes from the last checkpoint; the server's reaper fails it only later, so a job
with a live worker to take it over is resumed rather than failed, and a job nobody can take
over still ends within a bounded time.
"""

from __future__ import annotations

from datetime import datetime


def heartbeat_period(timeout_s: float) -> float:
    # Several beats per timeout, so one slow database write never gets a live job taken over;
    # at most every 10 s, so a long job costs a handful of writes a minute.
    return max(0.2, min(10.0, timeout_s / 4))


def recovery_period(timeout_s: float) -> float:
    """How often a worker looks for stale jobs to take over: as often as attempts beat."""
    return heartbeat_period(timeout_s)


def reap_after_s(timeout_s: float) -> float:
    """Heartbeat age at which the reaper fails a job: two recovery rounds after it went stale,
    so a live worker of its queue has had its chance to requeue it first."""
    return timeout_s + 2 * recovery_period(timeout_s)


def heartbeat_fresh(heartbeat_at: datetime | None, now: datetime, timeout_s: float) -> bool:
    """True while the attempt that wrote this heartbeat may still be running."""
    if heartbeat_at is None:
        return False
    return (now - heartbeat_at).total_seconds() < timeout_s
