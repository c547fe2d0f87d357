"""The key layout: the only module that spells ``originals/…``, ``variants/…``,
``derived/…``, ``staging/…``, ``tmp/…``.

Keys are built from task ids, attempt numbers and configured variant names, never from
client filenames. Rows store the key they were written under, so a layout change here
never strands an object written by an older release (``variants/{task}/{name}.{ext}``
before attempts were part of the key keeps serving from the row that names it).
"""

from __future__ import annotations

import uuid

ORIGINALS = "originals/"
VARIANTS = "variants/"
# On-demand renditions, one prefix per task so they go with it in one listing.
DERIVED = "derived/"
# Where a direct upload's URL writes. A presigned PUT cannot be revoked, so it never
# names ``originals/``: completing moves the object there, and whatever the URL writes
# after that lands here again, where the reconciler's sweep removes it.
STAGING = "staging/"
# Scratch space a backend may use for its own temp files (swept by the backend).
TMP = "tmp/"


def original(task_id: uuid.UUID) -> str:
    return f"{ORIGINALS}{task_id}"


def staging(task_id: uuid.UUID) -> str:
    """Where a direct upload's URL (presigned PUT or the API's own) stores the bytes."""
    return f"{STAGING}{task_id}"


def staged_task(key: str) -> uuid.UUID | None:
    """The task a staging key belongs to; None for a key this layout never makes."""
    if not key.startswith(STAGING):
        return None
    try:
        return uuid.UUID(key[len(STAGING) :])
    except ValueError:
        return None


def variant(task_id: uuid.UUID, attempt: int, name: str, extension: str) -> str:
    """Where one claim writes one preview.

    The attempt (the claim's fencing token) is part of the key, so a worker whose claim
    was taken over writes beside the winner's bytes, never over them.
    """
    return f"{variants_prefix(task_id)}{attempt}/{name}.{extension}"


def variants_prefix(task_id: uuid.UUID) -> str:
    """Everything every attempt (and the old layout) wrote for this task."""
    return f"{VARIANTS}{task_id}/"


def attempt_prefix(task_id: uuid.UUID, attempt: int) -> str:
    """Everything one claim wrote for this task."""
    return f"{variants_prefix(task_id)}{attempt}/"


def derived(task_id: uuid.UUID, cache_key: str, token: str, extension: str) -> str:
    """Where one on-demand rendition is written. ``token`` is the writer's own, so two
    renders of the same cache key racing each other never write over the bytes the
    row that won names."""
    return f"{derived_prefix(task_id)}{cache_key}-{token}.{extension}"


def derived_prefix(task_id: uuid.UUID) -> str:
    """Every on-demand rendition of this task."""
    return f"{DERIVED}{task_id}/"
