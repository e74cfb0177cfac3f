"""The life of one job attempt, driven by the Job row. Safe to run twice for the same id."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded

from app.config import get_settings
from app.db import session_scope
from app.gans.service import OutputImportError
from app.jobs.outcomes import after_success, before_success, on_job_finished
from app.jobs.service import artefact_dir_for
from app.models import Job, JobStatus
from app.models.types import utcnow
from ml.progress import ProgressFn, Stopped
from workers.energy import add_attempt, measure
from workers.handlers import HANDLERS
from workers.reporting import JobCancelled, JobReporter

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
    if job.heartbeat_at is None:
        return False
    age = (utcnow() - job.heartbeat_at).total_seconds()
    return age < get_settings().heartbeat_timeout_s


def _start(job_id: int, worker: str) -> tuple[str, dict, Path] | None:
    with session_scope() as db:
        job = db.get(Job, job_id, with_for_update=True)
        if job is None:
            log.warning("job %s does not exist; dropping the message", job_id)
            return None
        if job.status.finished:
            return None  # a duplicate delivery of a job that already ended
        if job.status is JobStatus.running and _alive(job):
            # A duplicate delivery (a broker redelivering, a requeued orphan) while another
            # attempt still sends heartbeats: two attempts would write one checkpoint folder.
            log.warning("job %s runs on %s; dropping a duplicate delivery", job_id, job.worker)
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
        return job.type, dict(job.params), artefacts


def _finish(job_id: int, status: JobStatus, attempt: dict | None = None, **values: object) -> None:
    with session_scope() as db:
        job = db.get(Job, job_id)
        if job is None:
            return
        if attempt is not None:
            job.resources = add_attempt(job.resources, attempt)
        job.status = status
        job.finished_at = utcnow()
        for key, value in values.items():
            setattr(job, key, value)
        on_job_finished(db, job)


def execute(job_id: int, worker: str = "in-process", *, listener: ProgressFn | None = None) -> None:
    """Run one attempt of the job. `listener` also receives every progress call unthrottled
    (the CLI's progress bar); the database still gets the throttled writes."""
    started = _start(job_id, worker)
    if started is None:
        # A redelivered job that had already succeeded: its worker may have died before
        # continuing the job's sweep (idempotent, and a no-op for jobs outside sweeps).
        after_success(job_id)
        return
    job_type, params, artefacts = started
    artefacts.mkdir(parents=True, exist_ok=True)
    handler = HANDLERS.get(job_type)
    if handler is None:
        _finish(job_id, JobStatus.failed, error=f"No handler for job type {job_type!r}.")
        return
    settings = get_settings()
    usage: dict = {}
    limit = settings.job_soft_time_limit_s
    reporter = JobReporter(job_id, listener=listener, time_limit_s=limit)
    try:
        with (
            measure(tracking=settings.energy_tracking, country=settings.co2_country) as usage,
            reporter,
        ):
            result = handler(params, artefacts, reporter.progress, reporter.should_stop)
    except (Stopped, JobCancelled) as exc:
        if reporter.timed_out:
            _finish(job_id, JobStatus.failed, usage, error=time_limit_error(limit))
        else:
            _finish(job_id, JobStatus.cancelled, usage, message=f"cancelled: {exc}")
    except SoftTimeLimitExceeded:  # Celery's backstop for code that never asks should_stop
        _finish(job_id, JobStatus.failed, usage, error=time_limit_error(limit))
    except Exception as exc:
        log.exception("job %s failed", job_id)
        _finish(
            job_id,
            JobStatus.failed,
            usage,
            error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc(limit=8)}"[:8000],
        )
    else:
        try:
            result = {**result, **before_success(job_id, job_type, result)}
        except OutputImportError as exc:
            _finish(job_id, JobStatus.failed, usage, error=str(exc))
            return
        except Exception as exc:
            log.exception("job %s: storing its outputs failed", job_id)
            _finish(job_id, JobStatus.failed, usage, error=f"Storing the outputs failed: {exc}")
            return
        _finish(job_id, JobStatus.succeeded, usage, result=result, progress=1.0, message="done")
        after_success(job_id)
