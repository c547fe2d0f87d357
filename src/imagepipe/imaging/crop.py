"""Boxes and crops: what size a rendition is, and which part of the image it shows.

A box is ``width`` x ``height`` with a fit:

- ``contain`` (the default) fits the whole image inside the box, keeping its aspect;
  a square box is today's "longest side" variant.
- ``cover`` fills the box exactly and crops the overflow. ``gravity`` picks the part
  kept: ``center``; ``focal``, a point the owner set (``center`` when none is set); or
  ``smart``, the most interesting window found on a small copy (edges, saturated colour
  and skin tones: the idea of libvips' ``attention`` crop, in numpy).

Nothing is ever upscaled. A ``cover`` box larger than the image shrinks, keeping its
aspect, to the largest such box inside the image: a square avatar stays square.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from PIL import Image

from imagepipe.imaging.geometry import Size

Fit = Literal["contain", "cover"]
Gravity = Literal["center", "smart", "focal"]
FITS: tuple[Fit, ...] = get_args(Fit)
GRAVITIES: tuple[Gravity, ...] = get_args(Gravity)

# The smart crop scores a copy at most this many pixels on its longest side: enough to
# see a subject, small enough that scoring costs well under a millisecond per megapixel.
_SCORE_SIDE = 128


@dataclass(frozen=True)
class Box:
    width: int
    height: int
    fit: Fit = "contain"
    gravity: Gravity = "center"

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"a box's sides must be positive: {self.width}x{self.height}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}: {self.fit!r}")
        if self.gravity not in GRAVITIES:
            raise ValueError(f"gravity must be one of {', '.join(GRAVITIES)}: {self.gravity!r}")

    @classmethod
    def square(cls, side: int) -> Box:
        """A variant given as a number: the whole image, longest side ``side``."""
        return cls(side, side)

    @property
    def longest(self) -> int:
        return max(self.width, self.height)

    @property
    def is_square_contain(self) -> bool:
        """True for the boxes earlier releases knew (a number in the settings)."""
        return self.fit == "contain" and self.width == self.height


@dataclass(frozen=True)
class FocalPoint:
    """A point of the upright original, as fractions of its width and height."""

    x: float
    y: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"a focal point's x and y are fractions in 0..1: {self}")


def _scale(length: int, numerator: int, denominator: int) -> int:
    """``length * numerator / denominator``, half rounding up, never below 1."""
    return max(1, (length * numerator * 2 + denominator) // (2 * denominator))


def _contain(size: Size, width: int, height: int) -> Size:
    source_width, source_height = size
    if source_width <= width and source_height <= height:
        return size
    if source_width * height >= source_height * width:  # the width limits
        return width, min(height, _scale(source_height, width, source_width))
    return min(width, _scale(source_width, height, source_height)), height


def target_size(display: Size, box: Box) -> Size:
    """The rendition's size in pixels, for an upright image of size ``display``."""
    if box.fit == "contain":
        return _contain(display, box.width, box.height)
    # cover: the box's aspect, no larger than the image.
    width, height = display
    if box.width <= width and box.height <= height:
        return box.width, box.height
    if box.width * height >= box.height * width:  # the image's width limits the box
        return width, min(height, _scale(box.height, width, box.width))
    return min(width, _scale(box.width, height, box.height)), height


def resize_size(display: Size, box: Box) -> Size:
    """The size the whole image shrinks to before the crop (``target_size`` for
    ``contain``): the smallest that covers the target in both directions."""
    target = target_size(display, box)
    if box.fit == "contain":
        return target
    width, height = display
    target_width, target_height = target
    if width * target_height >= height * target_width:  # wider than the box: height fits
        return max(target_width, _scale(width, target_height, height)), target_height
    return target_width, max(target_height, _scale(height, target_width, width))


def window(image: Image.Image, box: Box, focal: FocalPoint | None) -> tuple[int, int, int, int]:
    """The part of ``image`` (already at ``resize_size``) a ``cover`` box keeps."""
    target_width, target_height = target_size(image.size, box)
    spare_x, spare_y = image.width - target_width, image.height - target_height
    if spare_x == 0 and spare_y == 0:
        return 0, 0, image.width, image.height
    if box.gravity == "smart":
        left, top = _attention_offset(image, (target_width, target_height))
    elif box.gravity == "focal" and focal is not None:
        left = _clamp(round(focal.x * image.width - target_width / 2), spare_x)
        top = _clamp(round(focal.y * image.height - target_height / 2), spare_y)
    else:
        left, top = spare_x // 2, spare_y // 2
    return left, top, left + target_width, top + target_height


