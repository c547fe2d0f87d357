"""direct uploads: tasks.upload_token_sha256, tasks.upload_expires_at

The new status value ``awaiting_upload`` needs no DDL: ``task_status`` is a
non-native enum (a VARCHAR(16) without a CHECK constraint) and the value fits.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 23:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("upload_token_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("upload_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("upload_expires_at")
        batch_op.drop_column("upload_token_sha256")
