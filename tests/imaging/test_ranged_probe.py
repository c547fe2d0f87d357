"""The completion probe of a direct upload reads the stored object by ranges: what a
header check costs in range requests and bytes is bounded, whatever the file, and the
frame walk is charged to the header's CPU budget."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagepipe.errors import InvalidImage
from imagepipe.imaging import ImageInfo, probe
from imagepipe.storage import LocalStorage
from imagepipe.storage.ranged import RANGE_BYTES, open_ranged
from tests.imaging import images

ALLOWED = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
KEY = "originals/upload"
# What a check may fetch beyond the object (ranged.READ_SLACK_BYTES), spelled out.
SLACK = 1024 * 1024


class Ranges:
    """A local storage whose range requests are counted."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.storage = LocalStorage(root)
        self.asked: list[tuple[int, int]] = []
        real = self.storage.read_range

        def counted(key: str, start: int, length: int) -> bytes:
            self.asked.append((start, length))
            return real(key, start, length)

        monkeypatch.setattr(self.storage, "read_range", counted)

    def probe(self, data: bytes, **limits: float) -> ImageInfo:
        self.storage.put_bytes(KEY, data)
        self.asked.clear()
        handle = open_ranged(self.storage, KEY, len(data))
        return probe(
            handle,
            allowed_formats=ALLOWED,
            max_pixels=50_000_000,
            **limits,  # type: ignore[arg-type]
        )

    @property
    def fetched(self) -> int:
        return sum(length for _, length in self.asked)


@pytest.fixture
def ranges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Ranges]:
    yield Ranges(tmp_path / "storage", monkeypatch)


def test_a_page_chain_hopping_between_the_ends_of_a_tiff_fetches_each_block_once(
    ranges: Ranges,
) -> None:
    # 655 KiB, 1000 pages whose chain hops 327 KiB at each page: one range request
    # per page for a view that keeps one block (1003 requests, 139 MiB).
    data = images.hopping_page_tiff(1000, regions=2, region_bytes=335_360)
    assert ranges.probe(data) == ImageInfo("TIFF", 1, 1, 1000)
    assert len(ranges.asked) <= math.ceil(len(data) / RANGE_BYTES)
    assert ranges.fetched <= len(data)


def test_a_page_chain_built_to_outrun_the_block_cache_is_refused_within_the_budget(
    ranges: Ranges,
) -> None:
    # 4 MiB, 200 pages cycling through 16 blocks: more blocks than the view keeps, so
    # every page would be a new range request.
    data = images.hopping_page_tiff(200, regions=16, region_bytes=RANGE_BYTES)
    with pytest.raises(InvalidImage, match="cannot be checked within"):
        ranges.probe(data)
    assert ranges.fetched <= len(data) + SLACK
    assert len(ranges.asked) <= (len(data) + SLACK) // RANGE_BYTES


def test_a_long_gif_is_walked_with_one_request_per_block(ranges: Ranges) -> None:
    # Noise does not compress: 30 frames of 200x200 are about 1.5 MB.
    noise = np.random.default_rng(0).integers(0, 256, (30, 200, 200), dtype=np.uint8)
    frames = [Image.fromarray(frame) for frame in noise]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], optimize=False)
    gif = buffer.getvalue()
    assert len(gif) > 4 * RANGE_BYTES
    assert ranges.probe(gif).frames == 30
    assert len(ranges.asked) == math.ceil(len(gif) / RANGE_BYTES)


def test_a_jpeg_header_is_still_one_request(ranges: Ranges, tmp_path: Path) -> None:
    path = images.save(images.photo((2000, 1500)), tmp_path / "a.jpg", quality=95)
    data = path.read_bytes()
    assert len(data) > RANGE_BYTES
    assert ranges.probe(data) == ImageInfo("JPEG", 2000, 1500, 1)
    assert ranges.asked == [(0, RANGE_BYTES)]


def test_the_frame_walk_is_charged_to_the_header_cpu_budget(ranges: Ranges) -> None:
    # One 1x1 frame whose data is 2 million one-byte sub-blocks (4 MB): a step each.
    data = images.gif_of_one_byte_sub_blocks(2_000_000)
    with pytest.raises(InvalidImage, match="too complex"):
        ranges.probe(data, header_cpu_seconds=0.02)
    # Given the CPU time, the same walk succeeds. (Not the default second: coverage's
    # tracing, on a loaded machine, makes this Python loop several times slower.)
    assert ranges.probe(data, header_cpu_seconds=60).frames == 1
