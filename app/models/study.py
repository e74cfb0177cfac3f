"""Reader studies: design, selected images, readers, their schedules and answers."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Enum,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import UTCDateTime, utcnow


class StudyKind(enum.StrEnum):
    reading = "reading"  # run in synthbench
    imported = "imported"  # analysis only: answers collected elsewhere


class Study(Base):
    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[StudyKind] = mapped_column(
        Enum(StudyKind, native_enum=False, length=20), default=StudyKind.reading
    )
    # The full design as entered (see app/studies/design.py): answer options, confidence
    # scale, reasons, second question, repeats, practice, time limit, margin, seed.
    design: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The leakage gate (app/studies/blinding_gate.py): its last audit, and the researcher's
    # recorded reason to open the study although a channel separates the sources.
    leakage_audit: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    blinding_override: Mapped[str | None] = mapped_column(Text, nullable=True)


class StudyImageSet(Base):
    __tablename__ = "study_image_sets"
    __table_args__ = (UniqueConstraint("study_id", "image_set_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    image_set_id: Mapped[int] = mapped_column(ForeignKey("image_sets.id"))


class StudyItem(Base):
    """An image selected into a study, scored or practice."""

    __tablename__ = "study_items"
    __table_args__ = (UniqueConstraint("study_id", "image_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"))
    practice: Mapped[bool] = mapped_column(Boolean, default=False)


class StudyReader(Base):
    __tablename__ = "study_readers"
    __table_args__ = (UniqueConstraint("study_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # Pseudonym used in exports and statistics (R01, R02, ...), never the person's name.
    pseudonym: Mapped[str | None] = mapped_column(String(20), nullable=True)
    # Recorded so that the reader's order can be rebuilt exactly from the study seed.
    reader_seed: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ScheduleEntry(Base):
    """One presentation in one reader's sequence, served under a random opaque id."""

    __tablename__ = "schedule_entries"
    __table_args__ = (UniqueConstraint("study_reader_id", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_reader_id: Mapped[int] = mapped_column(
        ForeignKey("study_readers.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    study_item_id: Mapped[int] = mapped_column(ForeignKey("study_items.id"))
    practice: Mapped[bool] = mapped_column(Boolean, default=False)
    repeat: Mapped[bool] = mapped_column(Boolean, default=False)
    opaque_id: Mapped[str] = mapped_column(String(64), unique=True)
    first_shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Answer(Base):
    """At most one answer per presentation: the unique key makes a double submit harmless."""

    __tablename__ = "answers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    schedule_entry_id: Mapped[int] = mapped_column(
        ForeignKey("schedule_entries.id", ondelete="CASCADE"), unique=True
    )
    study_reader_id: Mapped[int] = mapped_column(
        ForeignKey("study_readers.id", ondelete="CASCADE"), index=True
    )
    answer: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    second_answer: Mapped[str | None] = mapped_column(String(200), nullable=True)
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Measured in the browser from image display to submit: server clocks include network.
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)


class ExternalRating(Base):
    """Answers collected elsewhere (paper, another tool) imported for analysis."""

    __tablename__ = "external_ratings"
    __table_args__ = (UniqueConstraint("study_id", "reader", "image"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    reader: Mapped[str] = mapped_column(String(200))
    image: Mapped[str] = mapped_column(String(500))
    truth: Mapped[str] = mapped_column(String(20))
    answer: Mapped[str] = mapped_column(String(20))
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Invite(Base):
    """A single-use, expiring link that signs one reader into one study without a password."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200), default="")
    created_by_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    reader_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class StudyShare(Base):
    """Another researcher who may read this study's page and results (never change them)."""

    __tablename__ = "study_shares"
    __table_args__ = (UniqueConstraint("study_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
