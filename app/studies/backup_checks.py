"""Everything an import decides before it writes: is the manifest valid and consistent with the
archive, who owns the study here, which readers exist, and is the study here already.

All read-only; each refusal is a BackupError whose lines say what is wrong.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.imagesets.storage import images_root
from app.models import Role, Study, StudyKind, User
from app.studies.backup_archive import Archive, BackupError
from app.studies.backup_manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    Manifest,
    reference_problems,
)
from app.studies.design import load_design

_SHOWN_PROBLEMS = 10


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    from app.migrate import alembic_config

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def _validation_problems(exc: ValidationError) -> list[str]:
    return [
        f"{MANIFEST_NAME}: {'.'.join(str(p) for p in e['loc']) or 'top level'}: {e['msg']}"
        for e in exc.errors()[:_SHOWN_PROBLEMS]
    ]


def parse_manifest(data: bytes) -> Manifest:
    """The validated manifest, or BackupError saying what is wrong with it."""
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BackupError([f"{MANIFEST_NAME} is not valid JSON ({exc})"]) from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise BackupError([f"{MANIFEST_NAME} does not describe a synthbench study backup"])
    found = raw.get("format_version")
    if found != FORMAT_VERSION:
        newer = isinstance(found, int) and found > FORMAT_VERSION
        hint = " (made by a newer synthbench: upgrade this one)" if newer else ""
        raise BackupError(
            [f"unknown backup format version {found!r}; this synthbench reads version "
             f"{FORMAT_VERSION}{hint}"]
        )  # fmt: skip
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise BackupError(_validation_problems(exc)) from exc
    revision = manifest.alembic_revision
    if revision and not set(revision.split(",")) <= _known_revisions():
        raise BackupError(
            [f"the archive comes from database schema {revision!r}, which this synthbench does "
             "not know (made by a newer version: upgrade this one)"]
        )  # fmt: skip
    problems = reference_problems(manifest) + _design_problems(manifest)
    if problems:
        shown = problems[:_SHOWN_PROBLEMS]
        raise BackupError([f"{MANIFEST_NAME} is inconsistent: {p}" for p in shown])
    return manifest


def _design_problems(manifest: Manifest) -> list[str]:
    # Every study page reads the design through load_design: one it cannot read would break
    # them all for this study, so such a design is refused here instead.
    try:
        load_design(manifest.study.design)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        return [f"the study design cannot be read ({type(exc).__name__}: {exc})"]
    return []


def blob_problems(manifest: Manifest, archive: Archive) -> list[str]:
    wanted = manifest.blobs()
    problems = [f"files/{d} is missing from the archive" for d in wanted if d not in archive.blobs]
    problems += [
        f"files/{d} is not named in {MANIFEST_NAME}" for d in archive.blobs if d not in wanted
    ]
    problems += [
        f"files/{d} is {archive.blobs[d].file_size:,} bytes, {MANIFEST_NAME} says {n:,}"
        for d, n in wanted.items()
        if d in archive.blobs and archive.blobs[d].file_size != n
    ]
    return problems[:_SHOWN_PROBLEMS]


@dataclass
class Plan:
    """Who owns what and which readers exist: decided, read-only, before any write."""

    owners: dict[str, User]
    matched: dict[str, User]
    create: dict[str, Role]
    notes: list[str] = field(default_factory=list)


def _by_username(db: Session, names: set[str]) -> dict[str, User]:
    return {u.username: u for u in db.scalars(select(User).where(User.username.in_(names)))}


def _owners(db: Session, manifest: Manifest, owner: str | None) -> dict[str, User]:
    names = {manifest.study.owner, *(s.owner for s in manifest.image_sets)}
    may_own = (Role.admin, Role.researcher)
    if owner is not None:
        user = db.scalar(select(User).where(User.username == owner))
        if user is None or user.role not in may_own:
            raise BackupError([f"There is no researcher or admin called {owner!r}."])
        return dict.fromkeys(names, user)
    found = {n: u for n, u in _by_username(db, names).items() if u.role in may_own}
    if found.keys() == names:
        return found
    # Whoever runs the CLI can reach the database anyway: an admin owning the rest is honest.
    admin = db.scalar(select(User).where(User.role == Role.admin).order_by(User.id))
    if admin is None:
        missing = ", ".join(sorted(names - found.keys()))
        raise BackupError(
            [f"No researcher or admin here is called {missing} and there is no admin to own the "
             "study instead: pass --owner USERNAME"]
        )  # fmt: skip
    return {n: found.get(n, admin) for n in names}


def _readers(db: Session, manifest: Manifest, plan: Plan) -> None:
    existing = _by_username(db, {r.username for r in manifest.readers})
    for record in manifest.readers:
        user = existing.get(record.username)
        if user is not None and user.role is Role.admin:
            raise BackupError(
                [f"{record.username!r} is an administrator here, and administrators cannot be "
                 "readers: rename that account first"]
            )  # fmt: skip
        if user is not None:
            plan.matched[record.username] = user
            if user.role.value != record.role:
                plan.notes.append(
                    f"{record.username} is a {user.role.value} here (was {record.role})"
                )
        elif record.role == "admin":
            # An archive must never mint an administrator, not even one without a password.
            plan.create[record.username] = Role.reader
            plan.notes.append(f"{record.username} was an admin there and is a reader here")
        else:
            plan.create[record.username] = Role(record.role)


def _already_here(db: Session, manifest: Manifest) -> Study | None:
    """The same study, identified by name, kind, creation time (to the microsecond) and design:
    a re-import, whichever installation the archive went through in between."""
    record = manifest.study
    candidates = db.scalars(
        select(Study).where(
            Study.name == record.name,
            Study.created_at == record.created_at,
            Study.kind == StudyKind(record.kind),
        )
    )
    return next((s for s in candidates if s.design == record.design), None)


def plan_import(db: Session, manifest: Manifest, owner: str | None, as_new: bool) -> Plan:
    if not as_new and (twin := _already_here(db, manifest)) is not None:
        raise BackupError(
            [f"This study is already here as study {twin.id} ({twin.name!r}); nothing was "
             "imported. Pass --as-new to import a second, independent copy."]
        )  # fmt: skip
    plan = Plan(owners=_owners(db, manifest, owner), matched={}, create={})
    _readers(db, manifest, plan)
    return plan


def check_space(archive: Archive) -> None:
    root = images_root()
    # The store may not exist yet, and a refused import must not create it.
    existing = next(p for p in (root, *root.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    # Staged and placed copies live on one file system (rename), so this is the peak need.
    if archive.unpacked_bytes > free:
        raise BackupError(
            [f"The images need {archive.unpacked_bytes:,} bytes and only {free:,} are free "
             f"under {root}"]
        )  # fmt: skip
