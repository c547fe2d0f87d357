"""Walk frames and pages without decoding them, and stop once a cap is passed.

The caps only need to know whether the frames are too many or too large, so every
walk here gives up as soon as it has seen one frame too many or one pixel too many.
Pillow's own ``n_frames`` is not safe for every format:

* GIF walks every frame of the file before answering; a GIF of a few MB can hold
  hundreds of thousands of tiny frames.
* TIFF walks the page (IFD) chain and checks each new page against a *list* of the
  pages seen so far: the walk is quadratic in the page count, and 1x1 pages never
  reach the pixel cap (a 3 MB TIFF of 30 000 pages costs seconds).

Both are walked here instead, reading a few bytes per frame. PNG (APNG ``acTL``),
WebP, AVIF and HEIF declare their count in a header Pillow has already parsed.

Frame sizes: a GIF frame may reach past the logical screen, and Pillow then grows the
canvas (never shrinks it) to hold it; every later frame is composited on that canvas.
So a GIF's frames are summed at the canvas size each one is held at, not at the first
frame's size. APNG and animated WebP frames cannot leave their canvas (Pillow and
libwebp refuse such files), and only the first page of a TIFF is ever decoded.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

_IMAGE_DESCRIPTOR = 0x2C
_EXTENSION = 0x21
_TRAILER = 0x3B


@dataclass(frozen=True)
class Walk:
    """What the frames of an image add up to, as far as they were walked."""

    frames: int  # counted up to one past a cap
    pixels: int  # the walked frames, each at the size Pillow holds it at
    largest: tuple[int, int]  # the largest of those sizes


def _no_step() -> None:
    return None


def walk(
    image: Image.Image,
    fp: BinaryIO,
    *,
    max_frames: int,
    max_pixels: int,
    step: Callable[[], None] = _no_step,
) -> Walk:
    """The frames of ``image`` (opened from ``fp``), walked until ``max_frames`` or
    ``max_pixels`` is passed (GIF and TIFF; other formats report Pillow's count).

    ``step`` is called once per frame or block walked: the caller's CPU budget. The
    position of ``fp`` is restored, so Pillow's reading is not disturbed.
    """
    width, height = image.size
    if image.format not in ("GIF", "TIFF"):
        count = int(getattr(image, "n_frames", 1))
        return Walk(count, count * width * height, image.size)
    position = fp.tell()
    try:
        fp.seek(0)
        if image.format == "GIF":
            gif = _walk_gif(fp, max_frames=max_frames, max_pixels=max_pixels, step=step)
            return gif or Walk(1, width * height, image.size)
        # Only the first page is ever decoded; every page counts at the first one's size.
        limit = min(max_frames, max_pixels // (width * height))
        pages = _count_tiff_pages(fp, limit=limit, step=step)
        return Walk(pages, pages * width * height, image.size)
    finally:
        fp.seek(position)


def _walk_gif(
    fp: BinaryIO, *, max_frames: int, max_pixels: int, step: Callable[[], None]
) -> Walk | None:
    header = fp.read(13)  # signature + logical screen descriptor
    if len(header) < 13:
        return None
    canvas_width, canvas_height = struct.unpack("<HH", header[6:10])
    _skip_colour_table(fp, header[10])
    frames = pixels = 0
    while frames <= max_frames and pixels <= max_pixels:
        step()
        block = fp.read(1)
        if not block or block[0] == _TRAILER:
            break
        if block[0] == _IMAGE_DESCRIPTOR:
            descriptor = fp.read(9)
            if len(descriptor) < 9:
                break
            left, top, width, height = struct.unpack("<HHHH", descriptor[:8])
            # As Pillow does when it reaches this frame: the canvas grows to hold it.
            canvas_width = max(canvas_width, left + width)
            canvas_height = max(canvas_height, top + height)
            frames += 1
            pixels += canvas_width * canvas_height
            _skip_colour_table(fp, descriptor[8])
            fp.read(1)  # LZW minimum code size
            _skip_sub_blocks(fp, step)
        elif block[0] == _EXTENSION:
            fp.read(1)  # extension label
            _skip_sub_blocks(fp, step)
        else:
            break  # garbage after the last frame: the count ends, nothing past it is decoded
    if frames == 0:
        return None
    return Walk(frames, pixels, (canvas_width, canvas_height))


def _skip_colour_table(fp: BinaryIO, flags: int) -> None:
    if flags & 0x80:
        fp.seek(3 << ((flags & 0x07) + 1), 1)


def _skip_sub_blocks(fp: BinaryIO, step: Callable[[], None]) -> None:
    while True:
        step()
        size = fp.read(1)
        if not size or size[0] == 0:
            return
        fp.seek(size[0], 1)


def _count_tiff_pages(fp: BinaryIO, *, limit: int, step: Callable[[], None]) -> int:
    """Follow the IFD chain: entry count, skip the entries, read the next offset.

    Classic TIFF and BigTIFF, either byte order, decided as Pillow decides (BigTIFF
    when the third byte is 43). A loop in the chain ends the count, as in Pillow.
    """
    header = fp.read(16)
    if len(header) < 8:
        return 1
    order = "<" if header[:2] == b"II" else ">"
    if header[2] == 43:  # BigTIFF: 8-byte counts and offsets, 20-byte entries
        if len(header) < 16:
            return 1
        count_format, entry_size, offset_format = "Q", 20, "Q"
        (offset,) = struct.unpack(order + "Q", header[8:16])
    else:
        count_format, entry_size, offset_format = "H", 12, "I"
        (offset,) = struct.unpack(order + "I", header[4:8])
    count_size = struct.calcsize(count_format)
    offset_size = struct.calcsize(offset_format)
    seen: set[int] = set()
    pages = 0
    while offset and offset not in seen and pages <= limit:
        step()
        seen.add(offset)
        pages += 1
        fp.seek(offset)
        raw = fp.read(count_size)
        if len(raw) < count_size:
            break
        (entries,) = struct.unpack(order + count_format, raw)
        fp.seek(offset + count_size + entries * entry_size)
        raw = fp.read(offset_size)
        if len(raw) < offset_size:
            break
        (offset,) = struct.unpack(order + offset_format, raw)
    return max(pages, 1)
