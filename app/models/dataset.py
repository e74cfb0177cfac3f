"""Prepared datasets: real images imported, resized, split by patient and content-hashed.

The images and the manifest live on disk (``ml.data.store``); this row is what the app needs to
list, show and cite a dataset: its name, status, counts, hash and the import report. A subset
("benchmark version") is a dataset of its own that names its parent.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import UTCDateTime, utcnow


class DatasetStatus(enum.StrEnum):
    importing = "importing"
    ready = "ready"
    failed = "failed"


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # None for datasets imported from the command line without --owner.
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    status: Mapped[DatasetStatus] = mapped_column(
        Enum(DatasetStatus, native_enum=False, length=20), default=DatasetStatus.importing
    )
    # chexpert | rsna | dicom-csv | folder | medmnist | subset
    format: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text, default="")
    # Researcher-facing: where the source files were read from (never shown to readers).
    source: Mapped[str] = mapped_column(String(1000), default="")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    job_id: Mapped[int | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True
    )
    path: Mapped[str] = mapped_column(String(1000), default="")
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    n_images: Mapped[int] = mapped_column(Integer, default=0)
    n_patients: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    # label_names, resolutions, splits: the summary a list page shows without opening files.
    info: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The import report: one line per file that could not be listed or decoded.
    errors: Mapped[list[str]] = mapped_column(JSON, default=list)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def is_ready(self) -> bool:
        """Imported and hashed: the one "dataset is ready" rule every job launch checks."""
        return self.status is DatasetStatus.ready and bool(self.content_hash)
