"""the owner's focal point of a task (cover boxes with gravity focal keep it)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: no point set, which is what every earlier task says.
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("focal_x", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("focal_y", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("focal_y")
        batch_op.drop_column("focal_x")
