"""Thin Celery tasks: one per job type, each takes a job id and nothing else."""

from __future__ import annotations

from celery.signals import worker_ready

from app.jobs.service import task_name
from app.jobs.specs import JOB_TYPES
from workers.celery_app import celery_app
from workers.recovery import requeue_orphans
from workers.runner import execute


def _register(job_type: str) -> None:
    @celery_app.task(name=task_name(job_type), bind=True, acks_late=True, ignore_result=True)
    def run(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
        execute(job_id, worker=self.request.hostname or "worker")


for _name in JOB_TYPES:
    _register(_name)


@worker_ready.connect
def _resume_orphans(sender: object = None, **_: object) -> None:
    # `sender` is the consumer; its hostname is the name jobs were recorded under.
    hostname = getattr(sender, "hostname", None)
    if hostname:
        requeue_orphans(hostname)
