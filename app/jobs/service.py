"""Creating, enqueueing, cancelling and reaping jobs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.config import get_settings
from app.jobs.outcomes import on_job_finished
from app.jobs.specs import JobSpec
from app.models import Job, JobStatus
from app.models.types import utcnow


class JobNotFound(LookupError):
    pass


def task_name(job_type: str) -> str:
    return f"synthbench.job.{job_type}"


def enqueue(job: Job) -> None:
    # Imported here so that the web process only loads Celery when it actually sends a job.
    from workers.celery_app import celery_app

    celery_app.send_task(task_name(job.type), args=[job.id], queue=job.queue)


def artefact_dir_for(job_id: int) -> Path:
    return get_settings().artefacts_dir / "jobs" / str(job_id)


def create_job(db: Session, spec: JobSpec, *, owner_id: int | None) -> Job:
    """The row only (flushed, not committed, not enqueued)."""
    job = Job(type=spec.type, queue=spec.queue, params=spec.params, owner_id=owner_id)
    db.add(job)
    db.flush()
    job.artefact_dir = str(artefact_dir_for(job.id))
    return job


def submit(db: Session, spec: JobSpec, *, owner_id: int | None) -> Job:
    """Create the row, commit, and only then enqueue. The session is committed by this call."""
    job = create_job(db, spec, owner_id=owner_id)
    commit_and_enqueue(db, job)
    return job


def commit_and_enqueue(db: Session, job: Job) -> None:
    """Commit, then enqueue: a worker must never see an id whose row is not visible yet."""
    db.commit()
    try:
        enqueue(job)
    except Exception as exc:  # the broker is down or misconfigured: say so on the job
        job.status = JobStatus.failed
        job.error = f"Could not reach the job broker: {exc}"
        job.finished_at = utcnow()
        on_job_finished(db, job)
        db.commit()


def get_job(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(db: Session, *, owner_id: int | None, limit: int = 100) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    return list(db.scalars(query))


def request_cancel(db: Session, job: Job) -> None:
    """Queued jobs end now; running ones are asked to stop at their next check."""
    if job.status is JobStatus.queued:
        job.status = JobStatus.cancelled
        job.finished_at = utcnow()
        job.message = "cancelled before it started"
        on_job_finished(db, job)
    elif job.status is JobStatus.running:
        job.cancel_requested = True
    db.commit()


def reap_stale(db: Session, *, timeout_s: int | None = None) -> int:
    """Mark running jobs whose heartbeat stopped as failed, so none stays 'running' forever."""
    timeout = timeout_s if timeout_s is not None else get_settings().heartbeat_timeout_s
    cutoff = utcnow() - timedelta(seconds=timeout)
    result = db.execute(
        update(Job)
        .where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
        .values(
            status=JobStatus.failed,
            finished_at=utcnow(),
            error=f"The worker stopped sending heartbeats for over {timeout} s (it probably died).",
        )
    )
    db.commit()
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
