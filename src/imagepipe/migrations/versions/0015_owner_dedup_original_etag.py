"""tasks.original_etag; the dedup index names the owner too

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("original_etag", sa.String(length=255), nullable=True))
        # The owner-scoped lookup; its leading column serves a digest-only one as well.
        batch_op.drop_index("ix_tasks_original_sha256")
        batch_op.create_index(
            "ix_tasks_original_sha256_owner_scope",
            ["original_sha256", "owner_scope"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_original_sha256_owner_scope")
        batch_op.create_index("ix_tasks_original_sha256", ["original_sha256"], unique=False)
        batch_op.drop_column("original_etag")
