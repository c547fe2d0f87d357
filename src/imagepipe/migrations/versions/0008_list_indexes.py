"""indexes for listing tasks: (status, created_at) and (owner_scope, created_at)

``GET /tasks?status=`` and a key's own ``GET /tasks`` read newest first; without these
they scan every row. No data changes: rows written before owners were recorded keep
``owner_scope`` NULL (seen by admin keys, or by everyone on a service without keys).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 06:20:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_status_created_at", "tasks", ["status", "created_at"])
    op.create_index("ix_tasks_owner_scope_created_at", "tasks", ["owner_scope", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_scope_created_at", table_name="tasks")
    op.drop_index("ix_tasks_status_created_at", table_name="tasks")
