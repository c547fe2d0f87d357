"""task placeholder and report, the render spec, and an index for duplicate lookups

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("placeholder", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("report", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("render_spec", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_tasks_original_sha256"), ["original_sha256"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_original_sha256"))
        batch_op.drop_column("render_spec")
        batch_op.drop_column("report")
        batch_op.drop_column("placeholder")
