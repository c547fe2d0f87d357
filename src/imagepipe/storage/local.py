"""Objects as files under one root directory.

Writes are atomic: bytes go to a temp file under ``<root>/tmp/`` (same filesystem),
are fsynced, then renamed over the target, so a reader sees the old file or the new
one, never a mix. A writer killed between the two leaves a temp file, which
``sweep_temp`` removes once it is clearly abandoned. Keys that would leave the root are
refused.

A rename (and a new directory) is a change to a directory, which the file's own fsync
does not make durable: the directory is fsynced after each, or a crash soon after an
acknowledged write could bring back the old name, or none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from imagepipe.storage import keys
from imagepipe.storage.base import (
    COPY_CHUNK,
    HandleReader,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageError,
    check_version,
    validate_prefix,
)


class LocalStorage(Storage):
    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._tmp = self.root / keys.TMP
        self._tmp.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from ids, but refuse to leave the root even if one did not.
        if not path.is_relative_to(self.root) or path == self.root or key.endswith("/"):
            raise ValueError(f"invalid storage key: {key!r}")
        return path

    def _info(self, key: str, stat: os.stat_result) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=stat.st_size,
            etag=f"{stat.st_size:x}-{stat.st_mtime_ns:x}",
            modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        )

    # --- writing -----------------------------------------------------------------

    def local_temp(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="up-")
        os.close(fd)
        return Path(name)

    def put_file(self, key: str, path: Path, *, content_type: str | None = None) -> None:
        target = self._path(key)
        with _write_errors(key):
            _make_parents(target)
            if path.parent == self._tmp:
                # One of ours (local_temp), already on this filesystem: a rename, no copy.
                _fsync(path)
                os.replace(path, target)
                _fsync_directory(target.parent)
                return
            with path.open("rb") as source:
                self._write(target, lambda out: shutil.copyfileobj(source, out, COPY_CHUNK))

    def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        target = self._path(key)
        with _write_errors(key):
            _make_parents(target)
            self._write(target, lambda out: out.write(data))

    def _write(self, target: Path, fill: Callable[[BinaryIO], object]) -> None:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix=f"w-{target.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                fill(handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            raise
        _fsync_directory(target.parent)

    # --- copying and moving -------------------------------------------------------

    def copy(self, source: str, target: str) -> ObjectInfo:
        reader = self.open(source)
        try:
            destination = self._path(target)
            with _write_errors(target):
                _make_parents(destination)
                handle = reader.handle
                self._write(destination, lambda out: shutil.copyfileobj(handle, out, COPY_CHUNK))
        finally:
            reader.close()
        return self.stat(target)

    def move(self, source: str, target: str) -> ObjectInfo:
        """A rename: atomic, and the file keeps its version tag (same inode, same mtime)."""
        origin, destination = self._path(source), self._path(target)
        with _write_errors(target):
            _make_parents(destination)
            try:
                os.replace(origin, destination)
            except (FileNotFoundError, NotADirectoryError):
                raise ObjectNotFound(f"no object {source!r}") from None
            _fsync_directory(destination.parent)
            if origin.parent != destination.parent:
                _fsync_directory(origin.parent)  # the name is gone from there for good
        return self.stat(target)

    # --- reading -----------------------------------------------------------------

    def open(self, key: str) -> HandleReader:
        path = self._path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}") from None
        # Metadata of the file we opened: a rename after this does not change it.
        return HandleReader(handle, self._info(key, os.fstat(handle.fileno())))

    def open_seekable(
        self, key: str, *, etag: str | None = None
    ) -> contextlib.AbstractContextManager[BinaryIO]:
        reader = self.open(key)
        try:
            # The tag of the file we opened: a rename after this does not change it.
            check_version(reader.info, etag)
        except BaseException:
            reader.close()
            raise
        return contextlib.closing(reader.handle)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        reader = self.open(key)
        try:
            reader.handle.seek(start)
            return reader.read(length)
        finally:
            reader.close()

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(f"no object {key!r}") from None
        if not path.is_file():
            raise ObjectNotFound(f"no object {key!r}")
        return self._info(key, stat)

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        validate_prefix(prefix)
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for directory, subdirs, files in os.walk(base):
            here = Path(directory)
            if here == self._tmp:
                subdirs.clear()
                continue
            subdirs.sort()
            for name in sorted(files):
                path = here / name
                with contextlib.suppress(FileNotFoundError):
                    key = path.relative_to(self.root).as_posix()
                    yield self._info(key, path.stat())

    # --- deleting ----------------------------------------------------------------

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
            self._path(key).unlink()

    def delete_prefix(self, prefix: str) -> int:
        validate_prefix(prefix)
        if not prefix:
            raise ValueError("refusing to delete every object")
        directory = self._path(prefix.rstrip("/"))
        removed = sum(1 for _ in self.list(prefix))
        shutil.rmtree(directory, ignore_errors=True)
        return removed

    # --- housekeeping ------------------------------------------------------------

    def temp_free_bytes(self) -> int:
        # tmp/ is under the root, on the filesystem the objects are stored on.
        return shutil.disk_usage(self._tmp).free

    def sweep_temp(self, older_than_seconds: float) -> int:
        """Remove temp files under ``tmp/`` older than the cutoff: an upload being
        received or a write in progress touches its file every moment it works."""
        cutoff = time.time() - older_than_seconds
        removed = 0
        for path in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    def check(self) -> None:
        # Asked on every readiness probe: look, write nothing. access() reports a
        # read-only filesystem (EROFS) even to root.
        try:
            is_dir = self._tmp.is_dir()
        except OSError as error:
            raise StorageError(f"cannot reach {self.root}: {error}") from error
        if not is_dir or not os.access(self._tmp, os.W_OK | os.X_OK):
            raise StorageError(f"cannot write under {self.root}")


@contextlib.contextmanager
def _write_errors(key: str) -> Iterator[None]:
    """A write the disk refused (full, read-only, a file where a directory must be) is
    the backend failing, like an S3 that refuses: a StorageError, whatever its errno."""
    try:
        yield
    except StorageError:
        raise
    except OSError as error:
        raise StorageError(f"cannot write {key!r}: {error}") from error


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(path: Path) -> None:
    """Make the names in ``path`` durable (a rename into it, a directory made in it)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_parents(target: Path) -> None:
    """Make the missing directories above ``target``, each one's parent fsynced so the
    new directory survives a crash as the object renamed into it does."""
    missing: list[Path] = []
    directory = target.parent
    while not directory.is_dir():
        missing.append(directory)
        directory = directory.parent
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            if not directory.is_dir():
                raise  # a file where the directory must be: the write fails
            # Made by another writer just now: fsynced below all the same, since that
            # writer may not have reached its own fsync yet.
        _fsync_directory(directory.parent)
