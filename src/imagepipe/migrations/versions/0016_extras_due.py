"""extra formats due after success: which, when published, how many tries

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows already there have every configured format stored (or are re-rendered by
    # backfill): NULL says nothing is due, so none is taken for missing extras.
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("extras_due", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("extras_enqueued_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("extras_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(batch_op.f("ix_tasks_extras_due"), ["extras_due"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_extras_due"))
        batch_op.drop_column("extras_attempts")
        batch_op.drop_column("extras_enqueued_at")
        batch_op.drop_column("extras_due")
