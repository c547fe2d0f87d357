"""Make every preview of one image from a single decode.

Pipeline (``render_variants``)::

    decode      open + allowlist + pixel cap; JPEG draft() to the largest box; frame 0;
                any mode -> L, LA, RGB, RGBA or CMYK
    resize      largest working size: box reduce + one filter (see resample.py), then
                sRGB (ICC, CMYK) and EXIF orientation on that small image; each smaller
                one from the previous; a ``cover`` variant is cropped from its step's
                whole image (cascade.py, crop.py)
    encode      the base format (JPEG, or PNG with transparency) and each extra format
                (formats.py), no metadata
    animate     animated GIF/WebP only: an animated WebP per variant (animation.py),
                one frame at a time; the base format keeps the still first frame
    qa          each preview against a sample of the source taken before any colour
                work (qa.py); a failure raises QualityCheckFailed
    placeholder BlurHash, ThumbHash and dominant colour of the smallest ``contain``
                preview (the smallest preview if every variant is ``cover``), while it
                is in memory (placeholders.py)
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

from PIL import Image

from imagepipe.errors import QualityCheckFailed
from imagepipe.imaging import animation, colour, crop, facts, placeholders, qa
from imagepipe.imaging.cascade import Timings, as_boxes, largest, steps
from imagepipe.imaging.crop import Box, FocalPoint
from imagepipe.imaging.decode import Decoded, decode
from imagepipe.imaging.encode import choose_format, encode
from imagepipe.imaging.formats import FORMATS, FormatName
from imagepipe.imaging.opening import DEFAULT_MAX_FRAMES, Limits
from imagepipe.imaging.spec import VariantSpec, make_spec


@dataclass(frozen=True)
class RenderOptions:
    # Variant name -> Box (a number is taken as contain in that square).
    boxes: Mapping[str, Box]
    output_format: FormatName | Literal["auto"] = "auto"
    # Renditions made beside the base format, in this order (the base is never repeated).
    extra_formats: tuple[FormatName, ...] = ("WEBP",)
    jpeg_quality: int = 85
    webp_quality: int = 80
    avif_quality: int = 60
    max_animation_frames: int = 200
    max_pixels: int = 50_000_000
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF")
    max_frames: int = DEFAULT_MAX_FRAMES
    max_decoded_bytes: int | None = None
    # The task's focal point (fractions of the upright original): places the crops of
    # ``cover`` variants with ``gravity: focal``, and is part of their specs.
    focal: FocalPoint | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "boxes", as_boxes(self.boxes))

    @property
    def limits(self) -> Limits:
        return Limits(
            allowed_formats=self.allowed_formats,
            max_pixels=self.max_pixels,
            max_frames=self.max_frames,
            max_decoded_bytes=self.max_decoded_bytes,
        )

    @property
    def render_spec(self) -> str:
        """Digest of everything that decides a task's variants: each variant's spec in
        every format (box, focal point where it places a crop, quality, encoder options,
        pipeline version) and which formats are made. Equal originals with equal render
        specs give equal variants (what duplicate detection relies on)."""
        return _render_spec(
            tuple(self.boxes.items()),
            self.output_format,
            tuple(self.extra_formats),
            (self.jpeg_quality, self.webp_quality, self.avif_quality),
            self.max_animation_frames,
            self.focal,
        )

    def quality(self, name: FormatName) -> int:
        """The configured quality of a format (PNG has none: ignored)."""
        return {
            "JPEG": self.jpeg_quality,
            "WEBP": self.webp_quality,
            "AVIF": self.avif_quality,
        }.get(name, 0)

    def formats(self, base: FormatName) -> tuple[FormatName, ...]:
        """Every format a variant is made in: the base first, then the extras."""
        return (base, *(f for f in self.extra_formats if f != base))

    def spec(self, name: str, output_format: FormatName) -> VariantSpec:
        """What the rendition of variant ``name`` in ``output_format`` is made with."""
        return make_spec(self.boxes[name], output_format, self.quality(output_format), self.focal)


# A worker asks for its settings' render spec twice per task (the claim's dedup
# look-up, the render's result): the same few keys every time, each some tenths of a
# millisecond of JSON and hashing.
@functools.lru_cache(maxsize=64)
def _render_spec(
    boxes: tuple[tuple[str, Box], ...],
    output_format: FormatName | Literal["auto"],
    extra_formats: tuple[FormatName, ...],
    qualities: tuple[int, int, int],
    max_animation_frames: int,
    focal: FocalPoint | None,
) -> str:
    options = RenderOptions(
        dict(boxes),
        output_format=output_format,
        extra_formats=extra_formats,
        jpeg_quality=qualities[0],
        webp_quality=qualities[1],
        avif_quality=qualities[2],
        focal=focal,
    )
    decided_by = {
        "specs": [
            options.spec(name, fmt).render_key()
            for name in sorted(options.boxes)
            for fmt in FORMATS
        ],
        "output_format": output_format,
        "extra_formats": list(extra_formats),
        "max_animation_frames": max_animation_frames,
    }
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class EncodedRendition:
    format: FormatName
    data: bytes
    content_type: str
    spec: VariantSpec  # what it was made with (stored beside it)
    frames: int = 1  # > 1: an animation


@dataclass(frozen=True)
class RenderedVariant:
    """One variant. ``data``/``format``/``content_type`` are its base rendition (a
    still); ``renditions`` are every encoding of it, the base first."""

    name: str
    data: bytes
    width: int
    height: int
    format: FormatName
    content_type: str
    renditions: tuple[EncodedRendition, ...] = ()


@dataclass
class RenderResult:
    variants: list[RenderedVariant]
    # Seconds spent per stage: "decode", "resize", "encode", "qa", "placeholder".
    timings: dict[str, float] = field(default_factory=dict)
    # What the task's report says (services/report.py); None when not rendered here.
    source: facts.SourceFacts | None = None
    applied: tuple[str, ...] = ()
    qa_checks: tuple[str, ...] = ()  # the checks every preview passed
    placeholder: placeholders.Placeholder | None = None
    render_spec: str | None = None  # RenderOptions.render_spec of the options used
    # The source's sha256 where the caller took it while reading the source (a direct
    # upload's: the API never reads it whole, the worker does); None otherwise.
    source_sha256: str | None = None
    # Extra formats the variants lack (``render_variants(..., extras=False)``, or a
    # duplicate's copy of a task whose extras were still due): made afterwards.
    extras_due: tuple[FormatName, ...] = ()


def animated_rendition(
    name: str,
    display: tuple[int, int],
    source: Path | BinaryIO,
    orientation: int,
    icc_profile: bytes | None,
    options: RenderOptions,
) -> EncodedRendition:
    """Variant ``name``'s animated WebP, made from every frame of ``source`` (a
    render's, or the follow-up's that adds the extra formats) shown at ``display``:
    each frame sized as the still is. A ``cover`` variant's frames are all cut at the
    window chosen for the first (a smart crop chosen per frame would jump about)."""
    box = options.boxes[name]
    finish = _steady_crop(box, options.focal) if box.fit == "cover" else None
    data, frames = animation.animated_webp(
        source,
        crop.resize_size(display, box),
        finish=finish,
        limits=options.limits,
        max_frames=options.max_animation_frames,
        quality=options.quality("WEBP"),
        orientation=orientation,
        icc_profile=icc_profile,
    )
    spec = options.spec(name, "WEBP")
    return EncodedRendition("WEBP", data, FORMATS["WEBP"].content_type, spec, frames)


def _steady_crop(box: Box, focal: FocalPoint | None) -> Callable[[Image.Image], Image.Image]:
    area: tuple[int, int, int, int] | None = None

    def cut(frame: Image.Image) -> Image.Image:
        nonlocal area
        if area is None:
            area = crop.window(frame, box, focal)
        return frame.crop(area)

    return cut


def render_variants(
    source: Path | BinaryIO,
    options: RenderOptions,
    on_rendition: Callable[[str, EncodedRendition], None] | None = None,
    *,
    extras: bool = True,
    on_image: Callable[[str, Image.Image], object] | None = None,
) -> RenderResult:
    """Decode ``source`` once and return one RenderedVariant per box.

    ``extras=False``: only the base format (the still first frame of an animation);
    the extra formats (animated WebP included) are named in ``extras_due`` and made
    later by ``encode_extra``. ``on_image(variant name, resized image)`` sees each
    variant's pixels before they are encoded (a caller may keep them for the extras).

    Previews come in the order of ``options.boxes``. Raises InvalidImage (cannot be
    decoded, truncated), ImageTooLarge or UnsupportedMediaType (both re-checked here).
    ``on_rendition(variant name, rendition)`` is called as each rendition is encoded,
    before the render is over (and before its quality check has passed): a caller can
    start storing it while the next one is encoded.
    """
    timings = Timings()
    with timings.stage("decode"):
        decoded = decode(source, largest_box=largest(options.boxes), limits=options.limits)
    made: dict[str, RenderedVariant] = {}
    base: FormatName | None = None
    animated = animation.is_animated(decoded.format, decoded.frames)
    display = decoded.display_size
    applied = _applied(decoded, options.boxes.values(), animated)
    references: list[qa.Reference] = []
    failures: dict[str, list[str]] = {}
    # The placeholder's image: the smallest contain variant, else the smallest one.
    smallest: tuple[tuple[bool, int], Image.Image] | None = None
    observe = _keep_reference(decoded, references)
    for step in steps(decoded, options.boxes, options.focal, timings=timings, observe=observe):
        name, image = step.name, step.image
        if base is None:  # decided once, so all variants share a format
            base = choose_format(options.output_format, has_alpha=image.mode in colour.ALPHA_MODES)
        with timings.stage("qa"):
            chosen = base if options.output_format == "auto" else None
            failed = qa.check(image, step.box, chosen, references[0], whole=step.whole)
        if failed:
            failures[name] = failed
        rank = (step.box.fit != "contain", image.width * image.height)
        if smallest is None or rank < smallest[0]:
            smallest = (rank, image)
        if on_image is not None:
            on_image(name, image)
        renditions = []
        with timings.stage("encode"):
            for fmt in options.formats(base) if extras else (base,):
                if animated and fmt == "WEBP" and extras:
                    continue  # made below, from every frame
                data = encode(image, fmt, quality=options.quality(fmt))
                spec = options.spec(name, fmt)
                renditions.append(EncodedRendition(fmt, data, FORMATS[fmt].content_type, spec))
                if on_rendition is not None:
                    on_rendition(name, renditions[-1])
        if animated and extras:
            with timings.stage("animate"):
                renditions.append(
                    animated_rendition(
                        name, display, source, decoded.orientation, decoded.icc_profile, options
                    )
                )
            if on_rendition is not None:
                on_rendition(name, renditions[-1])
        first = renditions[0]
        made[name] = RenderedVariant(
            name=name,
            data=first.data,
            width=image.width,
            height=image.height,
            format=first.format,
            content_type=first.content_type,
            renditions=tuple(renditions),
        )
    if failures:
        raise QualityCheckFailed(failures)
    assert smallest is not None  # at least one box
    with timings.stage("placeholder"):
        placeholder = placeholders.compute(smallest[1])
    return RenderResult(
        variants=[made[name] for name in options.boxes],
        timings=timings.totals,
        source=decoded.facts,
        applied=applied,
        qa_checks=qa.CHECKS,
        placeholder=placeholder,
        render_spec=options.render_spec,
        extras_due=() if extras or base is None else extras_for(options.formats(base), animated),
    )


@dataclass(frozen=True)
class OneRendition:
    """One rendition made on request (not a task's variant): bytes and what they are."""

    data: bytes
    format: FormatName
    content_type: str
    width: int
    height: int


def render_one(
    source: Path | BinaryIO,
    box: Box,
    output_format: FormatName | Literal["auto"],
    *,
    quality: int,
    focal: FocalPoint | None,
    limits: Limits,
) -> OneRendition:
    """Decode ``source`` (its first frame) at the smallest scale that covers ``box``,
    shrink, crop and encode one rendition. ``auto``: PNG with transparency, else JPEG.
    The same steps as a task's variants (cascade.py), for one box.

    Raises what ``render_variants`` raises for a bad source.
    """
    decoded = decode(source, largest_box=box, limits=limits)
    step = next(steps(decoded, {"one": box}, focal))
    image = step.image
    chosen = choose_format(output_format, has_alpha=image.mode in colour.ALPHA_MODES)
    data = encode(image, chosen, quality=quality)
    return OneRendition(data, chosen, FORMATS[chosen].content_type, image.width, image.height)


def extras_for(formats: Sequence[FormatName], animated: bool) -> tuple[FormatName, ...]:
    """The formats a variant has beside its base (``formats[0]``): the configured
    extras, and an animation's animated WebP (which takes the place of a still WebP)."""
    extra = [f for f in formats[1:] if not (animated and f == "WEBP")]
    if animated and formats[0] != "WEBP":
        extra.append("WEBP")
    return tuple(extra)


def _applied(decoded: Decoded, boxes: Iterable[Box], animated: bool) -> tuple[str, ...]:
    """Read before the cascade consumes ``decoded.image``."""
    display = decoded.display_size
    return facts.transforms_applied(
        working_mode=decoded.image.mode,
        icc_profile=decoded.icc_profile,
        orientation=decoded.orientation,
        undo_cmyk_inversion=decoded.undo_cmyk_inversion,
        deep=decoded.deep_scale is not None,
        resized=any(crop.resize_size(display, box) != display for box in boxes),
        frames=decoded.frames,
        animated=animated,
    )


def _keep_reference(
    decoded: Decoded, references: list[qa.Reference]
) -> Callable[[Image.Image], None]:
    def observe(image: Image.Image) -> None:
        references.append(
            qa.reference(
                image,
                display_size=decoded.display_size,
                orientation=decoded.orientation,
                undo_cmyk_inversion=decoded.undo_cmyk_inversion,
            )
        )

    return observe
