"""Shrink an image: JPEG DCT scaling, integer box ``reduce()``, then one filter pass.

Every choice here was measured with ``bench/quality.py`` and ``bench/pipeline.py``
(photo-like 12/24/50 MP images, one core; SSIM against a full-resolution LANCZOS
reference must stay >= 0.98 for every size):

* DCT scaling is nearly free, but 1/4 and 1/8 are not clean: libjpeg's 2x2 and 1x1
  reduced IDCTs leave block artefacts that a following filter cannot remove unless it
  still shrinks by 3x or more (50 MP -> 1200 px: 1/4 then LANCZOS gives SSIM 0.97;
  1/2, box 2x2, BICUBIC gives 0.99). libjpeg-turbo scales by any M/8, and from M = 3
  up each is an MxM IDCT; one just above the target leaves the filter little to do
  (12 MP -> 1200 px: 3/8 then BILINEAR 1.25x costs 9.6 ms where 1/2 then BILINEAR
  1.67x costs 13.9, SSIM 0.9906 against 0.9912). With more than 1.5x left, the power
  of two and its box reduce stay better (24 MP -> 1200 px: 3/8 then BILINEAR 1.9x
  drops to 0.987, 1/2 and box 2x2 give 0.992). Pillow's ``draft`` offers only 1/2,
  1/4 and 1/8 (``draft_request``); ``scaled_jpeg`` takes any M (``dct_eighths``).
* What the DCT scale leaves, when it is at most 1.5x (a fine M/8, or a power of two
  just above the target), is one linear pass on the decoded array before Pillow sees
  it (``linear``): OpenCV's SIMD INTER_LINEAR takes 1.8 ms where Pillow's
  BILINEAR takes 12 ms (12 MP at 3/8 -> 1200 px, one core, the copy into Pillow 0.7 ms
  more either way). It samples two pixels a side without widening to the factor, which
  is as good as Pillow's tent up to 1.5x (SSIM 0.9914 against 0.9907 at 1.25x, 0.9902
  against 0.9894 at 1.5x) and worse beyond (0.984 against 0.988 at 1.95x).
* A 2x2 box ``reduce()`` is a clean pre-shrink and ten times cheaper than a filter on
  the same pixels; it may leave as little as 1.25x to the filter.
* BILINEAR (a tent stretched to the factor) is enough, and twice as fast as BICUBIC,
  only for a remaining factor below 2 on pixels that were not box-reduced, e.g. a
  12 MP JPEG at DCT 1/2 -> 1200 px (SSIM 0.991). Otherwise BICUBIC: BILINEAR after a
  box reduce or over 2x drops to 0.97-0.98.
* Later cascade steps run on small images: an exact 2:1 is a 2x2 box (as good as a
  filter there); anything else gets LANCZOS after a box reduce that leaves >= 2x.
"""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np
from PIL import Image

from imagepipe.imaging.geometry import Size

DCT_SCALES = (8, 4, 2)
# DCT 1/4 and 1/8 only when the filter afterwards still shrinks at least this much.
DCT_ALIASING_GAP = 3.0
# A finer M/8 scale only when the filter after it has at most this much left to do.
FINE_SCALE_RESIDUAL = 1.5
FIRST_REDUCING_GAP = 1.25
CASCADE_REDUCING_GAP = 2.0
# Alpha images are premultiplied strip by strip while box-reducing, so a 50 MP RGBA
# image needs no second full-size buffer; each strip is a crop and its conversion, held
# beside the source at the peak (0.5 MB each at 8660 pixels wide). Rows per strip
# (rounded to the factor):
_STRIP_ROWS = 16
PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}
STRAIGHT = {value: key for key, value in PREMULTIPLIED.items()}


def dct_eighths(size: Size, target: Size) -> int:
    """The M of the M/8 DCT scale to decode a JPEG of ``size`` at for ``target``.

    The clean power of two (``draft_request``'s choice), unless a finer M between it
    and the target covers the target and leaves the filter at most FINE_SCALE_RESIDUAL:
    one short linear pass from there is cheaper, and as good. A larger rest is
    better served by the power of two's box reduce and filter."""
    request = draft_request(size, target)
    base = 8 * request[0] // size[0] if request != size else 8
    for eighths in range(3, base):
        scaled = scaled_size(size, eighths)
        if scaled == scaled_size(size, base) or scaled[0] < target[0] or scaled[1] < target[1]:
            continue
        if max(scaled[0] / target[0], scaled[1] / target[1]) <= FINE_SCALE_RESIDUAL:
            return eighths
    return base


def takes_linear(source: Size, size: Size) -> bool:
    """Whether ``source`` -> ``size`` is a shrink ``linear`` does as well as a filter."""
    if source == size or source[0] < size[0] or source[1] < size[1]:
        return False
    return max(source[0] / size[0], source[1] / size[1]) <= FINE_SCALE_RESIDUAL


