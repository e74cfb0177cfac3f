"""Creating, enqueueing, cancelling and reaping jobs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.config import get_settings
from app.domain.not_found import NotFound
from app.jobs import listing, naming
from app.jobs.heartbeats import reap_after_s
from app.jobs.outcomes import on_job_finished
from app.jobs.specs import JobSpec
from app.models import Dataset, Job, JobStatus
from app.models.types import utcnow


class JobNotFound(NotFound):
    noun = "job"


def visible_job(db: Session, job_id: int, principal: Principal, job_type: str, noun: str) -> Job:
    """The job if it is of `job_type` and the principal may see it; otherwise a 404 that says
    the same whether the id is missing or someone else's (ids are not confirmed)."""
    job = db.get(Job, job_id)
    if job is None or job.type != job_type or not principal.can_see(job):
        raise JobNotFound(job_id, f"There is no {noun} #{job_id} you can see.")
    return job


def task_name(job_type: str) -> str:
    return f"synthbench.job.{job_type}"


def enqueue(job: Job) -> None:
    # Imported here so that the web process only loads Celery when it actually sends a job.
    from app.queue import celery_app

    celery_app.send_task(task_name(job.type), args=[job.id], queue=job.queue)


def artefact_dir_for(job_id: int) -> Path:
    return get_settings().artefacts_dir / "jobs" / str(job_id)


def _dataset_id(db: Session, params: dict[str, Any]) -> int | None:
    found = naming.dataset_of(params)
    parent_id = params.get("train_job_id")
    if found is None and isinstance(parent_id, int) and not isinstance(parent_id, bool):
        # A sampling job works on its training run's dataset.
        parent = db.get(Job, parent_id)
        found = parent.dataset_id if parent is not None else None
    return found


def create_job(db: Session, spec: JobSpec, *, owner_id: int | None) -> Job:
    """The row only (flushed, not committed, not enqueued)."""
    dataset_id = _dataset_id(db, spec.params)
    name = naming.clean_name(spec.name)
    if name is None:
        dataset = db.get(Dataset, dataset_id) if dataset_id is not None else None
        name = naming.default_name(spec.type, spec.params, dataset.name if dataset else None)
    job = Job(
        type=spec.type,
        queue=spec.queue,
        params=spec.params,
        owner_id=owner_id,
        name=name,
        dataset_id=dataset_id,
    )
    db.add(job)
    db.flush()
    job.artefact_dir = str(artefact_dir_for(job.id))
    return job


def submit(db: Session, spec: JobSpec, *, owner_id: int | None) -> Job:
    """Create the row, commit, and only then enqueue. The session is committed by this call."""
    job = create_job(db, spec, owner_id=owner_id)
    commit_and_enqueue(db, job)
    return job


def _broker_unreachable(exc: Exception) -> bool:
    from kombu.exceptions import OperationalError as BrokerUnreachable
    from sqlalchemy.exc import OperationalError as DatabaseUnreachable  # the embedded broker

    return isinstance(exc, BrokerUnreachable | DatabaseUnreachable | OSError)


def commit_and_enqueue(db: Session, job: Job) -> None:
    """Commit, then enqueue: a worker must never see an id whose row is not visible yet."""
    db.commit()
    try:
        enqueue(job)
    except Exception as exc:
        if _broker_unreachable(exc):
            # Down for now (a restart takes seconds). The committed row is the job: it stays
            # queued and `redispatch_lost` sends it once the broker answers again, so a broker
            # restart loses no job submitted meanwhile.
            job.message = f"Waiting for the job broker ({type(exc).__name__}: {exc})"[:500]
        else:  # sending itself is broken (a misconfigured broker): waiting would not help
            job.status = JobStatus.failed
            job.error = f"Could not send the job to the broker: {type(exc).__name__}: {exc}"
            job.finished_at = utcnow()
            on_job_finished(db, job)
        db.commit()


def rename(job: Job, raw: str | None) -> None:
    """A launch form's Name field: blank keeps the generated name."""
    name = naming.clean_name(raw)
    if name is not None:
        job.name = name