def crop(image: Image.Image, box: Box, focal: FocalPoint | None) -> Image.Image:
    """``image`` (upright, sRGB, at ``resize_size(display, box)``) cut to ``box``."""
    if box.fit == "contain":
        return image
    area = window(image, box, focal)
    if area == (0, 0, image.width, image.height):
        return image
    return image.crop(area)


def _clamp(value: int, spare: int) -> int:
    return min(max(value, 0), spare)


def attention(image: Image.Image) -> npt.NDArray[np.float64]:
    """A score per pixel of a small copy of ``image``: how much a viewer's eye is drawn
    there. Edges (detail), saturated colour and skin tones score; flat areas do not."""
    small = image.copy()
    small.thumbnail((_SCORE_SIDE, _SCORE_SIDE), Image.Resampling.BILINEAR)
    rgb = np.asarray(small.convert("RGB"), dtype=np.float32) / 255.0
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    luma = 0.299 * red + 0.587 * green + 0.114 * blue
    padded = np.pad(luma, 1, mode="edge")
    edges = np.abs(
        4 * luma - padded[:-2, 1:-1] - padded[2:, 1:-1] - padded[1:-1, :-2] - padded[1:-1, 2:]
    )
    saturation = rgb.max(axis=2) - rgb.min(axis=2)
    # Skin: a band of red-heavy chromaticity at mid brightness (a rule of thumb that
    # holds across skin tones, since it looks at the hue, not the brightness). Some
    # saturation is required: muted, warm-grey scenery would pass the hue test alone.
    total = red + green + blue + 1e-6
    r_share, g_share = red / total, green / total
    skin = (
        (r_share > 0.36)
        & (r_share < 0.47)
        & (g_share > 0.28)
        & (g_share < 0.36)
        & (luma > 0.2)
        & (luma < 0.9)
        & (saturation > 0.15)
    )
    score = 2.0 * edges + saturation * (saturation > 0.2) + 0.5 * skin
    if image.mode in ("RGBA", "LA"):
        alpha = np.asarray(small.getchannel("A"), dtype=np.float32) / 255.0
        score *= alpha  # transparent pixels draw no eye
    result: npt.NDArray[np.float64] = score.astype(np.float64)
    return result


def _attention_offset(image: Image.Image, target: Size) -> tuple[int, int]:
    """Top-left of the ``target``-sized window with the most attention, found on the
    small copy with a summed-area table (every position in one pass), then scaled up."""
    score = attention(image)
    rows, cols = score.shape
    scale_x, scale_y = cols / image.width, rows / image.height
    win_w = min(cols, max(1, round(target[0] * scale_x)))
    win_h = min(rows, max(1, round(target[1] * scale_y)))
    table = np.zeros((rows + 1, cols + 1))
    table[1:, 1:] = score.cumsum(axis=0).cumsum(axis=1)
    sums = (
        table[win_h:, win_w:]
        - table[:-win_h, win_w:]
        - table[win_h:, :-win_w]
        + table[:-win_h, :-win_w]
    )
    # Equal scores (a flat image, a symmetric subject) keep the centre: a slight
    # preference for central windows breaks ties the way a centre crop would.
    ys, xs = np.mgrid[0 : sums.shape[0], 0 : sums.shape[1]]
    centre_y, centre_x = (sums.shape[0] - 1) / 2, (sums.shape[1] - 1) / 2
    distance = np.hypot(xs - centre_x, ys - centre_y)
    peak = float(sums.max())
    bias = 1e-6 * (peak if peak > 0 else 1.0)
    best_y, best_x = np.unravel_index(int(np.argmax(sums - bias * distance)), sums.shape)
    spare_x, spare_y = image.width - target[0], image.height - target[1]
    return (
        _clamp(round(int(best_x) / scale_x), spare_x),
        _clamp(round(int(best_y) / scale_y), spare_y),
    )
