"""What else changes when a job ends: rows that a job type fills in (a dataset's counts and
hash after its import), written in the same transaction that ends the job so the two never
disagree."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.models import Job


def on_job_finished(db: Session, job: Job) -> None:
    from app.datasets.service import record_outcome
    from app.gans.service import record_samples

    record_outcome(db, job)
    record_samples(db, job)
