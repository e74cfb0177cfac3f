"""Back up one whole study into a zip and restore it into any installation.

The archive (app/studies/backup_archive.py) holds a versioned manifest (app/studies/
backup_manifest.py) and the stored image files, byte for byte: the study and its design, the
image sets it draws from with every image and its hashes, its selected items, readers (by
username: never a password hash, session or invitation), their schedules and answers with
timestamps, and imported ratings. Invitations are left out: a link is a credential, and a used
one only repeats what the reader rows say.

A restore creates every row anew and maps the archive's ids onto the new ones. Storage keys and
the opaque ids readers see are minted afresh (both are unique per installation); everything
else round-trips exactly. It is all or nothing: the archive is checked completely and its files
are verified into a staging folder before the first row is written, and the rows and files are
committed together.

This module collects and writes (export_study); the import's read-only checks are in
backup_checks.py and its writes in backup_restore.py, whose import_study is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.imagesets.storage import blinded_path, original_path
from app.models import (
    Answer,
    ExternalRating,
    Image,
    ImageSet,
    ScheduleEntry,
    Study,
    StudyImageSet,
    StudyItem,
    StudyReader,
    User,
)
from app.models.types import utcnow
from app.studies.backup_archive import (
    ArchiveWriter,
    BackupError,
    ImportLimits,
    archive_writer,
)
from app.studies.backup_manifest import (
    FORMAT,
    FORMAT_VERSION,
    AnswerRecord,
    BlobRef,
    EntryRecord,
    ExternalRatingRecord,
    ImageRecord,
    ImageSetRecord,
    ItemRecord,
    Manifest,
    ReaderRecord,
    StudyRecord,
)

__all__ = [
    "BackupError",
    "ExportReport",
    "ImportLimits",
    "ImportReport",
    "export_study",
    "import_study",
]


@dataclass(frozen=True)
class ExportReport:
    path: Path
    study_id: int
    name: str
    images: int
    files: int
    readers: int
    answers: int
    size_bytes: int
    missing_originals: int


def _synthbench_version() -> str:
    try:
        return version("synthbench")
    except PackageNotFoundError:
        return "unknown"


def _alembic_revision(db: Session) -> str | None:
    from alembic.runtime.migration import MigrationContext

    heads = MigrationContext.configure(db.connection()).get_current_heads()
    return ",".join(sorted(heads)) or None


def _snapshot(db: Session) -> None:
    # One consistent view for the whole export: under READ COMMITTED an answer committed
    # between two queries could name a schedule entry the archive lacks. SQLite's read
    # transaction is a snapshot already.
    if db.get_bind().dialect.name == "postgresql" and not db.in_transaction():
        db.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _usernames(db: Session, ids: set[int]) -> dict[int, str]:
    rows = db.execute(select(User.id, User.username).where(User.id.in_(ids))).all()
    return {user_id: username for user_id, username in rows}


def _study_image_sets(
    db: Session, study: Study, items: list[StudyItem]
) -> tuple[list[ImageSet], set[int]]:
    """The sets selected for the study plus any set holding one of its items (a study built
    outside the form may have no links), and which of them were selected."""
    linked = set(
        db.scalars(select(StudyImageSet.image_set_id).where(StudyImageSet.study_id == study.id))
    )
    holding = set(
        db.scalars(
            select(Image.image_set_id).where(Image.id.in_([i.image_id for i in items])).distinct()
        )
    )
    query = select(ImageSet).where(ImageSet.id.in_(linked | holding)).order_by(ImageSet.id)
    return list(db.scalars(query)), linked


@dataclass
class _Collector:
    db: Session
    study: Study
    writer: ArchiveWriter
    missing_blinded: list[str] = field(default_factory=list)
    missing_originals: int = 0

    def image(self, image: Image) -> ImageRecord | None:
        blinded = blinded_path(image.key)
        if not blinded.is_file():
            self.missing_blinded.append(f"image {image.id} ({image.original_name})")
            return None
        original_file = original_path(image.key, image.source_format)
        original: BlobRef | None = None
        if original_file.is_file():
            original = self.writer.add_file(original_file)
        else:
            self.missing_originals += 1
        return ImageRecord(
            id=image.id,
            image_set_id=image.image_set_id,
            origin=image.origin.value,
            label=image.label,
            source=image.source,
            original_name=image.original_name,
            sha256=image.sha256,
            source_format=image.source_format,
            width=image.width,
            height=image.height,
            created_at=image.created_at,
            blinded=self.writer.add_file(blinded),
            original=original,
        )

    def manifest(self) -> Manifest:
        db, study = self.db, self.study
        items = list(
            db.scalars(
                select(StudyItem).where(StudyItem.study_id == study.id).order_by(StudyItem.id)
            )
        )
        sets, linked = _study_image_sets(db, study, items)
        images = db.scalars(
            select(Image).where(Image.image_set_id.in_([s.id for s in sets])).order_by(Image.id)
        )
        image_records = [r for r in (self.image(i) for i in images) if r is not None]
        if self.missing_blinded:
            shown = ", ".join(self.missing_blinded[:5])
            raise BackupError(
                [f"{len(self.missing_blinded)} image file(s) are missing from the store: {shown}"]
            )
        readers = db.execute(
            select(StudyReader, User)
            .join(User, User.id == StudyReader.user_id)
            .where(StudyReader.study_id == study.id)
            .order_by(StudyReader.id)
        ).all()
        owners = _usernames(db, {study.owner_id, *(s.owner_id for s in sets)})
        return Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            synthbench_version=_synthbench_version(),
            alembic_revision=_alembic_revision(db),
            exported_at=utcnow(),
            study=StudyRecord(
                id=study.id,
                name=study.name,
                instructions=study.instructions,
                kind=study.kind.value,
                design=study.design,
                owner=owners[study.owner_id],
                created_at=study.created_at,
                leakage_audit=study.leakage_audit,
                blinding_override=study.blinding_override,
            ),
            image_sets=[_set_record(s, owners[s.owner_id], s.id in linked) for s in sets],
            images=image_records,
            items=[ItemRecord(id=i.id, image_id=i.image_id, practice=i.practice) for i in items],
            readers=[_reader_record(r, u) for r, u in readers],
            schedule=[_entry_record(e) for e in _entries(db, study)],
            answers=[_answer_record(a) for a in _answers(db, study)],
            external_ratings=[_rating_record(r) for r in _ratings(db, study)],
        )


def _set_record(s: ImageSet, owner: str, linked: bool) -> ImageSetRecord:
    return ImageSetRecord(
        id=s.id,
        name=s.name,
        kind=s.kind,
        description=s.description,
        owner=owner,
        created_at=s.created_at,
        linked=linked,
    )


def _reader_record(r: StudyReader, u: User) -> ReaderRecord:
    return ReaderRecord(
        id=r.id,
        username=u.username,
        display_name=u.display_name,
        role=u.role.value,
        pseudonym=r.pseudonym,
        reader_seed=r.reader_seed,
        started_at=r.started_at,
        finished_at=r.finished_at,
        created_at=r.created_at,
    )


def _entries(db: Session, study: Study) -> list[ScheduleEntry]:
    query = (
        select(ScheduleEntry)
        .join(StudyReader, StudyReader.id == ScheduleEntry.study_reader_id)
        .where(StudyReader.study_id == study.id)
        .order_by(ScheduleEntry.id)
    )
    return list(db.scalars(query))


def _entry_record(e: ScheduleEntry) -> EntryRecord:
    return EntryRecord(
        id=e.id,
        reader_id=e.study_reader_id,
        item_id=e.study_item_id,
        position=e.position,
        practice=e.practice,
        repeat=e.repeat,
        first_shown_at=e.first_shown_at,
    )


def _answers(db: Session, study: Study) -> list[Answer]:
    query = (
        select(Answer)
        .join(StudyReader, StudyReader.id == Answer.study_reader_id)
        .where(StudyReader.study_id == study.id)
        .order_by(Answer.id)
    )
    return list(db.scalars(query))


def _answer_record(a: Answer) -> AnswerRecord:
    return AnswerRecord(
        entry_id=a.schedule_entry_id,
        reader_id=a.study_reader_id,
        answer=a.answer,
        confidence=a.confidence,
        reason=a.reason,
        second_answer=a.second_answer,
        shown_at=a.shown_at,
        answered_at=a.answered_at,
        duration_ms=a.duration_ms,
    )


def _ratings(db: Session, study: Study) -> list[ExternalRating]:
    query = select(ExternalRating).where(ExternalRating.study_id == study.id)
    return list(db.scalars(query.order_by(ExternalRating.id)))


def _rating_record(r: ExternalRating) -> ExternalRatingRecord:
    return ExternalRatingRecord(
        reader=r.reader,
        image=r.image,
        truth=r.truth,
        answer=r.answer,
        confidence=r.confidence,
        reason=r.reason,
        source=r.source,
    )


def export_study(db: Session, study_id: int, out: Path) -> ExportReport:
    """Write the study to ``out`` (replaced atomically); reads only. Use a fresh session."""
    _snapshot(db)
    study = db.get(Study, study_id)
    if study is None:
        raise BackupError([f"There is no study {study_id}."])
    with archive_writer(out) as writer:
        collector = _Collector(db, study, writer)
        manifest = collector.manifest()
        writer.add_manifest(manifest.model_dump_json(indent=1).encode())
        files = len(writer.written)
    return ExportReport(
        path=out,
        study_id=study.id,
        name=study.name,
        images=len(manifest.images),
        files=files,
        readers=len(manifest.readers),
        answers=len(manifest.answers) + len(manifest.external_ratings),
        size_bytes=out.stat().st_size,
        missing_originals=collector.missing_originals,
    )


# The import side lives in its own modules; this is the one place callers need to know.
from app.studies.backup_restore import ImportReport, import_study  # noqa: E402
