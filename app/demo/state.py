"""What the demo's pipeline has already started: its own jobs only, never another user's
and never its sweep's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Job, JobStatus

# A failed or cancelled step is started again by the next advance; the others count as taken.
TAKEN = (JobStatus.queued, JobStatus.running, JobStatus.succeeded)


def demo_jobs(
    db: Session,
    owner_id: int,
    job_type: str,
    where: Callable[[dict[str, Any]], bool] = lambda params: True,
) -> list[Job]:
    jobs = db.scalars(
        select(Job)
        .where(Job.type == job_type, Job.owner_id == owner_id, Job.status.in_(TAKEN))
        # The demo sweep's jobs have the same owner and types; they are the sweep's own.
        .where(Job.sweep_id.is_(None))
        .order_by(Job.id)
    )
    return [job for job in jobs if where(job.params or {})]


def active_or_done(
    db: Session,
    owner_id: int,
    job_type: str,
    where: Callable[[dict[str, Any]], bool] = lambda params: True,
) -> Job | None:
    found = demo_jobs(db, owner_id, job_type, where)
    return found[0] if found else None
