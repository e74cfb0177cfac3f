"""Which database errors are worth another try, and the bounded retry around a unit of work."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from app.db import DatabaseBusy, backoff_s, is_transient, retry_transient


def _wrapped(orig: Exception, cls: type[DBAPIError] = OperationalError, **kw: bool) -> DBAPIError:
    return cls("INSERT INTO answers ...", {}, orig, **kw)


def test_sqlite_lock_contention_is_transient_other_sqlite_errors_are_not() -> None:
    assert is_transient(_wrapped(sqlite3.OperationalError("database is locked")))
    assert is_transient(_wrapped(sqlite3.OperationalError("database table is locked")))
    assert not is_transient(_wrapped(sqlite3.OperationalError("no such table: answers")))
    assert not is_transient(_wrapped(sqlite3.OperationalError("disk I/O error")))


def test_postgres_lost_connections_and_rolled_back_transactions_are_transient() -> None:
    shutdown = psycopg.errors.AdminShutdown("terminating connection due to administrator command")
    assert is_transient(_wrapped(shutdown))
    assert is_transient(_wrapped(psycopg.errors.SerializationFailure("could not serialize")))
    assert is_transient(_wrapped(psycopg.OperationalError("server closed the connection")))
    # Whatever the error class: SQLAlchemy saw the connection die under it.
    lost = psycopg.errors.InternalError("connection is closed")
    assert is_transient(_wrapped(lost, DBAPIError, connection_invalidated=True))


def test_constraint_violations_and_plain_exceptions_are_not_transient() -> None:
    unique = sqlite3.IntegrityError("UNIQUE constraint failed: answers.schedule_entry_id")
    assert not is_transient(_wrapped(unique, IntegrityError))
    assert not is_transient(ValueError("database is locked"))


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(3)
    pauses = [backoff_s(n, rng) for n in range(1, 12)]
    assert 0.05 <= pauses[0] <= 0.15
    assert 0.2 <= pauses[2] <= 0.6
    assert all(p <= 3.0 for p in pauses)
    assert len({round(backoff_s(5, rng), 6) for _ in range(20)}) > 1  # not in lockstep


@pytest.fixture
def db(tmp_path: Path) -> Session:
    engine = create_engine(f"sqlite:///{tmp_path / 'r.sqlite'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (v INTEGER)"))
    with Session(engine) as session:
        yield session
    engine.dispose()


def test_retry_runs_the_work_again_after_a_transient_error(db: Session) -> None:
    calls: list[int] = []

    def work() -> int:
        calls.append(1)
        db.execute(text("INSERT INTO t VALUES (1)"))
        if len(calls) < 3:
            raise _wrapped(sqlite3.OperationalError("database is locked"))
        db.commit()
        return len(calls)

    assert retry_transient(db, work, attempts=3) == 3
    # The failed attempts were rolled back: only the last insert is stored.
    assert db.scalar(text("SELECT count(*) FROM t")) == 1


def test_retry_gives_up_with_database_busy_and_leaves_other_errors_alone(db: Session) -> None:
    def locked() -> None:
        raise _wrapped(sqlite3.OperationalError("database is locked"))

    with pytest.raises(DatabaseBusy) as busy:
        retry_transient(db, locked, attempts=2)
    assert busy.value.retry_after_s > 0

    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise _wrapped(sqlite3.OperationalError("no such table: nowhere"))

    with pytest.raises(OperationalError):
        retry_transient(db, broken, attempts=5)
    assert calls == [1]
