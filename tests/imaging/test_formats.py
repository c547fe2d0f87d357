"""Formats in and out: the format table, renditions, HEIF/AVIF input, animation."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif.as_plugin
import pytest
from PIL import Image, ImageCms

from imagepipe.errors import ImageTooLarge, UnsupportedMediaType
from imagepipe.imaging import ImageInfo, RenderOptions, probe, render_variants
from imagepipe.imaging.formats import BY_CONTENT_TYPE, BY_EXTENSION, FORMAT_NAMES, FORMATS
from tests.imaging import images

ALLOWED = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "HEIF", "AVIF")
BOXES = {"small": 150, "medium": 600, "large": 1200}


def _open(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def _render(path: Path, **options: object) -> list[tuple[str, list[tuple[str, Image.Image]]]]:
    result = render_variants(
        path,
        RenderOptions(boxes=options.pop("boxes", BOXES), allowed_formats=ALLOWED, **options),  # type: ignore[arg-type]
    )
    return [(p.name, [(r.format, _open(r.data)) for r in p.renditions]) for p in result.variants]


# --- the table ----------------------------------------------------------------------------


def test_the_table_names_every_format_once() -> None:
    assert set(FORMATS) == set(FORMAT_NAMES)
    assert len(BY_EXTENSION) == len(BY_CONTENT_TYPE) == len(FORMATS)
    for name, spec in FORMATS.items():
        assert spec.name == name and spec.content_type.startswith("image/")
    assert [name for name, spec in FORMATS.items() if spec.animation] == ["WEBP"]
    assert [name for name, spec in FORMATS.items() if not spec.alpha] == ["JPEG"]


# --- renditions ---------------------------------------------------------------------------


def test_each_variant_comes_in_the_base_format_and_webp_by_default(tmp_path: Path) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    result = render_variants(path, RenderOptions(boxes=BOXES))
    for preview in result.variants:
        assert [(r.format, r.content_type) for r in preview.renditions] == [
            ("JPEG", "image/jpeg"),
            ("WEBP", "image/webp"),
        ]
        assert preview.renditions[0].data == preview.data  # the base, as before
        for rendition in preview.renditions:
            image = _open(rendition.data)
            assert (image.format, image.size) == (rendition.format, (preview.width, preview.height))
            assert "exif" not in image.info and "icc_profile" not in image.info


def test_extra_formats_follow_the_setting_and_keep_alpha(tmp_path: Path) -> None:
    path = images.save(_half_transparent(images.photo((800, 600))), tmp_path / "a.png")
    rendered = _render(path, extra_formats=("AVIF", "WEBP", "PNG"))
    for _, renditions in rendered:
        assert [fmt for fmt, _ in renditions] == ["PNG", "AVIF", "WEBP"]
        for _, image in renditions:
            assert image.mode == "RGBA"
            assert image.getchannel("A").getextrema()[0] == 0


def test_no_extra_formats_gives_the_base_only(tmp_path: Path) -> None:
    path = images.save(images.photo((300, 200)), tmp_path / "a.jpg")
    assert [[fmt for fmt, _ in r] for _, r in _render(path, extra_formats=())] == [["JPEG"]] * 3


def _half_transparent(image: Image.Image) -> Image.Image:
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (0, 0, image.width // 2, image.height))
    image.putalpha(alpha)
    return image


# --- HEIF and AVIF input ------------------------------------------------------------------


def _iphone_like_heic(path: Path, displayed: tuple[int, int]) -> Path:
    """Markers as displayed, stored rotated with EXIF orientation 6, Display P3 profile,
    plus one patch of a known colour."""
    image = images.with_markers(displayed)
    half_width, half_height = displayed[0] // 8, displayed[1] // 8
    centre_x, centre_y = displayed[0] // 2, displayed[1] // 2
    patch = (
        centre_x - half_width,
        centre_y - half_height,
        centre_x + half_width,
        centre_y + half_height,
    )
    image.paste((200, 100, 50), patch)
    stored = image.transpose(Image.Transpose.ROTATE_90)  # a viewer turns it 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(
        path, "HEIF", quality=95, exif=exif.tobytes(), icc_profile=images.display_p3_like_profile()
    )
    return path


def _p3_to_srgb(rgb: tuple[int, int, int]) -> np.ndarray:
    p3 = ImageCms.ImageCmsProfile(io.BytesIO(images.display_p3_like_profile()))
    srgb = ImageCms.createProfile("sRGB")
    converted = ImageCms.profileToProfile(Image.new("RGB", (1, 1), rgb), p3, srgb)
    assert converted is not None
    return np.asarray(converted.getpixel((0, 0)), dtype=np.float64)


def test_iphone_style_heic_gives_upright_srgb_previews(tmp_path: Path) -> None:
    path = _iphone_like_heic(tmp_path / "IMG_0001.HEIC", (1600, 1200))
    assert probe(path, allowed_formats=ALLOWED, max_pixels=10**8).format == "HEIF"
    for name, renditions in _render(path):
        for fmt, image in renditions:
            width, height = image.size
            assert width > height, (name, fmt)  # displayed landscape
            rgb = image.convert("RGB")
            side = max(1, min(image.size) // 8)
            top_left = np.asarray(rgb.getpixel((side // 2, side // 2)), dtype=np.float64)
            top_right = np.asarray(rgb.getpixel((width - side // 2, side // 2)), dtype=np.float64)
            assert top_left[0] > 200 and top_left[1] < 80, (name, fmt, top_left)  # red
            assert top_right[1] > 200 and top_right[0] < 80, (name, fmt, top_right)  # green
            centre = np.asarray(rgb.getpixel((width // 2, height // 2)), dtype=np.float64)
            expected = _p3_to_srgb((200, 100, 50))
            assert np.abs(centre - expected).max() < 10, (name, fmt, centre, expected)
            assert np.abs(centre - (200, 100, 50)).max() > 12  # the profile was applied


def test_heif_probe_reads_the_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _iphone_like_heic(tmp_path / "a.heic", (640, 480))

    def refuse(self: object) -> None:
        raise AssertionError("probe must not decode pixels")

    monkeypatch.setattr(pillow_heif.as_plugin.HeifImageFile, "load", refuse)
    # libheif applies the rotation (irot) itself: the header gives the displayed size.
    assert probe(path, allowed_formats=ALLOWED, max_pixels=10**8) == ImageInfo("HEIF", 640, 480, 1)
    with pytest.raises(ImageTooLarge):
        probe(path, allowed_formats=ALLOWED, max_pixels=480 * 640 - 1)


def test_heif_is_behind_the_allowlist(tmp_path: Path) -> None:
    path = _iphone_like_heic(tmp_path / "a.heic", (64, 48))
    with pytest.raises(UnsupportedMediaType, match="detected: HEIF"):
        probe(path, allowed_formats=("JPEG", "PNG"), max_pixels=10**8)


def test_avif_with_orientation_and_alpha(tmp_path: Path) -> None:
    image = images.with_markers((400, 300)).convert("RGBA")
    alpha = Image.new("L", (400, 300), 255)
    alpha.paste(0, (150, 100, 250, 200))
    image.putalpha(alpha)
    stored = image.transpose(Image.Transpose.ROTATE_270)  # orientation 8 shows it upright
    exif = Image.Exif()
    exif[0x0112] = 8
    path = images.save(stored, tmp_path / "a.avif", quality=90, exif=exif.tobytes())
    assert probe(path, allowed_formats=ALLOWED, max_pixels=10**8).format == "AVIF"
    for name, renditions in _render(path, boxes={"large": 1200, "small": 150}):
        for fmt, out in renditions:
            assert fmt in ("PNG", "WEBP") and out.size in ((400, 300), (150, 113)), (name, fmt)
            rgba = out.convert("RGBA")
            width, height = out.size
            assert rgba.getpixel((width // 2, height // 2))[3] < 30  # transparent hole kept
            red, green, _, _ = rgba.getpixel((2, 2))  # type: ignore[misc]
            assert red > 200 and green < 80  # red at the top left: upright


# --- animation ------------------------------------------------------------------------------


def _frames(image: Image.Image) -> list[int]:
    durations = []
    for index in range(getattr(image, "n_frames", 1)):
        image.seek(index)
        image.load()  # WebP reads a frame's duration while loading it
        durations.append(int(image.info.get("duration", 0)))
    return durations


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_give_animated_webp_and_a_still_base(tmp_path: Path, fmt: str) -> None:
    durations = [100, 200, 300, 150]
    path = images.animated(tmp_path / f"a.{fmt.lower()}", durations, size=(320, 240), fmt=fmt)
    result = render_variants(path, RenderOptions(boxes={"medium": 200, "small": 100}))
    for preview in result.variants:
        base, webp = preview.renditions
        assert (base.format, base.frames) == ("JPEG", 1)
        assert getattr(_open(base.data), "n_frames", 1) == 1
        assert (webp.format, webp.frames) == ("WEBP", 4)
        animated = Image.open(io.BytesIO(webp.data))
        assert animated.size == (preview.width, preview.height)
        assert _frames(animated) == durations
        # Each frame is its own: the white square moves.
        firsts = []
        for index in range(4):
            animated.seek(index)
            firsts.append(np.asarray(animated.convert("L")).argmax())
        assert len(set(firsts)) == 4


def test_animation_frames_are_capped(tmp_path: Path) -> None:
    path = images.animated(tmp_path / "a.gif", [50] * 12, size=(120, 90))
    result = render_variants(path, RenderOptions(boxes={"small": 60}, max_animation_frames=5))
    webp = result.variants[0].renditions[-1]
    assert webp.frames == 5
    assert _frames(Image.open(io.BytesIO(webp.data))) == [50] * 5


def test_a_single_frame_gif_stays_a_still(tmp_path: Path) -> None:
    path = images.save(images.photo((120, 90)), tmp_path / "a.gif")
    result = render_variants(path, RenderOptions(boxes={"small": 60}))
    assert [r.frames for r in result.variants[0].renditions] == [1, 1]


def test_an_avif_encode_uses_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker runs a pool process per core: libavif's default (every core) would
    oversubscribe them."""
    from imagepipe.imaging.encode import encode

    seen: dict[str, object] = {}
    save = Image.Image.save

    def recording(
        self: Image.Image, fp: object, format: str | None = None, **params: object
    ) -> None:
        seen.update(params)
        save(self, fp, format, **params)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "save", recording)
    assert encode(Image.new("RGB", (64, 48), "teal"), "AVIF", quality=60)
    assert seen["max_threads"] == 1
