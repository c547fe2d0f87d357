"""The derived store: which on-demand renditions exist (rows of ``derived_renditions``),
their cache key, and the byte budget's eviction.

A request looks up one row by (task, cache key): a hit writes nothing (no "last used"
update), so the budget evicts the oldest *made*, not the least recently used — the
price of keeping every cache hit a single indexed read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import DerivedRendition, Task
from imagepipe.imaging.spec import PIPELINE_VERSION
from imagepipe.services.on_demand.options import RenditionOptions
from imagepipe.storage import Storage

log = logging.getLogger(__name__)

# Rows looked at per eviction batch.
EVICT_BATCH = 200
# What a request may ask for: a fixed format, or "auto" (JPEG, or PNG with alpha).
AskedFormat = str


@dataclass(frozen=True)
class RenderJob:
    """What the worker is handed: ids and strings only (it re-reads the task)."""

    task_id: uuid.UUID
    options: str  # canonical, presets resolved
    asked_format: str  # "auto", "JPEG", "PNG", "WEBP" or "AVIF"
    cache_key: str

    def args(self) -> list[str]:
        return [str(self.task_id), self.options, self.asked_format, self.cache_key]


def focal_of(task: Task) -> tuple[float, float] | None:
    """The task's focal point as (x, y) fractions, or None."""
    point = task.focal_point
    return None if point is None else (point.x, point.y)


def quality_for(options: RenditionOptions, asked: AskedFormat, settings: Settings) -> int:
    """The encoder quality: the options' ``q``, else the format's configured one ("auto"
    makes JPEG or PNG; PNG has no quality, so JPEG's is the one that matters)."""
    if options.quality is not None:
        return options.quality
    return {"WEBP": settings.webp_quality, "AVIF": settings.avif_quality}.get(
        asked, settings.jpeg_quality
    )


def cache_key(
    options: RenditionOptions,
    asked: AskedFormat,
    focal: tuple[float, float] | None,
    settings: Settings,
) -> str:
    """Digest of everything that decides the bytes. The focal point counts only where
    it is used (``g:focal`` of ``fit:cover``): moving it makes new renditions (and
    ETags) for those, and leaves every other one cached. ``focal``: (x, y) fractions
    of the upright original, or None."""
    uses_focal = options.fit == "cover" and options.gravity == "focal"
    decided_by = {
        "options": options.canonical,
        "format": asked,
        "quality": quality_for(options, asked, settings),
        "focal": [round(focal[0], 6), round(focal[1], 6)] if uses_focal and focal else None,
        "max_side": settings.on_demand_max_side,  # the unset side of a one-sided box
        "pipeline": PIPELINE_VERSION,
    }
    text = json.dumps(decided_by, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


async def lookup(session: AsyncSession, task_id: uuid.UUID, key: str) -> DerivedRendition | None:
    """The one read of a request (cache hit or not)."""
    row: DerivedRendition | None = await session.scalar(
        select(DerivedRendition).where(
            DerivedRendition.task_id == task_id, DerivedRendition.cache_key == key
        )
    )
    return row


def evict(
    sessions: sessionmaker[Session], storage: Storage, max_bytes: int, *, batch: int = EVICT_BATCH
) -> int:
    """Remove the oldest-made renditions until all of them fit in ``max_bytes``: each
    batch's rows first (a request then renders again), then their objects. An object
    whose removal fails is an orphan under its task's prefix, removed with the task."""
    removed = 0
    while True:
        with sessions() as session:
            total = int(session.scalar(select(func.sum(DerivedRendition.size_bytes))) or 0)
            if total <= max_bytes:
                break
            rows = session.execute(
                select(
                    DerivedRendition.id, DerivedRendition.storage_key, DerivedRendition.size_bytes
                )
                .order_by(DerivedRendition.made_at, DerivedRendition.id)
                .limit(batch)
            ).all()
            chosen: list[tuple[int, str]] = []
            for row_id, key, size in rows:
                if total <= max_bytes:
                    break
                chosen.append((row_id, key))
                total -= size
            if not chosen:
                break
            session.execute(
                delete(DerivedRendition).where(DerivedRendition.id.in_([i for i, _ in chosen]))
            )
            session.commit()
        for _, key in chosen:
            storage.delete(key)
        removed += len(chosen)
    if removed:
        log.info("evicted %d on-demand renditions over the byte budget", removed)
    return removed
