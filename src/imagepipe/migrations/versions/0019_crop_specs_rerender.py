"""crop modes: specs record the box's shape; focal re-renders due

Two columns say when a re-render asked for by ``PATCH /tasks/{id}`` (a new focal
point) was published and how often the reconciler published it again; NULL: none due,
which is what every earlier row says.

A rendition's spec (``renditions.spec``, JSON, and ``renditions.spec_digest``) named its
box by the longest side: ``{"box": 600, …}``. Boxes now have a width, a height, a fit
and a gravity, and a ``cover``/``focal`` box's spec also holds the task's focal point.
Every spec written before is the square ``contain`` box it described, so it is rewritten
to the new form and its digest taken again the way ``imaging.spec`` takes it: the
renditions of earlier releases stay up to date for ``imagepipe backfill``, which
compares these digests with the settings'.

``tasks.render_spec`` needs nothing: it spells square ``contain`` boxes as before (see
``VariantSpec.render_key``), so duplicates of earlier tasks are still found.

The text is rewritten here, not through ``imaging.spec``: this revision must give the
same result whatever that module becomes.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 19:40:00
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

# Rows read and rewritten per statement: a large table is never held in memory.
BATCH = 1000

_RENDITIONS = sa.table(
    "renditions",
    sa.column("id", sa.Integer()),
    sa.column("spec", sa.Text()),
    sa.column("spec_digest", sa.String(32)),
)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _canonical(fields: dict[str, object]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def to_shaped(text: str) -> str | None:
    """The spec in the new form; None if it is not one of the old ones."""
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict) or not isinstance(fields.get("box"), int):
        return None
    side = fields.pop("box")
    fields |= {"width": side, "height": side, "fit": "contain", "gravity": "center"}
    fields["focal"] = None
    return _canonical(fields)


def to_box(text: str) -> str | None:
    """The old form of a square ``contain`` spec; None for any other (a box the old
    release cannot make: its digest then differs, and its backfill re-renders it)."""
    try:
        fields = json.loads(text)
    except ValueError:
        return None
    if not isinstance(fields, dict) or "width" not in fields:
        return None
    shape = (fields.get("fit"), fields.get("gravity"), fields.get("focal"))
    if fields["width"] != fields.get("height") or shape != ("contain", "center", None):
        return None
    side = fields.pop("width")
    for name in ("height", "fit", "gravity", "focal"):
        fields.pop(name)
    fields["box"] = side
    return _canonical(fields)


def _rewrite(convert: Callable[[str], str | None]) -> None:
    connection = op.get_bind()
    after = 0
    while True:
        rows = connection.execute(
            sa.select(_RENDITIONS.c.id, _RENDITIONS.c.spec)
            .where(_RENDITIONS.c.id > after)
            .order_by(_RENDITIONS.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        after = rows[-1].id
        for row in rows:
            text = convert(row.spec) if row.spec else None
            if text is not None:
                connection.execute(
                    _RENDITIONS.update()
                    .where(_RENDITIONS.c.id == row.id)
                    .values(spec=text, spec_digest=_digest(text))
                )


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("rerender_enqueued_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("rerender_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.create_index(
            batch_op.f("ix_tasks_rerender_enqueued_at"), ["rerender_enqueued_at"], unique=False
        )
    _rewrite(to_shaped)


def downgrade() -> None:
    _rewrite(to_box)
    # Not in batch mode: on SQLite that copies the table and drops the old one, which
    # (foreign keys on) would cascade to every variant. SQLite >= 3.35 drops a column.
    op.drop_index(op.f("ix_tasks_rerender_enqueued_at"), table_name="tasks")
    op.drop_column("tasks", "rerender_attempts")
    op.drop_column("tasks", "rerender_enqueued_at")
