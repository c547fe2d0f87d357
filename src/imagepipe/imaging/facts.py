"""What the source was, read from the decoder's object while it is open (no re-open):
format, mode, bit depth, frames, alpha, orientation, ICC description, and which kinds
of metadata it carried (every preview is encoded without any of them)."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageCms

from imagepipe.imaging import colour
from imagepipe.imaging.opening import BAD_BYTES_ERRORS

# Bits per sample of each Pillow mode (16-bit PNG colour is decoded to 8 bits).
_BIT_DEPTH = {"1": 1, "I": 32, "F": 32}
_XMP_KEYS = ("xmp", "XML:com.adobe.xmp")
_MAX_ICC_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class SourceFacts:
    format: str
    mode: str  # as decoded, before any conversion
    bit_depth: int
    frames: int
    has_alpha: bool  # some pixel is transparent
    orientation: int  # EXIF orientation, 1-8
    icc_profile: str | None  # the profile's description
    metadata: tuple[str, ...]  # kinds present: exif, gps, xmp, icc, comment

    def as_dict(self) -> dict[str, object]:
        return {
            "format": self.format,
            "mode": self.mode,
            "bit_depth": self.bit_depth,
            "frames": self.frames,
            "has_alpha": self.has_alpha,
            "orientation": self.orientation,
            "icc_profile": self.icc_profile,
        }


def read(
    image: Image.Image,
    *,
    format: str,
    frames: int,
    orientation: int,
    icc_profile: bytes | None,
    has_alpha: bool,
) -> SourceFacts:
    """Facts of a loaded (not yet converted) decoder image."""
    return SourceFacts(
        format=format,
        mode=image.mode,
        bit_depth=bit_depth(image.mode),
        frames=frames,
        has_alpha=has_alpha,
        orientation=orientation,
        icc_profile=describe_profile(icc_profile) if icc_profile else None,
        metadata=metadata_kinds(image, icc_profile),
    )


def bit_depth(mode: str) -> int:
    if mode in _BIT_DEPTH:
        return _BIT_DEPTH[mode]
    return 16 if mode.startswith("I;16") else 8


def metadata_kinds(image: Image.Image, icc_profile: bytes | None) -> tuple[str, ...]:
    kinds: list[str] = []
    try:
        exif = image.getexif()
        if len(exif) or image.info.get("exif"):
            kinds.append("exif")
        if exif.get_ifd(ExifTags.IFD.GPSInfo) or ExifTags.Base.GPSInfo in exif:
            kinds.append("gps")
    except BAD_BYTES_ERRORS:
        kinds.append("exif")  # present, if unreadable
    if any(image.info.get(key) for key in _XMP_KEYS):
        kinds.append("xmp")
    if icc_profile:
        kinds.append("icc")
    if image.info.get("comment"):
        kinds.append("comment")
    return tuple(kinds)


def describe_profile(icc_profile: bytes) -> str | None:
    """The profile's description ("Display P3", "U.S. Web Coated (SWOP) v2"), or None
    for a profile that cannot be read or is absurdly large."""
    if len(icc_profile) > _MAX_ICC_BYTES:
        return None
    # Cached by digest, holding only the text: a cache keyed on the bytes would pin
    # every profile it has seen (megabytes each).
    digest = hashlib.sha256(icc_profile).digest()
    if digest not in _descriptions:
        if len(_descriptions) >= _CACHE_SIZE:
            _descriptions.pop(next(iter(_descriptions)))
        _descriptions[digest] = _describe(icc_profile)
    return _descriptions[digest]


_CACHE_SIZE = 64
_descriptions: dict[bytes, str | None] = {}


def _describe(icc_profile: bytes) -> str | None:
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        description = ImageCms.getProfileDescription(profile).strip()
    except (OSError, ImageCms.PyCMSError, ValueError):
        return None
    return description or None


def transforms_applied(
    *,
    working_mode: str,
    icc_profile: bytes | None,
    orientation: int,
    undo_cmyk_inversion: bool,
    deep: bool,
    resized: bool,
    frames: int,
    animated: bool,
) -> tuple[str, ...]:
    """What the pipeline does to this source, in pipeline order (see render.py)."""
    steps: list[str] = []
    if frames > 1:
        steps.append("animated_webp" if animated else "first_frame")
    if resized:
        steps.append("resize")
    if deep:
        steps.append("deep_to_8bit")
    if undo_cmyk_inversion:
        steps.append("cmyk_uninvert")
    if working_mode == "CMYK":
        steps.append("cmyk_to_srgb")
    if colour.profile_applies(icc_profile, working_mode):
        steps.append("icc_to_srgb")
    if orientation != 1:
        steps.append("exif_orientation")
    return tuple(steps)
