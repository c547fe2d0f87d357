"""The small modules on their own: sniffing, frame counting, geometry, resampling."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageChops

from imagepipe.imaging import frames, geometry, resample, scaled_jpeg, sniff
from tests.imaging import images


@pytest.mark.parametrize(
    ("head", "name"),
    [
        (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", "PNG"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF", "JPEG"),
        (b"GIF89a\x01\0\x01\0", "GIF"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "WEBP"),
        (b"II*\0\x08\0\0\0", "TIFF"),
        (b"BM" + b"\0" * 12 + b"\x28\0\0\0", "BMP"),
        (b"\0\0\0\x1cftypavif", "AVIF"),
        (b"\0\0\0\x18ftypheic", "HEIF"),
        (b"%PDF-1.4", "PDF"),
        (b"%!PS-Adobe-3.0 EPSF-3.0", "EPS"),
        (b"\xef\xbb\xbf  <svg>", "SVG"),
        (b"<?xml version='1.0'?>\n<!-- c -->\n<svg>", "SVG"),
        (b"<?xml version='1.0'?><note/>", "XML"),
        (b"\n<!doctype HTML><html>", "HTML"),
        (b"PK\x03\x04", "ZIP"),
        (b"BMW is a car maker", "text"),
        ("héllo wörld".encode()[:8], "text"),
        (b"", "empty file"),
        (bytes(range(256)), None),
    ],
)
def test_sniff(head: bytes, name: str | None) -> None:
    assert sniff.detect(head) == name


def test_gif_frame_walk_stops_past_either_cap(tmp_path: Path) -> None:
    path = images.animated_gif(tmp_path / "a.gif", frames=40, size=(8, 8))
    with Image.open(path) as image, path.open("rb") as fp:
        assert frames.walk(image, fp, max_frames=1000, max_pixels=10**6) == frames.Walk(
            40, 40 * 64, (8, 8)
        )
        assert frames.walk(image, fp, max_frames=5, max_pixels=10**6).frames == 6
        assert frames.walk(image, fp, max_frames=1000, max_pixels=64 * 9).frames == 10
        assert fp.tell() == 0  # position restored
        assert image.n_frames == 40  # Pillow agrees on the full count


def test_gif_frame_walk_grows_the_canvas_as_pillow_does(tmp_path: Path) -> None:
    data = images.gif_with_frames((10, 10), [(0, 0, 10, 10), (5, 0, 20, 4), (0, 0, 3, 3)])
    with Image.open(io.BytesIO(data)) as image:
        walked = frames.walk(image, io.BytesIO(data), max_frames=10, max_pixels=10**6)
        assert walked == frames.Walk(3, 100 + 250 + 250, (25, 10))
        image.seek(2)
        assert image.size == (25, 10)


def test_frame_walk_of_single_images(tmp_path: Path) -> None:
    path = images.save(images.photo((8, 8)), tmp_path / "a.gif")
    with Image.open(path) as image, path.open("rb") as fp:
        assert frames.walk(image, fp, max_frames=10, max_pixels=100) == frames.Walk(1, 64, (8, 8))


@pytest.mark.parametrize(
    ("size", "box", "expected"),
    [
        ((4000, 3000), 1200, (1200, 900)),
        ((3000, 4000), 1200, (900, 1200)),
        ((2000, 1500), 150, (150, 113)),  # 112.5 rounds up
        ((1200, 900), 1200, (1200, 900)),
        ((800, 600), 1200, (800, 600)),
        ((10000, 50), 150, (150, 1)),
        ((1, 5000), 1200, (1, 1200)),
        ((1, 1), 150, (1, 1)),
    ],
)
def test_fit(size: tuple[int, int], box: int, expected: tuple[int, int]) -> None:
    assert geometry.fit(size, box) == expected


@pytest.mark.parametrize("orientation", range(1, 9))
def test_displayed_and_stored_sizes(orientation: int) -> None:
    swapped = orientation >= 5
    assert geometry.displayed((40, 30), orientation) == ((30, 40) if swapped else (40, 30))
    assert geometry.stored(geometry.displayed((40, 30), orientation), orientation) == (40, 30)


@pytest.mark.parametrize(
    ("size", "target", "expected"),
    [
        ((4000, 3000), (1200, 900), (2000, 1500)),  # 1/2: always clean
        ((8660, 5773), (1200, 800), (4330, 2886)),  # not 1/4: only 1.8x would remain
        ((6000, 4000), (1200, 800), (3000, 2000)),
        ((16000, 12000), (1200, 900), (4000, 3000)),  # 1/4 leaves 3.3x: allowed
        ((4000, 3000), (150, 113), (500, 375)),  # 1/8 leaves 3.3x: allowed
        ((2000, 1500), (1200, 900), (2000, 1500)),  # no scaling possible
    ],
)
def test_draft_request(
    size: tuple[int, int], target: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert resample.draft_request(size, target) == expected


@pytest.mark.parametrize(
    ("size", "target", "expected"),
    [
        ((4000, 3000), (1200, 900), 3),  # 3/8: 1500x1125, 1.25x left to the filter
        ((2000, 1500), (1200, 900), 5),  # 5/8: 1250x938, where no power of two fits
        ((6000, 4000), (1200, 800), 4),  # 3/8 would leave 1.9x: 1/2 and its box reduce
        ((8660, 5773), (1200, 800), 4),
        ((16000, 12000), (1200, 900), 2),  # 1/4 leaves 3.3x: allowed
        ((4000, 3000), (150, 113), 1),  # 1/8 leaves 3.3x: allowed
        ((4000, 3000), (2000, 1500), 4),  # exactly 1/2
        ((4000, 3000), (3999, 2999), 8),  # no scaling possible
        ((1, 1), (1, 1), 8),  # a finer scale would not be smaller
    ],
)
def test_dct_eighths(size: tuple[int, int], target: tuple[int, int], expected: int) -> None:
    assert resample.dct_eighths(size, target) == expected


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize(
    ("target", "size"),
    [
        ((900, 675), (900, 675)),  # 5/8 (1000x750), then the linear pass
        ((300, 225), (800, 600)),  # 1/2 leaves 2.7x: the box reduce and filter's turn
        ((1600, 1200), (1600, 1200)),  # no scaling
    ],
)
def test_scaled_jpeg_decodes_at_the_scale_chosen(
    tmp_path: Path, mode: str, target: tuple[int, int], size: tuple[int, int]
) -> None:
    path = images.save(images.photo((1600, 1200)).convert(mode), tmp_path / "a.jpg")
    with Image.open(path) as image:
        image.load()
        decoded = scaled_jpeg.decode(path, image.mode, image.size, target)
        assert decoded is not None
        assert (decoded.mode, decoded.size) == (mode, size)
        if size == image.size:  # the same pixels Pillow decodes
            assert ImageChops.difference(decoded, image).getbbox() is None


def test_the_linear_pass_shows_what_pillows_filter_shows(tmp_path: Path) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    with Image.open(path) as image:
        # DCT 1/2 (800x600), then 1.14x left: the linear pass.
        decoded = scaled_jpeg.decode(path, image.mode, image.size, (700, 525))
        assert decoded is not None and decoded.size == (700, 525)
        image.draft("RGB", (800, 600))
        image.load()
        pillow = image.resize((700, 525), Image.Resampling.BILINEAR)

    def mean_difference(a: Image.Image, b: Image.Image) -> float:
        return float(np.asarray(ImageChops.difference(a, b), dtype=np.float64).mean())

    # Of 255: about 0.3 for the same picture, over 1 for one shifted by a pixel.
    shifted = pillow.transform(pillow.size, Image.Transform.AFFINE, (1, 0, 1, 0, 1, 0))
    assert mean_difference(shifted, pillow) > 1.0
    assert mean_difference(decoded, pillow) < 0.75


@pytest.mark.parametrize(
    ("source", "size", "expected"),
    [
        ((1500, 1125), (1200, 900), True),
        ((1500, 1125), (1000, 750), True),  # exactly 1.5x
        ((1500, 1125), (999, 749), False),  # more than a linear pass does well
        ((1200, 900), (1200, 900), False),  # nothing to do
        ((1200, 900), (1300, 900), False),  # never an enlargement
    ],
)
def test_takes_linear(source: tuple[int, int], size: tuple[int, int], expected: bool) -> None:
    assert resample.takes_linear(source, size) is expected
    pixels = np.zeros((source[1], source[0], 3), dtype=np.uint8)
    if expected:
        assert resample.linear(pixels, size).shape == (size[1], size[0], 3)
    else:
        with pytest.raises(ValueError, match="not a shrink"):
            resample.linear(pixels, size)


def test_the_linear_pass_runs_on_the_calling_thread_only() -> None:
    # A render owns one core (the prefork pool): OpenCV's own pool would contend.
    assert resample.opencv().getNumThreads() == 1


def test_scaled_jpeg_leaves_cmyk_and_damaged_files_to_pillow(tmp_path: Path) -> None:
    cmyk = images.save(images.photo((64, 48)).convert("CMYK"), tmp_path / "c.jpg")
    with Image.open(cmyk) as image:
        assert scaled_jpeg.decode(cmyk, image.mode, image.size, (32, 24)) is None
    whole = images.save(images.photo((640, 480)), tmp_path / "a.jpg").read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole[: len(whole) // 2])
    with Image.open(cut) as image:
        assert scaled_jpeg.decode(cut, image.mode, image.size, (320, 240)) is None


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_draft_request_is_honoured_by_pillow(tmp_path: Path, scale: int) -> None:
    path = images.save(images.photo((1600, 1200)), tmp_path / "a.jpg")
    with Image.open(path) as image:
        request = (1600 // scale, 1200 // scale)
        image.draft(image.mode, request)
        assert image.size == request


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "CMYK"])
@pytest.mark.parametrize(
    ("size", "target"),
    [((1000, 700), (333, 233)), ((1000, 700), (500, 350)), ((999, 701), (100, 70))],
)
def test_shrinks_keep_mode_and_hit_the_size(
    mode: str, size: tuple[int, int], target: tuple[int, int]
) -> None:
    image = images.photo(size).convert(mode)
    for shrink in (resample.first_shrink, resample.cascade_shrink):
        out = shrink(image, target)
        assert (out.mode, out.size) == (mode, target)


def test_same_size_is_returned_as_is() -> None:
    image = images.photo((50, 40))
    assert resample.first_shrink(image, (50, 40)) is image
    assert resample.cascade_shrink(image, (50, 40)) is image


def test_strip_reduce_equals_whole_image_reduce() -> None:
    image = images.photo((301, 1030)).convert("RGBA")
    image.putalpha(images.photo((301, 1030)).convert("L"))
    whole = image.convert("RGBa").reduce((3, 3))
    assert resample._reduce(image, 3, 3).tobytes() == whole.tobytes()


def test_opencv_is_loaded_only_by_what_shrinks_jpegs() -> None:
    # 16 MB of resident memory: the API and the worker's modules import the imaging
    # package without it; a worker loads it while warming up (worker.tasks._warm).
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, imagepipe.api.app, imagepipe.worker.tasks;"
         "print('cv2' in sys.modules)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    assert loaded == "False"


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_a_consumed_source_is_released_once_its_box_reduce_exists(mode: str) -> None:
    # At the pixel cap the source is most of the peak: the filter's buffers are made
    # after it is gone. Without ``consume`` it is left to the caller.
    kept, consumed = (images.photo((800, 600)).convert(mode) for _ in range(2))
    expected = resample.first_shrink(kept, (100, 75))
    got = resample.first_shrink(consumed, (100, 75), consume=True)
    assert ImageChops.difference(got, expected).getbbox() is None
    kept.load()  # still open
    with pytest.raises(ValueError, match="closed image"):
        consumed.load()
