"""What the in-memory double adds to the contract: an outage on demand, a clock a test
moves, and the type each object was stored with."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from imagepipe.config import Settings
from imagepipe.storage import (
    MemoryStorage,
    ObjectNotFound,
    StorageUnavailable,
    open_storage_url,
)


def test_the_url_names_a_fresh_store_each_time(tmp_path: Path) -> None:
    first = open_storage_url("memory://", Settings(data_dir=tmp_path))
    second = open_storage_url("memory://", Settings(data_dir=tmp_path))
    assert isinstance(first, MemoryStorage) and first.scheme == "memory"
    first.put_bytes("originals/a", b"x")
    with pytest.raises(ObjectNotFound):
        second.stat("originals/a")


def test_an_outage_fails_every_call_as_an_unreachable_backend_does() -> None:
    storage = MemoryStorage()
    storage.put_bytes("originals/a", b"x")
    storage.outage = StorageUnavailable("the test cut it off")
    for call in (
        storage.check,
        lambda: storage.stat("originals/a"),
        lambda: storage.put_bytes("originals/b", b"y"),
        lambda: list(storage.list("")),
        lambda: storage.delete("originals/a"),
    ):
        with pytest.raises(StorageUnavailable):
            call()
    storage.outage = None
    assert storage.stat("originals/a").size == 1


def test_the_clock_stamps_modified_and_a_reader_keeps_its_version() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    storage = MemoryStorage(clock=lambda: moment)
    storage.put_bytes("variants/t/1/small.jpg", b"old", content_type="image/jpeg")
    assert storage.stat("variants/t/1/small.jpg").modified == moment
    assert storage.content_type("variants/t/1/small.jpg") == "image/jpeg"
    reader = storage.open("variants/t/1/small.jpg")
    storage.put_bytes("variants/t/1/small.jpg", b"new")
    assert reader.read() == b"old"  # opened before the write: the old version, whole
    reader.close()
    assert storage.content_type("variants/t/1/small.jpg") == "application/octet-stream"
