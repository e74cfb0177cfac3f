"""The life of one job attempt, driven by the Job row. Safe to run twice for the same id: at
most one attempt holds a job at any time (its lease, workers/leases.py), and only that attempt
writes the job's progress, run folder and outcome."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from app.config import get_settings
from app.db import session_scope
from app.jobs.heartbeats import heartbeat_fresh
from app.jobs.outcomes import JobOutputError, after_success, before_success, on_job_finished
from app.jobs.service import artefact_dir_for
from app.models import Job, JobStatus
from app.models.types import utcnow
from ml.progress import ProgressFn, Stopped
from workers.energy import add_attempt, measure
from workers.handlers import handler_for
from workers.leases import Lease, read, renew
from workers.reporting import JobCancelled, JobReporter, LeaseLost

log = logging.getLogger(__name__)

# A job that has crashed its worker this many times is a poison job: stop redelivering it.
MAX_ATTEMPTS = 3


def time_limit_error(limit_s: float, *, killed: bool = False) -> str:
    how = "was killed" if killed else "was stopped"
    return (
        f"The job ran past its time limit of {limit_s:g} s and {how} "
        "(SYNTHBENCH_JOB_SOFT_TIME_LIMIT_S / SYNTHBENCH_JOB_TIME_LIMIT_S)."
    )


def _alive(job: Job) -> bool:
    return heartbeat_fresh(job.heartbeat_at, utcnow(), get_settings().heartbeat_timeout_s)


def _start(job_id: int, worker: str) -> tuple[str, dict, Path, int] | None:
    """Take the job's lease for a new attempt, or None when this delivery must not run."""
    with session_scope() as db:
        job = db.get(Job, job_id, with_for_update=True)
        if job is None:
            log.warning("job %s does not exist; dropping the message", job_id)
            return None
        if job.status.finished:
            return None  # a duplicate delivery of a job that already ended
        if _alive(job):
            # A duplicate delivery (a broker redelivering, a second message sent by
            # redispatch) while another attempt still sends heartbeats, whatever the status
            # says: two attempts would write one checkpoint folder. Only a stale heartbeat
            # (workers/recovery.py) or a released attempt (no heartbeat) lets a new one in.
            log.warning(
                "job %s: attempt %s on %s still beats; dropping a duplicate delivery",
                job_id,
                job.attempts,
                job.worker,
            )
            return None
        if job.cancel_requested:
            job.status, job.finished_at = JobStatus.cancelled, utcnow()
            on_job_finished(db, job)
            return None
        if job.attempts >= MAX_ATTEMPTS:
            job.status, job.finished_at = JobStatus.failed, utcnow()
            job.error = f"Gave up after {job.attempts} attempts that did not finish."
            on_job_finished(db, job)
            return None
        job.attempts += 1
        job.status = JobStatus.running
        job.started_at = job.started_at or utcnow()
        job.heartbeat_at = utcnow()
        job.worker = worker
        job.message = "started" if job.attempts == 1 else f"resumed (attempt {job.attempts})"
        artefacts = Path(job.artefact_dir) if job.artefact_dir else artefact_dir_for(job.id)
        return job.type, dict(job.params), artefacts, job.attempts


def _finish(lease: Lease, status: JobStatus, attempt: dict | None = None, **values: object) -> bool:
    """Record the attempt's outcome if it still holds the job; False (and nothing written) if
    another attempt, a requeue or the reaper took it meanwhile: that outcome is not ours."""
    with session_scope() as db:
        # The conditional write comes first: from here to commit the row is ours alone.
        if not renew(db, lease):
            log.warning("%s lost its lease; its outcome (%s) is not recorded", lease, status)
            return False
        job = db.get(Job, lease.job_id)
        if job is None:
            return False
        if attempt is not None:
            job.resources = add_attempt(job.resources, attempt)
        job.status = status
        job.finished_at = utcnow()
        for key, value in values.items():
            setattr(job, key, value)
        on_job_finished(db, job)
    return True


def _holds(lease: Lease) -> bool:
    with session_scope() as db:
        held, _ = read(db, lease)
    return held


def execute(job_id: int, worker: str = "in-process", *, listener: ProgressFn | None = None) -> None:
    """Run one attempt of the job. `listener` also receives every progress call unthrottled
    (the CLI's progress bar); the database still gets the throttled writes."""
    started = _start(job_id, worker)
    if started is None:
        # A redelivered job that had already succeeded: its worker may have died before
        # continuing the job's sweep (idempotent, and a no-op for jobs outside sweeps).
        after_success(job_id)
        return
    job_type, params, artefacts, attempt = started
    lease = Lease(job_id, worker, attempt)
    artefacts.mkdir(parents=True, exist_ok=True)
    handler = handler_for(job_type)
    if handler is None:
        _finish(lease, JobStatus.failed, error=f"No handler for job type {job_type!r}.")
        return
    settings = get_settings()
    usage: dict = {}
    limit = settings.job_soft_time_limit_s
    reporter = JobReporter(lease, listener=listener, time_limit_s=limit)
    progress, should_stop = reporter.progress_callbacks()
    try:
        with (
            measure(tracking=settings.energy_tracking, country=settings.co2_country) as usage,
            reporter,
        ):
            result = handler(params, artefacts, progress, should_stop)
    except (Stopped, JobCancelled, LeaseLost) as exc:
        if reporter.lost:
            log.warning("%s stopped: the job is no longer this attempt's", lease)
        elif reporter.timed_out:
            _finish(lease, JobStatus.failed, usage, error=time_limit_error(limit))
        else:
            _finish(lease, JobStatus.cancelled, usage, message=f"cancelled: {exc}")
    except SoftTimeLimitExceeded:  # Celery's backstop for code that never asks should_stop
        _finish(lease, JobStatus.failed, usage, error=time_limit_error(limit))
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _finish(
            lease,
            JobStatus.failed,
            usage,
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}"[:8000],
        )
    else:
        # Importing outputs writes rows of its own: only the attempt that holds the job may.
        if reporter.lost or not _holds(lease):
            log.warning("%s finished after losing its lease; its outputs are dropped", lease)
            return
        try:
            result = {**result, **before_success(job_id, job_type, result)}
        except JobOutputError as exc:
            _finish(lease, JobStatus.failed, usage, error=str(exc))
            return
        except Exception as exc:
            log.exception("job %s: storing its outputs failed", job_id)
            _finish(lease, JobStatus.failed, usage, error=f"Storing the outputs failed: {exc}")
            return
        if _finish(lease, JobStatus.succeeded, usage, result=result, progress=1.0, message="done"):
            after_success(job_id, job_type)
