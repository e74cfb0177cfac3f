"""The release verdict shown beside an image set: its newest finished privacy check.

The check itself is an evaluation job (`app.evaluation`, `ml.metrics.neighbours`); an image set's
pages only read its stored verdict, so this lookup lives with the sets and needs nothing from
the evaluation package.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.models import Job, JobStatus


def latest_release_verdict(
    db: Session, principal: Principal | None, image_set_id: int
) -> dict[str, Any] | None:
    """The newest finished privacy check of a set: {'passes', 'reasons', 'job_id', ...}."""
    # Matched in SQL: reading every privacy job's JSON (1,200 of 10,000 jobs) took 400 ms of
    # each image set page (bench/pages_at_scale.py).
    query = (
        select(Job)
        .where(
            Job.type == "nearest_neighbours",
            Job.status == JobStatus.succeeded,
            Job.result["image_set_id"].as_integer() == image_set_id,
        )
        .order_by(Job.id.desc())
        .limit(1)
    )
    if principal is not None and not principal.is_admin:
        query = query.where(Job.owner_id == principal.user.id)
    job = db.scalars(query).first()
    if job is None or not job.result:
        return None
    # Results from before the gate was a test carry max_share instead of alpha.
    gate = {key: job.result.get(key) for key in ("alpha", "max_share")}
    return {**job.result["release"], "job_id": job.id, **gate}
