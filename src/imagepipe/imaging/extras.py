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

from imagepipe.imaging.cascade import cascade, largest
from imagepipe.imaging.decode import decode
from imagepipe.imaging.encode import encode
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.geometry import Size
from imagepipe.imaging.render import EncodedRendition, RenderOptions, animated_rendition


@dataclass(frozen=True)
class Resized:
    """Each variant's pixels, as ``render_variants`` makes them, and what an animated
    WebP of the same source is made with."""

    images: Iterator[tuple[str, Image.Image]]
    orientation: int
    icc_profile: bytes | None
    display: Size  # the source's displayed size (what an animation's frames follow)


def resized(source: Path | BinaryIO, options: RenderOptions) -> Resized:
    """Decode ``source`` and resize it, without encoding or checking: what extra
    formats start from when the render's pixels are not at hand. Cropped as the
    render crops (``options.focal``: the task's point)."""
    decoded = decode(source, largest_box=largest(options.boxes), limits=options.limits)
    images = cascade(decoded, options.boxes, options.focal)
    return Resized(images, decoded.orientation, decoded.icc_profile, decoded.display_size)


def encode_extra(
    image: Image.Image,
    name: str,
    fmt: FormatName,
    options: RenderOptions,
    animation_of: tuple[Path | BinaryIO, Resized] | None = None,
) -> EncodedRendition:
    """One extra format of variant ``name`` from its resized ``image``. With
    ``animation_of`` (the source and its decode), WebP is the animation, made from
    every frame of the source."""
    if animation_of is not None and fmt == "WEBP":
        source, decoded = animation_of
        if not isinstance(source, Path):
            source.seek(0)
        return animated_rendition(
            name, decoded.display, source, decoded.orientation, decoded.icc_profile, options
        )
    data = encode(image, fmt, quality=options.quality(fmt))
    return EncodedRendition(fmt, data, FORMATS[fmt].content_type, options.spec(name, fmt))
