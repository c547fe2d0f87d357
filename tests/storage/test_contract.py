"""The storage contract: what every backend (local files, S3 on a real SeaweedFS, the
in-memory double) does the same way. A backend that passes this suite can carry
originals and variants."""

from __future__ import annotations

import io
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from imagepipe.storage import ObjectChanged, ObjectNotFound, Storage
from imagepipe.storage.base import COPY_CHUNK
from imagepipe.storage.ranged import RANGE_BYTES, open_ranged

pytestmark = pytest.mark.integration


def read_all(storage: Storage, key: str) -> bytes:
    reader = storage.open(key)
    try:
        return b"".join(iter(lambda: reader.read(COPY_CHUNK), b""))
    finally:
        reader.close()


def test_missing_keys(storage: Storage) -> None:
    with pytest.raises(ObjectNotFound):
        storage.open("originals/nothing")
    with pytest.raises(ObjectNotFound):
        storage.stat("originals/nothing")
    with pytest.raises(ObjectNotFound):
        storage.read_range("originals/nothing", 0, 10)
    with pytest.raises(ObjectNotFound), storage.open_seekable("originals/nothing"):
        pass
    storage.delete("originals/nothing")  # deleting nothing is fine
    assert storage.delete_prefix("variants/nothing/") == 0
    assert list(storage.list("variants/nothing/")) == []
    # ObjectNotFound is an OSError, like every storage error, and a FileNotFoundError.
    assert issubclass(ObjectNotFound, FileNotFoundError)


def test_put_bytes_then_read_stream_and_stat(storage: Storage) -> None:
    data = bytes(range(256)) * 5000  # 1.28 MB: several reads
    storage.put_bytes("variants/t/1/large.jpg", data, content_type="image/jpeg")
    assert read_all(storage, "variants/t/1/large.jpg") == data
    info = storage.stat("variants/t/1/large.jpg")
    assert info.key == "variants/t/1/large.jpg"
    assert info.size == len(data)
    assert info.etag
    reader = storage.open("variants/t/1/large.jpg")
    try:
        assert reader.info.size == len(data)
        assert reader.read(10) == data[:10]
    finally:
        reader.close()


