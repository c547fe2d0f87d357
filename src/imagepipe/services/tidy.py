"""Removing objects nothing will reference: the storage side of the task lifecycle.

Every function here runs after the commit that made the objects unreferenced (or
never referenced), so a row never points at a removed object. Tidying is best
effort: a failure is logged, never raised into the work that finished.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from anyio import to_thread

from imagepipe.services.transient import MAYBE_TRANSIENT
from imagepipe.storage import Storage, keys

log = logging.getLogger(__name__)

# A storage temp file untouched for this long was left by a process that died: an
# upload being received or a write in progress touches its file all the time.
STALE_TEMP_SECONDS = 3600.0


def quietly(action: Callable[..., object], *args: object) -> bool:
    """Run one removal; False (logged) if the storage failed."""
    try:
        action(*args)
    except MAYBE_TRANSIENT as error:
        log.warning("could not remove stale objects: %r", error)
        return False
    return True


async def delete_quietly(storage: Storage, key: str) -> None:
    """Remove an object nothing references (after the commit that says so)."""
    removed = await to_thread.run_sync(quietly, storage.delete, key)
    if not removed:
        # The object stays behind with no row pointing at it; it is harmless.
        log.error("could not remove original %s", key)


def task_objects(storage: Storage, task_id: uuid.UUID) -> None:
    """Everything a task owns: its original, a direct upload's staged bytes, every
    attempt's previews and its on-demand renditions (their rows go with the task's by
    ON DELETE CASCADE). Delete, retention and the reconciler all come here."""
    storage.delete(keys.original(task_id))
    storage.delete(keys.staging(task_id))
    storage.delete_prefix(keys.variants_prefix(task_id))
    storage.delete_prefix(keys.derived_prefix(task_id))


def one_attempt(storage: Storage, task_id: uuid.UUID, attempt: int) -> None:
    """What one superseded claim wrote, beside (never over) the winner's objects."""
    storage.delete_prefix(keys.attempt_prefix(task_id, attempt))


def variants(storage: Storage, task_id: uuid.UUID) -> None:
    """Every preview of a task that was deleted while it was rendered."""
    storage.delete_prefix(keys.variants_prefix(task_id))


def stale_temp_files(storage: Storage) -> int:
    """Temp files of processes that died mid-upload or mid-write."""
    try:
        swept = storage.sweep_temp(STALE_TEMP_SECONDS)
    except MAYBE_TRANSIENT as error:
        log.warning("could not sweep storage temp files: %r", error)
        return 0
    if swept:
        log.warning("removed %d abandoned storage temp files", swept)
    return swept
