"""Local storage makes a write durable, names included: the directory that gains a
name (a rename into it, a directory made in it) is fsynced after the change, not only
the file's bytes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from imagepipe.storage import LocalStorage


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths of what is fsynced from now on, in order."""
    seen: list[Path] = []
    real = os.fsync

    def recording(fd: int) -> None:
        seen.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    return seen


def directories(paths: list[Path]) -> list[Path]:
    return [path for path in paths if path.is_dir()]


def test_a_write_fsyncs_the_directories_it_changed(tmp_path: Path, fsynced: list[Path]) -> None:
    storage = LocalStorage(tmp_path)
    root = storage.root
    fsynced.clear()
    storage.put_bytes("variants/t/1/small.jpg", b"preview")
    # Each new directory's parent after it was made, and the file's directory after
    # the rename, which comes after the (temp) file's own bytes.
    made = [root, root / "variants", root / "variants/t"]
    assert directories(fsynced) == [*made, root / "variants/t/1"]
    assert fsynced[:3] == made and fsynced[3].parent == root / "tmp" and len(fsynced) == 5
    # Directories that exist already are not made again, nor their parents fsynced.
    fsynced.clear()
    storage.put_bytes("variants/t/1/large.jpg", b"preview")
    assert directories(fsynced) == [root / "variants/t/1"]


def test_an_upload_renamed_into_place_fsyncs_its_directory(
    tmp_path: Path, fsynced: list[Path]
) -> None:
    storage = LocalStorage(tmp_path)
    (storage.root / "staging").mkdir()
    temp = storage.local_temp()
    temp.write_bytes(b"uploaded")
    fsynced.clear()
    storage.put_file("staging/a", temp)
    assert directories(fsynced) == [storage.root / "staging"]


def test_a_move_fsyncs_both_directories(tmp_path: Path, fsynced: list[Path]) -> None:
    storage = LocalStorage(tmp_path)
    storage.put_bytes("staging/a", b"uploaded")
    fsynced.clear()
    storage.move("staging/a", "originals/a")
    root = storage.root
    # originals/ made (root fsynced), the rename into it, its removal from staging/.
    assert fsynced == [root, root / "originals", root / "staging"]
