"""Encode one preview in any format of the table (formats.py), with no metadata at all.

Nothing from the source survives: no EXIF (GPS), XMP, comments or ICC profile. Pixels
are sRGB by then, which is what a JPEG/PNG/WebP/AVIF without a profile means.
"""

from __future__ import annotations

import io
from collections.abc import Mapping

from PIL import Image

from imagepipe.imaging.colour import ALPHA_MODES
from imagepipe.imaging.formats import FORMATS, FormatName, base_format

OutputChoice = FormatName | str  # a format name, or "auto"


def choose_format(output_format: str, *, has_alpha: bool) -> FormatName:
    """ "auto": PNG when some pixel is transparent, JPEG otherwise."""
    if output_format == "auto":
        return base_format(has_alpha=has_alpha)
    for name in FORMATS:
        if name == output_format:
            return name
    raise ValueError(f"unknown output format {output_format!r}")


# libavif uses every core by default. A worker already runs one pool process per core:
# more threads per encode only contend with the other renders. Not part of the spec:
# the bytes do not depend on it.
_THREADS: Mapping[str, Mapping[str, int]] = {"AVIF": {"max_threads": 1}}


def encode(image: Image.Image, output_format: FormatName, *, quality: int) -> bytes:
    """Encode ``image`` (L, LA, RGB or RGBA, sRGB) without any metadata."""
    spec = FORMATS[output_format]
    image = prepare(image, output_format)
    # Pillow copies some keys of ``info`` into the output (PNG: icc_profile, ...).
    image.info = {}
    buffer = io.BytesIO()
    image.save(buffer, spec.name, **spec.save_options(quality), **_THREADS.get(output_format, {}))
    return buffer.getvalue()


def prepare(image: Image.Image, output_format: FormatName) -> Image.Image:
    """The mode the encoder takes: no alpha for formats without it, RGB for WebP/AVIF."""
    spec = FORMATS[output_format]
    if image.mode in ALPHA_MODES and not spec.alpha:
        image = flatten(image)
    if output_format in ("WEBP", "AVIF") and image.mode in ("L", "LA"):
        image = image.convert("RGBA" if image.mode == "LA" else "RGB")
    return image


def quality_for(output_format: FormatName, qualities: Mapping[str, int]) -> int:
    """The configured quality of a format (formats without one ignore it)."""
    return qualities.get(output_format, 0)


def flatten(image: Image.Image) -> Image.Image:
    """Composite an L/RGB + alpha image onto white (JPEG has no alpha)."""
    opaque = image.mode[:-1]
    background = Image.new(opaque, image.size, "white")
    background.paste(image.convert(opaque), mask=image.getchannel("A"))
    return background
