"""Workers under faults, with real worker, server and broker processes: the broker killed and
restarted mid-run, a worker killed under a job with nobody to take it over, a running job
cancelled or run past its time limits, and poison jobs that kill their process every attempt.

The job is a real dataset import of N hard links to the 16 paediatric X-rays: its length is
tunable and it checks `should_stop` after every image. Energy tracking is off: it only adds
start-up time to every attempt, and nothing here measures energy.

SIGKILL of a worker whose job then resumes from its checkpoint on a restarted worker, on both
stacks: tests/integration/test_gan_jobs.py::test_train_from_the_form_survive_sigkill_then_sample.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from dataset_fixtures import CXR
from support import ROOT, Env, Process, activate, free_port, load_job, wait_for_job

from app.config import get_settings
from app.datasets.options import parse_import_options
from app.datasets.service import launch, start_import
from app.db import session_scope
from app.jobs import service
from app.jobs.heartbeats import heartbeat_period, reap_after_s
from app.models import Dataset, DatasetStatus, Job, JobStatus
from workers.runner import MAX_ATTEMPTS

pytestmark = pytest.mark.worker


def _configure(monkeypatch: pytest.MonkeyPatch, **settings: object) -> None:
    """SYNTHBENCH_* settings for this process and the workers and servers it starts next."""
    monkeypatch.setenv("SYNTHBENCH_ENERGY_TRACKING", "false")
    for key, value in settings.items():
        monkeypatch.setenv(f"SYNTHBENCH_{key.upper()}", str(value))
    get_settings.cache_clear()


def _xray_folder(env: Env, copies: int) -> Path:
    """A folder-per-class dataset of `copies` x 16 X-rays (hard links: no disk to speak of)."""
    originals = env.home / "xray-originals"
    if not originals.exists():
        originals.mkdir(parents=True)
        for file in CXR.files:
            shutil.copy(file, originals / file.name)
    root = env.home / "imports" / f"xrays-{copies}"
    if not root.exists():
        for i in range(copies):
            for file, label in zip(CXR.files, CXR.labels, strict=True):
                dest = root / label / f"{i:04d}-{file.name}"
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.link(originals / file.name, dest)
    return root


# Imports that outlast a limit of a few seconds even on an idle machine whose decode pool uses
# every core (640 images took under 3 s): 3,200 hard links, no disk to speak of.
LONG_IMPORT = 200


def _import(env: Env, copies: int, name: str) -> int:
    """Submit an import job (committed and sent to the broker, as the web form does)."""
    source = _xray_folder(env, copies)
    with session_scope() as db:
        _, job = start_import(
            db,
            owner_id=None,
            name=name,
            source=source,
            options=parse_import_options("folder", resolutions="32"),
        )
        launch(db, job)
        return job.id


def _finished(job_id: int, timeout: float = 60) -> Job:
    return wait_for_job(job_id, lambda j: j.status.finished, timeout)


def _running(job_id: int, attempt: int = 1) -> Job:
    """Running attempt `attempt`, past its first images (so well inside the handler)."""
    return wait_for_job(
        job_id,
        lambda j: j.status is JobStatus.running and j.attempts == attempt and j.progress > 0,
    )


def _dataset_status(job_id: int) -> DatasetStatus:
    with session_scope() as db:
        dataset = db.get(Dataset, load_job(job_id).params["dataset_id"])
        assert dataset is not None
        return dataset.status


def _pool_processes(worker: Process) -> list[int]:
    """The prefork pool processes of a worker: the ones that run jobs."""
    parent = str(worker.proc.pid)
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = fields[0], fields[1]
        if ppid == parent and state != "Z":  # a dead one not reaped yet runs nothing
            children.append(int(stat.parent.name))
    return children


# ------------------------------------------------------------------ broker restart


class RedisServer:
    """redis-server with the production persistence flags (docker-compose.yml), on its own
    port and data folder, so it can be killed and started again on the same data."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
        flags = compose["services"]["redis"]["command"][1:]
        argv = [shutil.which("redis-server") or "redis-server", *flags]
        argv += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder)]
        with (self.folder / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 20
        while True:  # PING fails while the server replays its append-only file
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, (self.folder / "redis.log").read_text()
            time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


@pytest.mark.postgres
@pytest.mark.redis
def test_broker_killed_and_restarted_mid_run_loses_no_job(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, pg_url, own_redis, server_factory, worker_factory
) -> None:
    env = Env(tmp_path, pg_url, own_redis.url)
    # The server's reaper sends again, within about a second, what the broker does not hold.
    _configure(monkeypatch, reaper_interval_s=0.5, redispatch_after_s=2)
    activate(env, monkeypatch)
    server_factory(env)
    worker = worker_factory(env)  # one pool process: one job runs, the others wait
    jobs = [_import(env, 6, f"before-{i}") for i in range(4)]
    _running(jobs[0])
    assert [load_job(j).status for j in jobs[1:]] == [JobStatus.queued] * 3

    own_redis.kill()
    killed_at = time.monotonic()
    # Submitted while the broker is down: committed, still queued, and it says why.
    during = _import(env, 6, "during")
    assert load_job(during).status is JobStatus.queued
    assert "Waiting for the job broker" in load_job(during).message
    time.sleep(max(0.0, 2 - (time.monotonic() - killed_at)))
    own_redis.start()

    finished = [_finished(j, timeout=75) for j in [*jobs, during]]
    assert [j.status for j in finished] == [JobStatus.succeeded] * 5, [j.error for j in finished]
    # Each ran to completion exactly once: one attempt each, none begun again.
    assert [j.attempts for j in finished] == [1] * 5
    assert {_dataset_status(j.id) for j in finished} == {DatasetStatus.ready}
    log = worker.output()
    assert "Connection to broker lost" in log and log.count("Connected to redis://") >= 2


# ------------------------------------------------------------------ reaper


def test_job_of_a_vanished_worker_is_failed_within_a_bounded_time(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch, server_factory, worker_factory
) -> None:
    timeout_s, interval_s = 3, 0.5
    _configure(monkeypatch, heartbeat_timeout_s=timeout_s, reaper_interval_s=interval_s)
    server_factory(sqlite_env)
    worker = worker_factory(sqlite_env)
    job_id = _import(sqlite_env, 20, "orphan")
    _running(job_id)
    worker.stop(sig=signal.SIGKILL)  # the whole process group; no other worker exists
    killed_at = time.monotonic()
    assert load_job(job_id).status is JobStatus.running

    job = _finished(job_id, timeout=30)
    elapsed = time.monotonic() - killed_at
    assert job.status is JobStatus.failed
    assert f"stopped sending heartbeats for over {timeout_s} s" in (job.error or "")
    # The last heartbeat is at most one beat old at the kill; the reaper fails a job once its
    # heartbeat is `reap_after_s` old (a live worker could have taken it over until then) and
    # looks every interval.
    bound = reap_after_s(timeout_s) + interval_s + heartbeat_period(timeout_s) + 2.5  # loaded CI
    assert elapsed < bound, f"reaped {elapsed:.1f} s after the kill (bound {bound} s)"
    assert _dataset_status(job_id) is DatasetStatus.failed  # the import's dataset ends too


# ------------------------------------------------------------------ cancel and time limits


def test_cancel_stops_a_running_job_promptly(sqlite_env, monkeypatch, worker_factory) -> None:  # type: ignore[no-untyped-def]
    _configure(monkeypatch)
    worker_factory(sqlite_env)
    job_id = _import(sqlite_env, LONG_IMPORT, "cancelled")
    _running(job_id)
    with session_scope() as db:
        service.request_cancel(db, db.get(Job, job_id))
    asked_at = time.monotonic()
    job = _finished(job_id, timeout=30)
    elapsed = time.monotonic() - asked_at
    assert job.status is JobStatus.cancelled, job.error
    assert job.message.startswith("cancelled: import stopped after"), job.message
    assert job.progress < 1.0
    assert elapsed < 5, f"stopped {elapsed:.1f} s after the request"
    assert _dataset_status(job_id) is DatasetStatus.failed


def test_job_past_its_time_limit_is_stopped_and_failed(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch, worker_factory
) -> None:
    _configure(monkeypatch, job_soft_time_limit_s=2)
    worker_factory(sqlite_env)
    job_id = _import(sqlite_env, LONG_IMPORT, "too-long")
    job = _finished(job_id, timeout=60)
    assert job.status is JobStatus.failed
    assert "ran past its time limit of 2 s and was stopped" in (job.error or "")
    assert job.progress < 1.0 and job.attempts == 1
    assert job.resources is not None and 2 <= job.resources["wall_s"] < 6
    assert _dataset_status(job_id) is DatasetStatus.failed


def test_job_past_the_hard_time_limit_is_killed_failed_and_the_worker_goes_on(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch, worker_factory
) -> None:
    # Code that never checks should_stop: only Celery's hard limit (the pool process is
    # killed) can end it. A soft limit beyond the hard one stands in for such code here.
    _configure(monkeypatch, job_soft_time_limit_s=600, job_time_limit_s=3)
    worker = worker_factory(sqlite_env)
    job_id = _import(sqlite_env, LONG_IMPORT, "killed")
    job = _finished(job_id, timeout=60)
    assert job.status is JobStatus.failed
    assert "ran past its time limit of 3 s and was killed" in (job.error or ""), job.error
    assert job.attempts == 1
    # It is not run again, and the worker (with a fresh pool process) takes the next job.
    after = _import(sqlite_env, 1, "after")
    assert _finished(after).status is JobStatus.succeeded
    assert load_job(job_id).attempts == 1
    assert worker.proc.poll() is None


# ------------------------------------------------------------------ poison jobs


def test_job_that_kills_its_pool_process_every_time_ends_failed(  # type: ignore[no-untyped-def]
    stack, monkeypatch, worker_factory
) -> None:
    """The pool process dies under the job each attempt (the OOM killer, a segfault); the
    worker's main process lives on and Celery requeues the message every time."""
    _configure(monkeypatch)
    worker = worker_factory(stack)
    job_id = _import(stack, 20, "poison")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        _running(job_id, attempt)
        [pool] = _pool_processes(worker)
        os.kill(pool, signal.SIGKILL)
    job = _finished(job_id, timeout=30)
    assert job.status is JobStatus.failed
    assert job.error == f"Gave up after {MAX_ATTEMPTS} attempts that did not finish."
    assert job.attempts == MAX_ATTEMPTS
    assert worker.proc.poll() is None
    assert "released for a retry" in worker.output()


def test_job_whose_worker_is_killed_every_time_ends_failed(  # type: ignore[no-untyped-def]
    sqlite_env, monkeypatch, worker_factory
) -> None:
    """The whole worker is SIGKILLed under the job each attempt and restarted: each restart
    resumes the job (once its heartbeat is stale), until it has had MAX_ATTEMPTS."""
    _configure(monkeypatch, heartbeat_timeout_s=3)
    job_id = _import(sqlite_env, 20, "poison-worker")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        worker = worker_factory(sqlite_env, f"worker-{attempt}")
        _running(job_id, attempt)
        worker.stop(sig=signal.SIGKILL)
    worker_factory(sqlite_env, "worker-last")
    job = _finished(job_id, timeout=30)
    assert job.status is JobStatus.failed
    assert job.error == f"Gave up after {MAX_ATTEMPTS} attempts that did not finish."
    assert job.attempts == MAX_ATTEMPTS