def linear(pixels: np.ndarray, size: Size) -> np.ndarray:
    """8-bit pixels (rows x columns [x channels]) shrunk to ``size`` (width, height),
    the whole array mapped onto it; only for what ``takes_linear``. A single channel
    comes back as rows x columns."""
    source = (pixels.shape[1], pixels.shape[0])
    if not takes_linear(source, size):
        raise ValueError(f"{source} -> {size} is not a shrink a linear pass does well")
    cv2 = opencv()
    resized: np.ndarray = cv2.resize(pixels, size, interpolation=cv2.INTER_LINEAR)
    return resized


@functools.cache
def opencv() -> ModuleType:
    """OpenCV, imported on first use: 16 MB of resident memory that only a process
    rendering JPEGs needs (a worker loads it while warming up; the API never does).
    One thread: a worker process renders on one core of its own (the prefork pool),
    and OpenCV's own pool would only contend with the other renders."""
    import cv2

    cv2.setNumThreads(1)
    return cv2


def scaled_size(size: Size, eighths: int) -> Size:
    """libjpeg's output size at M/8 (rounded up)."""
    return -(-size[0] * eighths // 8), -(-size[1] * eighths // 8)


def draft_request(size: Size, target: Size) -> Size:
    """The size to pass to ``JpegImageFile.draft`` so that it picks a clean DCT scale.

    Pillow's draft picks the largest scale s in (8, 4, 2, 1) with size // s >= request.
    """
    for scale in DCT_SCALES:
        gap = 1.0 if scale == 2 else DCT_ALIASING_GAP
        if size[0] / scale >= gap * target[0] and size[1] / scale >= gap * target[1]:
            return size[0] // scale, size[1] // scale
    return size


def first_shrink(image: Image.Image, size: Size, *, consume: bool = False) -> Image.Image:
    """Decoded image -> largest preview. Same mode out (alpha premultiplied inside).

    ``consume``: ``image`` is closed as soon as a box reduce has made a smaller copy,
    before the filter's buffers exist: a 50 MP source (190 MB) is then not held beside
    them (about 9 MB less at the peak)."""
    if image.size == size:
        return image
    if image.mode.startswith("I;16"):
        # 16-bit grey has no reduce(): one filter pass, still 2 bytes a pixel. Widening
        # it first (to I, 4 bytes) would double the full-size buffer.
        return image.resize(size, Image.Resampling.BICUBIC)
    factor_x, factor_y = _factors(image.size, size, FIRST_REDUCING_GAP)
    residual = max(image.width / factor_x / size[0], image.height / factor_y / size[1])
    clean_and_close = factor_x == factor_y == 1 and residual < 2.0
    resample = Image.Resampling.BILINEAR if clean_and_close else Image.Resampling.BICUBIC
    return _shrink(image, size, factor_x, factor_y, resample, consume=consume)


def cascade_shrink(image: Image.Image, size: Size) -> Image.Image:
    """Previous preview -> next one. Same mode out."""
    if image.size == size:
        return image
    if image.width == 2 * size[0] and image.height == 2 * size[1]:
        return _shrink(image, size, 2, 2, None)
    factor_x, factor_y = _factors(image.size, size, CASCADE_REDUCING_GAP)
    return _shrink(image, size, factor_x, factor_y, Image.Resampling.LANCZOS)


def _factors(source: Size, size: Size, gap: float) -> tuple[int, int]:
    return max(1, int(source[0] / size[0] / gap)), max(1, int(source[1] / size[1] / gap))


def _shrink(
    image: Image.Image,
    size: Size,
    factor_x: int,
    factor_y: int,
    resample: Image.Resampling | None,
    *,
    consume: bool = False,
) -> Image.Image:
    mode, width, height = image.mode, image.width, image.height
    premultiplied = PREMULTIPLIED.get(mode)
    work = _reduce(image, factor_x, factor_y)
    if consume and work is not image:
        image.close()
    if premultiplied is not None and work.mode != premultiplied:
        work = work.convert(premultiplied)
    if work.size != size:
        assert resample is not None
        # A partial last block makes the reduced image a little larger than
        # source / factor: map exactly the source area onto the target.
        box = (0.0, 0.0, width / factor_x, height / factor_y)
        work = work.resize(size, resample, box=box)
    return work if premultiplied is None else work.convert(mode)


def _reduce(image: Image.Image, factor_x: int, factor_y: int) -> Image.Image:
    """Box-average by integer factors; straight alpha comes back premultiplied."""
    if factor_x == 1 and factor_y == 1:
        return image
    premultiplied = PREMULTIPLIED.get(image.mode)
    if premultiplied is None:
        return image.reduce((factor_x, factor_y))
    width, height = image.size
    out = Image.new(premultiplied, (-(-width // factor_x), -(-height // factor_y)))
    rows = factor_y * max(1, _STRIP_ROWS // factor_y)
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).convert(premultiplied)
        out.paste(strip.reduce((factor_x, factor_y)), (0, top // factor_y))
    return out
