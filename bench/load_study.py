"""The study a load run reads, built in-process against the database the settings point at.

Also a throw-away PostgreSQL database for the CLI, so a run never touches anyone's data.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from sqlalchemy import create_engine, make_url, select, text

READER_PREFIX = "load-reader-"


@dataclass(frozen=True)
class LoadStudy:
    study_id: int
    cookies: tuple[str, ...]  # signed session cookie of reader i at index i

    def username(self, reader: int) -> str:
        return f"{READER_PREFIX}{reader}"


def _add_images(db, owner_id: int, count: int) -> int:  # type: ignore[no-untyped-def]
    from app.domain.blinding import canonical_png
    from app.imagesets.storage import blinded_path
    from app.models import Image, ImageSet, Origin

    image_set = ImageSet(name="load", owner_id=owner_id)
    db.add(image_set)
    db.flush()
    rng = np.random.default_rng(0)
    for i in range(count):
        key = f"load{i:06d}"
        path = blinded_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Random noise, so every image's bytes (and hash) differ: the check relies on it.
        path.write_bytes(canonical_png(rng.random((32, 32), dtype=np.float32), size=64))
        db.add(
            Image(
                image_set_id=image_set.id,
                key=key,
                origin=Origin.real if i % 2 else Origin.synthetic,
                label=None,
                source=None,
                original_name=f"{key}.png",
                sha256=f"{i:064d}",
                source_format="png",
                width=32,
                height=32,
            )
        )
    db.flush()
    return image_set.id


def build_study(readers: int, images: int) -> LoadStudy:
    """``images`` scored images, no practice or repeats (so one answer per reader and image is
    the whole truth), and ``readers`` readers, each with a live session."""
    from app.auth.service import create_user, start_session
    from app.auth.tokens import sign
    from app.config import get_settings
    from app.db import session_scope
    from app.domain.reader_study import StudyDesign
    from app.models import Role
    from app.studies.design import ReadingOptions
    from app.studies.service import assign_reader, create_study

    secret = get_settings().resolved_secret_key()
    cookies = []
    with session_scope() as db:
        owner = create_user(db, username="load-owner", password=None, role=Role.researcher)
        image_set_id = _add_images(db, owner.id, images * 2)
        study = create_study(
            db,
            owner=owner,
            name="load",
            instructions="",
            image_set_ids=[image_set_id],
            design=StudyDesign(n_images=images, synthetic_share=0.5, seed=1),
            reading=ReadingOptions(reason_required=False),
        )
        for r in range(readers):
            user = create_user(db, username=f"{READER_PREFIX}{r}", password=None, role=Role.reader)
            assign_reader(db, study, user.id)
            token, _ = start_session(db, user, hours=12)
            cookies.append(sign(secret, "session", token))
        return LoadStudy(study.id, tuple(cookies))


def start_readers(study: LoadStudy) -> None:
    """Each reader's first visit (their sequence written) done here, outside any timing, so a
    long sequence does not put its one-off inserts into the first measured requests."""
    from app.db import session_scope
    from app.models import StudyReader
    from app.reading.service import ensure_schedule, reader_for

    with session_scope() as db:
        users = db.scalars(
            select(StudyReader.user_id).where(StudyReader.study_id == study.study_id)
        ).all()
    for user_id in users:
        with session_scope() as db:
            row, reader = reader_for(db, study_id=study.study_id, user_id=user_id, study_scope=None)
            ensure_schedule(db, row, reader)


@contextmanager
def fresh_postgres(url: str) -> Iterator[str]:
    """Create the database named in ``url``, yield the URL, drop it afterwards.

    Refuses a database that already exists: dropping it at the end would destroy its data.
    """
    target = make_url(url)
    name = target.database
    if not name or not name.replace("_", "").isalnum():
        raise SystemExit(f"use a plain database name (letters, digits, _), not {name!r}")
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists:
                raise SystemExit(f"database {name!r} exists; name a fresh one (it is dropped)")
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield url
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
