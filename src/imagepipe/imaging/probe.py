"""Header-only inspection of an upload: format, size, frame count, caps."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from imagepipe.imaging.opening import (
    DEFAULT_HEADER_CPU_SECONDS,
    DEFAULT_MAX_FRAMES,
    Limits,
    open_image,
)


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow format name, e.g. "JPEG"
    width: int  # as stored; EXIF orientation is applied only when rendering
    height: int
    frames: int

    @property
    def content_type(self) -> str:
        return Image.MIME.get(self.format, "application/octet-stream")


def probe(
    source: Path | BinaryIO,
    *,
    allowed_formats: tuple[str, ...],
    max_pixels: int,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_decoded_bytes: int | None = None,
    header_cpu_seconds: float = DEFAULT_HEADER_CPU_SECONDS,
) -> ImageInfo:
    """Read only the header of ``source`` (a path, or a seekable binary file).

    Raises UnsupportedMediaType (not an allowed image format, incl. empty files, SVG,
    PDF, EPS, HTML), ImageTooLarge (width*height*frames > max_pixels, more than
    max_frames frames or pages, one frame over max_decoded_bytes once decoded) or
    InvalidImage (an allowed format whose header cannot be parsed, or whose header
    costs more than its budget to parse).

    Bounded work: frame and page counts stop past the caps, and header parsing stops
    after a fixed number of reads or ``header_cpu_seconds`` of CPU. Async callers run
    it under ``probe_limiter`` (imaging/limits.py), not in the shared thread pool.
    """
    limits = Limits(
        allowed_formats=allowed_formats,
        max_pixels=max_pixels,
        max_frames=max_frames,
        max_decoded_bytes=max_decoded_bytes,
        header_cpu_seconds=header_cpu_seconds,
    )
    with open_image(source, limits) as opened:
        width, height = opened.image.size
        return ImageInfo(format=opened.format, width=width, height=height, frames=opened.frames)
