"""What a page shows before a preview arrives: BlurHash, ThumbHash and one colour.

All three come from the smallest preview while it is still in memory (no second
decode): it is already sRGB and upright, and both hashes keep only a few low
frequencies, so a 150-pixel image carries everything they can hold.

Libraries: ``blurhash`` (pure Python, encode and decode; ``blurhash-python`` reads
pixels through ``Image.getdata``, deprecated in Pillow 13, and closes the image it is
given) and ``thash`` (a maintained fork of ``thumbhash``: the original crashes on
images with alpha; with numpy it encodes in under a millisecond).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import blurhash
import thash
from PIL import Image

# BlurHash components across and down: 4x3 is the reference encoder's default for
# landscape images; the hash is 28 characters.
BLURHASH_COMPONENTS = (4, 3)
# BlurHash averages cosines over every pixel: 24 pixels on the long side give the
# same picture as 150 (it keeps 4x3 frequencies) at 1/40 of the time in pure Python.
_BLURHASH_SIDE = 24
# ThumbHash's encoder takes at most 100x100.
_THUMBHASH_SIDE = 100
# Dominant colour: the most common of a few colours of the opaque pixels.
_COLOURS = 5
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
    data = flat.tobytes()
    rows = [
        [
            list(data[offset : offset + 3])
            for offset in range(row * width * 3, (row + 1) * width * 3, 3)
        ]
        for row in range(height)
    ]
    x, y = BLURHASH_COMPONENTS if width >= height else BLURHASH_COMPONENTS[::-1]
    return str(blurhash.encode(rows, components_x=x, components_y=y))


def _thumbhash(rgba: Image.Image) -> str:
    hashed = thash.rgba_to_thumb_hash(rgba.width, rgba.height, list(rgba.tobytes()))
    return base64.b64encode(bytes(hashed)).decode("ascii")


def dominant_colour(image: Image.Image) -> str:
    """The most common colour of the (mostly) opaque pixels, after reducing the image
    to a few colours; all pixels when none is opaque."""
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    alpha = rgba.getchannel("A").tobytes()
    rgb = rgba.convert("RGB").tobytes()
    opaque = b"".join(
        rgb[index * 3 : index * 3 + 3] for index, value in enumerate(alpha) if value >= _OPAQUE
    )
    if opaque and len(opaque) < len(rgb):
        pixels = Image.frombytes("RGB", (len(opaque) // 3, 1), opaque)
    else:  # all opaque, or none: every pixel counts
        pixels = Image.frombytes("RGB", rgba.size, rgb)
    reduced = pixels.quantize(_COLOURS, method=Image.Quantize.MEDIANCUT)
    counts = reduced.getcolors() or [(1, 0)]
    _, index = max(counts, key=lambda item: item[0])
    assert isinstance(index, int)  # a "P" image's colours are palette indexes
    palette = reduced.getpalette() or [0, 0, 0]
    red, green, blue = palette[index * 3 : index * 3 + 3]
    return f"#{red:02x}{green:02x}{blue:02x}"
