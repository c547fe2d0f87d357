"""Decode a JPEG at any M/8 scale with libjpeg-turbo (simplejpeg), not only Pillow's
1/2, 1/4 and 1/8: the first shrink then starts from the nearest size above the
largest preview (``resample.dct_eighths``), and when that leaves little to do it is
done here, on the decoded array, before Pillow copies it (``resample.linear``).

Only plain JPEGs take this path: 8-bit YCbCr or greyscale, as Pillow would decode them
(RGB or L). CMYK and YCCK (Adobe's inversion, profiles) stay with Pillow, and so does
any file libjpeg-turbo only warns about: Pillow decides, as for every other upload,
whether a damaged JPEG is refused or shown.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import simplejpeg
from PIL import Image

from imagepipe.imaging import resample
from imagepipe.imaging.geometry import Size

# simplejpeg's name for each Pillow mode it can produce the same way.
_COLOURSPACES = {"RGB": "RGB", "L": "GRAY"}
_HEADER_SPACES = {"RGB": ("YCbCr", "RGB"), "L": ("Gray",)}


def decode(source: Path | BinaryIO, mode: str, size: Size, target: Size) -> Image.Image | None:
    """The pixels of the JPEG ``source`` (``mode`` and ``size`` as Pillow opened it) at
    the smallest clean scale covering ``target``, shrunk to ``target`` itself when that
    scale leaves a linear pass (``resample.takes_linear``), or None when Pillow must
    decode it: not a plain JPEG, or bytes libjpeg-turbo would only warn about."""
    colourspace = _COLOURSPACES.get(mode)
    if colourspace is None:
        return None
    data = _read(source)
    try:
        _, _, header_space, _ = simplejpeg.decode_jpeg_header(data)
        if header_space not in _HEADER_SPACES[mode]:
            return None
        # simplejpeg picks the smallest scale at least this large: exactly M/8.
        width, height = resample.scaled_size(size, resample.dct_eighths(size, target))
        pixels = simplejpeg.decode_jpeg(
            data, colorspace=colourspace, min_width=width, min_height=height
        )
    except ValueError:
        return None  # damaged, or something simplejpeg does not take: Pillow's call
    if resample.takes_linear((pixels.shape[1], pixels.shape[0]), target):
        pixels = resample.linear(pixels, target)
    height, width = pixels.shape[:2]
    # Greyscale shares the array's memory; RGB is copied (Pillow keeps 4 bytes a pixel).
    return Image.frombuffer(mode, (width, height), pixels, "raw", mode, 0, 1)


def _read(source: Path | BinaryIO) -> bytes:
    if isinstance(source, Path):
        return source.read_bytes()
    position = source.tell()
    source.seek(0)
    try:
        return source.read()
    finally:
        source.seek(position)
