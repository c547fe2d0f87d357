"""Every variant's pixels from one decode: the resize cascade, and the crops.

Steps run from the largest working size to the smallest, each shrinking the previous
step's whole image (never a crop of it), so a ``cover`` variant costs one crop and no
extra resize. A step's working size is ``crop.resize_size``: for ``contain`` the final
size, for ``cover`` the whole image just large enough to cover the box, which the crop
then cuts to ``crop.target_size``. Those sizes depend on the image's aspect, so the
order is decided per image, not by the boxes alone (a wide panorama needs more pixels
for a small square ``cover`` than for a larger ``contain``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, ImageFile

from imagepipe.imaging import colour, crop, geometry, resample, shapes
from imagepipe.imaging.crop import Box, FocalPoint
from imagepipe.imaging.decode import Decoded
from imagepipe.imaging.geometry import Size

if TYPE_CHECKING:  # config imports imaging (its plugins): no import back at run time
    from imagepipe.config import VariantSetting

    Boxes = Mapping[str, Box | VariantSetting] | Iterable[tuple[str, Box | VariantSetting]]


@dataclass(frozen=True)
class Step:
    name: str
    box: Box
    image: Image.Image  # the variant: sRGB, upright, at crop.target_size
    whole: Image.Image  # the uncropped image it was cut from (``image`` for contain)


def as_boxes(boxes: Boxes) -> dict[str, Box]:
    """Name -> Box, numbers taken as contain in that square; at least one, all > 0."""
    pairs = dict(boxes.items() if isinstance(boxes, Mapping) else boxes)
    if not pairs:
        raise ValueError("at least one box is needed")
    found = shapes.boxes(pairs)
    if any(box.width <= 0 or box.height <= 0 for box in found.values()):
        raise ValueError(f"boxes must be positive: {found}")
    return found


def order(display: Size, boxes: Boxes) -> list[tuple[str, Box]]:
    """The steps for an image shown at ``display``: largest working size first (every
    working size keeps the image's aspect, so they nest); equal ones in given order."""
    found = as_boxes(boxes)
    return sorted(found.items(), key=lambda item: crop.resize_size(display, item[1]), reverse=True)


def largest(boxes: Boxes) -> Callable[[Size], Size]:
    """The first step's working size for a displayed size (what a JPEG decode can aim
    its draft scale at)."""
    found = as_boxes(boxes)
    return lambda display: max(crop.resize_size(display, box) for box in found.values())


def steps(
    decoded: Decoded,
    boxes: Boxes,
    focal: FocalPoint | None = None,
    *,
    timings: Timings | None = None,
    observe: Callable[[Image.Image], None] | None = None,
) -> Iterator[Step]:
    """One Step per box, largest working size first, each from the previous.

    Consumes ``decoded.image``: it is closed (its memory released) during the first
    step, or becomes that step's image when it is already at the size (a scaled JPEG
    decode brings it there; a file's decoder object is copied instead).
    ``observe`` sees the first shrink before any colour work (the QA reference).
    """
    timings = timings or Timings()
    display_size = decoded.display_size
    work: Image.Image | None = None
    for name, box in order(display_size, boxes):
        with timings.stage("resize"):
            size = crop.resize_size(display_size, box)
            if work is None:
                whole = _first_step(decoded, size, observe)
                # Alpha stays premultiplied between steps: one conversion per step
                # instead of two, and no precision lost at low alpha along the way.
                mode = resample.PREMULTIPLIED.get(whole.mode)
                work = whole if mode is None else whole.convert(mode)
            else:
                work = resample.cascade_shrink(work, size)
                mode = resample.STRAIGHT.get(work.mode)
                whole = work if mode is None else work.convert(mode)
            image = whole if box.fit == "contain" else crop.crop(whole, box, focal)
        yield Step(name, box, image, whole)


def cascade(
    decoded: Decoded,
    boxes: Boxes,
    focal: FocalPoint | None = None,
    *,
    timings: Timings | None = None,
    observe: Callable[[Image.Image], None] | None = None,
) -> Iterator[tuple[str, Image.Image]]:
    """(name, the variant's pixels) per box, in the order of ``steps``."""
    for step in steps(decoded, boxes, focal, timings=timings, observe=observe):
        yield step.name, step.image


def _first_step(
    decoded: Decoded,
    target: Size,
    observe: Callable[[Image.Image], None] | None = None,
) -> Image.Image:
    """Full-size working image -> largest working size, sRGB and upright."""
    source = decoded.image
    image = resample.first_shrink(
        source, geometry.stored(target, decoded.orientation), consume=True
    )
    if image is source and isinstance(source, ImageFile.ImageFile):
        image = source.copy()  # never hand the caller a file's decoder object
    if image is not source:
        # The full-size buffer is the bulk of peak memory: free it now (first_shrink
        # already did when a box reduce ran; closing twice is harmless).
        source.close()
    # Else pixels already at this size, not a file's: they are the step's.
    if decoded.deep_scale is not None:
        image = colour.narrow(image, decoded.deep_scale)  # deep grey: 8 bits once small
    if observe is not None:
        observe(image)
    # Colour and orientation commute with resampling, so both run on the small image.
    image = colour.to_srgb(
        image,
        icc_profile=decoded.icc_profile,
        undo_cmyk_inversion=decoded.undo_cmyk_inversion,
    )
    return geometry.orient(image, decoded.orientation)


class Timings:
    """Seconds per stage, summed over the calls of ``stage``."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {"decode": 0.0, "resize": 0.0, "encode": 0.0}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - start
