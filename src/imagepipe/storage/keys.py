"""The key layout: the only module that spells ``originals/…``, ``variants/…``, ``tmp/…``.

Keys are built from task ids, attempt numbers and configured variant names, never from
client filenames. Rows store the key they were written under, so a layout change here
never strands an object written by an older release (``variants/{task}/{name}.{ext}``
before attempts were part of the key keeps serving from the row that names it).
"""

from __future__ import annotations

import uuid

ORIGINALS = "originals/"
VARIANTS = "variants/"
# Scratch space a backend may use for its own temp files (swept by the backend).
TMP = "tmp/"


def original(task_id: uuid.UUID) -> str:
    return f"{ORIGINALS}{task_id}"


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
