"""tenants: an index for counting a tenant's unfinished tasks

The per-tenant quota counts ``owner_scope = ? AND status IN (awaiting_upload, queued,
processing)`` at every upload: on ``(owner_scope, status)`` that reads only the
matching index entries, however many finished tasks the tenant has.

Owners themselves need no change here: a list-form key keeps its digest as its
tenant's id, and the digests of keys grouped into a named tenant are rewritten to its
name by the API at start-up (``tenancy.adopt_owners``), since only the settings, not
the database, know which key belongs to which tenant.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_owner_scope_status", "tasks", ["owner_scope", "status"])


def downgrade() -> None:
    op.drop_index("ix_tasks_owner_scope_status", table_name="tasks")
