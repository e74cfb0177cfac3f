"""a study's leakage gate: its last audit and the researcher's reason to open it anyway

Revision ID: 0009_blinding_override
Revises: 0007
Create Date: 2026-12-02 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_blinding_override"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("leakage_audit", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("blinding_override", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_column("blinding_override")
        batch.drop_column("leakage_audit")
