"""webhook secrets per owner; deliveries know their owner, what they replay, when swept

``webhook_secrets``: an owner's own secret for its uploads' ``callback_url``
deliveries (owners without one stay on IMAGEPIPE_WEBHOOK_SECRET).

``webhook_deliveries`` gains ``owner`` (copied from the task, so the sweep and the
replay limit count per owner without a join; filled here for existing rows),
``replay_of`` and ``published_at``.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 06:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_secrets",
        sa.Column("owner", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_secret", sa.String(length=128), nullable=True),
        sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("owner", name=op.f("pk_webhook_secrets")),
    )
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("replay_of", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_webhook_deliveries_owner_state", ["owner", "state"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_webhook_deliveries_replay_of"), ["replay_of"], unique=False
        )
    op.execute(
        "UPDATE webhook_deliveries SET owner = "
        "(SELECT tasks.owner_scope FROM tasks WHERE tasks.id = webhook_deliveries.task_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_deliveries_replay_of"))
        batch_op.drop_index("ix_webhook_deliveries_owner_state")
        batch_op.drop_column("published_at")
        batch_op.drop_column("replay_of")
        batch_op.drop_column("owner")
    op.drop_table("webhook_secrets")
