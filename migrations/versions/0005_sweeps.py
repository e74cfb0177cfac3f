"""sweeps, and the sweep (and step) a job belongs to

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"]),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sweeps") as batch:
        batch.create_index(batch.f("ix_sweeps_owner_id"), ["owner_id"], unique=False)
        batch.create_index(batch.f("ix_sweeps_dataset_id"), ["dataset_id"], unique=False)

    # Batch mode: SQLite cannot add a foreign key or a unique constraint in place.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("sweep_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("sweep_step", sa.String(length=100), nullable=True))
        batch.create_index(batch.f("ix_jobs_sweep_id"), ["sweep_id"], unique=False)
        batch.create_foreign_key("fk_jobs_sweep_id", "sweeps", ["sweep_id"], ["id"])
        batch.create_unique_constraint("uq_jobs_sweep_step", ["sweep_id", "sweep_step"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("uq_jobs_sweep_step", type_="unique")
        batch.drop_constraint("fk_jobs_sweep_id", type_="foreignkey")
        batch.drop_index(batch.f("ix_jobs_sweep_id"))
        batch.drop_column("sweep_step")
        batch.drop_column("sweep_id")

    with op.batch_alter_table("sweeps") as batch:
        batch.drop_index(batch.f("ix_sweeps_dataset_id"))
        batch.drop_index(batch.f("ix_sweeps_owner_id"))
    op.drop_table("sweeps")
