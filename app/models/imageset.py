"""Image sets: the real and synthetic images a study draws from."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import UTCDateTime, utcnow


class Origin(enum.StrEnum):
    real = "real"
    synthetic = "synthetic"


class ImageSet(Base):
    __tablename__ = "image_sets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    # Where the set came from: an upload today; a dataset split or a sampling job later.
    kind: Mapped[str] = mapped_column(String(30), default="upload")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Image(Base):
    """One stored image. ``key`` names its files on disk; readers never see it."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("image_set_id", "sha256"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_set_id: Mapped[int] = mapped_column(
        ForeignKey("image_sets.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(64), unique=True)
    origin: Mapped[Origin] = mapped_column(Enum(Origin, native_enum=False, length=20))
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # The synthetic source (checkpoint, resolution, generator) a study can stratify by.
    source: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # Researcher-facing only: never rendered on a reader's page or in a reader's URL.
    original_name: Mapped[str] = mapped_column(String(500))
    sha256: Mapped[str] = mapped_column(String(64))
    source_format: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
