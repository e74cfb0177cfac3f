"""Jobs orphaned by a worker that died (SIGKILL, power loss, OOM) are taken over by a live one.

An attempt holds its job for as long as it keeps the row's heartbeat fresh (workers/leases.py,
app/jobs/heartbeats.py). Every worker looks, at start-up and then every recovery period, for
running jobs of its queues whose heartbeat is older than the timeout: whoever ran them is gone
(or cut off, and its lease check stops it before its next write). They are put back on their
queue; the runner's next attempt resumes from the job's last checkpoint. This works whatever
the broker promises: the embedded SQLite broker drops an unacked message with the process
that held it, and Redis would only redeliver it after its (hours-long) visibility timeout.
Worker names are unique per process, so nothing is inferred from a name: a job whose heartbeat
is fresh is never taken, whoever asks. Jobs nobody takes over are failed by the server's reaper
a little later (`reap_after_s`).

When only the pool process running a job dies (the OOM killer, a segfault in native code) or
is killed at the hard time limit, the worker itself lives on and says so through `JobRequest`
(workers/tasks.py): the attempt is released for a redelivery, or the job failed.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.db import session_scope
from app.jobs.outcomes import on_job_finished
from app.jobs.service import enqueue
from app.models import Job, JobStatus
from app.models.types import utcnow
from workers.leases import Lease

log = logging.getLogger(__name__)


def requeue_orphans(queues: Collection[str], *, timeout_s: float | None = None) -> list[int]:
    """Requeue the running jobs of `queues` whose heartbeat is older than the timeout."""
    timeout = timeout_s if timeout_s is not None else get_settings().heartbeat_timeout_s
    cutoff = utcnow() - timedelta(seconds=timeout)
    stale = or_(Job.heartbeat_at.is_(None), Job.heartbeat_at < cutoff)
    requeued: list[tuple[Job, Lease]] = []
    with session_scope() as db:
        candidates = db.execute(
            select(Job.id, Job.type, Job.queue, Job.worker, Job.attempts, Job.heartbeat_at).where(
                Job.status == JobStatus.running, Job.queue.in_(list(queues)), stale
            )
        ).all()
    for row in candidates:
        lease = Lease(row.id, row.worker or "", row.attempts)
        with session_scope() as db:
            # Still the same attempt, still stale, checked in the write itself: an attempt
            # that beat meanwhile keeps its job, and two workers requeue it only once.
            taken = db.execute(
                update(Job)
                .where(lease.held(), stale)
                .values(
                    status=JobStatus.queued,
                    message=(
                        f"requeued: attempt {row.attempts} on {row.worker} stopped sending "
                        f"heartbeats for over {timeout:g} s"
                    )[:500],
                )
                .execution_options(synchronize_session=False)
            ).rowcount
        if taken:
            requeued.append((Job(id=row.id, type=row.type, queue=row.queue), lease))
    for job, lease in requeued:
        log.warning(
            "job %s was running on %s (attempt %s), whose heartbeat stopped; requeued",
            job.id,
            lease.worker,
            lease.attempt,
        )
        enqueue(job)
    return [job.id for job, _ in requeued]


def _attempt_of(db: Session, job_id: int, worker: str) -> Job | None:
    """The job if this worker's attempt is the one running it (not a duplicate's, not ended)."""
    job = db.get(Job, job_id, with_for_update=True)
    if job is None or job.status is not JobStatus.running or job.worker != worker:
        return None
    return job


def release_lost_attempt(job_id: int, worker: str, reason: str) -> bool:
    """The process running the job died; Celery is about to requeue its message. Mark the
    attempt over first, or the redelivery would meet a fresh heartbeat and be dropped as a
    duplicate of a live attempt. The next attempt counts towards the runner's MAX_ATTEMPTS,
    so a job that kills its process every time (a poison job) ends failed, not in a loop."""
    with session_scope() as db:
        job = _attempt_of(db, job_id, worker)
        if job is None:
            return False
        job.status = JobStatus.queued
        job.heartbeat_at = None
        job.message = f"attempt {job.attempts} died on {worker} ({reason}); to be retried"[:500]
    log.warning("job %s: the process running it died (%s); released for a retry", job_id, reason)
    return True


def fail_killed_at_time_limit(job_id: int, worker: str, error: str) -> bool:
    """Celery killed the process at the hard time limit and acknowledged the message: no
    retry comes, so end the job now rather than leave it to the heartbeat reaper."""
    with session_scope() as db:
        job = _attempt_of(db, job_id, worker)
        if job is None:
            return False
        job.status, job.finished_at, job.error = JobStatus.failed, utcnow(), error
        on_job_finished(db, job)
    return True