def test_put_file_and_seekable_read(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "original.bin"
    source.write_bytes(b"0123456789" * 1000)
    storage.put_file("originals/a", source, content_type="image/png")
    with storage.open_seekable("originals/a") as handle:
        handle.seek(9990)
        assert handle.read() == b"0123456789"
        handle.seek(0)
        assert handle.read(3) == b"012"


def test_local_temp_then_put_file(storage: Storage) -> None:
    """The upload's path: receive into local_temp(), then put_file (which may move it)."""
    temp = storage.local_temp()
    try:
        temp.write_bytes(b"uploaded bytes")
        storage.put_file("originals/b", temp)
    finally:
        temp.unlink(missing_ok=True)
    assert read_all(storage, "originals/b") == b"uploaded bytes"
    assert not temp.exists()


def test_overwrite_replaces_the_whole_object(storage: Storage) -> None:
    storage.put_bytes("originals/c", b"first version, the longer one")
    storage.put_bytes("originals/c", b"second")
    assert read_all(storage, "originals/c") == b"second"
    assert storage.stat("originals/c").size == 6


def test_byte_ranges(storage: Storage) -> None:
    storage.put_bytes("originals/d", b"abcdefghij")
    assert storage.read_range("originals/d", 0, 4) == b"abcd"
    assert storage.read_range("originals/d", 3, 2) == b"de"
    assert storage.read_range("originals/d", 8, 100) == b"ij"  # short at the end
    assert storage.read_range("originals/d", 10, 5) == b""  # past the end
    assert storage.read_range("originals/d", 50, 5) == b""


def test_a_ranged_view_reads_the_object_by_ranges(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(256)) * 4000  # 1 MB: several range blocks
    storage.put_bytes("originals/ranged", data)
    asked: list[tuple[int, int]] = []
    real = storage.read_range

    def counted(key: str, start: int, length: int) -> bytes:
        asked.append((start, length))
        return real(key, start, length)

    monkeypatch.setattr(storage, "read_range", counted)
    handle = open_ranged(storage, "originals/ranged", len(data))
    assert handle.read(10) == data[:10]
    assert asked == [(0, RANGE_BYTES)]  # a header costs one request, not the object
    handle.seek(700_000)
    assert handle.read(5) == data[700_000:700_005]
    handle.seek(-3, io.SEEK_END)
    assert handle.read() == data[-3:]
    handle.seek(0)
    assert handle.read() == data
    assert handle.failure is None

    # The object gone mid-read: the error surfaces, and the file remembers it (a
    # decoder that calls the bytes damaged is then not to be believed).
    storage.delete("originals/ranged")
    handle = open_ranged(storage, "originals/ranged", len(data))
    with pytest.raises(ObjectNotFound):
        handle.read(10)
    assert isinstance(handle.failure, ObjectNotFound)


def test_copy_and_move(storage: Storage) -> None:
    data = bytes(range(256)) * 100
    storage.put_bytes("staging/m", data, content_type="image/png")
    copied = storage.copy("staging/m", "originals/copy")
    assert (copied.key, copied.size) == ("originals/copy", len(data))
    assert read_all(storage, "originals/copy") == data
    assert read_all(storage, "staging/m") == data  # a copy leaves the source

    storage.put_bytes("originals/m", b"an older version, replaced whole")
    moved = storage.move("staging/m", "originals/m")
    assert (moved.key, moved.size) == ("originals/m", len(data))
    assert moved.etag == storage.stat("originals/m").etag
    assert read_all(storage, "originals/m") == data
    with pytest.raises(ObjectNotFound):
        storage.stat("staging/m")
    with pytest.raises(ObjectNotFound):
        storage.move("staging/m", "originals/m")  # nothing left to move
    with pytest.raises(ObjectNotFound):
        storage.copy("staging/nothing", "originals/n")
    assert read_all(storage, "originals/m") == data
    assert sorted(i.key for i in storage.list("")) == ["originals/copy", "originals/m"]


def test_a_seekable_read_of_one_version(storage: Storage) -> None:
    storage.put_bytes("originals/v", b"the checked version")
    checked = storage.stat("originals/v").etag
    with storage.open_seekable("originals/v", etag=checked) as handle:
        assert handle.read() == b"the checked version"
    storage.put_bytes("originals/v", b"a replacement, longer than it")
    with pytest.raises(ObjectChanged), storage.open_seekable("originals/v", etag=checked):
        pass
    # Not a storage error: trying again does not bring the checked version back.
    assert not issubclass(ObjectChanged, OSError)
    with storage.open_seekable("originals/v") as handle:
        assert handle.read() == b"a replacement, longer than it"


def test_list_and_prefix_delete(storage: Storage) -> None:
    for key in ["variants/t1/1/a.jpg", "variants/t1/2/b.jpg", "variants/t1/c.jpg"]:
        storage.put_bytes(key, key.encode())
    storage.put_bytes("variants/t10/1/a.jpg", b"a neighbour whose name starts the same")
    storage.put_bytes("originals/t1", b"original")
    listed = sorted(info.key for info in storage.list("variants/t1/"))
    assert listed == ["variants/t1/1/a.jpg", "variants/t1/2/b.jpg", "variants/t1/c.jpg"]
    sizes = {info.key: info.size for info in storage.list("variants/t1/")}
    assert sizes["variants/t1/c.jpg"] == len(b"variants/t1/c.jpg")

    assert storage.delete_prefix("variants/t1/1/") == 1
    assert sorted(i.key for i in storage.list("variants/t1/")) == [
        "variants/t1/2/b.jpg",
        "variants/t1/c.jpg",
    ]
    assert storage.delete_prefix("variants/t1/") == 2
    assert list(storage.list("variants/t1/")) == []
    # Only that prefix: the neighbour and the original are untouched.
    assert read_all(storage, "variants/t10/1/a.jpg").startswith(b"a neighbour")
    assert read_all(storage, "originals/t1") == b"original"


def test_delete_one_key(storage: Storage) -> None:
    storage.put_bytes("originals/e", b"x")
    storage.delete("originals/e")
    with pytest.raises(ObjectNotFound):
        storage.stat("originals/e")


def test_refuses_dangerous_prefixes_and_keys(storage: Storage) -> None:
    with pytest.raises(ValueError):
        storage.delete_prefix("")  # never "everything"
    with pytest.raises(ValueError):
        storage.delete_prefix("variants/t")  # a prefix is a folder: ends with "/"
    with pytest.raises(ValueError):
        storage.put_bytes("variants/t/", b"x")


def test_presigned_get_and_put_round_trip(storage: Storage) -> None:
    storage.put_bytes("variants/p/1/small.jpg", b"preview bytes", content_type="image/jpeg")
    url = storage.presign_get("variants/p/1/small.jpg", expires_seconds=60)
    put = storage.presign_put(
        "originals/p", content_type="image/png", content_length=9, expires_seconds=60
    )
    if storage.scheme in ("file", "memory"):
        # Local files and memory cannot be handed out by URL: the API streams them.
        assert url is None and put is None
        return
    assert url is not None and put is not None
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"preview bytes"
    request = urllib.request.Request(put.url, data=b"123456789", method=put.method)
    for name, value in put.headers.items():
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    assert read_all(storage, "originals/p") == b"123456789"
    # The length is part of the signature: more bytes than declared are refused.
    longer = urllib.request.Request(put.url, data=b"1234567890", method="PUT")
    longer.add_header("Content-Type", "image/png")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(longer, timeout=10)
    refused.value.close()
    assert refused.value.code == 403
    assert read_all(storage, "originals/p") == b"123456789"


def test_concurrent_writers_never_mix(storage: Storage) -> None:
    """Two writers race on one key while a reader reads it: every read is one whole
    version, never a mix of both or a torn object."""
    size = 256 * 1024
    versions = {bytes([65]) * size, bytes([66]) * size}
    storage.put_bytes("variants/race/1/large.jpg", bytes([65]) * size)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(fill: int) -> None:
        try:
            for _ in range(15):
                storage.put_bytes("variants/race/1/large.jpg", bytes([fill]) * size)
        except BaseException as error:
            errors.append(error)

    writers = [threading.Thread(target=write, args=(fill,)) for fill in (65, 66)]
    seen: list[bytes] = []
    for writer in writers:
        writer.start()
    while any(w.is_alive() for w in writers) or not seen:
        seen.append(read_all(storage, "variants/race/1/large.jpg"))
    stop.set()
    for writer in writers:
        writer.join()
    assert errors == []
    assert all(data in versions for data in seen), {len(d) for d in seen}
    assert read_all(storage, "variants/race/1/large.jpg") in versions


def test_check_answers(storage: Storage) -> None:
    storage.check()
