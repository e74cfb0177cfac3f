"""A sweep: one form's grid of benchmark points (seed 000) or one GAN setting's values.

The row keeps what was asked (`spec`); what happened lives on its jobs, each an ordinary job
that names its sweep and its step (`Job.sweep_id`, `Job.sweep_step`). `problems` holds the
steps that could not even be created (a check in a start_* service refused them), so the page
can say why a point stopped without a failed job to point at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.models.types import UTCDateTime, utcnow


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))  # grid | gan_param
    # The real dataset every point derives from (the root of its subsets).
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # step key -> why that step's job could not be created.
    problems: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
