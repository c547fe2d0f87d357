"""on-demand renditions: one row per derived rendition, going with its task

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "derived_renditions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("cache_key", sa.String(length=32), nullable=False),
        sa.Column("options", sa.String(length=128), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("etag", sa.String(length=80), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=80), nullable=False),
        sa.Column("made_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"],
            ["tasks.id"],
            name=op.f("fk_derived_renditions_task_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_derived_renditions")),
        sa.UniqueConstraint(
            "task_id", "cache_key", name=op.f("uq_derived_renditions_task_id_cache_key")
        ),
    )
    op.create_index(
        op.f("ix_derived_renditions_task_id"), "derived_renditions", ["task_id"], unique=False
    )
    op.create_index(
        op.f("ix_derived_renditions_made_at"), "derived_renditions", ["made_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_derived_renditions_made_at"), table_name="derived_renditions")
    op.drop_index(op.f("ix_derived_renditions_task_id"), table_name="derived_renditions")
    op.drop_table("derived_renditions")