def name_all(jobs: Sequence[Job], raw: str | None) -> None:
    """One Name field for several jobs started together (the benchmark suite): each keeps what
    it is after the given name, so the list still tells them apart."""
    name = naming.clean_name(raw)
    if name is None:
        return
    for job in jobs:
        job.name = f"{name}{naming.SEPARATOR}{job.name}"[: naming.MAX_NAME] if job.name else name


def get_job(db: Session, job_id: int) -> Job:
    job = db.get(Job, job_id)
    if job is None:
        raise JobNotFound(job_id)
    return job


def list_jobs(db: Session, *, owner_id: int | None, limit: int = 100, offset: int = 0) -> list[Job]:
    query = select(Job).order_by(Job.id.desc()).limit(limit).offset(offset)
    if owner_id is not None:
        query = query.where(Job.owner_id == owner_id)
    return list(db.scalars(query))


# The list's page size, where the job list's own module keeps it.
PAGE_SIZE = listing.PAGE_SIZE


def resubmit(db: Session, source: Job, spec: JobSpec) -> Job:
    """A retry or clone of `source`: a new job of the same owner, committed and enqueued."""
    return submit(db, spec, owner_id=source.owner_id)


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
    """Fail running jobs whose heartbeat stopped and that no worker took over, so none stays
    'running' forever. A live worker of the job's queue requeues it once its heartbeat is
    `timeout_s` old (workers/recovery.py); the reaper waits `reap_after_s` to give it that
    chance, so only a job nobody can resume is failed."""
    timeout = timeout_s if timeout_s is not None else get_settings().heartbeat_timeout_s
    cutoff = utcnow() - timedelta(seconds=reap_after_s(timeout))
    stale = db.scalars(
        select(Job)
        .where(Job.status == JobStatus.running, Job.heartbeat_at < cutoff)
        .with_for_update()
    ).all()
    for job in stale:
        job.finished_at = utcnow()
        if job.cancel_requested:  # it was being cancelled anyway: say what was asked for
            job.status = JobStatus.cancelled
            job.message = "cancelled (its worker stopped responding)"
        else:
            job.status = JobStatus.failed
            job.error = (
                f"The worker stopped sending heartbeats for over {timeout} s (it probably died) "
                f"and no worker of the {job.queue!r} queue took the job over."
            )
        # Row by row, not one bulk UPDATE: a reaped import must fail its dataset too.
        on_job_finished(db, job)
    db.commit()
    return len(stale)


def broker_queue_sizes(queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting in each queue (not counting those a worker holds unacknowledged)."""
    from kombu.exceptions import ChannelError

    from app.queue import celery_app

    sizes: dict[str, int] = {}
    with celery_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=5)
        for queue in queues:
            # A channel each: a passive declare of a missing queue closes its channel (AMQP).
            channel = conn.channel()
            try:
                sizes[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError:  # Redis deletes an empty list: no key is an empty queue
                sizes[queue] = 0
            finally:
                channel.close()
    return sizes


def redispatch_lost(db: Session, *, after_s: float | None = None) -> list[int]:
    """Send again the jobs 'queued' for over `after_s` on a queue the broker holds nothing for.

    Their message is gone: the broker was down when they were submitted, the web process died
    between commit and send, or the broker lost it (a restart inside its fsync window). A job
    waiting behind others on a busy queue is not touched until that queue drains. A duplicate
    this might still send (a worker took the last message but has not started the job yet) is
    harmless: the runner starts a job once and drops deliveries of a running or ended one.
    """
    after = after_s if after_s is not None else get_settings().redispatch_after_s
    cutoff = utcnow() - timedelta(seconds=after)
    waiting = db.scalars(
        select(Job).where(Job.status == JobStatus.queued, Job.created_at < cutoff).order_by(Job.id)
    ).all()
    if not waiting:
        return []
    sizes = broker_queue_sizes(sorted({job.queue for job in waiting}))
    lost = [job for job in waiting if sizes[job.queue] == 0]
    for job in lost:
        enqueue(job)
        if job.message.startswith("Waiting for the job broker"):
            job.message = "sent to the job broker"
    db.commit()
    return [job.id for job in lost]
