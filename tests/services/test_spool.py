"""The spool of resized pixels (services/spool.py): kept per render, read back whole,
bounded in bytes, swept by age, and best effort throughout."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from PIL import Image, ImageChops

from imagepipe.services.spool import SUFFIX, Spool


def _image(colour: tuple[int, int, int], size: tuple[int, int] = (20, 10)) -> Image.Image:
    return Image.new("RGB", size, colour)


def _entry_bytes(image: Image.Image) -> int:
    # The one-line header and the raw pixels.
    return len(image.tobytes()) + 40


def test_pixels_come_back_for_the_same_render_only(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", max_bytes=1 << 20)
    task = uuid.uuid4()
    picture = _image((200, 30, 10))
    assert spool.put(task, 1, "small", picture)
    back = spool.get(task, 1, "small")
    assert back is not None and back.mode == "RGB" and back.size == (20, 10)
    assert ImageChops.difference(back, picture).getbbox() is None
    # A re-render (another attempt) never reads an older render's pixels.
    assert spool.get(task, 2, "small") is None
    assert spool.get(uuid.uuid4(), 1, "small") is None
    spool.discard(task, 1)
    assert spool.get(task, 1, "small") is None
    assert spool.used_bytes() == 0


def test_writing_past_the_cap_evicts_the_oldest(tmp_path: Path) -> None:
    picture = _image((1, 2, 3))
    spool = Spool(tmp_path, max_bytes=2 * _entry_bytes(picture))
    first, second, third = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert spool.put(first, 1, "small", picture)
    past = time.time() - 10
    os.utime(next(tmp_path.glob(f"{first}-*")), (past, past))
    assert spool.put(second, 1, "small", picture)
    assert spool.put(third, 1, "small", picture)
    assert spool.get(first, 1, "small") is None
    assert spool.get(second, 1, "small") is not None and spool.get(third, 1, "small") is not None
    assert spool.used_bytes() <= spool.max_bytes
    # An entry larger than the whole spool is not kept, and evicts nothing.
    assert not spool.put(first, 1, "large", _image((0, 0, 0), (400, 400)))
    assert spool.get(third, 1, "small") is not None


def test_old_entries_and_abandoned_temporaries_are_swept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age=60)
    task = uuid.uuid4()
    assert spool.put(task, 1, "small", _image((9, 9, 9)))
    abandoned = tmp_path / "half-written.tmp"
    abandoned.write_bytes(b"x")
    unrelated = tmp_path / "notes.txt"
    unrelated.write_bytes(b"not ours")
    old = time.time() - 120
    for path in (*tmp_path.glob(f"*{SUFFIX}"), abandoned, unrelated):
        os.utime(path, (old, old))
    assert spool.sweep() == 2
    assert spool.get(task, 1, "small") is None
    assert not abandoned.exists() and unrelated.exists()


def test_off_or_broken_is_only_a_miss(tmp_path: Path) -> None:
    task = uuid.uuid4()
    off = Spool(tmp_path / "off", max_bytes=0)
    assert not off.enabled
    assert not off.put(task, 1, "small", _image((1, 1, 1)))
    assert off.get(task, 1, "small") is None
    spool = Spool(tmp_path / "on", max_bytes=1 << 20)
    assert spool.put(task, 1, "small", _image((1, 1, 1)))
    entry = next((tmp_path / "on").glob(f"*{SUFFIX}"))
    entry.write_bytes(b"{not json\nxx")
    assert spool.get(task, 1, "small") is None
    # A spool directory that cannot be made: not kept, no exception.
    blocked = tmp_path / "file"
    blocked.write_bytes(b"")
    assert not Spool(blocked / "spool", max_bytes=1 << 20).put(task, 1, "s", _image((1, 1, 1)))
