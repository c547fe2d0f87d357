"""Count frames and pages without decoding them, and stop once the count is too high.

The pixel cap and the frame cap only need to know whether ``frames > limit``, so every
count here gives up as soon as it has seen ``limit + 1``. Pillow's own ``n_frames``
is not safe for every format:

* GIF walks every frame of the file before answering; a GIF of a few MB can hold
  hundreds of thousands of tiny frames.
* TIFF walks the page (IFD) chain and checks each new page against a *list* of the
  pages seen so far: the walk is quadratic in the page count, and 1x1 pages never
  reach the pixel cap (a 3 MB TIFF of 30 000 pages costs seconds).

Both are walked here instead, reading a few bytes per frame. PNG (APNG ``acTL``),
WebP, AVIF and HEIF declare their count in a header Pillow has already parsed.
"""

from __future__ import annotations

import struct
from typing import BinaryIO

from PIL import Image

_IMAGE_DESCRIPTOR = 0x2C
_EXTENSION = 0x21
_TRAILER = 0x3B


def count_frames(image: Image.Image, fp: BinaryIO, *, limit: int) -> int:
    """Frames in ``image`` (opened from ``fp``), counted up to ``limit + 1`` at most
    for GIF and TIFF.

    Other formats report Pillow's count; callers bound that walk with a budget (see
    opening.py). The position of ``fp`` is restored, so Pillow's reading is not
    disturbed.
    """
    if image.format not in ("GIF", "TIFF"):
        return int(getattr(image, "n_frames", 1))
    position = fp.tell()
    try:
        fp.seek(0)
        if image.format == "GIF":
            return _count_gif_frames(fp, limit=limit)
        return _count_tiff_pages(fp, limit=limit)
    finally:
        fp.seek(position)


def _count_gif_frames(fp: BinaryIO, *, limit: int) -> int:
    header = fp.read(13)  # signature + logical screen descriptor
    if len(header) < 13:
        return 1
    _skip_colour_table(fp, header[10])
    frames = 0
    while frames <= limit:
        block = fp.read(1)
        if not block or block[0] == _TRAILER:
            break
        if block[0] == _IMAGE_DESCRIPTOR:
            frames += 1
            descriptor = fp.read(9)
            if len(descriptor) < 9:
                break
            _skip_colour_table(fp, descriptor[8])
            fp.read(1)  # LZW minimum code size
            _skip_sub_blocks(fp)
        elif block[0] == _EXTENSION:
            fp.read(1)  # extension label
            _skip_sub_blocks(fp)
        else:
            break  # garbage after the last frame: Pillow stops here too
    return max(frames, 1)


def _skip_colour_table(fp: BinaryIO, flags: int) -> None:
    if flags & 0x80:
        fp.seek(3 << ((flags & 0x07) + 1), 1)


def _skip_sub_blocks(fp: BinaryIO) -> None:
    while True:
        size = fp.read(1)
        if not size or size[0] == 0:
            return
        fp.seek(size[0], 1)


def _count_tiff_pages(fp: BinaryIO, *, limit: int) -> int:
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
