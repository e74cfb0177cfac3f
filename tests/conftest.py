"""Shared fixtures: real databases (SQLite, PostgreSQL), real brokers (embedded, Redis), real
worker and server processes. Nothing of ours is mocked."""

from __future__ import annotations

import contextlib
import gc
import glob
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql import factories as pg_factories
from pytest_redis import factories as redis_factories
from support import (
    TEST_NODE_VAR,
    TEST_RUN_VAR,
    Env,
    Process,
    Server,
    activate,
    processes_of_this_run,
    start_server,
    start_worker,
)

# Set before any test starts a process: every process of this run inherits it, whoever its
# parent ends up being (an embedded worker whose server died is reparented away from pytest).
os.environ[TEST_RUN_VAR] = str(os.getpid())
# Processes still dying when the run ends (a pool process whose worker was just killed) get
# this long to go; whatever is alive after it was left behind.
LEFTOVER_GRACE_S = 5.0


# The run's process ends up holding about 2 GB of objects (apps, engines, torch modules of
# earlier tests), and every collection of the oldest generation walks all of them: late in the
# run a CPU-bound test took 14 s that alone takes 4 s. Frozen objects are not walked; every
# FREEZE_ROUNDS tests they are unfrozen and collected once, so garbage does not pile up.
FREEZE_ROUNDS = 100
_setups = 0


def pytest_runtest_setup(item: pytest.Item) -> None:
    global _setups
    os.environ[TEST_NODE_VAR] = item.nodeid  # names the culprit of a leftover process
    _setups += 1
    if _setups % FREEZE_ROUNDS == 0:
        gc.unfreeze()
        gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a process it started outlived it. Session fixtures (the PostgreSQL and
    Redis servers of pytest-postgresql and pytest-redis) are torn down before this hook."""
    deadline = time.monotonic() + LEFTOVER_GRACE_S
    leftovers = processes_of_this_run()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = processes_of_this_run()
    if not leftovers:
        return
    lines = [f"{len(leftovers)} process(es) started by the tests outlived them:"]
    for leftover in leftovers:
        lines.append(
            f"  pid {leftover.pid}, started during {leftover.started_by}: {leftover.cmdline}"
        )
        with contextlib.suppress(ProcessLookupError):
            os.kill(leftover.pid, signal.SIGKILL)  # by id, each one this run started
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "processes left behind", red=True)
    for line in lines:
        if reporter is not None:
            reporter.write_line(line, red=True)
        else:
            print(line, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _pg_ctl() -> str | None:
    found = shutil.which("pg_ctl") or sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return found if isinstance(found, str) else (found[-1] if found else None)


# initdb refuses to run as root; as root (CI containers) we use the machine's running server
# through pytest-postgresql's noproc fixture, which still gives each test a fresh database.
if os.geteuid() != 0 and _pg_ctl():
    postgresql_server = pg_factories.postgresql_proc(executable=_pg_ctl(), port=None)
else:
    postgresql_server = pg_factories.postgresql_noproc(
        host=os.environ.get("SYNTHBENCH_TEST_PG_HOST", "127.0.0.1"),
        port=int(os.environ.get("SYNTHBENCH_TEST_PG_PORT", "5432")),
        user=os.environ.get("SYNTHBENCH_TEST_PG_USER", "postgres"),
        password=os.environ.get("SYNTHBENCH_TEST_PG_PASSWORD", ""),
        # Per-process names: two runs on one server (or a run killed mid-way, which leaves
        # its template behind) must not collide on pytest-postgresql's fixed "tests_tmpl".
        dbname=f"synthbench_test_{os.getpid()}",
    )
postgresql = pg_factories.postgresql("postgresql_server")

redis_server = redis_factories.redis_proc(executable=shutil.which("redis-server") or "redis-server")


@pytest.fixture
def pg_url(postgresql) -> str:  # type: ignore[no-untyped-def]
    info = postgresql.info
    password = f":{info.password}" if info.password else ""
    return f"postgresql+psycopg://{info.user}{password}@{info.host}:{info.port}/{info.dbname}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """Both databases, embedded broker."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'synthbench.sqlite'}"
    else:
        url = request.getfixturevalue("pg_url")
    environment = Env(tmp_path, url, f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")
    activate(environment, monkeypatch)
    yield environment
    from app.db import get_engine

    get_engine().dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def stack(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """SQLite + the embedded broker, or PostgreSQL + Redis."""
    if request.param == "sqlite":
        env = Env(
            tmp_path,
            f"sqlite:///{tmp_path / 'synthbench.sqlite'}",
            f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
        )
    else:
        redis = request.getfixturevalue("redis_server")
        pg_url = request.getfixturevalue("pg_url")
        # One Redis serves the whole session: an earlier test's leftover messages (workers are
        # killed at teardown) must not reach this test's worker with another database's ids.
        import redis as redis_client

        redis_client.Redis(host=redis.host, port=redis.port).flushall()
        env = Env(tmp_path, pg_url, f"redis://{redis.host}:{redis.port}/0")
    activate(env, monkeypatch)
    yield env
    from app.db import get_engine

    get_engine().dispose()


@pytest.fixture
def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    environment = Env(
        tmp_path,
        f"sqlite:///{tmp_path / 'synthbench.sqlite'}",
        f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}",
    )
    activate(environment, monkeypatch)
    return environment


@pytest.fixture
def worker_factory() -> Iterator:
    started: list[Process] = []

    def make(env: Env, name: str = "worker") -> Process:
        process = start_worker(env, name)
        started.append(process)
        return process

    yield make
    for process in started:
        # The test is over and its checks are done: a warm Celery shutdown (about 7 s of
        # draining the broker connection) would only add to the suite's time.
        process.stop(signal.SIGKILL)


@pytest.fixture
def server_factory() -> Iterator:
    started: list[Server] = []

    def make(env: Env, **kwargs: bool) -> Server:
        server = start_server(env, **kwargs)
        started.append(server)
        return server

    yield make
    for server in started:
        server.process.stop()
