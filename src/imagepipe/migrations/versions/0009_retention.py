"""retention: tasks.original_removed_at, and an index on (status, finished_at)

Rows of the previous release keep their originals (NULL: not removed).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("original_removed_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.create_index("ix_tasks_status_finished_at", "tasks", ["status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_finished_at", table_name="tasks")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("original_removed_at")
