"""The output gate: a preview must look like its source before a task may succeed.

The reference is taken from the source after the first shrink and *before* any colour
work (ICC, CMYK, deep grey narrowing is the only step before it), so a conversion that
inverts, blanks or drops alpha shows up as a difference between the two. Both sides
are compared as 16x16 luminance samples, weighted by alpha: a few hundred numbers,
well under a millisecond per preview.

Checks, in the order reported:
    dimensions    the preview is exactly its box's size for the displayed source
                  (crop.target_size: the fit for contain, the box's shape for cover)
    not_blank     a source that is not flat does not give a flat preview
    not_inverted  luminance does not run against the source's (the CMYK class of bugs)
    aspect        width/height within one pixel of the source's (contain) or of the
                  box's (cover)
    alpha_kept    a source with transparency gives a preview (and format) with alpha

A ``cover`` preview is a part of the image, so the two colour checks compare the whole
image it was cut from (the same pixels: a crop copies them): a dark corner of a bright
photo is a faithful crop, not a blank or an inverted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageChops

from imagepipe.imaging import crop, geometry
from imagepipe.imaging.colour import ALPHA_MODES
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.geometry import Size

CHECKS = ("dimensions", "not_blank", "not_inverted", "aspect", "alpha_kept")
SAMPLE = 16
# Standard deviation of the 16x16 luminance below which an image counts as flat.
FLAT = 6.0
# A preview whose spread is under this is blank (all one value, give or take noise).
BLANK = 1.0
# Correlation of luminance below this is an inversion; a faithful conversion (ICC,
# CMYK, sRGB) stays far above 0.9 on anything that is not flat.
INVERTED_CORRELATION = -0.5
# Flat images: the mean moved past halfway and landed near the negative.
FLAT_INVERSION_SHIFT = 128.0
FLAT_INVERSION_SLACK = 40.0
# Pixels count for colour checks in proportion to their opacity; fewer than this many
# opaque pixels' worth and there is nothing to compare.
MIN_WEIGHT = 8.0


@dataclass(frozen=True)
class Sample:
    """Alpha-weighted luminance of an image at SAMPLE x SAMPLE."""

    luma: tuple[int, ...]
    weight: tuple[float, ...]  # alpha / 255


@dataclass(frozen=True)
class Reference:
    sample: Sample
    has_alpha: bool
    display_size: Size


def reference(
    image: Image.Image, *, display_size: Size, orientation: int, undo_cmyk_inversion: bool
) -> Reference:
    """The source as the gate sees it: ``image`` is the first shrink in a working mode
    (L, LA, RGB, RGBA, CMYK), stored orientation, before any colour conversion."""
    small = image.resize((SAMPLE, SAMPLE), Image.Resampling.BOX)
    if undo_cmyk_inversion:  # a fact of the file (no Adobe marker), not a conversion
        small = ImageChops.invert(small)
    small = geometry.orient(small, orientation)
    return Reference(
        sample=sample(small), has_alpha=image.mode in ALPHA_MODES, display_size=display_size
    )


def sample(image: Image.Image) -> Sample:
    """Luminance (naive: no profile) and opacity at SAMPLE x SAMPLE."""
    if image.size != (SAMPLE, SAMPLE):
        image = image.resize((SAMPLE, SAMPLE), Image.Resampling.BOX)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    alpha = image.getchannel("A").tobytes() if image.mode in ALPHA_MODES else None
    grey = image.convert("L") if image.mode not in ("L", "LA") else image.getchannel("L")
    luma = tuple(grey.tobytes())
    weight = tuple(value / 255 for value in alpha) if alpha else (1.0,) * len(luma)
    return Sample(luma=luma, weight=weight)


def check(
    preview: Image.Image,
    box: crop.Box | int,
    base_format: FormatName | None,
    source: Reference,
    *,
    whole: Image.Image | None = None,
) -> list[str]:
    """The names of the checks ``preview`` fails (empty: it passes).

    ``base_format`` is the format chosen for the preview's transparency, or None when
    the operator configured one (a JPEG output flattens alpha on purpose). ``whole``:
    the uncropped image a ``cover`` preview was cut from (the colour checks' subject)."""
    if isinstance(box, int):
        box = crop.Box.square(box)
    failed: list[str] = []
    if preview.size != crop.target_size(source.display_size, box):
        failed.append("dimensions")
    got = sample(whole if whole is not None else preview)
    if is_blank(got, source.sample):
        failed.append("not_blank")
    if is_inverted(got, source.sample):
        failed.append("not_inverted")
    shape = (box.width, box.height) if box.fit == "cover" else source.display_size
    if not aspect_kept(preview.size, shape):
        failed.append("aspect")
    if source.has_alpha and not (
        preview.mode in ALPHA_MODES and (base_format is None or FORMATS[base_format].alpha)
    ):
        failed.append("alpha_kept")
    return failed


def aspect_kept(size: Size, source: Size) -> bool:
    """Within rounding: the short side is rounded to a whole pixel (and at least 1), so
    w/h may differ from W/H by up to one pixel of the preview."""
    width, height = size
    source_width, source_height = source
    return abs(width * source_height - height * source_width) <= max(source_width, source_height)


def is_blank(got: Sample, source: Sample) -> bool:
    weights = _joint(got, source)
    if sum(weights) < MIN_WEIGHT:
        return False
    return _spread(source.luma, weights) >= FLAT and _spread(got.luma, weights) < BLANK


def is_inverted(got: Sample, source: Sample) -> bool:
    weights = _joint(got, source)
    if sum(weights) < MIN_WEIGHT:
        return False
    source_spread, got_spread = _spread(source.luma, weights), _spread(got.luma, weights)
    if source_spread >= FLAT and got_spread >= FLAT:
        return _correlation(got.luma, source.luma, weights) < INVERTED_CORRELATION
    if source_spread < FLAT and got_spread < FLAT:
        before, after = _mean(source.luma, weights), _mean(got.luma, weights)
        shift = abs(after - before)
        return shift > FLAT_INVERSION_SHIFT and abs(after - (255 - before)) < FLAT_INVERSION_SLACK
    return False  # one flat, one not: blankness is the other check's business


def _joint(a: Sample, b: Sample) -> list[float]:
    return [x * y for x, y in zip(a.weight, b.weight, strict=True)]


def _mean(values: tuple[int, ...], weights: list[float]) -> float:
    return sum(v * w for v, w in zip(values, weights, strict=True)) / sum(weights)


def _spread(values: tuple[int, ...], weights: list[float]) -> float:
    mean = _mean(values, weights)
    variance = sum(w * (v - mean) ** 2 for v, w in zip(values, weights, strict=True))
    return math.sqrt(variance / sum(weights))


def _correlation(a: tuple[int, ...], b: tuple[int, ...], weights: list[float]) -> float:
    mean_a, mean_b = _mean(a, weights), _mean(b, weights)
    cov = sum(w * (x - mean_a) * (y - mean_b) for x, y, w in zip(a, b, weights, strict=True))
    var_a = sum(w * (x - mean_a) ** 2 for x, w in zip(a, weights, strict=True))
    var_b = sum(w * (y - mean_b) ** 2 for y, w in zip(b, weights, strict=True))
    return cov / math.sqrt(var_a * var_b) if var_a and var_b else 1.0
