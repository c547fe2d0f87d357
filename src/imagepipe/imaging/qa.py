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

import weakref
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
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


Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Sample:
    """Alpha-weighted luminance of an image at SAMPLE x SAMPLE, flattened."""

    luma: Floats
    weight: Floats  # alpha / 255


@dataclass(frozen=True)
class Reference:
    sample: Sample
    has_alpha: bool
    display_size: Size
    # The image sampled, when the sample is exactly what ``sample`` gives for it (no
    # orientation or inversion applied): the largest preview of a photo that needed no
    # conversion is that same object, and is not sampled twice. (Every step between
    # returns a new image when it changes pixels; none works in place.)
    seen: Callable[[], Image.Image | None] | None = None

    def sample_of(self, image: Image.Image) -> Sample:
        return self.sample if self.seen is not None and self.seen() is image else sample(image)


def reference(
    image: Image.Image, *, display_size: Size, orientation: int, undo_cmyk_inversion: bool
) -> Reference:
    """The source as the gate sees it: ``image`` is the first shrink in a working mode
    (L, LA, RGB, RGBA, CMYK), stored orientation, before any colour conversion."""
    small = _shrunk(image)
    if undo_cmyk_inversion:  # a fact of the file (no Adobe marker), not a conversion
        small = ImageChops.invert(small)
    small = geometry.orient(small, orientation)
    as_is = not undo_cmyk_inversion and orientation == 1
    return Reference(
        sample=sample(small),
        has_alpha=image.mode in ALPHA_MODES,
        display_size=display_size,
        seen=weakref.ref(image) if as_is else None,
    )


def sample(image: Image.Image) -> Sample:
    """Luminance (naive: no profile) and opacity at SAMPLE x SAMPLE."""
    image = _shrunk(image)
    if image.mode == "CMYK":
        image = image.convert("RGB")
    grey = image.convert("L") if image.mode not in ("L", "LA") else image.getchannel("L")
    luma = np.frombuffer(grey.tobytes(), dtype=np.uint8).astype(np.float64)
    if image.mode in ALPHA_MODES:
        alpha = np.frombuffer(image.getchannel("A").tobytes(), dtype=np.uint8)
        weight = alpha / 255.0
    else:
        weight = np.ones_like(luma)
    return Sample(luma=luma, weight=weight)


def _shrunk(image: Image.Image) -> Image.Image:
    """``image`` box-averaged to SAMPLE x SAMPLE: whole factors first (``reduce``, a
    tenth of the box filter's cost over the same pixels), leaving the filter >= 2x."""
    if image.size == (SAMPLE, SAMPLE):
        return image
    factor = min(image.width, image.height) // (2 * SAMPLE)
    if factor > 1 and image.mode in _REDUCIBLE:
        image = image.reduce(factor)
    return image.resize((SAMPLE, SAMPLE), Image.Resampling.BOX)


_REDUCIBLE = frozenset({"L", "LA", "RGB", "RGBA", "CMYK"})


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
    got = source.sample_of(whole if whole is not None else preview)
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
    weights = got.weight * source.weight
    if weights.sum() < MIN_WEIGHT:
        return False
    return _spread(source.luma, weights) >= FLAT and _spread(got.luma, weights) < BLANK


def is_inverted(got: Sample, source: Sample) -> bool:
    weights = got.weight * source.weight
    if weights.sum() < MIN_WEIGHT:
        return False
    source_spread, got_spread = _spread(source.luma, weights), _spread(got.luma, weights)
    if source_spread >= FLAT and got_spread >= FLAT:
        return _correlation(got.luma, source.luma, weights) < INVERTED_CORRELATION
    if source_spread < FLAT and got_spread < FLAT:
        before, after = _mean(source.luma, weights), _mean(got.luma, weights)
        shift = abs(after - before)
        return shift > FLAT_INVERSION_SHIFT and abs(after - (255 - before)) < FLAT_INVERSION_SLACK
    return False  # one flat, one not: blankness is the other check's business


def _mean(values: Floats, weights: Floats) -> float:
    return float(np.average(values, weights=weights))


def _spread(values: Floats, weights: Floats) -> float:
    mean = _mean(values, weights)
    return float(np.sqrt(np.average((values - mean) ** 2, weights=weights)))


def _correlation(a: Floats, b: Floats, weights: Floats) -> float:
    centred_a, centred_b = a - _mean(a, weights), b - _mean(b, weights)
    cov = float(np.sum(weights * centred_a * centred_b))
    var_a = float(np.sum(weights * centred_a**2))
    var_b = float(np.sum(weights * centred_b**2))
    return cov / float(np.sqrt(var_a * var_b)) if var_a and var_b else 1.0
