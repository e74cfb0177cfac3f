"""What else changes when a job ends: rows that a job type fills in (a dataset's counts and
hash after its import), written in the same transaction that ends the job so the two never
disagree."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.models import Job

log = logging.getLogger(__name__)


def on_job_finished(db: Session, job: Job) -> None:
    from app.datasets.service import record_outcome

    record_outcome(db, job)


def before_success(job_id: int, job_type: str, result: dict[str, Any]) -> dict[str, Any]:
    """Work that must be done before a job may be called succeeded (in its own transaction);
    returns fields to add to the result. Raises `OutputImportError` to fail the job instead."""
    if job_type in ("sample", "translate"):
        from app.gans.service import import_outputs

        return import_outputs(job_id, result)
    return {}


def after_success(job_id: int) -> None:
    """Work that follows a success once the transaction that ended the job has committed (a
    subset's dataset is ready then, a sample's image set exists): a sweep's next jobs, and on
    a demo installation the demo's next steps. Never raises: the job has succeeded whatever
    happens here, and a later continuation catches up on what this one could not do."""
    from app.demo.loader import continue_demo
    from app.sweeps.service import continue_sweep

    try:
        continue_sweep(job_id)
    except Exception:
        log.exception("continuing the sweep of job %s failed", job_id)
    try:
        continue_demo(job_id)
    except Exception:
        log.exception("continuing the demo after job %s failed", job_id)
