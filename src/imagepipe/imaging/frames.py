"""Count animation frames without decoding them, and stop once the count is too high.

Pillow's ``n_frames`` for GIF walks every frame of the file before answering; a GIF of
a few MB can hold hundreds of thousands of tiny frames. The pixel cap only needs to know
whether ``frames > limit``, so this walker gives up as soon as it has seen ``limit + 1``.
"""

from __future__ import annotations

from typing import BinaryIO

from PIL import Image

_IMAGE_DESCRIPTOR = 0x2C
_EXTENSION = 0x21
_TRAILER = 0x3B


def count_frames(image: Image.Image, fp: BinaryIO, *, limit: int) -> int:
    """Frames in ``image`` (opened from ``fp``), counted up to ``limit + 1`` for GIFs.

    The position of ``fp`` is restored, so Pillow's own reading is not disturbed.
    """
    if image.format != "GIF":
        # PNG (APNG acTL) and WebP declare the count in a header; TIFF walks its
        # directory chain, which Pillow guards against loops.
        return int(getattr(image, "n_frames", 1))
    position = fp.tell()
    try:
        fp.seek(0)
        return _count_gif_frames(fp, limit=limit)
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
