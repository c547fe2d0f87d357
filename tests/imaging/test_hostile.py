"""Headers built to make a probe slow or a render large: bounded work, no shared lock,
memory bounded by the decoded frame, caches that pin nothing."""

from __future__ import annotations

import gc
import io
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagepipe.errors import ImageTooLarge, InvalidImage
from imagepipe.imaging import ImageInfo, RenderOptions, colour, probe, render_variants
from imagepipe.imaging.opening import MAX_HEADER_READS
from tests.imaging import images

ALLOWED = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")
CAP = 50_000_000
BOXES = {"large": 1200, "medium": 600, "small": 150}


class CountingFile(io.BytesIO):
    """Bytes that count every read made through them."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


class GatedFile(io.BytesIO):
    """Bytes whose reads past ``gate`` wait until ``release`` is set."""

    def __init__(self, data: bytes, gate: int) -> None:
        super().__init__(data)
        self.gate = gate
        self.reached = threading.Event()
        self.release = threading.Event()

    def read(self, size: int | None = -1) -> bytes:
        if self.tell() >= self.gate and not self.release.is_set():
            self.reached.set()
            self.release.wait(60)
        return super().read(size)


def _probe(source: Path | io.BytesIO, **caps: int) -> ImageInfo:
    return probe(source, allowed_formats=ALLOWED, max_pixels=caps.pop("cap", CAP), **caps)


# --- page and frame counts ------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True], ids=["tiff", "bigtiff"])
def test_tens_of_thousands_of_tiny_tiff_pages_are_refused_after_bounded_work(big: bool) -> None:
    # 30 000 1x1 pages are 30 000 pixels, far under the pixel cap; Pillow's own page
    # walk over them is quadratic (seconds). The count stops past the page cap.
    source = CountingFile(images.many_page_tiff(30_000, big=big))
    with pytest.raises(ImageTooLarge, match="1000 frames or pages"):
        _probe(source)
    assert source.reads < 5 * 1000


def test_pages_up_to_the_cap_are_accepted_and_counted() -> None:
    data = images.many_page_tiff(40, size=(20, 10))
    assert _probe(io.BytesIO(data), max_frames=40) == ImageInfo("TIFF", 20, 10, 40)
    with pytest.raises(ImageTooLarge, match="39 frames"):
        _probe(io.BytesIO(data), max_frames=39)
    with pytest.raises(ImageTooLarge, match="frames"):
        _probe(io.BytesIO(data), cap=20 * 10 * 39)


def test_a_tiff_page_chain_that_loops_ends() -> None:
    assert _probe(io.BytesIO(images.many_page_tiff(3, loop=True))).frames == 3


def test_gif_frames_over_the_frame_cap_are_refused_under_the_pixel_cap(tmp_path: Path) -> None:
    path = images.animated_gif(tmp_path / "a.gif", frames=30, size=(4, 4))
    assert _probe(path, max_frames=30).frames == 30
    with pytest.raises(ImageTooLarge, match="29 frames"):
        _probe(path, max_frames=29)


def test_apng_declaring_more_frames_than_the_cap_is_refused(tmp_path: Path) -> None:
    frames = [images.photo((8, 8), seed=seed) for seed in range(4)]
    path = tmp_path / "a.png"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageTooLarge, match="3 frames"):
        _probe(path, max_frames=3)


def test_animated_webp_over_the_frame_cap_is_refused(tmp_path: Path) -> None:
    frames = [images.photo((8, 8), seed=seed) for seed in range(5)]
    path = tmp_path / "a.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert _probe(path).frames == 5
    with pytest.raises(ImageTooLarge, match="4 frames"):
        _probe(path, max_frames=4)


# --- header parsing: bounded, and never one at a time -------------------------------------


def test_a_million_empty_png_chunks_are_refused_after_bounded_reads() -> None:
    # A valid PNG: Pillow would read all 10^6 chunks (seconds) before the pixels.
    source = CountingFile(images.png_with_private_chunks(1_000_000))
    with pytest.raises(InvalidImage, match="too complex"):
        _probe(source)
    assert source.reads <= MAX_HEADER_READS + 100


def test_a_few_private_chunks_are_fine() -> None:
    assert _probe(io.BytesIO(images.png_with_private_chunks(500))).format == "PNG"


def test_a_slow_header_does_not_hold_up_other_opens(tmp_path: Path) -> None:
    # One open is stuck inside Pillow's header parser (its reads wait on a gate); every
    # other probe must still complete. A lock around Image.open made them all wait.
    stuck = GatedFile(images.png_with_private_chunks(2_000), gate=400)
    others = [
        images.save(images.photo((40, 30), seed=seed), tmp_path / f"{seed}.{fmt}", format=fmt)
        for seed, fmt in enumerate(["PNG", "JPEG", "GIF", "TIFF"])
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        slow = pool.submit(_probe, stuck)
        assert stuck.reached.wait(30)
        try:
            done = [pool.submit(_probe, path) for path in others]
            # A deadlock detector, not a speed limit: these finish in milliseconds.
            assert [future.result(timeout=30).width for future in done] == [40] * 4
            assert not slow.done()
        finally:
            stuck.release.set()
        assert slow.result(timeout=30).format == "PNG"


@pytest.mark.parametrize("size", [(10_000, 10_000), (20_000, 20_000)], ids=["warning", "error"])
def test_pillow_bomb_signals_are_image_too_large_without_a_lock(
    tmp_path: Path, size: tuple[int, int]
) -> None:
    # Pillow's limit is the cap while the image is open: between it and twice that
    # Pillow warns, above it raises; both are ours.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(images.png_bytes(*size))
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(_probe, bomb, cap=60_000_000) for _ in range(8)]
        for future in futures:
            with pytest.raises(ImageTooLarge):
                future.result(timeout=30)


# --- decoded bytes and deep pixel formats -------------------------------------------------


def test_decoded_bytes_cap_counts_bytes_per_pixel_of_the_mode(tmp_path: Path) -> None:
    grey16 = images.save(images.grey16((100, 50)), tmp_path / "g.png")  # 2 bytes a pixel
    rgb = images.save(images.photo((100, 50)), tmp_path / "c.png")  # 4 bytes a pixel
    assert _probe(grey16, max_decoded_bytes=10_000).format == "PNG"
    assert _probe(rgb, max_decoded_bytes=20_000).format == "PNG"
    with pytest.raises(ImageTooLarge, match="bytes decoded"):
        _probe(rgb, max_decoded_bytes=19_999)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path, fmt: str) -> None:
    path = images.save(images.grey16((2400, 1600)), tmp_path / "g", format=fmt)
    previews = render_variants(path, RenderOptions(boxes=BOXES)).variants
    large = Image.open(io.BytesIO(previews[0].data))
    assert (large.size, large.mode) == ((1200, 800), "L")
    corners = [large.getpixel(xy) for xy in [(0, 0), (1199, 799), (600, 400)]]
    assert corners[0] < 8 and corners[1] > 247 and 110 < corners[2] < 145  # type: ignore[operator]


@pytest.mark.parametrize("alpha", [False, True], ids=["rgb16", "rgba16"])
def test_16_bit_colour_png_renders(tmp_path: Path, alpha: bool) -> None:
    path = tmp_path / "c16.png"
    path.write_bytes(images.png16((1800, 1200), alpha=alpha))
    previews = render_variants(path, RenderOptions(boxes=BOXES)).variants
    assert [(p.width, p.height, p.format) for p in previews] == [
        (1200, 800, "PNG" if alpha else "JPEG"),
        (600, 400, "PNG" if alpha else "JPEG"),
        (150, 100, "PNG" if alpha else "JPEG"),
    ]


# --- ICC profiles ---------------------------------------------------------------------------


def _mean_rgb(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))


def test_an_absurdly_large_icc_profile_is_ignored(tmp_path: Path) -> None:
    base = images.photo((300, 200))
    rendered = {}
    for name, profile in {
        "none": None,
        "small": images.adobe_rgb_like_profile(),
        "huge": images.adobe_rgb_like_profile(padding=colour.MAX_ICC_BYTES),
    }.items():
        path = images.save(base, tmp_path / f"{name}.jpg", quality=95, icc_profile=profile)
        result = render_variants(path, RenderOptions(boxes={"large": 1200}))
        rendered[name] = _mean_rgb(result.variants[0].data)
    assert np.abs(rendered["small"] - rendered["none"]).max() > 3  # a profile that is used
    assert np.abs(rendered["huge"] - rendered["none"]).max() < 1  # the same one, ignored


def test_the_transform_cache_keeps_no_profile_bytes() -> None:
    image = Image.new("RGB", (8, 8), (200, 100, 50))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(6):
            profile = images.adobe_rgb_like_profile(padding=512 * 1024, name=f"big {index}")
            converted = colour.to_srgb(image, icc_profile=profile, undo_cmyk_inversion=False)
            assert converted.getpixel((0, 0)) != (200, 100, 50)  # the profile was applied
            del profile, converted
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert retained < 256 * 1024  # six 512 KB profiles seen, none kept
