"""probe(): header only, allowlist by content, pixel cap incl. frames, precise errors."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from imagepipe.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from imagepipe.imaging import ImageInfo, probe
from imagepipe.imaging.opening import Limits, open_image
from tests.imaging import images

ALLOWED = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
CAP = 50_000_000


def _probe(path: Path, *, allowed: tuple[str, ...] = ALLOWED, cap: int = CAP) -> ImageInfo:
    return probe(path, allowed_formats=allowed, max_pixels=cap)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything decodes pixel data."""

    def refuse(self: ImageFile.ImageFile) -> None:
        raise AssertionError("probe must not decode pixels")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize(
    ("name", "params", "expected_format"),
    [
        ("a.jpg", {"format": "JPEG"}, "JPEG"),
        ("a.png", {"format": "PNG"}, "PNG"),
        ("a.webp", {"format": "WEBP"}, "WEBP"),
        ("a.tif", {"format": "TIFF"}, "TIFF"),
        ("a.bmp", {"format": "BMP"}, "BMP"),
        ("a.gif", {"format": "GIF"}, "GIF"),
    ],
)
def test_reports_format_and_size_from_the_header(
    tmp_path: Path, name: str, params: dict[str, str], expected_format: str
) -> None:
    path = images.save(images.photo((120, 80)), tmp_path / name, **params)
    assert _probe(path) == ImageInfo(format=expected_format, width=120, height=80, frames=1)


def test_sniffs_content_not_the_file_name(tmp_path: Path) -> None:
    path = images.save(images.photo((30, 20)), tmp_path / "photo.gif", format="PNG")
    assert _probe(path).format == "PNG"


@pytest.mark.parametrize(
    ("data", "detected"),
    [
        (b"", "empty file"),
        (images.TEXT, "text"),
        (images.HTML, "HTML"),
        (images.PDF, "PDF"),
        (images.EPS, "EPS"),
        (images.EPS_DOS_BINARY, "EPS"),
        (images.SVG_WITH_SCRIPT, "SVG"),
        (b'<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>', "SVG"),
    ],
)
def test_refuses_non_images_and_names_what_it_saw(
    tmp_path: Path, data: bytes, detected: str
) -> None:
    with pytest.raises(UnsupportedMediaType, match=f"detected: {detected}"):
        _probe(_write(tmp_path, "upload.jpg", data))


def test_refuses_unknown_binary_without_guessing(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedMediaType, match="allowed: JPEG"):
        _probe(_write(tmp_path, "blob", bytes(range(256)) * 4))


def test_refuses_an_image_format_outside_the_allowlist(tmp_path: Path) -> None:
    path = images.save(images.photo((40, 30)), tmp_path / "a.webp", format="WEBP")
    with pytest.raises(UnsupportedMediaType, match="detected: WEBP"):
        _probe(path, allowed=("JPEG", "PNG"))


def test_never_opens_eps_even_with_a_valid_eps_header(tmp_path: Path) -> None:
    # Pillow's EPS plugin would accept this header; it is not in the allowlist.
    with pytest.raises(UnsupportedMediaType):
        _probe(_write(tmp_path, "a.eps", images.EPS))


@pytest.mark.usefixtures("no_decoding")
def test_pixel_cap_from_a_huge_declared_header_without_allocating(tmp_path: Path) -> None:
    path = _write(tmp_path, "bomb.png", images.png_bytes(100_000, 100_000))
    with pytest.raises(ImageTooLarge):
        _probe(path)


