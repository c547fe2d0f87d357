"""Colour modes and colour spaces.

``normalise`` turns any decoded frame into one of the working modes (L, LA, RGB, RGBA,
CMYK) at full size; ``to_srgb`` finishes the colour after the first shrink, when the
image is at most one preview large, so ICC transforms and CMYK conversion cost little.
Alpha is kept only when some pixel is actually transparent.

Deep grey (16-bit, 32-bit, float) is never widened at full size: the decoder keeps it
as it is, the first shrink runs on it (``is_deep``), and ``narrow`` maps the small
result to 8 bits with a scale taken from the full image (``deep_scale``). Widening a
7000x7000 16-bit PNG to 32 bits first cost 400 MB.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections import OrderedDict
from functools import lru_cache

from PIL import Image, ImageChops, ImageCms

ALPHA_MODES = frozenset({"LA", "RGBA"})

_STRIP_ROWS = 64
# Real profiles are a few KB; large LUT-based CMYK profiles reach 2-3 MB. A bigger one
# (a JPEG can carry 16 MB in APP2 segments) is ignored, as an unusable one is.
MAX_ICC_BYTES = 4 * 1024 * 1024
_TRANSFORM_CACHE_SIZE = 16
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# The colour space an ICC profile must declare to describe pixels of each working mode.
_PROFILE_SPACE = {"L": "GRAY", "LA": "GRAY", "RGB": "RGB", "RGBA": "RGB", "CMYK": "CMYK"}


def bytes_per_pixel(mode: str) -> int:
    """What one pixel of ``mode`` costs in Pillow's memory: one byte for one 8-bit band,
    two for 16-bit grey, four for everything else (several bands are padded to four)."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def normalise(image: Image.Image) -> Image.Image:
    """Convert a decoded frame of any Pillow mode to a working mode."""
    mode = image.mode
    if mode in ("L", "RGB", "CMYK") and "transparency" not in image.info:
        return image
    if mode == "1":
        return image.convert("L")
    if is_deep(mode):
        return narrow(image, deep_scale(image))
    if mode == "LAB":
        return _apply(image, _lab_transform())
    grey = mode in ("L", "LA", "La")
    alpha = mode in ("LA", "La", "RGBA", "RGBa", "PA") or "transparency" in image.info
    if mode == "P" and image.palette is not None and image.palette.mode == "RGBA":
        alpha = True
    target = ("LA" if grey else "RGBA") if alpha else ("L" if grey else "RGB")
    converted = image if mode == target else image.convert(target)
    return drop_opaque_alpha(converted) if alpha else converted


def drop_opaque_alpha(image: Image.Image) -> Image.Image:
    """An alpha channel that is 255 everywhere is not transparency: drop it (-> JPEG)."""
    if image.mode not in ALPHA_MODES or _has_transparent_pixel(image):
        return image
    return image.convert(image.mode[:-1])


def _has_transparent_pixel(image: Image.Image) -> bool:
    # Strip by strip: no full-size copy of the alpha band (50 MB at 50 MP), and an
    # early exit at the first transparent strip (about 3x faster than one big copy).
    width, height = image.size
    for top in range(0, height, _STRIP_ROWS):
        strip = image.crop((0, top, width, min(height, top + _STRIP_ROWS)))
        lowest, _ = strip.getchannel("A").getextrema()
        if isinstance(lowest, int) and lowest < 255:  # one band: (min, max) of ints
            return True
    return False


def is_deep(mode: str) -> bool:
    """Grey with more than 8 bits: I, I;16, I;16B, I;16L, I;16N, F."""
    return mode == "F" or mode.startswith("I")


def deep_scale(image: Image.Image) -> tuple[float, float]:
    """(scale, offset) mapping a deep grey image's values to 0..255.

    16-bit: the format defines the range. 32-bit and float: the value range of the
    whole image (getextrema reads it without a copy).
    """
    if image.mode.startswith("I;16"):
        return 255 / 65535, 0.0
    low, high = image.getextrema()
    assert isinstance(low, (int, float)) and isinstance(high, (int, float))  # one band
    return _stretch(float(low), float(high))


