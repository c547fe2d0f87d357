"""The output format names and what this Pillow build can open and write.

A foundation module (beside ``config``, importing nothing of ours) so Settings can
validate ``IMAGEPIPE_EXTRA_FORMATS`` and ``IMAGEPIPE_ALLOWED_FORMATS`` without
importing imaging; ``imaging.formats`` builds its table on these names.
"""

from __future__ import annotations

from typing import Literal, get_args

from PIL import Image, features

FormatName = Literal["JPEG", "PNG", "WEBP", "AVIF"]
FORMAT_NAMES: tuple[FormatName, ...] = get_args(FormatName)

# Formats imaging.plugins adds to Pillow's own when a process starts (pillow-heif's
# opener); tests/imaging/test_plugins.py holds the two in step.
PLUGIN_FORMATS: tuple[str, ...] = ("HEIF",)
# Formats an upload may never be, whatever the allowlist says.
NEVER_ALLOWED = frozenset({"EPS", "PS", "PDF", "PSD", "SVG"})


def can_write(name: FormatName) -> bool:
    """Whether this Pillow build has the encoder (AVIF needs libavif)."""
    return name != "AVIF" or bool(features.check("avif"))


def check_allowed(value: tuple[str, ...]) -> tuple[str, ...]:
    """The upload allowlist in upper case: none never allowed, each one Pillow opens
    (with the plugins registered at process start)."""
    formats = tuple(f.upper() for f in value)
    if bad := NEVER_ALLOWED.intersection(formats):
        raise ValueError(f"formats never allowed: {sorted(bad)}")
    # Refuse a name Pillow does not know (e.g. "JPG") now, not as a 500 per upload.
    Image.init()
    if unknown := sorted(set(formats) - set(Image.OPEN) - set(PLUGIN_FORMATS)):
        raise ValueError(f"formats Pillow cannot open: {unknown}")
    return formats


def check_writable(value: tuple[FormatName, ...]) -> tuple[FormatName, ...]:
    """Extra formats this Pillow build can write, each once, in the order given."""
    if missing := [name for name in value if not can_write(name)]:
        raise ValueError(f"this Pillow build cannot write {missing}")
    return tuple(dict.fromkeys(value))