def test_pillow_bomb_warning_is_too_large_and_leaves_pillow_as_it_was(tmp_path: Path) -> None:
    # Pillow's limit is the cap while the image is open: 10000 x 10000 lies between
    # its warning and error thresholds, and the warning is ours.
    path = _write(tmp_path, "warn.png", images.png_bytes(10_000, 10_000))
    filters_before = list(warnings.filters)
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageTooLarge, match="cap of 60000000"):
        _probe(path, cap=60_000_000)
    assert warnings.filters == filters_before
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_pillows_limit_is_the_cap_while_an_image_is_open(tmp_path: Path) -> None:
    path = images.save(images.photo((20, 10)), tmp_path / "a.png")
    limit_before = Image.MAX_IMAGE_PIXELS
    with open_image(path, Limits(allowed_formats=ALLOWED, max_pixels=1234)):
        assert Image.MAX_IMAGE_PIXELS == 1234
        with open_image(path, Limits(allowed_formats=ALLOWED, max_pixels=5678)):
            assert Image.MAX_IMAGE_PIXELS == 5678  # the larger: never refuses what a cap allows
        assert Image.MAX_IMAGE_PIXELS == 1234
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_own_cap_applies_below_pillows_default(tmp_path: Path) -> None:
    path = images.save(images.photo((200, 100)), tmp_path / "a.png")
    assert _probe(path, cap=20_000).width == 200
    with pytest.raises(ImageTooLarge, match="cap of 19999"):
        _probe(path, cap=19_999)


def test_cap_counts_animation_frames(tmp_path: Path) -> None:
    path = images.animated_gif(tmp_path / "anim.gif", frames=60, size=(100, 100))
    assert _probe(path).frames == 60
    assert _probe(path, cap=600_000).frames == 60
    with pytest.raises(ImageTooLarge, match="frames"):
        _probe(path, cap=599_999)


def test_apng_frames_counted(tmp_path: Path) -> None:
    frames = [images.photo((20, 10), seed=seed) for seed in range(3)]
    path = tmp_path / "anim.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert _probe(path).frames == 3


@pytest.mark.parametrize(
    "data",
    [images.png_bytes(64, 64, ihdr_crc_ok=False), images.png_truncated_ihdr()],
    ids=["bad-ihdr-crc", "truncated-ihdr"],
)
def test_broken_header_of_an_allowed_format_is_invalid(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(InvalidImage, match="PNG"):
        _probe(_write(tmp_path, "broken.png", data))


def test_zero_width_is_invalid(tmp_path: Path) -> None:
    with pytest.raises(InvalidImage):
        _probe(_write(tmp_path, "zero.png", images.png_bytes(0, 10)))


def test_truncated_jpeg_with_a_good_header_passes(tmp_path: Path) -> None:
    data = (images.save(images.photo((300, 200)), tmp_path / "a.jpg")).read_bytes()
    path = _write(tmp_path, "cut.jpg", data[: len(data) // 2])
    assert _probe(path) == ImageInfo(format="JPEG", width=300, height=200, frames=1)


def test_concurrent_probes_restore_warning_filters_and_pillows_limit(tmp_path: Path) -> None:
    # 10000 x 10000 lies in Pillow's warning band for a cap of 60 MP.
    bomb = _write(tmp_path, "warn.png", images.png_bytes(10_000, 10_000))
    good = images.save(images.photo((20, 20)), tmp_path / "good.png")
    filters_before = list(warnings.filters)
    limit_before = Image.MAX_IMAGE_PIXELS
    barrier = threading.Barrier(8)

    def one(index: int) -> str:
        barrier.wait()
        try:
            return _probe(bomb if index % 2 else good, cap=60_000_000).format
        except ImageTooLarge:
            return "too large"

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(64)))
    assert results.count("too large") == 32
    assert warnings.filters == filters_before
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_mpo_counts_as_a_single_jpeg(tmp_path: Path) -> None:
    # Phone cameras append depth maps / previews; only the first image is ever decoded.
    path = tmp_path / "phone.jpg"
    first, second = images.photo((400, 300)), images.photo((400, 300), seed=1)
    first.save(path, "MPO", save_all=True, append_images=[second])
    with Image.open(path) as image:
        assert (image.format, image.n_frames) == ("MPO", 2)
    assert _probe(path, cap=120_000) == ImageInfo(format="JPEG", width=400, height=300, frames=1)


def test_unknown_allowlist_name_is_a_configuration_error(tmp_path: Path) -> None:
    path = images.save(images.photo((40, 30)), tmp_path / "a.jpg")
    with pytest.raises(ValueError, match="JPG"):
        _probe(path, allowed=("JPG", "PNG"))
