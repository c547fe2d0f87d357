"""Name what a file looks like from its first bytes, for error messages only.

Pillow decides what is an image (``Image.open`` with an allowlist); this module only
explains a refusal ("detected: PDF") and tells a broken allowed image (InvalidImage)
apart from a file that was never an image (UnsupportedMediaType).
"""

from __future__ import annotations

# (magic prefix, name). Image names are Pillow format names, so they can be compared
# with the allowlist; the rest are human-readable labels.
_PREFIXES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"%!PS-Adobe", "EPS"),
    (b"%!", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),  # DOS EPS binary header
    (b"\x00\x00\x01\x00", "ICO"),
    (b"PK\x03\x04", "ZIP"),
    (b"\x1f\x8b", "GZIP"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
)

# Markup: checked case-insensitively after skipping a BOM and leading whitespace.
_MARKUP: tuple[tuple[bytes, str], ...] = (
    (b"<svg", "SVG"),
    (b"<!doctype html", "HTML"),
    (b"<html", "HTML"),
    (b"<head", "HTML"),
    (b"<body", "HTML"),
    (b"<script", "HTML"),
)

# "BM" alone is too weak (plenty of text starts so): also require a known DIB header size.
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})

HEAD_BYTES = 512


def detect(head: bytes) -> str | None:
    """Return a short name for ``head`` (the first bytes of a file), or None if unknown."""
    if not head:
        return "empty file"
    if head[8:12] == b"WEBP" and head.startswith(b"RIFF"):
        return "WEBP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "AVIF"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "HEIF"
        return "ISO media (MP4/MOV)"
    if head.startswith(b"BM") and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    for prefix, name in _PREFIXES:
        if head.startswith(prefix):
            return name
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    for prefix, name in _MARKUP:
        if text.startswith(prefix):
            return name
    if text.startswith(b"<?xml") or text.startswith(b"<!--"):
        # An XML prolog or comment can precede an <svg> root: look a little further.
        return "SVG" if b"<svg" in text else "XML"
    if _looks_like_text(head):
        return "text"
    return None


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True
