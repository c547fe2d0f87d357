"""What a page shows before a preview arrives: BlurHash, ThumbHash and one colour.

All three come from the smallest preview while it is still in memory (no second
decode): it is already sRGB and upright, and both hashes keep only a few low
frequencies, so a 150-pixel image carries everything they can hold.

Libraries, measured on a 150-pixel preview: ``fast-blurhash`` (the Rust ``blurhash``
crate: 0.04 ms for what the pure-Python ``blurhash`` package does in 3 ms, the same
hash; ``blurhash-python``, also compiled, installs a module named ``blurhash`` too,
reads pixels through ``Image.getdata``, deprecated in Pillow 13, and closes the image it
is given) and ``thash`` (a maintained fork of ``thumbhash``: the original crashes on
images with alpha; with numpy, given an array, it encodes 48 pixels in 0.07 ms).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import fast_blurhash
import numpy as np
import thash
from PIL import Image

# BlurHash components across and down: 4x3 is the reference encoder's default for
# landscape images; the hash is 28 characters.
BLURHASH_COMPONENTS = (4, 3)
# BlurHash averages cosines over every pixel: 24 pixels on the long side give the
# same picture as 150 (it keeps 4x3 frequencies).
_BLURHASH_SIDE = 24
# ThumbHash keeps at most 7 frequencies per axis: 48 pixels on the long side give
# nearly the same hash as its maximum of 100, at a quarter of the time. The dominant
# colour is taken from the same small copy.
_THUMBHASH_SIDE = 48
# Dominant colour: 256 >> 5 = 8 levels per channel; pixels at least half opaque.
_LEVEL_SHIFT = 5
_OPAQUE = 128


@dataclass(frozen=True)
class Placeholder:
    blurhash: str
    thumbhash: str  # base64 of the ThumbHash bytes
    dominant_color: str  # "#rrggbb"

    def as_dict(self) -> dict[str, str]:
        return {
            "blurhash": self.blurhash,
            "thumbhash": self.thumbhash,
            "dominant_color": self.dominant_color,
        }


def compute(image: Image.Image) -> Placeholder:
    """The placeholders of a preview (L, LA, RGB or RGBA, sRGB). ``image`` is not changed."""
    rgba = image.convert("RGBA") if image.mode != "RGBA" else image.copy()
    rgba.thumbnail((_THUMBHASH_SIDE, _THUMBHASH_SIDE), Image.Resampling.BOX)
    return Placeholder(
        blurhash=_blurhash(rgba),
        thumbhash=_thumbhash(rgba),
        dominant_color=dominant_colour(rgba),
    )


def _blurhash(rgba: Image.Image) -> str:
    small = rgba.copy()
    small.thumbnail((_BLURHASH_SIDE, _BLURHASH_SIDE), Image.Resampling.BOX)
    # BlurHash has no alpha: transparent areas show the page's white, as a flattened
    # JPEG of the same image would.
    flat = Image.new("RGB", small.size, "white")
    flat.paste(small, mask=small.getchannel("A"))
    width, height = flat.size
    x, y = BLURHASH_COMPONENTS if width >= height else BLURHASH_COMPONENTS[::-1]
    return fast_blurhash.encode(flat.tobytes(), x, y, width, height)


def _thumbhash(rgba: Image.Image) -> str:
    # The pixels as an array, not a list of ints: thash's numpy encoder converts a list
    # element by element (0.26 ms at 48 pixels; 0.07 ms from the array, same hash).
    hashed = thash.rgba_to_thumb_hash(rgba.width, rgba.height, np.asarray(rgba))
    return base64.b64encode(bytes(hashed)).decode("ascii")


def dominant_colour(image: Image.Image) -> str:
    """The most common colour of the (mostly) opaque pixels, all pixels when none is
    opaque: colours fall into 8 levels per channel (512 bins), the fullest bin wins and
    its pixels' mean is the colour. A histogram, not a palette search: microseconds."""
    rgba = np.asarray(image if image.mode == "RGBA" else image.convert("RGBA"))
    opaque = rgba[..., 3] >= _OPAQUE
    rgb = (rgba[opaque] if opaque.any() else rgba.reshape(-1, 4))[:, :3]
    levels = (rgb >> _LEVEL_SHIFT).astype(np.intp)
    bins = (levels[:, 0] << 6) | (levels[:, 1] << 3) | levels[:, 2]
    fullest = np.bincount(bins, minlength=512).argmax()
    red, green, blue = np.rint(rgb[bins == fullest].mean(axis=0)).astype(int)
    return f"#{red:02x}{green:02x}{blue:02x}"
