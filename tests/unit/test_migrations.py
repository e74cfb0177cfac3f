"""Alembic is the only source of the schema: migrations and models must agree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect

import app.models  # noqa: F401
from app.db import Base, make_engine
from app.migrate import alembic_config, downgrade, upgrade


def _drift(url: str) -> list:
    engine = make_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    return diff


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    names = set(inspect(engine).get_table_names())
    engine.dispose()
    return names


def _revisions() -> list[str]:
    """Every revision, oldest first (the history is linear)."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def _current(url: str) -> str | None:
    engine = make_engine(url)
    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    engine.dispose()
    return revision


def _check_each_step(url: str) -> None:
    """Every revision's upgrade and downgrade run on their own, not only base <-> head: a
    downgrade that only works from head, or an upgrade that only works after another one's
    leftovers, fails here."""
    revisions = _revisions()
    assert len(revisions) >= 6
    previous: str = "base"
    for revision in revisions:
        upgrade(url, revision)
        assert _current(url) == revision
        downgrade(url, previous)
        assert _current(url) == (None if previous == "base" else previous)
        upgrade(url, revision)
        previous = revision
    assert _drift(url) == []
    for revision in reversed(revisions[:-1]):
        downgrade(url, revision)
        assert _current(url) == revision
    downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}


def _check_roundtrip(url: str) -> None:
    upgrade(url)
    assert _drift(url) == [], "models differ from migrations: write a migration"
    assert {"users", "jobs", "studies", "invites", "web_sessions"} <= _tables(url)
    downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}
    upgrade(url)
    assert _drift(url) == []
    downgrade(url, "base")
    _check_each_step(url)


def test_sqlite_migrations_match_models_and_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _check_roundtrip(f"sqlite:///{tmp_path / 'm.sqlite'}")


@pytest.mark.postgres
def test_postgresql_migrations_match_models_and_roundtrip(pg_url: str) -> None:
    _check_roundtrip(pg_url)
