"""Header-only inspection of an upload: format, size, frame count, pixel cap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imagepipe.imaging.opening import open_image


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow format name, e.g. "JPEG"
    width: int  # as stored; EXIF orientation is applied only when rendering
    height: int
    frames: int


def probe(path: Path, *, allowed_formats: tuple[str, ...], max_pixels: int) -> ImageInfo:
    """Read only the header of ``path``.

    Raises UnsupportedMediaType (not an allowed image format, incl. empty files, SVG,
    PDF, EPS, HTML), ImageTooLarge (width*height*frames > max_pixels) or InvalidImage
    (an allowed format whose header cannot be parsed).
    """
    with open_image(path, allowed_formats=allowed_formats, max_pixels=max_pixels) as opened:
        width, height = opened.image.size
        return ImageInfo(format=opened.format, width=width, height=height, frames=opened.frames)
