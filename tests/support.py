"""Test helpers that are not fixtures: installations, processes, users."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Env:
    """A synthbench installation: home folder, database and broker URLs."""

    home: Path
    database_url: str
    broker_url: str

    def environ(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(
            SYNTHBENCH_HOME=str(self.home),
            SYNTHBENCH_DATABASE_URL=self.database_url,
            SYNTHBENCH_BROKER_URL=self.broker_url,
            SYNTHBENCH_SECRET_KEY="test-secret-key-not-for-production-0123456789",
            PYTHONUNBUFFERED="1",
        )
        return env


def point_celery_at(broker_url: str) -> None:
    """Rebind this process's Celery producer to another broker.

    A running synthbench process never changes broker, so this lives in tests: Celery caches
    both a connection pool and a producer pool bound to the first broker it saw, and the
    transport options of its kind (Redis's visibility_timeout breaks the SQLAlchemy one).
    """
    from app.config import get_settings
    from app.queue import celery_app, transport_options

    celery_app.conf.broker_url = broker_url
    celery_app.conf.broker_transport_options = transport_options(
        broker_url, get_settings().job_time_limit_s
    )
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


def activate(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point this process's settings, engine and Celery producer at ``env``."""
    from app.config import get_settings
    from app.db import get_engine, get_sessionmaker
    from app.migrate import upgrade

    for key, value in env.environ().items():
        if key.startswith("SYNTHBENCH_"):
            monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    get_sessionmaker.cache_clear()
    get_engine.cache_clear()
    point_celery_at(env.broker_url)
    upgrade()


class Process:
    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            cwd=ROOT,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = 15, timeout: float = 20) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()
        self._fh.close()


def start_worker(env: Env, name: str = "worker") -> Process:
    argv = [sys.executable, "-m", "app.cli", "worker", "--queues", "gpu,cpu"]
    worker = Process(argv, env.environ(), env.home / f"{name}.log")
    deadline = time.monotonic() + 60
    while "ready." not in worker.output():
        if worker.proc.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise RuntimeError(f"worker did not start:\n{worker.output()[-3000:]}")
        time.sleep(0.2)
    return worker


@dataclass
class Server:
    url: str
    process: Process


def start_server(env: Env, *, embedded_worker: bool = False) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "app.cli", "serve", "--port", str(port)]
    argv.append("--embedded-worker" if embedded_worker else "--no-embedded-worker")
    process = Process(argv, env.environ(), env.home / "server.log")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Server(url, process)
        except httpx.HTTPError:
            pass
        if process.proc.poll() is not None or time.monotonic() > deadline:
            process.stop()
            raise RuntimeError(f"server did not start:\n{process.output()[-3000:]}")
        time.sleep(0.2)


def make_user(username: str, password: str, role: str) -> int:
    from app.auth.service import create_user
    from app.db import session_scope
    from app.models import Role

    with session_scope() as db:
        return create_user(db, username=username, password=password, role=Role(role)).id


def load_job(job_id: int) -> Any:
    """The job row as it is now, detached (the tests read it after the session closes)."""
    from app.db import session_scope
    from app.models import Job

    with session_scope() as db:
        job = db.get(Job, job_id)
        assert job is not None
        db.expunge(job)
        return job


def wait_for_job(job_id: int, predicate: Callable[[Any], bool], timeout: float = 60) -> Any:
    """Poll the job row until ``predicate`` holds; fail with its state after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        job = load_job(job_id)
        if predicate(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id}: {job.status} {job.message} {job.error}"
        time.sleep(0.1)


def wait_until(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)


# Every process this test run starts inherits these (conftest.py sets them in os.environ): the
# run's own processes are found by them at the end, even those reparented away from pytest.
TEST_RUN_VAR = "SYNTHBENCH_TEST_RUN"
TEST_NODE_VAR = "SYNTHBENCH_TEST_NODE"


@dataclass(frozen=True)
class Leftover:
    pid: int
    cmdline: str
    started_by: str  # the test that was running when it started


# Helpers of pytest's own process that watch a pipe to it and exit with it (multiprocessing's
# resource tracker and fork server, joblib's reusable workers): not left behind while attached.
_DIE_WITH_PYTEST = ("multiprocessing.resource_tracker", "multiprocessing.forkserver", "loky")


def processes_of_this_run() -> list[Leftover]:
    """Live processes (not zombies) started by this test run, pytest itself excluded."""
    marker = f"{TEST_RUN_VAR}={os.environ[TEST_RUN_VAR]}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            if marker not in environ:
                continue  # a zombie's environ reads empty: it is dead already
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # gone meanwhile, or another user's
            continue
        if ppid == os.getpid() and any(helper in cmdline for helper in _DIE_WITH_PYTEST):
            continue
        node = next(
            (
                e.split(b"=", 1)[1].decode()
                for e in environ
                if e.startswith(f"{TEST_NODE_VAR}=".encode())
            ),
            "(before any test)",
        )
        found.append(Leftover(pid, cmdline.strip(), node))
    return found


def run_cli(env: Env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``synthbench ARGS`` in a fresh process against ``env``, output captured, never raising."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def child_pids(pid: int) -> list[int]:
    """Live (not zombie) child processes of `pid`, read from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found
