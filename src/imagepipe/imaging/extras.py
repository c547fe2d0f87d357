"""Extra formats of a rendered task, made after its base renditions were stored.

They start from each variant's resized pixels: those the render kept (the worker's
spool) or, when those are gone, a fresh decode of the original (``resized``). An
animation's WebP is made from every frame of the original, so it always needs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from imagepipe.imaging.decode import decode
from imagepipe.imaging.encode import encode
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.render import (
    RenderOptions,
    Rendition,
    animated_rendition,
    boxes_largest_first,
    cascade,
)


@dataclass(frozen=True)
class Resized:
    """Each variant's pixels, as ``render_previews`` makes them, and what an animated
    WebP of the same source is made with."""

    images: Iterator[tuple[str, Image.Image]]
    orientation: int
    icc_profile: bytes | None


def resized(source: Path | BinaryIO, options: RenderOptions) -> Resized:
    """Decode ``source`` and resize it, without encoding or checking: what extra
    formats start from when the render's pixels are not at hand."""
    boxes = boxes_largest_first(options.boxes)
    decoded = decode(source, largest_box=boxes[0][1], limits=options.limits)
    return Resized(cascade(decoded, boxes), decoded.orientation, decoded.icc_profile)


def encode_extra(
    image: Image.Image,
    name: str,
    fmt: FormatName,
    options: RenderOptions,
    animation_of: tuple[Path | BinaryIO, Resized] | None = None,
) -> Rendition:
    """One extra format of variant ``name`` from its resized ``image``. With
    ``animation_of`` (the source and its decode), WebP is the animation, made from
    every frame of the source."""
    if animation_of is not None and fmt == "WEBP":
        source, decoded = animation_of
        if not isinstance(source, Path):
            source.seek(0)
        return animated_rendition(
            name, image.size, source, decoded.orientation, decoded.icc_profile, options
        )
    data = encode(image, fmt, quality=options.quality(fmt))
    return Rendition(fmt, data, FORMATS[fmt].content_type, options.spec(name, fmt))
