"""render_variants(): sizes, orientation, formats, metadata, one decode, errors."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imagepipe.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from imagepipe.imaging import (
    RenderedVariant,
    RenderOptions,
    RenderResult,
    render_variants,
    resample,
)
from imagepipe.imaging.cascade import cascade, steps
from imagepipe.imaging.decode import decode
from imagepipe.imaging.opening import Limits
from tests.imaging import images

BOXES = {"small": 150, "medium": 600, "large": 1200}


def render(path: Path, boxes: dict[str, int] | None = None, **options: Any) -> RenderResult:
    return render_variants(path, RenderOptions(boxes=boxes or BOXES, **options))


def opened(preview: RenderedVariant) -> Image.Image:
    image = Image.open(io.BytesIO(preview.data))
    image.load()
    assert image.format == preview.format
    assert image.size == (preview.width, preview.height)
    return image


def sizes(result: RenderResult) -> dict[str, tuple[int, int]]:
    return {p.name: (p.width, p.height) for p in result.variants}


# --------------------------------------------------------------------------- geometry


def test_fits_each_box_keeping_aspect_and_order(tmp_path: Path) -> None:
    path = images.save(images.photo((2000, 1500)), tmp_path / "a.jpg", quality=90)
    result = render(path)
    assert [p.name for p in result.variants] == ["small", "medium", "large"]
    assert sizes(result) == {"small": (150, 113), "medium": (600, 450), "large": (1200, 900)}
    for preview in result.variants:
        assert opened(preview).size == (preview.width, preview.height)
        assert preview.content_type == "image/jpeg"


def test_never_upscales_smaller_images(tmp_path: Path) -> None:
    path = images.save(images.photo((800, 500)), tmp_path / "a.png")
    assert sizes(render(path)) == {"small": (150, 94), "medium": (600, 375), "large": (800, 500)}


def test_tiny_image_is_kept_at_its_size(tmp_path: Path) -> None:
    path = images.save(Image.new("RGB", (1, 1), images.RED), tmp_path / "dot.png")
    result = render(path)
    assert set(sizes(result).values()) == {(1, 1)}
    _assert_close(opened(result.variants[0]).convert("RGB").getpixel((0, 0)), images.RED, 4)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((10000, 50), {"small": (150, 1), "medium": (600, 3), "large": (1200, 6)}),
        ((1, 5000), {"small": (1, 150), "medium": (1, 600), "large": (1, 1200)}),
    ],
)
def test_panoramas_never_get_a_zero_side(
    tmp_path: Path, size: tuple[int, int], expected: dict[str, tuple[int, int]]
) -> None:
    path = images.save(images.photo(size), tmp_path / "pano.png")
    assert sizes(render(path)) == expected


def test_previews_look_like_a_lanczos_reference(tmp_path: Path) -> None:
    source = images.photo((1800, 1350))
    path = images.save(source, tmp_path / "a.png", compress_level=1)
    for preview in render(path).variants:
        reference = np.asarray(source.resize((preview.width, preview.height), Image.LANCZOS))
        got = np.asarray(opened(preview).convert("RGB"))
        # Mean error of a JPEG q85 of smooth content: a couple of levels at most.
        assert np.abs(got.astype(int) - reference.astype(int)).mean() < 3.0, preview.name


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("displayed", [(320, 240), (240, 320)], ids=["landscape", "portrait"])
def test_exif_orientation_is_applied(
    tmp_path: Path, orientation: int, displayed: tuple[int, int]
) -> None:
    path = images.oriented_jpeg(tmp_path / f"o{orientation}.jpg", orientation, displayed)
    result = render(path, {"small": 40, "large": 160})
    for preview in result.variants:
        image = opened(preview).convert("RGB")
        width, height = image.size
        assert (width > height) == (displayed[0] > displayed[1]), preview.name
        assert max(width, height) == {"small": 40, "large": 160}[preview.name]
        _assert_close(image.getpixel((2, 2)), images.RED)  # top-left
        _assert_close(image.getpixel((width - 3, 2)), images.GREEN)  # top-right
        _assert_close(image.getpixel((width - 3, height - 3)), images.WHITE)
        _assert_close(image.getpixel((2, height - 3)), images.WHITE)


def test_orientation_survives_the_draft_path(tmp_path: Path) -> None:
    # Big enough for a DCT-scaled decode; stored portrait, displayed landscape.
    path = images.oriented_jpeg(tmp_path / "o6.jpg", 6, (2400, 1800))
    decoded = decode(path, largest_box=600, limits=Limits(("JPEG",), max_pixels=10**8))
    # Stored orientation: DCT 3/8 (675x900), then the linear pass to the stored target.
    assert decoded.image.size == (450, 600)
    result = render(path, {"medium": 600})
    image = opened(result.variants[0]).convert("RGB")
    assert image.size == (600, 450)
    _assert_close(image.getpixel((5, 5)), images.RED)
    _assert_close(image.getpixel((594, 5)), images.GREEN)


@pytest.mark.parametrize(("name", "shared"), [("a.jpg", True), ("a.png", False)])
def test_a_first_step_already_at_size_is_copied_only_from_a_file(
    tmp_path: Path, name: str, shared: bool
) -> None:
    # A scaled JPEG decode hands over pixels of its own, already at the first step's
    # size (DCT 5/8, then the linear pass): no copy. A PNG at that size is Pillow's
    # file object: copied, so no caller holds the decoder's.
    size = (1600, 1200) if shared else (900, 675)
    path = images.save(images.photo(size), tmp_path / name)
    decoded = decode(path, largest_box=900, limits=Limits(("JPEG", "PNG"), max_pixels=10**8))
    assert decoded.image.size == (900, 675)
    first = next(steps(decoded, {"large": 900}))
    assert (first.whole is decoded.image) is shared


def _assert_close(got: Any, expected: tuple[int, int, int], tolerance: int = 40) -> None:
    assert all(abs(g - e) <= tolerance for g, e in zip(got, expected, strict=True)), (
        got,
        expected,
    )


# --------------------------------------------------------------------------- metadata


def test_jpeg_output_carries_no_metadata(tmp_path: Path) -> None:
    path = images.jpeg_with_metadata(tmp_path / "meta.jpg")
    with Image.open(path) as source:
        assert source.getexif().get_ifd(0x8825)  # the source does have GPS
    for preview in render(path).variants:
        image = opened(preview)
        assert not image.getexif()
        for key in ("exif", "icc_profile", "xmp", "comment", "photoshop"):
            assert key not in image.info, (preview.name, key)
        for needle in (b"Exif\0\0", b"TestCam", b"xmp-payload", b"secret comment", b"ICC_PROFILE"):
            assert needle not in preview.data, (preview.name, needle)


def test_png_output_has_only_pixel_chunks(tmp_path: Path) -> None:
    source = images.photo((300, 200)).convert("RGBA")
    source.putpixel((0, 0), (0, 0, 0, 0))
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    path = images.save(source, tmp_path / "a.png", exif=exif.tobytes(), icc_profile=b"")
    for preview in render(path).variants:
        assert preview.format == "PNG"
        assert set(images.png_chunks(preview.data)) == {b"IHDR", b"IDAT", b"IEND"}


# --------------------------------------------------------------------------- decoding


def test_one_open_and_one_decode_for_all_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    calls: list[str] = []
    real_open: Callable[..., Any] = Image.open

    def counting_open(*args: Any, **kwargs: Any) -> Any:
        calls.append("open")
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    render(path)
    assert calls == ["open"]


def test_each_smaller_preview_is_made_from_the_previous(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = images.save(images.photo((3000, 2000)), tmp_path / "a.jpg")
    steps: list[tuple[tuple[int, int], tuple[int, int]]] = []
    real = resample.cascade_shrink

    def spy(image: Image.Image, size: tuple[int, int]) -> Image.Image:
        steps.append((image.size, size))
        return real(image, size)

    monkeypatch.setattr(resample, "cascade_shrink", spy)
    render(path)
    assert steps == [((1200, 800), (600, 400)), ((600, 400), (150, 100))]


def test_full_size_buffer_is_released_after_the_first_step(tmp_path: Path) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.png")
    decoded = decode(path, largest_box=600, limits=Limits(("PNG",), max_pixels=10**8))
    steps = cascade(decoded, {"medium": 600, "small": 150})
    name, first = next(steps)
    assert (name, first.size) == ("medium", (600, 450))
    with pytest.raises(ValueError, match="closed"):
        decoded.image.load()


def test_timings_cover_every_stage(tmp_path: Path) -> None:
    path = images.save(images.photo((1000, 800)), tmp_path / "a.jpg")
    timings = render(path).timings
    assert set(timings) == {"decode", "resize", "encode", "qa", "placeholder"}
    assert all(seconds >= 0 for seconds in timings.values())


def test_each_rendition_is_handed_out_as_soon_as_it_is_encoded(tmp_path: Path) -> None:
    path = images.save(images.photo((2000, 1500)), tmp_path / "a.jpg")
    seen: list[tuple[str, str, bytes]] = []
    result = render_variants(
        path,
        RenderOptions(boxes=BOXES, extra_formats=("WEBP",)),
        lambda name, rendition: seen.append((name, rendition.format, rendition.data)),
    )
    # Largest first (the order they are made in), every format of each, the bytes the
    # result holds.
    made = [
        (p.name, r.format, r.data)
        for p in sorted(result.variants, key=lambda p: -p.width)
        for r in p.renditions
    ]
    assert seen == made
    assert [(name, fmt) for name, fmt, _ in seen] == [
        ("large", "JPEG"),
        ("large", "WEBP"),
        ("medium", "JPEG"),
        ("medium", "WEBP"),
        ("small", "JPEG"),
        ("small", "WEBP"),
    ]


def test_mpo_renders_its_first_image(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (400, 300), images.RED).save(
        path, "MPO", save_all=True, append_images=[Image.new("RGB", (400, 300), "blue")]
    )
    for preview in render(path).variants:
        _assert_close(opened(preview).convert("RGB").getpixel((5, 5)), images.RED)


def test_animated_gif_renders_its_first_frame(tmp_path: Path) -> None:
    path = images.animated_gif(tmp_path / "anim.gif", frames=5)
    for preview in render(path).variants:
        _assert_close(opened(preview).convert("RGB").getpixel((5, 5)), images.RED)


# --------------------------------------------------------------------------- errors


def test_truncated_jpeg_is_invalid(tmp_path: Path) -> None:
    data = images.save(images.photo((640, 480)), tmp_path / "a.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImage):
        render(cut)


def test_truncated_png_is_invalid(tmp_path: Path) -> None:
    data = images.save(images.photo((640, 480)), tmp_path / "a.png").read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidImage):
        render(cut)


def test_worker_rechecks_the_pixel_cap(tmp_path: Path) -> None:
    path = images.save(images.photo((400, 300)), tmp_path / "a.png")
    with pytest.raises(ImageTooLarge):
        render(path, max_pixels=100_000)


def test_worker_rechecks_the_allowlist(tmp_path: Path) -> None:
    path = images.save(images.photo((40, 30)), tmp_path / "a.png")
    with pytest.raises(UnsupportedMediaType, match="detected: PNG"):
        render(path, allowed_formats=("JPEG",))


def test_worker_refuses_a_declared_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(images.png_bytes(100_000, 100_000))
    with pytest.raises(ImageTooLarge):
        render(path)


@pytest.mark.parametrize("boxes", [{}, {"small": 0}])
def test_boxes_must_be_positive(tmp_path: Path, boxes: dict[str, int]) -> None:
    path = images.save(images.photo((40, 30)), tmp_path / "a.png")
    with pytest.raises(ValueError, match="box"):
        render_variants(path, RenderOptions(boxes=boxes))
