"""Which succeeded tasks no longer match the settings, found in batches.

A task is out of date when its variants are not the configured ones, or a variant
lacks a configured format, or a stored rendition's spec digest differs from the one the
settings give now (box, the task's focal point for cover/focal boxes, quality, encoder
options, pipeline version), or it was written before specs were recorded.
``imagepipe backfill`` hands those to the workers, which check again before
re-rendering: running it twice, or stopping it half-way and running it again,
re-renders each task once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import Task, TaskStatus, Variant, live
from imagepipe.imaging import RenderOptions
from imagepipe.imaging.encode import choose_format
from imagepipe.imaging.formats import FormatName, base_format, named
from imagepipe.services import renditions

# Tasks read (with their variants and renditions) per query.
BATCH_SIZE = 200


def is_stale(task: Task, options: RenderOptions) -> bool:
    """Whether re-rendering ``task`` now would store something else (with its own
    focal point: each task keeps its point, which is part of its cover/focal specs)."""
    options = dataclasses.replace(options, focal=task.focal_point)
    if {v.name for v in task.variants} != set(options.boxes):
        return True
    return any(_variant_stale(variant, options) for variant in task.variants)


def _variant_stale(variant: Variant, options: RenderOptions) -> bool:
    if not variant.renditions:
        return True  # written before specs were recorded
    base = _expected_base(renditions.stored(variant)[0].format, options)
    if base is None:
        return True
    expected = set(options.formats(base))
    if any(r.frames > 1 for r in variant.renditions):
        expected.add("WEBP")  # an animation always has its animated WebP
    stored = {r.format: r.spec_digest for r in variant.renditions}
    if set(stored) != expected:
        return True
    return any(
        digest != options.spec(variant.name, named(fmt).name).digest
        for fmt, digest in stored.items()
    )


def _expected_base(stored_base: FormatName, options: RenderOptions) -> FormatName | None:
    """The base format the settings give this image, judged from the one it has."""
    if options.output_format != "auto":
        return choose_format(options.output_format, has_alpha=False)
    if stored_base in (base_format(has_alpha=False), base_format(has_alpha=True)):
        return stored_base  # which of the two says whether the image has alpha
    return None


@dataclass
class Batch:
    checked: int
    stale: list[uuid.UUID]
    last: uuid.UUID  # resume after this id


def scan(
    sessions: sessionmaker[Session],
    options: RenderOptions,
    *,
    after: uuid.UUID | None = None,
    batch_size: int = BATCH_SIZE,
) -> Iterator[Batch]:
    """Succeeded tasks in id order, one batch at a time, with the stale ones named.

    Each batch is its own short read: nothing is held open between batches, so the
    caller may act on one (enqueue) before reading the next.
    """
    while True:
        with sessions() as session:
            # A task whose original retention removed cannot be rendered again.
            query = select(Task).where(
                Task.status == TaskStatus.succeeded, Task.original_removed_at.is_(None), live()
            )
            if after is not None:
                query = query.where(Task.id > after)
            tasks = list(session.scalars(query.order_by(Task.id).limit(batch_size)))
            if not tasks:
                return
            after = tasks[-1].id
            stale = [task.id for task in tasks if is_stale(task, options)]
        yield Batch(checked=len(tasks), stale=stale, last=after)


def run(
    sessions: sessionmaker[Session],
    options: RenderOptions,
    enqueue: Callable[[uuid.UUID], None] | None,
    *,
    after: uuid.UUID | None = None,
    batch_size: int = BATCH_SIZE,
    progress: Callable[[Batch], None] = lambda batch: None,
) -> tuple[int, int]:
    """Hand every stale task to ``enqueue`` (None: a dry run); (checked, stale)."""
    checked = stale = 0
    for batch in scan(sessions, options, after=after, batch_size=batch_size):
        for task_id in batch.stale:
            if enqueue is not None:
                enqueue(task_id)
        checked += batch.checked
        stale += len(batch.stale)
        progress(batch)
    return checked, stale