def narrow(image: Image.Image, scale: tuple[float, float]) -> Image.Image:
    """Deep grey -> L. Pillow's convert("L") clips instead of scaling."""
    factor, offset = scale
    if image.mode not in ("I", "F"):
        image = image.convert("I")
    if image.mode == "I":
        offset += 0.5  # "I" point() truncates: round instead
    return image.point(lambda value: value * factor + offset).convert("L")


def to_srgb(
    image: Image.Image, *, icc_profile: bytes | None, undo_cmyk_inversion: bool
) -> Image.Image:
    """Convert a (shrunk) working-mode image to sRGB: L, LA, RGB or RGBA out."""
    if undo_cmyk_inversion:
        # Pillow reads every CMYK JPEG as Adobe-inverted; without an Adobe APP14 marker
        # the data is plain CMYK (browsers only invert when the marker is present).
        image = ImageChops.invert(image)
    if icc_profile and len(icc_profile) <= MAX_ICC_BYTES:
        converted = _apply_profile(image, icc_profile)
        if converted is not None:
            return converted
    if image.mode == "CMYK":
        return image.convert("RGB")
    return image


def profile_applies(icc_profile: bytes | None, mode: str) -> bool:
    """Whether ``to_srgb`` transforms pixels of ``mode`` with this profile (a usable,
    non-sRGB profile of the pixels' colour space)."""
    if not icc_profile or len(icc_profile) > MAX_ICC_BYTES or mode not in _PROFILE_SPACE:
        return False
    return _transform(icc_profile, mode) is not None


def _apply_profile(image: Image.Image, icc_profile: bytes) -> Image.Image | None:
    """Transform with the embedded profile; None when the profile cannot be used."""
    transform = _transform(icc_profile, image.mode)
    if transform is None:
        return None
    if image.mode == "LA":
        # lcms has no grey+alpha input here: transform the grey band, keep alpha as is.
        rgb = _apply(image.getchannel("L"), transform)
        rgb.putalpha(image.getchannel("A"))
        return rgb
    return _apply(image, transform)


def _apply(image: Image.Image, transform: ImageCms.ImageCmsTransform) -> Image.Image:
    converted = ImageCms.applyTransform(image, transform)
    assert converted is not None  # None only with inPlace=True
    return converted


_transforms: OrderedDict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = OrderedDict()
_transforms_lock = threading.Lock()


def _transform(icc_profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform for a profile and mode, built once per profile *digest*.

    Keyed by the digest, not the bytes: a cache keyed on the bytes pins every profile
    it has seen (megabytes each) for the life of the process.
    """
    key = (hashlib.sha256(icc_profile).digest(), mode)
    with _transforms_lock:
        if key in _transforms:
            _transforms.move_to_end(key)
            return _transforms[key]
    transform = _build_transform(icc_profile, mode)
    with _transforms_lock:
        _transforms[key] = transform
        while len(_transforms) > _TRANSFORM_CACHE_SIZE:
            _transforms.popitem(last=False)
    return transform


def _build_transform(icc_profile: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A transform to sRGB, or None to skip it.

    None for: profiles that cannot be parsed (browsers ignore them too), profiles whose
    colour space does not match the pixels, and sRGB itself (nothing to do).
    """
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        space = profile.profile.xcolor_space.strip().upper()
        if space != _PROFILE_SPACE[mode]:
            return None
        if space == "RGB" and "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None
        in_mode = "L" if mode == "LA" else mode
        out_mode = "RGBA" if mode == "RGBA" else "RGB"
        return ImageCms.buildTransform(
            profile, _SRGB, in_mode, out_mode, ImageCms.Intent.PERCEPTUAL
        )
    except (OSError, ImageCms.PyCMSError, ValueError):
        return None


@lru_cache(maxsize=1)
def _lab_transform() -> ImageCms.ImageCmsTransform:
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB"))
    return ImageCms.buildTransform(lab, _SRGB, "LAB", "RGB")


def _stretch(low: float, high: float) -> tuple[float, float]:
    """Scale and offset mapping the value range of an I/F image to 0..255."""
    if low >= 0 and high <= 1.0:
        return 255.0, 0.0  # float data in 0..1
    if low >= 0 and high <= 255:
        return 1.0, 0.0
    if low >= 0 and high <= 65535:
        return 255 / 65535, 0.0
    span = high - low or 1.0
    return 255 / span, -low * 255 / span
