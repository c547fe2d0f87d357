"""Where originals and variants live: a small interface and a local implementation.

Keys are built from task ids and variant names only, never from client filenames.
Writes are atomic (temp file in the same directory, fsync, rename), so a reader sees
either nothing or the whole object.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from pathlib import Path


def original_key(task_id: uuid.UUID) -> str:
    return f"originals/{task_id}"


def variant_key(task_id: uuid.UUID, name: str, extension: str) -> str:
    return f"variants/{task_id}/{name}.{extension}"


class Storage(ABC):
    """Blocking interface: call it from a thread in async code."""

    @abstractmethod
    def path(self, key: str) -> Path:
        """A local path for reading ``key`` (it may not exist)."""

    @abstractmethod
    def write_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` atomically."""

    @abstractmethod
    def adopt(self, key: str, temp_path: Path) -> None:
        """Move a finished temp file (from ``new_temp``) to ``key`` atomically."""

    @abstractmethod
    def new_temp(self) -> Path:
        """A fresh temp file on the same filesystem as the objects."""

    @abstractmethod
    def delete_prefix(self, key: str) -> None:
        """Delete ``key`` and everything below it; missing keys are fine."""

    @abstractmethod
    def check(self) -> None:
        """Raise OSError if the storage cannot be written."""


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from ids, but refuse to leave the root even if one did not.
        if not path.is_relative_to(self.root) or path == self.root:
            raise ValueError(f"invalid storage key: {key!r}")
        return path

    def new_temp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="up-")
        os.close(fd)
        return Path(name)

    def adopt(self, key: str, temp_path: Path) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp_path, target)

    def write_bytes(self, key: str, data: bytes) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise

    def delete_prefix(self, key: str) -> None:
        path = self.path(key)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def check(self) -> None:
        probe = self._tmp / f".ready-{uuid.uuid4().hex}"
        probe.write_bytes(b"ok")
        probe.unlink()
