"""Stored renditions: writing a render's previews (every format) and reading back what
a variant has, whichever release wrote it.

A variant row repeats its base rendition's key, type, size and digest, so everything
that only knows the base format keeps working; the ``renditions`` rows add every
format with the spec it was made with. A variant written before renditions existed has
no such rows: it is served as one base rendition without a spec.
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.orm import Session

from imagepipe.db.models import Rendition, Variant
from imagepipe.imaging import RenderedVariant
from imagepipe.imaging.formats import BY_CONTENT_TYPE, FORMATS, FormatName, named
from imagepipe.imaging.render import EncodedRendition
from imagepipe.services.tidy import one_attempt, quietly
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)

# Writes in flight at once per task: a task has a handful of renditions, and S3 takes
# many requests side by side.
PARALLEL_WRITES = 4


@dataclass(frozen=True)
class Stored:
    """One stored encoding of a variant, as the API serves it."""

    format: FormatName
    content_type: str
    storage_key: str
    size_bytes: int
    sha256: str
    spec_digest: str | None  # None: written before specs were recorded

    @property
    def etag(self) -> str:
        """Strong ETag: the bytes' digest, and the spec's, so a re-render under another
        spec changes it even where the bytes come out the same."""
        if self.spec_digest is None:
            return f'"{self.sha256}"'  # what the previous release answered
        return f'"{self.spec_digest}-{self.sha256[:32]}"'

    @property
    def extension(self) -> str:
        return FORMATS[self.format].extension


def stored(variant: Variant) -> list[Stored]:
    """Every stored format of ``variant``, the base first."""
    if not variant.renditions:
        return [
            Stored(
                format=BY_CONTENT_TYPE[variant.content_type].name,
                content_type=variant.content_type,
                storage_key=variant.storage_key,
                size_bytes=variant.size_bytes,
                sha256=variant.sha256,
                spec_digest=None,
            )
        ]
    rows = sorted(variant.renditions, key=lambda r: r.storage_key != variant.storage_key)
    return [
        Stored(
            format=named(row.format).name,
            content_type=row.content_type,
            storage_key=row.storage_key,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            spec_digest=row.spec_digest,
        )
        for row in rows
    ]


def encode_due(formats: Sequence[str]) -> str | None:
    """``tasks.extras_due`` for these due formats (None: nothing is due)."""
    return " ".join(formats) or None


def decode_due(value: str | None) -> list[FormatName]:
    return [named(name).name for name in (value or "").split()]


def due(extras_due: str | None, variant: Variant) -> list[FormatName]:
    """The extra formats ``variant`` is still to have (``tasks.extras_due``), those it
    already has left out."""
    have = {s.format for s in stored(variant)}
    return [fmt for fmt in decode_due(extras_due) if fmt not in have]


_pool: tuple[int, ThreadPoolExecutor] | None = None


def _writers() -> ThreadPoolExecutor:
    """The process's write threads, started on first use and kept: starting threads
    for every task costs more than the writes on a busy core. A forked child (a Celery
    pool process) starts its own: its parent's threads do not exist in it."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        _pool = (os.getpid(), ThreadPoolExecutor(PARALLEL_WRITES, thread_name_prefix="store"))
    return _pool[1]


