"""renditions: every stored format of a variant, with the spec it was made with

Variants written before this revision have no rendition rows: their own columns
describe their only (base) rendition, which keeps serving as before.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "renditions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("format", sa.String(length=8), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("storage_key", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("spec_digest", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["variant_id"],
            ["variants.id"],
            name=op.f("fk_renditions_variant_id_variants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_renditions")),
        sa.UniqueConstraint("variant_id", "format", name=op.f("uq_renditions_variant_id_format")),
    )
    op.create_index(op.f("ix_renditions_variant_id"), "renditions", ["variant_id"], unique=False)
    op.create_index(op.f("ix_renditions_spec_digest"), "renditions", ["spec_digest"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_renditions_spec_digest"), table_name="renditions")
    op.drop_index(op.f("ix_renditions_variant_id"), table_name="renditions")
    op.drop_table("renditions")
