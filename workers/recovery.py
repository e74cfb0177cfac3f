"""Jobs orphaned by a worker that died (SIGKILL, power loss, OOM) resume when it restarts.

A worker that starts under a name finds the jobs still marked 'running' under that same name:
whoever ran them is gone, since no two live workers share a name. They are put back on their
queue; the runner's next attempt resumes from the job's last checkpoint. This works whatever
the broker promises: the embedded SQLite broker drops an unacked message with the process
that held it, and Redis would only redeliver it after its (hours-long) visibility timeout.
Jobs of a worker that never comes back are failed by the heartbeat reaper instead.

When only the pool process running a job dies (the OOM killer, a segfault in native code) or
is killed at the hard time limit, the worker itself lives on and says so through `JobRequest`
(workers/tasks.py): the attempt is released for a redelivery, or the job failed.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.jobs.outcomes import on_job_finished
from app.jobs.service import enqueue
from app.models import Job, JobStatus
from app.models.types import utcnow

log = logging.getLogger(__name__)


def requeue_orphans(worker: str) -> list[int]:
    with session_scope() as db:
        orphans = list(
            db.scalars(
                select(Job)
                .where(Job.status == JobStatus.running, Job.worker == worker)
                .with_for_update()
            )
        )
        for job in orphans:
            job.status = JobStatus.queued
            job.message = f"requeued: worker {worker} restarted during attempt {job.attempts}"
        ids = [job.id for job in orphans]
        queued = [(job.type, job.id, job.queue) for job in orphans]
    for job_type, job_id, queue in queued:
        log.warning("job %s was running on %s when it died; requeued", job_id, worker)
        enqueue(Job(id=job_id, type=job_type, queue=queue))
    return ids


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