class Writer:
    """Stores one claim's renditions as they are made, a few at a time in threads.

    Storing is mostly waiting (an fsync, an S3 round trip); started as each rendition
    is encoded (``render_variants(..., on_rendition=writer.put)``) it overlaps the
    encoding of the next one, and what is left to wait for after the render is the
    last write, not the sum. Keys carry the claim's attempt, so these objects never
    replace another claim's.

    Used as a context manager: unless ``hand_over`` was called, leaving it removes what
    it stored (the render failed, or the rows never reached the database), so a failed
    task leaves no objects behind::

        with Writer(storage, task_id, attempt) as writer:
            result = render_variants(source, options, on_rendition=writer.put)
            rows = writer.rows(result.variants)
            ...record rows...
            writer.hand_over()
    """

    def __init__(self, storage: Storage, task_id: uuid.UUID, attempt: int) -> None:
        self._storage = storage
        self._task_id = task_id
        self._attempt = attempt
        self._keys: dict[tuple[str, FormatName], str] = {}
        self._writes: list[Future[None]] = []
        self._handed_over = False

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            wait(self._writes)  # no write may land after the clean-up below
        finally:
            # The soft time limit can interrupt the wait above: wait again (each write
            # is bounded by the storage's own timeouts) so that what this render
            # abandons is removed by it now, not by the temp sweep an hour later.
            wait(self._writes)
            if self._writes and not self._handed_over:
                quietly(one_attempt, self._storage, self._task_id, self._attempt)

    def put(self, variant: str, rendition: EncodedRendition) -> None:
        """Start storing ``rendition`` of ``variant``; returns at once."""
        extension = FORMATS[rendition.format].extension
        key = keys.variant(self._task_id, self._attempt, variant, extension)
        self._keys[(variant, rendition.format)] = key
        self._writes.append(
            _writers().submit(
                self._storage.put_bytes, key, rendition.data, content_type=rendition.content_type
            )
        )

    def rows(self, previews: Sequence[RenderedVariant]) -> list[Variant]:
        """Store whatever of ``previews`` is not stored yet, wait for every write (the
        first error is raised), and return the rows (not yet added to a session) that
        describe them."""
        for preview in previews:
            for rendition in preview.renditions:
                if (preview.name, rendition.format) not in self._keys:
                    self.put(preview.name, rendition)
        wait(self._writes)
        for write in self._writes:
            write.result()
        return [self._variant(preview) for preview in previews]

    def hand_over(self) -> None:
        """The rows reached the database (or the caller tidies up itself): keep."""
        self._handed_over = True

    def _variant(self, preview: RenderedVariant) -> Variant:
        rows = [
            Rendition(
                format=rendition.format,
                content_type=rendition.content_type,
                storage_key=self._keys[(preview.name, rendition.format)],
                size_bytes=len(rendition.data),
                sha256=hashlib.sha256(rendition.data).hexdigest(),
                frames=rendition.frames,
                spec=rendition.spec.as_json(),
                spec_digest=rendition.spec.digest,
            )
            for rendition in preview.renditions
        ]
        base = rows[0]
        return Variant(
            task_id=self._task_id,
            name=preview.name,
            storage_key=base.storage_key,
            width=preview.width,
            height=preview.height,
            size_bytes=base.size_bytes,
            content_type=base.content_type,
            sha256=base.sha256,
            renditions=rows,
        )


def write(
    storage: Storage, task_id: uuid.UUID, attempt: int, previews: Sequence[RenderedVariant]
) -> list[Variant]:
    """Put every rendition of every preview under this claim's keys; return the rows
    (not yet added to a session) that describe them. If a write fails, none stays."""
    with Writer(storage, task_id, attempt) as writer:
        variants = writer.rows(previews)
        writer.hand_over()
        return variants


def insert_rows(session: Session, variants: Sequence[Variant]) -> None:
    """Insert ``variants`` (not added to any session) and their renditions rows in the
    caller's transaction: two statements, one per table, every row at once (the ORM's
    flush sends one INSERT per row where it cannot batch RETURNING, as on SQLite). The
    objects stay out of the session; each gets the id its row was given."""
    if not variants:
        return
    # Core inserts on the tables: the ORM's bulk path would redo, per call, what
    # these plain rows do not need (identity and state bookkeeping).
    made = session.execute(
        insert(_VARIANTS).returning(_VARIANTS.c.name, _VARIANTS.c.id),
        [_columns(variant, _VARIANT_COLUMNS) for variant in variants],
    )
    ids: dict[str, int] = {name: id_ for name, id_ in made}
    rows = []
    for variant in variants:
        variant.id = ids[variant.name]  # a task's variants are unique by name
        for rendition in variant.renditions:
            rendition.variant_id = variant.id
            rows.append(_columns(rendition, _RENDITION_COLUMNS))
    if rows:
        session.execute(insert(_RENDITIONS), rows)


_VARIANTS = cast(Table, Variant.__table__)
_RENDITIONS = cast(Table, Rendition.__table__)
_VARIANT_COLUMNS = (
    "task_id", "name", "storage_key", "width", "height", "size_bytes", "content_type", "sha256",
)  # fmt: skip
_RENDITION_COLUMNS = (
    "variant_id", "format", "content_type", "storage_key", "size_bytes", "sha256", "frames",
    "spec", "spec_digest",
)  # fmt: skip


def _columns(row: object, names: Sequence[str]) -> dict[str, object]:
    return {name: getattr(row, name) for name in names}


def remove_unreferenced(storage: Storage, task_id: uuid.UUID, variants: Sequence[Variant]) -> None:
    """Remove every object of the task that ``variants`` (its rows now) do not name:
    what earlier renders and the old key layout left."""
    kept = {r.storage_key for variant in variants for r in variant.renditions}
    for info in storage.list(keys.variants_prefix(task_id)):
        if info.key not in kept:
            storage.delete(info.key)


def tidy(action: Callable[..., object], *args: object) -> None:
    """Run a clean-up whose failure must not fail the work that is done."""
    quietly(action, *args)
