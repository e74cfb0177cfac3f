"""studies shared read-only with other researchers

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.models.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "study_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("created_at", app.models.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("study_id", "user_id"),
    )
    with op.batch_alter_table("study_shares") as batch:
        batch.create_index(batch.f("ix_study_shares_study_id"), ["study_id"], unique=False)
        batch.create_index(batch.f("ix_study_shares_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("study_shares") as batch:
        batch.drop_index(batch.f("ix_study_shares_user_id"))
        batch.drop_index(batch.f("ix_study_shares_study_id"))
    op.drop_table("study_shares")
