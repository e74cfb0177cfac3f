"""The Job row is the truth about a job; Celery only carries its id."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
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


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in {JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled}


class Job(Base):
    __tablename__ = "jobs"
    # One job per step of a sweep: a continuation that runs twice (a redelivered job, two
    # workers finishing at once) cannot create a step's job twice.
    __table_args__ = (UniqueConstraint("sweep_id", "sweep_step", name="uq_jobs_sweep_step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # What the researcher calls the run; a readable default is generated at launch.
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    type: Mapped[str] = mapped_column(String(50), index=True)
    queue: Mapped[str] = mapped_column(String(20), default="cpu")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=20), default=JobStatus.queued, index=True
    )
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(String(500), default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    artefact_dir: Mapped[str | None] = mapped_column(String(500), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(200), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Wall time, device and energy/CO2 estimate, summed over attempts (workers/energy.py).
    resources: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Set on the jobs a sweep created (app.sweeps): which sweep, and which of its steps.
    sweep_id: Mapped[int | None] = mapped_column(
        ForeignKey("sweeps.id", name="fk_jobs_sweep_id", use_alter=True), nullable=True, index=True
    )
    sweep_step: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # The dataset the job works on, copied out of params at launch so the job list can filter
    # by it on an index instead of reading every job's JSON. No foreign key: a job's record
    # outlives a forgotten dataset.
    dataset_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
