"""Tables: one ``tasks`` row per upload, one ``variants`` row per preview, one
``renditions`` row per stored encoding of a preview (JPEG, WebP, AVIF…)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ColumnElement,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from imagepipe.db.types import UtcDateTime
from imagepipe.imaging.crop import FocalPoint

# Stable constraint names, so Alembic migrations are the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class TaskStatus(enum.StrEnum):
    # A direct upload: the row exists, the client has not sent (or completed) the bytes.
    awaiting_upload = "awaiting_upload"
    queued = "queued"
    processing = "processing"
    succeeded = "succeeded"
    failed = "failed"


class Task(Base):
    __tablename__ = "tasks"
    # Listing newest first, by status (GET /tasks?status=) and by owner (a key's tasks).
    __table_args__ = (
        Index("ix_tasks_status_created_at", "status", "created_at"),
        Index("ix_tasks_owner_scope_created_at", "owner_scope", "created_at"),
        Index("ix_tasks_owner_scope_status", "owner_scope", "status"),  # tenant quota
        # Retention: finished tasks by age.
        Index("ix_tasks_status_finished_at", "status", "finished_at"),
        # Content dedup looks for the same bytes among one owner's tasks only.
        Index("ix_tasks_original_sha256_owner_scope", "original_sha256", "owner_scope"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    status: Mapped[TaskStatus] = mapped_column(
        Enum(TaskStatus, name="task_status", native_enum=False, length=16),
        default=TaskStatus.queued,
        index=True,
    )
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # When the processing claim expires; the reconciler takes expired claims back.
    lease_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    # host:pid of the process holding the claim (see imagepipe.services.holder).
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    # Times a worker has claimed the task: caps poison images that kill workers.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Of those claims, the ones the worker gave back because a backing service failed
    # (storage, database): they say nothing about the image, so the poison-image budget
    # is attempts - transient_releases. ``attempts`` stays the fencing token.
    transient_releases: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Last time the task was handed to the broker (upload or reconciler).
    enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # The original, as uploaded. The filename is display metadata only, never a path.
    filename: Mapped[str] = mapped_column(String(255))
    original_key: Mapped[str] = mapped_column(String(255))
    original_format: Mapped[str] = mapped_column(String(16))
    original_width: Mapped[int] = mapped_column(Integer)
    original_height: Mapped[int] = mapped_column(Integer)
    original_frames: Mapped[int] = mapped_column(Integer, default=1)
    original_size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Indexed with the owner: an upload whose bytes and render spec match a succeeded
    # task of the same owner reuses it.
    original_sha256: Mapped[str] = mapped_column(String(64))
    # A direct upload's object as checked at completion (the storage's version tag): the
    # worker renders that version or fails the task. NULL for other rows.
    original_etag: Mapped[str | None] = mapped_column(String(255))
    # When retention removed the original (IMAGEPIPE_KEEP_ORIGINALS); NULL while kept.
    original_removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # Direct uploads only (NULL for every other row). The API's own upload URL carries
    # a token; only its sha256 is stored. It stays after the upload is closed, so the
    # token's holder is told the upload is closed rather than that the token is wrong.
    upload_token_sha256: Mapped[str | None] = mapped_column(String(64))
    # After this an awaiting_upload task is failed with upload_expired (reconciler).
    upload_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    # Set by DELETE /tasks/{id} before the task's files go: a tombstone that no reader
    # sees and no worker claims, removed with its row once the files are gone.
    deleted_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(String(1024))

    # Who made it (a digest of the API key, or "anonymous"): who may see it, and whose
    # webhooks hear of it. NULL on rows older than owners.
    owner_scope: Mapped[str | None] = mapped_column(String(64))
    # Where this task's own webhook deliveries go (the upload's callback_url field).
    callback_url: Mapped[str | None] = mapped_column(String(2048))

    # Written when the task succeeds (services/report.py); null before, and for tasks
    # finished by a release that did not make them.
    placeholder: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Digest of the render options the variants were made with (RenderOptions.spec).
    render_spec: Mapped[str | None] = mapped_column(String(64))
    # Extra formats (space-separated names, e.g. "WEBP AVIF") the task is to have but
    # does not yet: made after it succeeded, by a follow-up task. NULL when nothing is
    # due, which is also what every row written before extras followed the base says.
    # Indexed: the reconciler looks for due rows on every run.
    extras_due: Mapped[str | None] = mapped_column(String(64), index=True)
    # When the follow-up for the due extras was last published, and how many times a
    # worker has started on them (the reconciler stops republishing past max_attempts;
    # backfill still finds the missing formats).
    extras_enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime())
    extras_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    # The owner's point of interest (PATCH /tasks/{id}), fractions of the upright
    # original; both NULL when none is set. ``cover`` boxes with gravity ``focal`` keep it.
    focal_x: Mapped[float | None] = mapped_column(Float)
    focal_y: Mapped[float | None] = mapped_column(Float)
    # A re-render for a new focal point (PATCH): when it was last published, and how
    # many times the reconciler published it again (it stops past max_attempts;
    # backfill still finds the task). NULL when none is due. Indexed: the reconciler
    # looks for due rows on every run.
    rerender_enqueued_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    rerender_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    variants: Mapped[list[Variant]] = relationship(
        back_populates="task",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
        order_by="Variant.width",
    )

    @property
    def focal_point(self) -> FocalPoint | None:
        if self.focal_x is None or self.focal_y is None:
            return None
        return FocalPoint(self.focal_x, self.focal_y)


def live() -> ColumnElement[bool]:
    """Tasks that exist for readers: not the tombstone of a delete in progress."""
    return Task.deleted_at.is_(None)


class Variant(Base):
    __tablename__ = "variants"
    __table_args__ = (UniqueConstraint("task_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))

    task: Mapped[Task] = relationship(back_populates="variants")
    # Every stored format, the base one included (its columns above repeat the base's,
    # which is all a variant written before renditions existed has: it has no rows here).
    renditions: Mapped[list[Rendition]] = relationship(
        back_populates="variant",
        cascade="all, delete-orphan",
        passive_deletes=True,
        lazy="selectin",
        order_by="Rendition.id",
    )


class Rendition(Base):
    """One encoding of one variant, with the spec it was made with."""

    __tablename__ = "renditions"
    __table_args__ = (UniqueConstraint("variant_id", "format"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    variant_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("variants.id", ondelete="CASCADE"), index=True
    )
    format: Mapped[str] = mapped_column(String(8))  # a name of imaging.formats.FORMATS
    content_type: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    frames: Mapped[int] = mapped_column(Integer, default=1)
    # imaging.spec.VariantSpec as JSON, and its digest (compared by the backfill).
    spec: Mapped[str] = mapped_column(Text)
    spec_digest: Mapped[str] = mapped_column(String(32), index=True)

    variant: Mapped[Variant] = relationship(back_populates="renditions")


class IdempotencyKey(Base):
    """The first answer to a request that carried ``Idempotency-Key``, per key scope.

    ``response_status`` is null while that first request is still running. The row
    goes with its task (a deleted task is not replayed).
    """

    __tablename__ = "idempotency_keys"

    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Digest of what makes two requests "the same body".
    fingerprint: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime(), index=True)


class Webhook(Base):
    """A subscription: POST these events of the owner's tasks to ``url``."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    scope: Mapped[str] = mapped_column(String(64), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[str] = mapped_column(String(255))  # space-separated event types
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)


