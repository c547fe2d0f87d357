"""Content dedup: an upload whose bytes (sha256) and render spec match a task of the
same owner that already succeeded is not rendered again; its variants are copies of
that task's.

Copies, not shared objects: every task's objects live under its own key prefix and a
DELETE (or retention) removes that prefix, so a copy keeps "deleting one task never
breaks the other" true without reference counts that every delete path would have to
keep right. Previews are small (a few percent of the original), so the copy costs
little storage; what it saves is the decode, resize and encode (see `make bench`).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from imagepipe.db.models import Task, TaskStatus, Variant, live
from imagepipe.imaging import RenderedVariant, RenderOptions, RenderResult, animation
from imagepipe.imaging.facts import SourceFacts
from imagepipe.imaging.placeholders import Placeholder
from imagepipe.imaging.render import EncodedRendition, extras_for
from imagepipe.services import renditions
from imagepipe.storage import ObjectNotFound, Storage


@dataclass(frozen=True)
class Reused:
    result: RenderResult  # the earlier task's previews, read back, and its report's facts
    source_task: uuid.UUID


# One stored variant of the source: name, width, height, its formats, frames by key.
_Held = tuple[str, int, int, list[renditions.Stored], dict[str, int]]


@dataclass(frozen=True)
class Source:
    """What an earlier identical task holds, as its rows said: read in the database
    transaction (the claim's), copied from storage after it (``reuse``)."""

    task_id: uuid.UUID
    described: dict[str, Any]
    placeholder: dict[str, Any] | None
    animated: bool
    variants: list[_Held]


def find(
    session: Session, task_id: uuid.UUID, digest: str, owner: str | None, render_spec: str
) -> Task | None:
    """The earliest succeeded task of the same owner with these bytes (``digest``, the
    task's own) and the same spec (one whose extra formats are all made, if there is one).

    Only the same owner's: a copy from another owner's task would tell this one (in
    ``report.deduplicated_from``, and by finishing early) that someone else uploaded
    these bytes, and which task holds them. The owner is compared as an opaque value;
    a task without one (older than owners) has no duplicates, and neither has a direct
    upload whose digest is not known yet: neither costs a query."""
    if not digest or owner is None:
        return None
    found = session.scalars(
        select(Task.id)
        .where(
            # One lookup in ix_tasks_original_sha256_owner_scope.
            Task.original_sha256 == digest,
            Task.owner_scope == owner,
            Task.render_spec == render_spec,
            Task.status == TaskStatus.succeeded,
            Task.id != task_id,
            live(),  # a task being deleted is no source
        )
        # One with every format made first: more to copy, less left due.
        .order_by(Task.extras_due.is_not(None), Task.finished_at)
        .limit(1)
    ).first()
    # Only a hit reads the whole row and its variants: the usual miss is one query.
    return None if found is None else session.get(Task, found)


def look_up(
    session: Session, task_id: uuid.UUID, digest: str, owner: str | None, render_spec: str
) -> Source | None:
    """In the caller's transaction: the rows of an earlier identical task (see ``find``),
    or None (none, or one without a report or variants): render."""
    source = find(session, task_id, digest, owner, render_spec)
    if source is None or not source.report or not source.variants:
        return None
    return Source(
        task_id=source.id,
        described=source.report,
        placeholder=source.placeholder,
        animated=animation.is_animated(source.original_format, source.original_frames),
        variants=[
            (v.name, v.width, v.height, renditions.stored(v), _frames(v)) for v in source.variants
        ],
    )


def reuse(storage: Storage, source: Source, options: RenderOptions) -> Reused | None:
    """The previews of ``source`` (every format it has stored) read back, ready to be
    stored as this task's; None when they cannot be (made under other boxes, or deleted
    meanwhile): render."""
    started = time.perf_counter()
    previews = []
    for name, width, height, stored, frames in source.variants:
        if name not in options.boxes:
            return None  # made under other boxes: not the same spec after all
        try:
            made = tuple(
                EncodedRendition(
                    r.format,
                    _read(storage, r.storage_key),
                    r.content_type,
                    options.spec(name, r.format),
                    frames.get(r.storage_key, 1),
                )
                for r in stored
            )
        except ObjectNotFound:  # deleted while we looked: render instead
            return None
        base = made[0]
        previews.append(
            RenderedVariant(name, base.data, width, height, base.format, base.content_type, made)
        )
    # What exists is copied; the formats the earlier task still lacks (its extras were
    # due) are due for this one too, and made by its own follow-up.
    expected = extras_for(options.formats(previews[0].format), source.animated)
    described, placeholder = source.described, source.placeholder
    facts = described.get("source")
    result = RenderResult(
        variants=previews,
        timings={"copy": time.perf_counter() - started},
        source=SourceFacts(**facts, metadata=tuple(described.get("removed_metadata", [])))
        if facts
        else None,
        applied=tuple(described.get("applied", [])),
        qa_checks=tuple(described.get("qa", {}).get("checks", [])),
        placeholder=Placeholder(**placeholder) if placeholder else None,
        render_spec=options.render_spec,
        extras_due=expected,
    )
    return Reused(result=result, source_task=source.task_id)


def _frames(variant: Variant) -> dict[str, int]:
    return {row.storage_key: row.frames for row in variant.renditions}


def _read(storage: Storage, key: str) -> bytes:
    reader = storage.open(key)
    try:
        return reader.read()
    finally:
        reader.close()
