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
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imagepipe.db.models import Rendition, Variant
from imagepipe.imaging import Preview
from imagepipe.imaging.formats import BY_CONTENT_TYPE, FORMATS, FormatName, named
from imagepipe.services.tidy import quietly
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)


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


def write(
    storage: Storage, task_id: uuid.UUID, attempt: int, previews: Sequence[Preview]
) -> list[Variant]:
    """Put every rendition of every preview under this claim's keys; return the rows
    (not yet added to a session) that describe them."""
    variants = []
    for preview in previews:
        rows = []
        for rendition in preview.renditions:
            key = keys.variant(task_id, attempt, preview.name, FORMATS[rendition.format].extension)
            storage.put_bytes(key, rendition.data, content_type=rendition.content_type)
            rows.append(
                Rendition(
                    format=rendition.format,
                    content_type=rendition.content_type,
                    storage_key=key,
                    size_bytes=len(rendition.data),
                    sha256=hashlib.sha256(rendition.data).hexdigest(),
                    frames=rendition.frames,
                    spec=rendition.spec.as_json(),
                    spec_digest=rendition.spec.digest,
                )
            )
        base = rows[0]
        variants.append(
            Variant(
                task_id=task_id,
                name=preview.name,
                storage_key=base.storage_key,
                width=preview.width,
                height=preview.height,
                size_bytes=base.size_bytes,
                content_type=base.content_type,
                sha256=base.sha256,
                renditions=rows,
            )
        )
    return variants


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
