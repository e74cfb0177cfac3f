"""Sweeps: start one, continue it as its jobs succeed, and gather what its page shows.

This is event-driven continuation on top of Celery, not a scheduler of our own: every stage
is an ordinary job on an ordinary queue that any worker may take. When a sweep's job has
succeeded (and the transaction that ended it has committed, so a subset's dataset is ready and
a sample's image set exists), the worker calls `continue_sweep`, which creates the jobs whose
inputs now exist, commits and enqueues them. Nothing waits or polls.

Continuing is idempotent: each job names its sweep step and (sweep, step) is unique, so a
redelivered job, or two continuations at once, find the step's job already there. Each
continuation looks at the whole sweep, not only at the job that woke it, so one that was lost
(a worker that died between the two commits) is caught up by the next.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.auth.service import Principal
from app.datasets import service as datasets
from app.db import get_sessionmaker
from app.domain.not_found import NotFound
from app.jobs.service import commit_and_enqueue
from app.jobs.specs import SpecError
from app.models import Dataset, Job, JobStatus, Sweep
from app.sweeps import grid, stages, views

log = logging.getLogger(__name__)
CONTINUE_ATTEMPTS = 3


class SweepNotFound(NotFound):
    noun = "sweep"


def _steps(spec: grid.SweepSpec) -> list[grid.Step]:
    return grid.all_steps(grid.plan(p) for p in grid.points(spec))


def _jobs_by_step(db: Session, sweep_id: int) -> dict[str, Job]:
    jobs = db.scalars(select(Job).where(Job.sweep_id == sweep_id).order_by(Job.id))
    return {job.sweep_step: job for job in jobs if job.sweep_step}


def _root(db: Session, principal: Principal, raw_id: str) -> Dataset:
    dataset = datasets.chosen_dataset(db, principal, raw_id)
    datasets.require_ready(dataset)
    return dataset


def _launch(db: Session, jobs: list[Job]) -> None:
    """Commit, then enqueue: a worker must never get an id whose row it cannot see."""
    db.commit()
    for job in jobs:
        commit_and_enqueue(db, job)


def start_sweep(db: Session, principal: Principal, values: Mapping[str, str]) -> Sweep:
    """Check the form, create the sweep and the first jobs of every point, commit, enqueue.
    A `SpecError` leaves the session holding uncommitted rows: the caller rolls back."""
    root = _root(db, principal, values.get("dataset", ""))
    spec = grid.parse_spec(values, grid.facts_of(root.info))
    sweep = Sweep(
        owner_id=principal.user.id,
        name=spec.name,
        kind=spec.kind,
        dataset_id=root.id,
        spec=spec.as_json(),
        problems={},
    )
    db.add(sweep)
    db.flush()
    first = grid.next_stages(_steps(spec), {})
    created = [stages.create_step(db, sweep, spec, step, {}, root) for step in first]
    _launch(db, created)
    return sweep


def advance(db: Session, sweep: Sweep) -> list[Job]:
    """Create every step whose inputs now exist (flushed, not committed); steps a service
    refuses are recorded on the sweep, so the page can say why the point stopped."""
    spec = grid.SweepSpec.from_json(sweep.spec)
    jobs = _jobs_by_step(db, sweep.id)
    statuses = {key: job.status.value for key, job in jobs.items()}
    root = db.get(Dataset, sweep.dataset_id)
    if root is None:
        return []
    problems = dict(sweep.problems or {})
    created = []
    for step in grid.next_stages(_steps(spec), statuses):
        try:
            job = stages.create_step(db, sweep, spec, step, jobs, root)
        except SpecError as exc:
            problems[step.key] = exc.message
            continue
        problems.pop(step.key, None)
        jobs[step.key] = job
        created.append(job)
    if problems != (sweep.problems or {}):
        sweep.problems = problems  # a new dict: JSON columns do not track in-place changes
    return created


def _continue_once(job_id: int) -> list[int]:
    with get_sessionmaker()() as db:
        job = db.get(Job, job_id)
        if job is None or job.sweep_id is None or job.status is not JobStatus.succeeded:
            return []
        # The row lock serialises continuations of one sweep on PostgreSQL; on SQLite writers
        # are serial anyway and the unique (sweep, step) catches a stale read.
        sweep = db.get(Sweep, job.sweep_id, with_for_update=True)
        if sweep is None:
            return []
        created = advance(db, sweep)
        _launch(db, created)
        return [j.id for j in created]


def continue_sweep(job_id: int) -> list[int]:
    """After job `job_id` succeeded: create and enqueue its sweep's next jobs. Returns their
    ids (none for a job outside any sweep, or when nothing new can start)."""
    for attempt in range(1, CONTINUE_ATTEMPTS + 1):
        try:
            return _continue_once(job_id)
        except (IntegrityError, OperationalError) as exc:
            # Another continuation of the same sweep committed first: look again.
            log.warning("sweep continuation after job %s, try %d: %s", job_id, attempt, exc)
    return []


# --- pages -----------------------------------------------------------------------------------


def list_sweeps(db: Session, principal: Principal) -> list[Sweep]:
    query = select(Sweep).order_by(Sweep.id.desc())
    if not principal.is_admin:
        query = query.where(Sweep.owner_id == principal.user.id)
    return list(db.scalars(query))


def get_sweep(db: Session, sweep_id: int, principal: Principal) -> Sweep:
    sweep = db.get(Sweep, sweep_id)
    if sweep is None or not principal.can_see(sweep):
        # Same answer as a missing sweep: ids of other people's sweeps are not confirmed.
        raise SweepNotFound(sweep_id)
    return sweep


def sweep_view(db: Session, sweep: Sweep) -> dict[str, Any]:
    spec = grid.SweepSpec.from_json(sweep.spec)
    jobs = {
        key: views.JobFacts(job.id, job.status.value, job.result)
        for key, job in _jobs_by_step(db, sweep.id).items()
    }
    rows = views.point_rows(spec, jobs, sweep.problems or {})
    return {
        "sweep": sweep,
        "spec": spec,
        "root": db.get(Dataset, sweep.dataset_id),
        "rows": rows,
        "stages": [grid.STAGE_TITLES[s] for s in grid.STAGES],
        "summary": views.summary(rows),
        "n_jobs": len(jobs),
        "live": views.live(rows, jobs),
    }
