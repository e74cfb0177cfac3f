"""Thin Celery tasks: one per job type, each takes a job id and nothing else."""

from __future__ import annotations

import logging

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import WorkerLostError
from celery import Task
from celery.signals import worker_process_init, worker_ready
from celery.worker.request import Request

from app.config import get_settings
from app.db import get_engine
from app.jobs.heartbeats import recovery_period
from app.jobs.registry import job_types
from app.jobs.service import task_name
from app.queue import celery_app
from workers.handlers import handler_for
from workers.recovery import fail_killed_at_time_limit, release_lost_attempt, requeue_orphans
from workers.runner import execute, time_limit_error

log = logging.getLogger(__name__)


def _job_id(request: Request) -> int | None:
    args = request.args
    return int(args[0]) if args else None


class JobRequest(Request):
    """The worker's main process learns here of a pool process that died under a job; the
    Job row must hear of it before Celery acts on the message."""

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        job_id = _job_id(self)
        # Before super(): it requeues the message, and the redelivery must find the attempt
        # already released. Celery counts a pool process's SystemExit as a lost worker too.
        died = isinstance(exc, WorkerLostError) or (
            isinstance(exc, SystemExit | KeyboardInterrupt)
            and not (self._already_cancelled or self._already_revoked)
        )
        if died and job_id is not None:
            try:
                release_lost_attempt(job_id, self.hostname, str(exc))
            except Exception:
                log.exception("job %s: recording the lost attempt failed", job_id)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        job_id = _job_id(self)
        if soft or job_id is None:
            return
        try:
            fail_killed_at_time_limit(job_id, self.hostname, time_limit_error(timeout, killed=True))
        except Exception:
            log.exception("job %s: recording the hard time limit failed", job_id)


class JobTask(Task):
    Request = JobRequest


def _register(job_type: str) -> None:
    @celery_app.task(
        name=task_name(job_type), bind=True, base=JobTask, acks_late=True, ignore_result=True
    )
    def run(self, job_id: int) -> None:  # type: ignore[no-untyped-def]
        execute(job_id, worker=self.request.hostname or "worker")


for _name in job_types():
    _register(_name)
    # Import every handler (torch with most) here, in the worker's main process, so that pool
    # processes fork with it loaded. A pool process that imported torch on its first job would
    # hold the interpreter lock for seconds; under load its heartbeat thread then fell silent
    # for longer than the heartbeat timeout and the job was taken over as orphaned.
    handler_for(_name)


def _recover(queues: list[str]) -> None:
    try:
        requeue_orphans(queues)
    except Exception:  # the database may be down for now: the next round tries again
        log.exception("looking for jobs orphaned by dead workers failed")


@worker_ready.connect
def _resume_orphans(sender: object = None, **_: object) -> None:
    # `sender` is the consumer. Orphans are found by their stale heartbeat, now and every
    # recovery period after: a job whose worker died just before this one started is still
    # fresh now, and is taken over once it is not.
    app = getattr(sender, "app", None)
    queues = sorted(app.amqp.queues.consume_from) if app is not None else []
    if not queues:
        return
    _recover(queues)
    timer = getattr(sender, "timer", None)
    if timer is not None:
        period = recovery_period(get_settings().heartbeat_timeout_s)
        timer.call_repeatedly(period, _recover, (queues,))


@worker_process_init.connect
def _own_database_connections(**_: object) -> None:
    # A pool process forked after the main one used the database (requeue_orphans, the
    # JobRequest hooks) inherits its pooled connections: two processes on one socket corrupt
    # each other. Drop them here without closing them, which would close the parent's too.
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
