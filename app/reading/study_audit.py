"""Audit the blinding of any study, live, and leave no trace: ``synthbench study audit``.

Two parts. The opaque ids already handed to the study's readers are checked where they are
stored. Then throwaway readers walk the whole study through the real app in this process
(app.reading.blinding_audit) against a database nobody else sees: on PostgreSQL one
transaction that is rolled back at the end, on SQLite a snapshot copy of the database file
(a transaction there would hold the write lock for the whole walk and stall the live server).
Either way their accounts, schedules and answers never become visible, and no statistic
changes. Every image response of the walks is recorded, and each non-content channel (byte
length, dimensions, border, headers, response time, opaque id, position) is fitted against
the truth: a channel above the random-feature 95th percentile is a finding.
"""

from __future__ import annotations

import secrets
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import make_url, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.config import get_settings
from app.db import get_sessionmaker, make_engine
from app.domain.leakage import ChannelResult, describe, leaking
from app.models import Role, ScheduleEntry, Study, StudyKind, StudyReader, User
from app.reading.blinding_audit import Served, leakage_channels, opaque_id_problems, truth_of

if TYPE_CHECKING:
    from fastapi import FastAPI

    AppFactory = Callable[[], FastAPI]

# Readers walked: position, opaque id and response time are redrawn per reader, and their
# AUCs are averaged over the walks (app/domain/leakage.py).
AUDIT_WALKS = 3


class AuditRefused(Exception):
    """The study cannot be audited; the message says why."""


@dataclass(frozen=True)
class AuditReport:
    study_id: int
    study_name: str
    stored_ids: int
    findings: list[str]
    channels: list[ChannelResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "study": {"id": self.study_id, "name": self.study_name},
            "ok": self.ok,
            "stored_opaque_ids": self.stored_ids,
            "findings": self.findings,
            "channels": [c.to_json() for c in self.channels],
        }


def _stored_ids(db: Session, study_id: int) -> list[str]:
    query = (
        select(ScheduleEntry.opaque_id)
        .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
        .where(StudyReader.study_id == study_id)
    )
    return list(db.scalars(query))


@contextmanager
def _sqlite_snapshot(url: str) -> Iterator[Callable[[], Session]]:
    """Sessions on a consistent copy of the SQLite database (its backup API reads the WAL too),
    deleted at exit."""
    source = make_url(url).database
    if not source:
        raise AuditRefused("The audit needs a database file, not an in-memory database.")
    with tempfile.TemporaryDirectory(prefix="synthbench-audit-") as folder:
        copy = Path(folder) / "audit.sqlite"
        with (
            # The backup API only reads the source (and never blocks on a WAL writer).
            closing(sqlite3.connect(source, timeout=15)) as live,
            closing(sqlite3.connect(copy)) as snapshot,
        ):
            live.backup(snapshot)
        engine = make_engine(f"sqlite:///{copy}")
        try:
            yield sessionmaker(engine, expire_on_commit=False)
        finally:
            engine.dispose()


@contextmanager
def _rolled_back(url: str) -> Iterator[Callable[[], Session]]:
    """Sessions whose commits are savepoints of one outer transaction, rolled back at exit."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            outer = connection.begin()
            try:
                yield lambda: Session(
                    bind=connection,
                    join_transaction_mode="create_savepoint",
                    expire_on_commit=False,
                )
            finally:
                outer.rollback()
    finally:
        engine.dispose()


def throwaway_sessions() -> AbstractContextManager[Callable[[], Session]]:
    """Sessions seeing the live data whose writes nobody else ever sees."""
    url = get_settings().resolved_database_url()
    return _sqlite_snapshot(url) if url.startswith("sqlite") else _rolled_back(url)


def _walk(
    make_session: Callable[[], Session], study_id: int, walks: int, app_factory: AppFactory
) -> tuple[list[str], list[ChannelResult]]:
    # The web app is heavy to import; only the walk needs it.
    from app.auth.service import start_session
    from app.auth.tokens import sign
    from app.deps import SESSION_COOKIE, get_db, session_factory
    from app.reading.asgi_client import InProcessClient
    from app.reading.blinding_audit import audit_blinding

    app = app_factory()

    def db_override() -> Iterator[Session]:
        session = make_session()
        try:
            yield session
        finally:
            session.close()

    app.dependency_overrides[get_db] = db_override
    app.dependency_overrides[session_factory] = lambda: make_session
    findings: list[str] = []
    observed: list[list[Served]] = []
    for _ in range(walks):
        with make_session() as db:
            auditor = User(
                username=f"blinding-audit-{secrets.token_hex(6)}",
                display_name="Blinding audit",
                password_hash=None,
                role=Role.reader,
            )
            db.add(auditor)
            db.flush()
            db.add(StudyReader(study_id=study_id, user_id=auditor.id))
            token, _ = start_session(db, auditor, hours=1)
            db.commit()
        client = InProcessClient(app)
        client.cookies[SESSION_COOKIE] = sign(app.state.secret_key, "session", token)
        walk: list[Served] = []
        # Each walk's page-level findings are the same kind; a finding is listed once.
        findings += [
            f for f in audit_blinding(client, study_id, observations=walk) if f not in findings
        ]
        observed.append(walk)
    with make_session() as db:
        truth = truth_of(db, [o.opaque_id for walk in observed for o in walk])
    channels = leakage_channels(observed, truth) if truth else []
    findings += [f"leakage channel {describe(c)}" for c in leaking(channels)]
    return findings, channels


def audit_study(study_id: int, app_factory: AppFactory, walks: int = AUDIT_WALKS) -> AuditReport:
    """Every finding that could unblind the study's readers; empty findings mean it passed.

    ``app_factory`` is `app.main.create_app`, passed in by the caller so that this package
    needs nothing from the module that assembles every package's routes."""
    with get_sessionmaker()() as db:
        study = db.get(Study, study_id)
        if study is None:
            raise AuditRefused(f"There is no study {study_id}.")
        if study.kind is StudyKind.imported:
            raise AuditRefused(
                f"Study {study_id}'s answers were collected elsewhere: synthbench serves its "
                "readers nothing to audit."
            )
        name = study.name
        stored = _stored_ids(db, study_id)
    findings = opaque_id_problems(stored, "stored opaque ids")
    try:
        with throwaway_sessions() as make_session:
            walked, channels = _walk(make_session, study_id, walks, app_factory)
    except (OperationalError, sqlite3.Error) as exc:
        raise AuditRefused(f"The audit could not use the database: {exc}") from exc
    return AuditReport(study_id, name, len(stored), findings + walked, channels)
