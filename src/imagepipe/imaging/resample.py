"""Shrink an image: integer box ``reduce()`` first (cheap), then one filter pass.

Choices measured with ``bench/pipeline.py`` and ``bench/quality.py`` (12 MP photo-like
JPEG, one core; SSIM against a full-resolution LANCZOS reference):

* The first step (decoded image -> largest preview) dominates the cost. After a JPEG
  ``draft()`` the DCT has already done most of the low-pass work and the remaining
  factor is below 2, where BILINEAR (a tent scaled to the factor) keeps SSIM >= 0.99 at
  half the cost of BICUBIC/LANCZOS.
* Later steps work on small images: LANCZOS after a box reduce that leaves at least a
  2x factor for the filter, except an exact 2:1 step, where a 2x2 box average
  (``reduce(2)``) matches a 2:1 tent within noise at a tenth of the cost.
"""

from __future__ import annotations

from PIL import Image

from imagepipe.imaging.geometry import Size

FIRST_FILTER = Image.Resampling.BILINEAR
CASCADE_FILTER = Image.Resampling.LANCZOS
# Box-reduce only as far as leaves this factor to the filter (Pillow's reducing_gap).
REDUCING_GAP = 2.0
# Alpha images are premultiplied strip by strip while reducing, so a 50 MP RGBA image
# needs no second full-size buffer. Rows per strip (rounded to the reduce factor):
_STRIP_ROWS = 256
_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}


def shrink(image: Image.Image, size: Size, *, first: bool = False) -> Image.Image:
    """Return ``image`` resized down to ``size``, in the same mode.

    ``image`` itself is returned when it already has that size. Alpha is premultiplied
    while resampling, so transparent pixels do not bleed their colour into edges.
    """
    if image.size == size:
        return image
    width, height = image.size
    if width == 2 * size[0] and height == 2 * size[1] and not first:
        return _reduce(image, 2, 2)
    factor_x = max(1, int(width / size[0] / REDUCING_GAP))
    factor_y = max(1, int(height / size[1] / REDUCING_GAP))
    work = _reduce(image, factor_x, factor_y, keep_premultiplied=True)
    premultiplied = _PREMULTIPLIED.get(image.mode)
    if premultiplied is not None and work.mode != premultiplied:
        work = work.convert(premultiplied)
    # The reduced image may have a partial last block: map exactly the source area.
    box = (0.0, 0.0, width / factor_x, height / factor_y)
    resized = work.resize(size, FIRST_FILTER if first else CASCADE_FILTER, box=box)
    return resized if premultiplied is None else resized.convert(image.mode)


def _reduce(
    image: Image.Image, factor_x: int, factor_y: int, *, keep_premultiplied: bool = False
) -> Image.Image:
    if factor_x == 1 and factor_y == 1:
        return image
    premultiplied = _PREMULTIPLIED.get(image.mode)
    if premultiplied is None:
        return image.reduce((factor_x, factor_y))
    width, height = image.size
    out = Image.new(premultiplied, (-(-width // factor_x), -(-height // factor_y)))
    rows = factor_y * max(1, _STRIP_ROWS // factor_y)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).convert(premultiplied)
        out.paste(strip.reduce((factor_x, factor_y)), (0, top // factor_y))
    return out if keep_premultiplied else out.convert(image.mode)
