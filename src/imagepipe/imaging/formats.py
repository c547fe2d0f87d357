"""Every output format in one table: encoder options, extension, content type, and
what the format can carry (alpha, animation).

The rest of the code asks this table; nothing else spells ``"image/webp"`` or
``"jpg"``. Encoder settings were chosen with ``bench/formats.py`` (docs/benchmarks.md,
"Output formats").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

# The names and what this Pillow build writes live below config, which validates
# IMAGEPIPE_EXTRA_FORMATS with them; this table is built on them.
from imagepipe.config_formats import FORMAT_NAMES, FormatName, can_write

__all__ = [
    "BY_CONTENT_TYPE",
    "BY_EXTENSION",
    "FORMATS",
    "FORMAT_NAMES",
    "FormatName",
    "OutputFormat",
    "base_format",
    "can_write",
    "named",
]

# Measured on a 1200x900 photo-like RGBA preview: level 6 (the default) takes 2x as long
# as 3 for 15 % fewer bytes; level 1 saves only another 10 %. On flat graphics all levels
# cost the same. Most of what remains is Pillow's adaptive row filter (~50 ms per
# megapixel), which its API does not let us switch off.
PNG_COMPRESS_LEVEL = 3
# bench/formats.py, 1200x900 photo-like / graphic: method 4 (libwebp's default) is
# 1.6x / 3x the time of method 2 for 5 % / 4 % fewer bytes at the same SSIM; method 6
# doubles the time again for 3 % fewer. Bytes are served many times, encoded once: 4.
WEBP_METHOD = 4
# Same bench: speed 6 (the default) takes 2.9x / 3.7x the time of speed 8 for 8 % / 15 %
# fewer bytes; speed 10 is faster again but its graphics grow by half (32 KB vs 22 KB).
# Speed 8 is about WebP method 4's time on photos, for 3 % fewer bytes and higher SSIM.
AVIF_SPEED = 8


@dataclass(frozen=True)
class OutputFormat:
    name: FormatName  # Pillow's format name
    extension: str  # in storage keys and URLs, without the dot
    content_type: str
    alpha: bool  # can store transparency (otherwise flattened onto white)
    animation: bool  # can store an animation (imagepipe writes animated WebP only)
    # Options passed to Image.save besides the quality; never metadata.
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # The keyword Pillow takes the quality under, or None when quality does not apply.
    quality_option: str | None = "quality"

    def save_options(self, quality: int) -> dict[str, Any]:
        options = dict(self.options)
        if self.quality_option is not None:
            options[self.quality_option] = quality
        return options


FORMATS: Mapping[FormatName, OutputFormat] = MappingProxyType(
    {
        "JPEG": OutputFormat(
            "JPEG",
            "jpg",
            "image/jpeg",
            alpha=False,
            animation=False,
            # No optimize/progressive: both cost extra passes on the hot path.
            options=MappingProxyType({"subsampling": "4:2:0"}),
        ),
        "PNG": OutputFormat(
            "PNG",
            "png",
            "image/png",
            alpha=True,
            animation=False,
            options=MappingProxyType({"compress_level": PNG_COMPRESS_LEVEL}),
            quality_option=None,
        ),
        "WEBP": OutputFormat(
            "WEBP",
            "webp",
            "image/webp",
            alpha=True,
            animation=True,
            options=MappingProxyType({"method": WEBP_METHOD}),
        ),
        "AVIF": OutputFormat(
            "AVIF",
            "avif",
            "image/avif",
            alpha=True,
            animation=False,
            options=MappingProxyType({"speed": AVIF_SPEED, "subsampling": "4:2:0"}),
        ),
    }
)

BY_EXTENSION: Mapping[str, OutputFormat] = MappingProxyType(
    {spec.extension: spec for spec in FORMATS.values()}
)
BY_CONTENT_TYPE: Mapping[str, OutputFormat] = MappingProxyType(
    {spec.content_type: spec for spec in FORMATS.values()}
)


def named(name: str) -> OutputFormat:
    """The entry of a format name read back as text (a database column)."""
    for spec in FORMATS.values():
        if spec.name == name:
            return spec
    raise KeyError(name)


def base_format(*, has_alpha: bool) -> FormatName:
    """The base format of a variant: PNG when some pixel is transparent, JPEG otherwise."""
    return "PNG" if has_alpha else "JPEG"
