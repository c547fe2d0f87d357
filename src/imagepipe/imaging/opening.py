"""Open an upload with Pillow, header only, and apply the format allowlist and pixel cap.

Shared by ``probe`` (in the HTTP request) and ``render_previews`` (in the worker, as
defence in depth), so both refuse exactly the same files with the same errors.
"""

from __future__ import annotations

import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, UnidentifiedImageError

from imagepipe.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from imagepipe.imaging import frames, sniff

# warnings.catch_warnings() swaps the process-wide filter list and is not thread-safe
# before Python 3.14: two threads interleaving enter/exit can leave a filter installed
# for good. The API may probe from several threads, so our own uses take turns. Only
# Image.open (header parsing) runs under the lock.
_WARNINGS_LOCK = threading.Lock()

# What Pillow raises for hostile or damaged bytes (its fuzzers see all of these), plus
# warnings escalated to errors by a -W error filter. Deliberately not Exception: an
# exception from outside, such as a worker's soft time limit raised asynchronously
# inside Pillow, must propagate as itself, not turn into "invalid image".
BAD_BYTES_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError, "image file is truncated"
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    LookupError,
    ArithmeticError,
    TypeError,
    AttributeError,
    RuntimeError,
    Warning,
)


@dataclass(frozen=True)
class Opened:
    image: ImageFile.ImageFile
    fp: BinaryIO
    format: str
    frames: int


@contextmanager
def open_image(
    path: Path, *, allowed_formats: tuple[str, ...], max_pixels: int
) -> Iterator[Opened]:
    """Yield the opened (not decoded) image; the file stays open inside the block.

    Raises UnsupportedMediaType, ImageTooLarge or InvalidImage.
    """
    _check_allowlist(allowed_formats)
    with path.open("rb") as fp:
        image = _open(fp, allowed_formats)
        with image:
            count = _check_pixels(image, fp, max_pixels)
            # An MPO (phone cameras) is a JPEG followed by extra stills (depth map,
            # preview) that are never decoded: a JPEG of one frame, for the cap too.
            name = "JPEG" if image.format == "MPO" else str(image.format)
            yield Opened(image=image, fp=fp, format=name, frames=count)


def _check_allowlist(allowed_formats: tuple[str, ...]) -> None:
    """A name Pillow does not know is a configuration error, not a bad upload."""
    Image.init()  # registers every plugin once; cheap afterwards
    unknown = sorted(set(allowed_formats) - set(Image.OPEN))
    if unknown:
        raise ValueError(f"unknown image formats in the allowlist: {unknown}")


def _open(fp: BinaryIO, allowed_formats: tuple[str, ...]) -> ImageFile.ImageFile:
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            # Pillow only warns between MAX_IMAGE_PIXELS and twice that; our own cap is
            # the rule, so any bomb signal means "too large", never "carry on".
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(fp, formats=allowed_formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLarge(f"The image has too many pixels ({exc}).") from exc
    except UnidentifiedImageError as exc:
        raise _refusal(fp, allowed_formats) from exc
    except BAD_BYTES_ERRORS as exc:
        # Plugins raise ValueError, OSError, ... for headers they half-understood
        # (e.g. a PNG whose IHDR chunk is cut short): an allowed format, but broken.
        detected = _detect(fp)
        raise InvalidImage(f"The {detected or 'image'} header cannot be parsed: {exc}") from exc


def _refusal(fp: BinaryIO, allowed_formats: tuple[str, ...]) -> Exception:
    """No allowed plugin accepted the file: say why, as precisely as the bytes allow."""
    detected = _detect(fp)
    allowed = ", ".join(allowed_formats)
    if detected in allowed_formats:
        # The magic bytes say PNG (say) but Pillow's PNG plugin refused the header.
        return InvalidImage(f"The {detected} header cannot be parsed.")
    if detected is None:
        return UnsupportedMediaType(f"Not a supported image (allowed: {allowed}).")
    return UnsupportedMediaType(
        f"Not a supported image (detected: {detected}; allowed: {allowed})."
    )


def _detect(fp: BinaryIO) -> str | None:
    fp.seek(0)
    return sniff.detect(fp.read(sniff.HEAD_BYTES))


def _check_pixels(image: ImageFile.ImageFile, fp: BinaryIO, max_pixels: int) -> int:
    """Raise unless width * height * frames <= max_pixels; return the frame count."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidImage(f"The image declares an empty size ({width}x{height}).")
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} = {pixels} pixels; the cap is {max_pixels}."
        )
    if image.format == "MPO":
        return 1
    try:
        count = frames.count_frames(image, fp, limit=max_pixels // pixels)
    except BAD_BYTES_ERRORS as exc:
        raise InvalidImage(f"The frame structure cannot be parsed: {exc}") from exc
    if count * pixels > max_pixels:
        raise ImageTooLarge(
            f"The image is {width}x{height} with at least {count} frames, more than the cap "
            f"of {max_pixels} pixels."
        )
    return count
