"""Decode the first frame of an upload, as small as the largest preview allows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import ExifTags, Image

from imagepipe.errors import ImageTooLarge, InvalidImage
from imagepipe.imaging import colour, facts, geometry, resample, scaled_jpeg
from imagepipe.imaging.crop import Box, resize_size
from imagepipe.imaging.facts import SourceFacts
from imagepipe.imaging.geometry import Size
from imagepipe.imaging.opening import BAD_BYTES_ERRORS, BOMB_ERRORS, Limits, open_image


@dataclass
class Decoded:
    # L, LA, RGB, RGBA or CMYK, or deep grey (colour.is_deep) that is
    # narrowed to L with ``deep_scale`` only after the first shrink. Stored orientation.
    image: Image.Image
    original_size: Size  # stored size before any DCT scaling
    orientation: int  # EXIF orientation, 1-8
    icc_profile: bytes | None
    undo_cmyk_inversion: bool
    deep_scale: tuple[float, float] | None = None
    format: str = ""  # the source's format, as the probe names it
    frames: int = 1  # frames or pages of the source (only the first is decoded)
    facts: SourceFacts | None = None  # for the task's report

    @property
    def display_size(self) -> Size:
        return geometry.displayed(self.original_size, self.orientation)


def decode(
    path: Path | BinaryIO,
    *,
    largest_box: int | Box | Callable[[Size], Size],
    limits: Limits,
) -> Decoded:
    """Open (allowlist, caps), decode frame 0 and normalise its mode.

    ``largest_box``: the largest rendition to be made (a number is a square ``contain``
    box), or the size the largest needs for a displayed size; a JPEG is decoded at
    the smallest DCT scale that still covers it.

    Raises UnsupportedMediaType, ImageTooLarge, or InvalidImage for any decoding failure.
    """
    with open_image(path, limits) as opened:
        image = opened.image
        source_format, source_frames = opened.format, opened.frames
        try:
            original_size = image.size
            is_jpeg = image.format in ("JPEG", "MPO")
            # JPEG: EXIF is in the header, so read it before draft(); other formats
            # (PNG eXIf after IDAT, ...) may need the data, so read it after load().
            orientation = _orientation(image) if is_jpeg else 1
            pixels: Image.Image | None = None
            if is_jpeg:
                # The DCT scales while decoding: aim at the largest preview, in stored
                # (unrotated) orientation, at a scale that stays clean. (several boxes:
                # the first step's size for the displayed size, which a cover crop of a
                # wide image may make larger than any box's side).
                display = geometry.displayed(original_size, orientation)
                if callable(largest_box):
                    target = largest_box(display)
                else:
                    box = Box.square(largest_box) if isinstance(largest_box, int) else largest_box
                    target = resize_size(display, box)
                stored_target = geometry.stored(target, orientation)
                pixels = scaled_jpeg.decode(path, image.mode, original_size, stored_target)
                if pixels is None:
                    image.draft(image.mode, resample.draft_request(original_size, stored_target))
            if pixels is None:
                image.load()
                pixels = image
            if not is_jpeg:
                orientation = _orientation(image)
            undo_inversion = is_jpeg and image.mode == "CMYK" and "adobe" not in image.info
            icc_profile = image.info.get("icc_profile") or None
            deep_scale = colour.deep_scale(pixels) if colour.is_deep(pixels.mode) else None
            working = pixels if deep_scale else colour.normalise(pixels)
            source_facts = facts.read(
                image,
                format=source_format,
                frames=source_frames,
                orientation=orientation,
                icc_profile=icc_profile if isinstance(icc_profile, bytes) else None,
                has_alpha=working.mode in colour.ALPHA_MODES,
            )
        except BOMB_ERRORS as exc:
            # Pillow met a frame (or TIFF tile) over the pixel cap, its limit while open.
            raise ImageTooLarge("The image has more pixels than the configured cap.") from exc
        except BAD_BYTES_ERRORS as exc:
            # Pillow reports bad bytes as OSError ("image file is truncated", "broken
            # data stream"), SyntaxError, ValueError, EOFError, struct.error, ...: for
            # the caller they all mean the same thing.
            raise InvalidImage("The image could not be decoded.") from exc
    return Decoded(
        image=working,
        original_size=original_size,
        orientation=orientation,
        icc_profile=icc_profile if isinstance(icc_profile, bytes) else None,
        undo_cmyk_inversion=undo_inversion,
        deep_scale=deep_scale,
        format=source_format,
        frames=source_frames,
        facts=source_facts,
    )


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except BAD_BYTES_ERRORS:
        # A malformed EXIF block does not make the pixels unusable; browsers ignore
        # it too, so show the image as stored.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
