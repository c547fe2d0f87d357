"""transient releases: tasks.transient_releases

A claim the worker gives back because a backing service failed (storage, database)
is counted here as well as in ``attempts``: the poison-image budget is
``attempts - transient_releases`` (lease expiries and kills only), while ``attempts``
stays the claim's fencing token and only ever grows.

Tasks that gave up on transient errors before this release stored the exception's
text as their message under ``internal_error``; they get the code that says what
they are (``service_unavailable``, which ``imagepipe requeue`` queues again) and the
fixed message, and the text goes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 07:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

GAVE_UP = "A backing service (storage or database) failed on every try."


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("transient_releases", sa.Integer(), nullable=False, server_default="0")
        )
    op.execute(
        sa.text(
            "UPDATE tasks SET error_code = 'service_unavailable', error_message = :message "
            "WHERE status = 'failed' AND error_code = 'internal_error' "
            "AND (error_message LIKE 'Gave up after:%' "
            "OR error_message LIKE '% times with transient errors.')"
        ).bindparams(message=GAVE_UP)
    )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("transient_releases")