class DeliveryState(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # out of attempts


class WebhookDelivery(Base):
    """The outbox: one event of one task for one target, written in the transaction
    that changed the task's status. Its attempts are ``DeliveryAttempt`` rows."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    # None: the task's own callback_url, signed with its owner's secret.
    webhook_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(64))
    # The exact bytes sent, frozen at the first attempt so every retry is identical.
    payload: Mapped[str | None] = mapped_column(Text)
    state: Mapped[DeliveryState] = mapped_column(
        Enum(DeliveryState, name="delivery_state", native_enum=False, length=16),
        default=DeliveryState.pending,
        index=True,
    )
    # Attempts begun (counted before each is made, so a killed one spends budget too).
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    # The task's owner, copied so the sweep and the replay limit count per owner
    # without a join; None for tasks written before owners were recorded.
    owner: Mapped[str | None] = mapped_column(String(64))
    # The delivery this one sends again (the first of a chain of replays).
    replay_of: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    # When the sweep last handed it to the broker: not handed again while that is
    # recent and the attempt it was published for is still the one due.
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_webhook_deliveries_owner_state", "owner", "state"),)


class DeliveryAttempt(Base):
    __tablename__ = "webhook_delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(255))
    at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime())


class WebhookSecret(Base):
    """An owner's own secret for its uploads' ``callback_url`` deliveries (owners
    without one are signed with IMAGEPIPE_WEBHOOK_SECRET). After a rotation the
    previous secret signs too until ``previous_until``; a null ``previous_secret``
    with a ``previous_until`` means IMAGEPIPE_WEBHOOK_SECRET was the previous one."""

    __tablename__ = "webhook_secrets"

    owner: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow)
    previous_secret: Mapped[str | None] = mapped_column(String(128))
    previous_until: Mapped[datetime | None] = mapped_column(UtcDateTime())


class DerivedRendition(Base):
    """One on-demand rendition of a task (services/on_demand): made by a worker on the
    first request for its cache key, read by every later one, removed with its task
    or by the byte budget's sweep (oldest made first)."""

    __tablename__ = "derived_renditions"
    __table_args__ = (UniqueConstraint("task_id", "cache_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("tasks.id", ondelete="CASCADE"), index=True
    )
    # Digest of what decides the bytes: normalised options, asked format, focal point
    # (for g:focal), quality and pipeline version (on_demand.records.cache_key).
    cache_key: Mapped[str] = mapped_column(String(32))
    options: Mapped[str] = mapped_column(String(128))  # normalised, for people
    format: Mapped[str] = mapped_column(String(8))  # the format made (JPEG, WEBP…)
    content_type: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(80))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    # "original", or "variant:<name>" when retention had removed the original.
    source: Mapped[str] = mapped_column(String(80))
    made_at: Mapped[datetime] = mapped_column(UtcDateTime(), default=utcnow, index=True)
