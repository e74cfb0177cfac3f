"""Engine and session factory, built lazily from settings (never at import time), and the
bounded retry that keeps a busy or briefly unreachable database from surfacing as a 500."""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from app.config import get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")

SQLITE_POOL = (20, 20)
POSTGRES_POOL = (10, 10)


class Base(DeclarativeBase):
    pass


class DatabaseBusy(Exception):
    """The database stayed locked or unreachable through every retry: answer 503, not 500."""

    retry_after_s = 2


def _sqlite_pragmas(busy_timeout_ms: int) -> Callable[[Any, Any], None]:
    def apply(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL lets the web server read while a worker writes progress; NORMAL is durable across
        # application crashes (only an OS crash can lose the last commits).
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return apply


def make_engine(url: str) -> Engine:
    settings = get_settings()
    if url.startswith("sqlite"):
        size, overflow = SQLITE_POOL
        busy_ms = settings.sqlite_busy_timeout_ms
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            pool_size=settings.db_pool_size if settings.db_pool_size is not None else size,
            max_overflow=(
                settings.db_max_overflow if settings.db_max_overflow is not None else overflow
            ),
            pool_timeout=settings.db_pool_timeout_s,
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_ms))
        return engine
    size, overflow = POSTGRES_POOL
    # pre_ping: a connection the server terminated while it sat in the pool (restart,
    # failover, idle timeout) is replaced at checkout instead of failing the request.
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.db_pool_size if settings.db_pool_size is not None else size,
        max_overflow=settings.db_max_overflow if settings.db_max_overflow is not None else overflow,
        pool_timeout=settings.db_pool_timeout_s,
    )


@lru_cache
def get_engine() -> Engine:
    return make_engine(get_settings().resolved_database_url())


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work for code outside a request (workers, CLI): commit or roll back."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


# --- transient errors ---------------------------------------------------------------------


def is_transient(exc: BaseException) -> bool:
    """Whether running the same unit of work again may succeed: SQLite's lock contention, or
    a PostgreSQL connection that was terminated or a transaction the server rolled back."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        # Other SQLite OperationalErrors (no such table, disk I/O error) do not go away.
        message = str(orig).lower()
        return "database is locked" in message or "database table is locked" in message
    # psycopg's OperationalError classes are lost connections (08*, 57P*) and transactions
    # the server rolled back (serialization failure, deadlock): all worth one more try.
    return True


def backoff_s(attempt: int, rng: random.Random | None = None) -> float:
    """Pause before retry ``attempt`` (1-based): 0.1, 0.2, 0.4 s ... capped at 2 s, each
    jittered by ±50% so requests that collided once do not collide again in step."""
    base = min(2.0, 0.1 * 2 ** (attempt - 1))
    return base * (0.5 + (rng or random).random())


def retry_transient(db: Session, work: Callable[[], T], attempts: int | None = None) -> T:
    """Run ``work`` (a whole unit of work on ``db``, commit included) and run it again after
    a transient error, ``attempts`` times in all; then DatabaseBusy.

    Only for work that is safe to repeat: a commit whose reply was lost may have happened.
    """
    total = max(1, attempts if attempts is not None else get_settings().db_retry_attempts)
    for attempt in range(1, total + 1):
        try:
            return work()
        except DBAPIError as exc:
            if not is_transient(exc):
                raise
            # A dead connection can fail the rollback too; the pool replaces it either way.
            with contextlib.suppress(DBAPIError):
                db.rollback()
            if attempt == total:
                log.warning("database still busy after %d attempts: %s", total, exc.orig)
                raise DatabaseBusy(str(exc.orig)) from exc
            pause = backoff_s(attempt)
            log.warning(
                "transient database error (attempt %d of %d), retrying in %.2f s: %s",
                attempt,
                total,
                pause,
                exc.orig,
            )
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def in_transaction(work: Callable[[Session], T], attempts: int | None = None) -> T:
    """``work`` in a short transaction of its own, retried as above. The connection goes back
    to the pool when this returns: nothing slow (password hashing) may happen inside."""
    with get_sessionmaker()() as db:

        def unit() -> T:
            result = work(db)
            db.commit()
            return result

        return retry_transient(db, unit, attempts)
