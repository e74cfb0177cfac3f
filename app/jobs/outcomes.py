"""What else changes when a job ends, as each job type declares it (`app.jobs.registry`): rows a
job type fills in (a dataset's counts and hash after its import) are written in the same
transaction that ends the job, so the two never disagree."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.jobs.registry import catalog, kind_of, resolve
from app.models import Job

log = logging.getLogger(__name__)


class JobOutputError(RuntimeError):
    """A job's outputs cannot be stored (a sample that is not a valid image set): the job
    fails with this message instead of succeeding."""


def on_job_finished(db: Session, job: Job) -> None:
    kind = kind_of(job.type)
    if kind is not None and kind.on_finished:
        resolve(kind.on_finished)(db, job)


def before_success(job_id: int, job_type: str, result: dict[str, Any]) -> dict[str, Any]:
    """Work that must be done before a job may be called succeeded (in its own transaction);
    returns fields to add to the result. Raises `JobOutputError` to fail the job instead."""
    kind = kind_of(job_type)
    if kind is None or not kind.before_success:
        return {}
    return resolve(kind.before_success)(job_id, result)


def after_success(job_id: int, job_type: str | None = None) -> None:
    """Work that follows a success once the transaction that ended the job has committed (a
    subset's dataset is ready then, a sample's image set exists): the job type's own hook,
    then what follows any job (a sweep's next jobs, the demo's next steps). Never raises: the
    job has succeeded whatever happens here, and a later continuation catches up on what this
    one could not do. Without `job_type` (a redelivery of a job that had already succeeded)
    only what follows any job runs again: those continuations are idempotent."""
    kind = kind_of(job_type) if job_type else None
    own = (kind.after_success,) if kind is not None and kind.after_success else ()
    for hook in (*own, *catalog().after_any_success):
        try:
            resolve(hook)(job_id)
        except Exception:
            log.exception("%s after job %s failed", hook, job_id)
