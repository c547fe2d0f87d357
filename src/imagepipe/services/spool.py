"""A bounded local spool of resized pixels, so a task's extra formats do not decode and
resize its original a second time when they are made on the host that rendered it.

One file per variant, keyed by task and claim attempt (a re-render never reads an
older render's pixels): a one-line JSON header (mode, size) then the raw pixels, which
cost no encode and no decode. Writes are atomic (a temporary name, then a rename), so
a reader sees a whole entry or none. The directory is capped in bytes: writing past
the cap evicts the oldest entries first, and entries older than ``MAX_AGE_SECONDS``
(their follow-up ran elsewhere, or never) are swept on the way. Everything here is
best effort: a missing, evicted or unreadable entry only means the follow-up decodes
the original again.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
from pathlib import Path

from PIL import Image

from imagepipe.config import Settings

log = logging.getLogger(__name__)

MiB = 1024 * 1024
# An entry nobody used in this long is swept: its follow-up was made without it.
MAX_AGE_SECONDS = 3600.0
SUFFIX = ".px"


class Spool:
    def __init__(self, directory: Path, max_bytes: int, max_age: float = MAX_AGE_SECONDS) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.max_age = max_age

    @classmethod
    def from_settings(cls, settings: Settings) -> Spool:
        directory = settings.spool_dir or Path(tempfile.gettempdir()) / "imagepipe-spool"
        return cls(directory, settings.spool_max_mb * MiB)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _path(self, task_id: uuid.UUID, attempt: int, name: str) -> Path:
        return self.directory / f"{task_id}-{attempt}-{name}{SUFFIX}"

    def put(self, task_id: uuid.UUID, attempt: int, name: str, image: Image.Image) -> bool:
        """Keep ``image`` for the task's extras; False if it was not kept."""
        if not self.enabled:
            return False
        try:
            header = json.dumps({"mode": image.mode, "size": list(image.size)}).encode()
            data = image.tobytes()
            size = len(header) + 1 + len(data)
            if size > self.max_bytes:
                return False
            self.directory.mkdir(parents=True, exist_ok=True)
            self._make_room(size)
            fd, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(header + b"\n")
                    out.write(data)
                os.replace(temporary, self._path(task_id, attempt, name))
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            return True
        except (OSError, ValueError) as error:
            log.warning("could not spool resized pixels: %r", error)
            return False

    def get(self, task_id: uuid.UUID, attempt: int, name: str) -> Image.Image | None:
        """The pixels kept for this variant, or None (never kept, evicted, unreadable)."""
        if not self.enabled:
            return None
        try:
            raw = self._path(task_id, attempt, name).read_bytes()
            header, _, data = raw.partition(b"\n")
            shape = json.loads(header)
            width, height = shape["size"]
            return Image.frombytes(shape["mode"], (int(width), int(height)), data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("unreadable spool entry: %r", error)
            return None

    def discard(self, task_id: uuid.UUID, attempt: int) -> None:
        """Remove every entry of this task's render (its extras are made)."""
        if not self.directory.is_dir():
            return
        for path in self.directory.glob(f"{task_id}-{attempt}-*{SUFFIX}"):
            path.unlink(missing_ok=True)

    def sweep(self) -> int:
        """Remove entries (and abandoned temporary files) past the age limit."""
        removed = 0
        cutoff = time.time() - self.max_age
        for path, stat in self._entries(include_temporary=True):
            if stat.st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

    def used_bytes(self) -> int:
        return sum(stat.st_size for _, stat in self._entries())

    def _make_room(self, size: int) -> None:
        """Sweep old entries, then evict the oldest until ``size`` more bytes fit."""
        self.sweep()
        entries = sorted(self._entries(), key=lambda entry: entry[1].st_mtime)
        used = sum(stat.st_size for _, stat in entries)
        for path, stat in entries:
            if used + size <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            used -= stat.st_size

    def _entries(self, *, include_temporary: bool = False) -> list[tuple[Path, os.stat_result]]:
        found = []
        try:
            paths = list(self.directory.iterdir())
        except FileNotFoundError:
            return []
        for path in paths:
            if path.suffix != SUFFIX and not (include_temporary and path.suffix == ".tmp"):
                continue
            try:
                found.append((path, path.stat()))
            except FileNotFoundError:  # another process removed it meanwhile
                continue
        return found
