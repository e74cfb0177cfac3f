"""Alembic is the only source of the schema: migrations and models must agree."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import app.models  # noqa: F401
from app.db import Base, make_engine
from app.migrate import downgrade, upgrade


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


def _check_roundtrip(url: str) -> None:
    upgrade(url)
    assert _drift(url) == [], "models differ from migrations: write a migration"
    assert {"users", "jobs", "studies", "invites", "web_sessions"} <= _tables(url)
    downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}
    upgrade(url)
    assert _drift(url) == []


def test_sqlite_migrations_match_models_and_roundtrip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _check_roundtrip(f"sqlite:///{tmp_path / 'm.sqlite'}")


@pytest.mark.postgres
def test_postgresql_migrations_match_models_and_roundtrip(pg_url: str) -> None:
    _check_roundtrip(pg_url)
