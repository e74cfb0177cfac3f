"""Jobs: the runner over the Job row, the reaper, and the whole path web form -> broker ->
worker process -> result page, with SQLite + the embedded broker and PostgreSQL + Redis."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from support import Env, load_job, make_user, wait_for_job, wait_until
from web_client import WebClient

from app.db import session_scope
from app.jobs import service
from app.jobs.image_stats import image_stats_spec
from app.jobs.specs import SpecError
from app.models import Job, JobStatus
from app.models.types import utcnow
from workers.runner import MAX_ATTEMPTS, execute


def _new_job(**values: object) -> int:
    with session_scope() as db:
        job = service.create_job(db, image_stats_spec("paediatric-cxr"), owner_id=None)
        for key, value in values.items():
            setattr(job, key, value)
        return job.id


def test_runner_computes_statistics_of_the_real_xrays(sqlite_env: Env) -> None:
    job_id = _new_job()
    execute(job_id)
    job = load_job(job_id)
    assert job.status is JobStatus.succeeded, job.error
    assert job.progress == 1.0 and job.attempts == 1
    assert job.result["n_images"] == 16
    assert job.result["by_label"]["normal"]["n"] == 8
    assert job.result["by_label"]["pneumonia"]["n"] == 8
    assert sum(job.result["histogram"]) == sum(
        i["height"] * i["width"] for i in job.result["images"]
    )
    assert 0.2 < job.result["by_label"]["normal"]["mean"] < 0.8
    assert (Path(job.artefact_dir) / "image_stats.json").exists()
    # A second delivery of the same finished job changes nothing.
    execute(job_id)
    assert load_job(job_id).attempts == 1


def test_spec_rejects_unknown_collection_and_queue() -> None:
    with pytest.raises(SpecError, match="Unknown image collection"):
        image_stats_spec("no-such-images")
    with pytest.raises(SpecError, match="Unknown queue"):
        image_stats_spec("paediatric-cxr", queue="tpu")


def test_poison_job_stops_after_max_attempts(sqlite_env: Env) -> None:
    job_id = _new_job(attempts=MAX_ATTEMPTS, status=JobStatus.running)
    execute(job_id)
    job = load_job(job_id)
    assert job.status is JobStatus.failed
    assert f"Gave up after {MAX_ATTEMPTS} attempts" in (job.error or "")


def test_cancel_requested_before_start_is_honoured(sqlite_env: Env) -> None:
    job_id = _new_job()
    with session_scope() as db:
        service.request_cancel(db, db.get(Job, job_id))
    assert load_job(job_id).status is JobStatus.cancelled
    execute(job_id)  # a late delivery must not resurrect it
    assert load_job(job_id).status is JobStatus.cancelled


def test_reaper_fails_jobs_whose_heartbeat_stopped(env: Env) -> None:
    stale = _new_job(status=JobStatus.running, heartbeat_at=utcnow() - timedelta(minutes=10))
    fresh = _new_job(status=JobStatus.running, heartbeat_at=utcnow())
    with session_scope() as db:
        assert service.reap_stale(db, timeout_s=60) == 1
    assert load_job(stale).status is JobStatus.failed
    assert "stopped sending heartbeats" in (load_job(stale).error or "")
    assert load_job(fresh).status is JobStatus.running


def _wait_finished(job_id: int, timeout: float = 90) -> Job:
    return wait_for_job(job_id, lambda j: j.status.finished, timeout)


def _launch_over_http(server_url: str) -> tuple[WebClient, int]:
    web = WebClient(httpx.Client(base_url=server_url, timeout=30))
    assert web.login("rita", "rita-password-1").status_code == 303
    response = web.post_form(
        "/jobs", {"collection": "paediatric-cxr", "queue": "cpu"}, token_from="/jobs"
    )
    assert response.status_code == 303, response.text
    job_id = int(response.headers["location"].rsplit("/", 1)[1])
    return web, job_id


def _end_to_end(env: Env, server_factory, worker_factory) -> None:  # type: ignore[no-untyped-def]
    make_user("rita", "rita-password-1", "researcher")
    server = server_factory(env)
    worker_factory(env)
    web, job_id = _launch_over_http(server.url)
    job = _wait_finished(job_id)
    assert job.status is JobStatus.succeeded, job.error
    assert job.worker and job.worker != "in-process"  # ran in the worker process
    page = web.get(f"/jobs/{job_id}")
    assert "succeeded" in page.text and "16 images" in page.text
    fragment = web.get(f"/jobs/{job_id}", headers={"HX-Request": "true"})
    assert 'id="job-status"' in fragment.text and "every 1s" not in fragment.text  # polling ends


@pytest.mark.worker
def test_job_end_to_end_sqlite_embedded_broker(sqlite_env, server_factory, worker_factory) -> None:  # type: ignore[no-untyped-def]
    assert sqlite_env.broker_url.startswith("sqla+sqlite")
    _end_to_end(sqlite_env, server_factory, worker_factory)


@pytest.mark.worker
@pytest.mark.postgres
@pytest.mark.redis
def test_job_end_to_end_postgresql_redis(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, pg_url, redis_server, server_factory, worker_factory
) -> None:
    from support import activate

    env = Env(tmp_path, pg_url, f"redis://{redis_server.host}:{redis_server.port}/0")
    activate(env, monkeypatch)
    _end_to_end(env, server_factory, worker_factory)


@pytest.mark.worker
def test_duplicate_delivery_runs_the_job_once(sqlite_env, worker_factory) -> None:  # type: ignore[no-untyped-def]
    job_id = _new_job()
    job = load_job(job_id)
    service.enqueue(job)
    service.enqueue(job)  # at-least-once delivery: the same id may arrive twice
    worker = worker_factory(sqlite_env)
    finished = _wait_finished(job_id)
    assert finished.status is JobStatus.succeeded
    # The second message consumed too: the worker has handled both deliveries.
    wait_until(lambda: worker.output().count("succeeded in") == 2, what="the second delivery")
    assert service.broker_queue_sizes(["cpu"]) == {"cpu": 0}
    assert load_job(job_id).attempts == 1


@pytest.mark.worker
def test_queued_job_waits_for_a_worker_then_runs(sqlite_env, worker_factory) -> None:  # type: ignore[no-untyped-def]
    with session_scope() as db:
        job = service.submit(db, image_stats_spec("pydicom-samples"), owner_id=None)
        job_id = job.id
    queue = load_job(job_id).queue
    # Its message waits in the broker, and nothing consumes it yet.
    wait_until(lambda: service.broker_queue_sizes([queue]) == {queue: 1}, what="the message")
    assert load_job(job_id).status is JobStatus.queued
    worker_factory(sqlite_env)
    finished = _wait_finished(job_id)
    assert finished.status is JobStatus.succeeded, finished.error
    assert finished.result["n_images"] >= 2


def test_submit_with_unreachable_broker_keeps_the_job_until_it_can_be_sent(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch
) -> None:
    from support import point_celery_at

    from app.queue import celery_app

    # Reading a setting first makes Celery configure itself from settings now: configured
    # later, it would overwrite the broker URL set here with the installation's own.
    monkeypatch.setitem(celery_app.conf, "broker_connection_timeout", 1)
    point_celery_at("redis://127.0.0.1:1/0")
    with session_scope() as db:
        job = service.submit(db, image_stats_spec("paediatric-cxr"), owner_id=None)
        job_id = job.id
    job = load_job(job_id)
    assert job.status is JobStatus.queued  # a broker restart must not lose the job
    assert "Waiting for the job broker" in job.message
    with session_scope() as db, pytest.raises(Exception):  # any broker error
        service.redispatch_lost(db, after_s=0)  # still down: nothing sent, try again later

    point_celery_at(sqlite_env.broker_url)  # the broker is back
    with session_scope() as db:
        assert service.redispatch_lost(db, after_s=0) == [job_id]
        assert service.broker_queue_sizes(["cpu"]) == {"cpu": 1}
        # Its message waits in the broker now: the next round sends nothing again.
        assert service.redispatch_lost(db, after_s=0) == []
    assert load_job(job_id).message == "sent to the job broker"


def test_submit_with_a_misconfigured_broker_fails_the_job_clearly(sqlite_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from support import point_celery_at

    from app.queue import celery_app

    monkeypatch.setitem(celery_app.conf, "broker_connection_timeout", 1)  # configure now
    point_celery_at("rediss-typo://127.0.0.1:6379/0")  # no broker will ever answer this
    with session_scope() as db:
        job_id = service.submit(db, image_stats_spec("paediatric-cxr"), owner_id=None).id
    job = load_job(job_id)
    assert job.status is JobStatus.failed
    assert "Could not send the job to the broker: KeyError" in (job.error or "")
    assert "No such transport: rediss-typo" in (job.error or "")


def test_redispatch_sends_only_jobs_whose_message_is_lost(sqlite_env) -> None:  # type: ignore[no-untyped-def]
    from app.queue import celery_app

    with session_scope() as db:
        first = service.submit(db, image_stats_spec("paediatric-cxr"), owner_id=None).id
        assert service.redispatch_lost(db, after_s=0) == []  # its message is waiting
        assert service.redispatch_lost(db, after_s=3600) == []  # too young to be lost anyway
    celery_app.control.purge()  # the broker loses every message (no persistence, say)
    with session_scope() as db:
        assert service.broker_queue_sizes(["cpu", "gpu"]) == {"cpu": 0, "gpu": 0}
        assert service.redispatch_lost(db, after_s=3600) == []
        assert service.redispatch_lost(db, after_s=0) == [first]
        assert service.broker_queue_sizes(["cpu"]) == {"cpu": 1}


def test_job_list_shows_only_own_jobs(sqlite_env) -> None:  # type: ignore[no-untyped-def]
    a = make_user("a1", "password-a1", "researcher")
    b = make_user("b1", "password-b1", "researcher")
    _new_job(owner_id=a)
    _new_job(owner_id=b)
    with session_scope() as db:
        assert [j.owner_id for j in service.list_jobs(db, owner_id=a)] == [a]
        assert len(service.list_jobs(db, owner_id=None)) == 2
        assert db.scalar(select(Job).where(Job.owner_id == b)) is not None
