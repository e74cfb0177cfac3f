"""Restore a study backup: every row created anew, references mapped, files placed, one commit.

Storage keys and the opaque ids readers see are minted afresh (both are unique per
installation and mean nothing outside it); every other value is copied as archived.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.domain.blinding import opaque_id
from app.imagesets.storage import blinded_path, images_root, original_path
from app.models import (
    Answer,
    ExternalRating,
    Image,
    ImageSet,
    Origin,
    ScheduleEntry,
    Study,
    StudyImageSet,
    StudyItem,
    StudyKind,
    StudyReader,
    User,
)
from app.studies.backup_archive import BackupError, ImportLimits, open_archive
from app.studies.backup_checks import Plan, blob_problems, check_space, parse_manifest, plan_import
from app.studies.backup_manifest import (
    AnswerRecord,
    BlobRef,
    EntryRecord,
    ExternalRatingRecord,
    ImageRecord,
    ImageSetRecord,
    Manifest,
    ReaderRecord,
)


@dataclass(frozen=True)
class ImportReport:
    study_id: int
    source_study_id: int
    name: str
    owner: str
    image_sets: int
    images: int
    files: int
    entries: int
    answers: int
    readers_matched: list[str]
    readers_created: list[str]
    notes: list[str]


@dataclass
class _Restorer:
    db: Session
    manifest: Manifest
    plan: Plan
    staging: Path
    placed: list[Path] = field(default_factory=list)
    blob_home: dict[str, Path] = field(default_factory=dict)

    def rows(self) -> Study:
        """Every row, parents first, each level flushed for the ids the next one needs."""
        m, db = self.manifest, self.db
        users = self._users()
        study, sets = self._study_and_sets()
        images = {i.id: _new_image(i, sets[i.image_set_id].id) for i in m.images}
        readers = {r.id: _new_reader(r, study.id, users[r.username]) for r in m.readers}
        db.add_all([*images.values(), *readers.values()])
        db.flush()
        items = {
            i.id: StudyItem(study_id=study.id, image_id=images[i.image_id].id, practice=i.practice)
            for i in m.items
        }
        db.add_all(items.values())
        db.flush()
        entries = {
            e.id: _new_entry(e, readers[e.reader_id].id, items[e.item_id].id) for e in m.schedule
        }
        db.add_all(entries.values())
        db.flush()
        db.add_all(
            _new_answer(a, entries[a.entry_id].id, readers[a.reader_id].id) for a in m.answers
        )
        db.add_all(_new_rating(r, study.id) for r in m.external_ratings)
        db.flush()
        self._files(m.images, images)
        return study

    def _users(self) -> dict[str, User]:
        users = dict(self.plan.matched)
        names = {r.username: r.display_name for r in self.manifest.readers}
        for username, role in self.plan.create.items():
            # No password: nobody can sign in as a restored reader (see the CLI's message).
            users[username] = User(
                username=username, display_name=names[username], password_hash=None, role=role
            )
            self.db.add(users[username])
        return users

    def _study_and_sets(self) -> tuple[Study, dict[int, ImageSet]]:
        m, owners = self.manifest, self.plan.owners
        study = Study(
            name=m.study.name,
            instructions=m.study.instructions,
            owner_id=owners[m.study.owner].id,
            kind=StudyKind(m.study.kind),
            design=m.study.design,
            created_at=m.study.created_at,
            leakage_audit=m.study.leakage_audit,
            blinding_override=m.study.blinding_override,
        )
        sets = {s.id: _new_set(s, owners[s.owner].id) for s in m.image_sets}
        self.db.add_all([study, *sets.values()])
        self.db.flush()
        self.db.add_all(
            StudyImageSet(study_id=study.id, image_set_id=sets[s.id].id)
            for s in m.image_sets
            if s.linked
        )
        return study, sets

    def _files(self, records: list[ImageRecord], images: dict[int, Image]) -> None:
        for record in records:
            image = images[record.id]
            self._place(record.blinded, blinded_path(image.key))
            if record.original is not None:
                self._place(record.original, original_path(image.key, image.source_format))

    def _place(self, ref: BlobRef, final: Path) -> None:
        final.parent.mkdir(parents=True, exist_ok=True)
        if ref.sha256 in self.blob_home:  # a second image with the same bytes
            shutil.copyfile(self.blob_home[ref.sha256], final)
        else:
            os.replace(self.staging / ref.sha256, final)
            self.blob_home[ref.sha256] = final
        self.placed.append(final)


def _new_set(s: ImageSetRecord, owner_id: int) -> ImageSet:
    return ImageSet(
        name=s.name,
        owner_id=owner_id,
        kind=s.kind,
        description=s.description,
        created_at=s.created_at,
    )


def _new_image(i: ImageRecord, image_set_id: int) -> Image:
    return Image(
        image_set_id=image_set_id,
        # Keys name files on disk and are unique per installation: a fresh one, like an upload.
        key=secrets.token_hex(16),
        origin=Origin(i.origin),
        label=i.label,
        source=i.source,
        original_name=i.original_name,
        sha256=i.sha256,
        source_format=i.source_format,
        width=i.width,
        height=i.height,
        created_at=i.created_at,
    )


def _new_reader(r: ReaderRecord, study_id: int, user: User) -> StudyReader:
    return StudyReader(
        study_id=study_id,
        user_id=user.id,
        pseudonym=r.pseudonym,
        reader_seed=r.reader_seed,
        started_at=r.started_at,
        finished_at=r.finished_at,
        created_at=r.created_at,
    )


def _new_entry(e: EntryRecord, reader_id: int, item_id: int) -> ScheduleEntry:
    return ScheduleEntry(
        study_reader_id=reader_id,
        position=e.position,
        study_item_id=item_id,
        practice=e.practice,
        repeat=e.repeat,
        # Served in reader URLs and unique per installation: minted afresh, never copied.
        opaque_id=opaque_id(),
        first_shown_at=e.first_shown_at,
    )


def _new_answer(a: AnswerRecord, entry_id: int, reader_id: int) -> Answer:
    return Answer(
        schedule_entry_id=entry_id,
        study_reader_id=reader_id,
        answer=a.answer,
        confidence=a.confidence,
        reason=a.reason,
        second_answer=a.second_answer,
        shown_at=a.shown_at,
        answered_at=a.answered_at,
        duration_ms=a.duration_ms,
    )


def _new_rating(r: ExternalRatingRecord, study_id: int) -> ExternalRating:
    return ExternalRating(study_id=study_id, **r.model_dump())


def import_study(
    db: Session,
    path: Path,
    *,
    owner: str | None = None,
    as_new: bool = False,
    limits: ImportLimits | None = None,
) -> ImportReport:
    """Restore the archive at ``path`` as a new study, or raise BackupError and change nothing.

    Commits its own transaction, because the files are moved into place between the last
    flush and the commit (and removed again if the commit fails).
    """
    with open_archive(path, limits or ImportLimits()) as archive:
        manifest = parse_manifest(archive.manifest_bytes())
        problems = blob_problems(manifest, archive)
        if problems:
            raise BackupError(problems)
        plan = plan_import(db, manifest, owner, as_new)
        check_space(archive)
        staging = images_root() / "tmp" / secrets.token_hex(8)
        staging.mkdir(parents=True)
        restorer = _Restorer(db, manifest, plan, staging)
        try:
            for digest, size in manifest.blobs().items():
                archive.extract_blob(BlobRef(sha256=digest, bytes=size), staging / digest)
            study = restorer.rows()
            db.commit()
        except BaseException as exc:
            db.rollback()
            for placed in restorer.placed:
                placed.unlink(missing_ok=True)
            if isinstance(exc, IntegrityError):  # e.g. a username taken meanwhile
                raise BackupError([f"The database refused the study: {exc.orig}"]) from exc
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # only when empty: others may be staging too
                staging.parent.rmdir()
    return ImportReport(
        study_id=study.id,
        source_study_id=manifest.study.id,
        name=study.name,
        owner=plan.owners[manifest.study.owner].username,
        image_sets=len(manifest.image_sets),
        images=len(manifest.images),
        files=len(manifest.blobs()),
        entries=len(manifest.schedule),
        answers=len(manifest.answers) + len(manifest.external_ratings),
        readers_matched=sorted(plan.matched),
        readers_created=sorted(plan.create),
        notes=plan.notes,
    )
