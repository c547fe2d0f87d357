"""Preview sizes and EXIF orientation: pure arithmetic, no pixels."""

from __future__ import annotations

from PIL import Image

Size = tuple[int, int]

# EXIF Orientation tag value -> the transpose that shows the image upright
# (same table as PIL.ImageOps.exif_transpose).
_TRANSPOSES: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def fit(size: Size, box: int) -> Size:
    """Largest size with ``size``'s aspect ratio inside a ``box`` x ``box`` square.

    Never upscales, and never returns 0: a 1x5000 panorama gives 1x``box``.
    """
    width, height = size
    longest = max(width, height)
    if longest <= box:
        return size
    # Half rounds up (not Python's round-half-even): 4000x3000 in 150 is 150x113,
    # as docs/api-contract.md shows.
    if width >= height:
        return box, max(1, (height * box * 2 + longest) // (2 * longest))
    return max(1, (width * box * 2 + longest) // (2 * longest)), box


def swaps_axes(orientation: int) -> bool:
    """Orientations 5-8 rotate by 90 degrees: displayed width is stored height."""
    return orientation in (5, 6, 7, 8)


def displayed(size: Size, orientation: int) -> Size:
    return (size[1], size[0]) if swaps_axes(orientation) else size


def stored(size: Size, orientation: int) -> Size:
    """Inverse of ``displayed`` (the swap is its own inverse)."""
    return displayed(size, orientation)


def orient(image: Image.Image, orientation: int) -> Image.Image:
    """Apply an EXIF orientation to pixels; 1 and unknown values leave them as they are."""
    transpose = _TRANSPOSES.get(orientation)
    return image if transpose is None else image.transpose(transpose)
