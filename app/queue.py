"""The Celery app that the web tier sends jobs with and workers take them from. Configuration is
read from settings when Celery first needs it, not at import; it lives outside `workers/` so the
web tier and the jobs package need nothing from the workers package."""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.config import get_settings

QUEUES = ("gpu", "cpu")
# Celery's soft limit comes this long after our own (workers/reporting.py): a job that checks
# should_stop stops cleanly first; the exception Celery raises anywhere is only the backstop.
SOFT_LIMIT_GRACE_S = 30


def transport_options(broker_url: str, job_time_limit_s: int) -> dict[str, object]:
    if broker_url.startswith(("redis://", "rediss://")):
        # An unacked job is redelivered after this long; it must outlast the longest job, or a
        # healthy long job would be handed to a second worker.
        return {"visibility_timeout": job_time_limit_s + 600}
    # kombu's SQLAlchemy transport hands every option to create_engine(): pass none.
    return {}


class SynthbenchCelery(Celery):
    def on_configure(self) -> None:  # type: ignore[override]
        settings = get_settings()
        broker_url = settings.resolved_broker_url()
        self.conf.update(
            broker_url=broker_url,
            broker_connection_retry_on_startup=True,
            # Retry the broker forever: Celery's default gives up after 100 tries (about 45
            # minutes of a Redis outage) and the worker exits for good.
            broker_connection_max_retries=None,
            # Keep running jobs through a lost broker connection; the message may come again
            # and the runner drops it (the Job row says running or ended). Cancelling would
            # throw away hours of training for a broker restart.
            worker_cancel_long_running_tasks_on_connection_loss=False,
            # The Job row is the result store; Celery only carries job ids.
            task_ignore_result=True,
            result_backend=None,
            # At-least-once delivery: a job whose worker dies is delivered again, and tasks are
            # idempotent over the Job row, so a redelivery resumes rather than duplicates.
            task_acks_late=True,
            task_reject_on_worker_lost=True,
            worker_prefetch_multiplier=1,
            # How long Celery waits for a dead pool process's result before it declares the
            # worker lost (default 10 s). There is no result to wait for: the Job row says
            # whether the job ended, so a job whose process died is retried sooner.
            worker_lost_wait=2.0,
            task_soft_time_limit=settings.job_soft_time_limit_s + SOFT_LIMIT_GRACE_S,
            task_time_limit=settings.job_time_limit_s,
            task_queues=[Queue(name) for name in QUEUES],
            task_default_queue="cpu",
            task_serializer="json",
            accept_content=["json"],
            worker_hijack_root_logger=False,
            worker_send_task_events=False,
            broker_transport_options=transport_options(broker_url, settings.job_time_limit_s),
        )


celery_app = SynthbenchCelery("synthbench", include=["workers.tasks"])
