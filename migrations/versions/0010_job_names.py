"""jobs get a name, and the dataset they work on as an indexed column (job list filters)

Revision ID: 0010_job_names
Revises: 0009_blinding_override
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010_job_names"
down_revision: str | None = "0009_blinding_override"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_jobs = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("params", sa.JSON()),
    sa.column("dataset_id", sa.Integer()),
)


def _dataset_of(params: Any) -> int | None:
    # The same keys as app.jobs.naming.dataset_of, frozen here: a migration must not change
    # meaning when the app's code moves on.
    if not isinstance(params, dict):
        return None
    for key in ("dataset_id", "dataset_a_id"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("dataset_id", sa.Integer(), nullable=True))
        batch.create_index("ix_jobs_dataset_id", ["dataset_id"], unique=False)
    conn = op.get_bind()
    rows = conn.execute(sa.select(_jobs.c.id, _jobs.c.params)).all()
    for job_id, params in rows:
        dataset_id = _dataset_of(params)
        if dataset_id is not None:
            conn.execute(_jobs.update().where(_jobs.c.id == job_id).values(dataset_id=dataset_id))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_dataset_id")
        batch.drop_column("dataset_id")
        batch.drop_column("name")
