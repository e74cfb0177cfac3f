"""An attempt's lease on its Job row: the row names this worker and attempt and says running.

`_start` (workers/runner.py) takes the lease by writing both; whoever requeues, reaps, cancels
at start or starts another attempt changes one of them, and the old attempt's lease is gone.
Every write an attempt makes to the row is conditional on the lease, in the same statement,
so the check and the write cannot be split by another attempt's start (a row lock on
PostgreSQL, the database write lock on SQLite).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, select, update
from sqlalchemy.orm import Session

from app.models import Job, JobStatus
from app.models.types import utcnow


@dataclass(frozen=True)
class Lease:
    job_id: int
    worker: str
    attempt: int

    def held(self) -> ColumnElement[bool]:
        return and_(
            Job.id == self.job_id,
            Job.worker == self.worker,
            Job.attempts == self.attempt,
            Job.status == JobStatus.running,
        )

    def __str__(self) -> str:
        return f"job {self.job_id} attempt {self.attempt} on {self.worker}"


def renew(db: Session, lease: Lease, **values: object) -> bool:
    """Beat (and write `values`) if the lease is still held; False if it was lost. Within the
    caller's transaction the row stays locked: what follows is done under the lease."""
    result = db.execute(
        update(Job)
        .where(lease.held())
        .values(heartbeat_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def read(db: Session, lease: Lease) -> tuple[bool, bool]:
    """(lease held, cancel requested), read without writing."""
    row = db.execute(
        select(Job.worker, Job.attempts, Job.status, Job.cancel_requested).where(
            Job.id == lease.job_id
        )
    ).one_or_none()
    if row is None:
        return False, False
    held = (
        row.worker == lease.worker
        and row.attempts == lease.attempt
        and row.status == JobStatus.running
    )
    return held, bool(row.cancel_requested)
