"""Thin Celery tasks: one per job type, each takes a job id and nothing else."""

from __future__ import annotations

from app.jobs.service import task_name
from app.jobs.specs import JOB_TYPES
from workers.celery_app import celery_app
from workers.runner import execute


def _register(job_type: str) -> None:
    @celery_app.task(name=task_name(job_type), bind=True, acks_late=True, ignore_result=True)
    def run(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
        execute(job_id, worker=self.request.hostname or "worker")


for _name in JOB_TYPES:
    _register(_name)
