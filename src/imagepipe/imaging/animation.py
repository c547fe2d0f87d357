"""Animated GIF/WebP -> an animated WebP per variant, frames and durations kept.

Memory stays bounded by one source frame: each variant is one pass over the source,
and each frame is decoded, resized and handed to libwebp's animation encoder before
the next one is decoded (never all frames at full size, nor all resized frames). The
encoder is Pillow's own: it iterates an image's frames with ``seek``, so
``_ResizedFrames`` is an image whose frames are made on demand.

Each frame is checked against the caps once seeked to and before it is decoded: a
GIF frame can grow the canvas, so the first frame's size says nothing of the others.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from PIL import Image

from imagepipe.errors import ImageTooLarge, InvalidImage
from imagepipe.imaging import colour, geometry
from imagepipe.imaging.formats import FORMATS
from imagepipe.imaging.geometry import Size
from imagepipe.imaging.opening import (
    BAD_BYTES_ERRORS,
    BOMB_ERRORS,
    LATER_FRAME_MODE,
    Limits,
    check_frame,
    open_image,
)

# Sources whose animation is kept. APNG and multi-page TIFF give a still.
ANIMATED_SOURCES = frozenset({"GIF", "WEBP"})


def is_animated(source_format: str, frames: int) -> bool:
    return source_format in ANIMATED_SOURCES and frames > 1


def animated_webp(
    source: Path | BinaryIO,
    target: Size,
    *,
    limits: Limits,
    max_frames: int,
    quality: int,
    orientation: int = 1,
    icc_profile: bytes | None = None,
    finish: Callable[[Image.Image], Image.Image] | None = None,
) -> tuple[bytes, int]:
    """Encode the first ``max_frames`` frames of ``source`` at ``target`` (displayed
    size) as an animated WebP; ``finish`` is applied to each frame after (a crop).
    Returns (data, frames written)."""
    with open_image(source, limits) as opened:
        try:
            return _encode(
                opened.image,
                opened.frames,
                target,
                limits,
                max_frames,
                quality,
                orientation,
                icc_profile,
                finish,
            )
        except BOMB_ERRORS as exc:
            # Pillow met a frame over the pixel cap (its limit while the image is open).
            raise ImageTooLarge("A frame of the animation is over the pixel cap.") from exc
        except BAD_BYTES_ERRORS as exc:
            # A later frame can be damaged where the first was fine: the same error
            # as for any image that cannot be decoded.
            raise InvalidImage("The animation could not be decoded.") from exc


def _encode(
    image: Image.Image,
    count: int,
    target: Size,
    limits: Limits,
    max_frames: int,
    quality: int,
    orientation: int,
    icc_profile: bytes | None,
    finish: Callable[[Image.Image], Image.Image] | None = None,
) -> tuple[bytes, int]:
    spec = FORMATS["WEBP"]
    frames = _ResizedFrames(
        image,
        count=min(count, max_frames),
        target=target,
        limits=limits,
        orientation=orientation,
        icc_profile=icc_profile,
        finish=finish,
    )
    loop = image.info.get("loop", 1)  # a GIF without NETSCAPE2.0 plays once
    buffer = io.BytesIO()
    frames.save(
        buffer,
        "WEBP",
        save_all=True,
        # Filled as the encoder seeks: it reads frame i's duration right after
        # seeking to frame i.
        duration=frames.durations,
        loop=loop if isinstance(loop, int) else 0,
        background=(0, 0, 0, 0),
        **spec.save_options(quality),
    )
    return buffer.getvalue(), frames.n_frames


class _ResizedFrames(Image.Image):
    """Frame i of the source, resized, oriented and in sRGB, made when seeked to."""

    def __init__(
        self,
        source: Image.Image,
        *,
        count: int,
        target: Size,
        limits: Limits,
        orientation: int,
        icc_profile: bytes | None,
        finish: Callable[[Image.Image], Image.Image] | None = None,
    ) -> None:
        super().__init__()
        self._finish = finish
        self._source = source
        self._count = count
        self._limits = limits
        self._pixels = 0  # of the source frames decoded so far, each at its own size
        self._stored_target = geometry.stored(target, orientation)
        self._orientation = orientation
        self._icc_profile = icc_profile
        self._frame = -1
        self.durations: list[int] = []
        self.seek(0)

    @property
    def n_frames(self) -> int:
        return self._count

    @property
    def is_animated(self) -> bool:
        return self._count > 1

    def tell(self) -> int:
        return self._frame

    def seek(self, frame: int) -> None:
        if frame == self._frame:
            return
        self._source.seek(frame)
        self._check(frame)
        self._source.load()  # WebP sets the frame's duration while loading it
        duration = self._source.info.get("duration", 100)
        if frame == len(self.durations):
            self.durations.append(int(duration) if isinstance(duration, (int, float)) else 100)
        # GIF frames come composited (P for the first, RGB/RGBA after); WebP RGB(A).
        image = self._source.convert("RGBA" if self._source.has_transparency_data else "RGB")
        if image.size != self._stored_target:
            # Pillow premultiplies RGBA around the filter: no dark fringes.
            image = image.resize(self._stored_target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        image = colour.to_srgb(image, icc_profile=self._icc_profile, undo_cmyk_inversion=False)
        image = geometry.orient(image, self._orientation)
        if self._finish is not None:
            image = self._finish(image)
        self.im = image.im
        self._mode = image.mode
        self._size = image.size
        self._frame = frame

    def _check(self, frame: int) -> None:
        """The frame just seeked to, before it is decoded: its own size (a GIF frame
        may have grown the canvas) against both caps, and the frames so far against
        the pixel cap, as the header walk counted them."""
        size = self._source.size
        mode = self._source.mode if frame == 0 else LATER_FRAME_MODE
        check_frame(size, mode, self._limits, first=frame == 0)
        if frame == len(self.durations):  # each frame once, though every variant seeks it
            self._pixels += size[0] * size[1]
            if self._pixels > self._limits.max_pixels:
                raise ImageTooLarge(
                    f"The animation's first {frame + 1} frames have {self._pixels} pixels, "
                    f"more than the cap of {self._limits.max_pixels}."
                )
