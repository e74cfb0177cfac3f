"""Jobs orphaned by a worker that died (SIGKILL, power loss, OOM) resume when it restarts.

A worker that starts under a name finds the jobs still marked 'running' under that same name:
whoever ran them is gone, since no two live workers share a name. They are put back on their
queue; the runner's next attempt resumes from the job's last checkpoint. This works whatever
the broker promises: the embedded SQLite broker drops an unacked message with the process
that held it, and Redis would only redeliver it after its (hours-long) visibility timeout.
Jobs of a worker that never comes back are failed by the heartbeat reaper instead.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from app.db import session_scope
from app.jobs.service import enqueue
from app.models import Job, JobStatus

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
