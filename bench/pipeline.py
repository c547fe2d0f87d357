"""Speed of render_variants against the usual alternatives, on one core.

    .venv/bin/python -m bench.pipeline [--reps N] [--only NAME ...]

Methods, run interleaved (round-robin within each repetition) on the same files:

* imagepipe   render_variants (one scaled decode, cascade)
* tutorial    reopen + ``thumbnail()`` + save, once per size
* lanczos     decode once at full size, LANCZOS-resize each size from it
* pyvips      ``thumbnail`` (shrink-on-load) to the largest size, then cascade
* floor       ``draft()`` to the largest box + ``load()``: the decode any method pays
* floor-clean the decode at the DCT scale imagepipe picks (any M/8, never a lone 1/4
              or 1/8, see imaging/resample.py): how much of imagepipe's time is that

All write the format imagepipe writes (JPEG q85, or PNG for transparent images).
Results: a markdown table on stdout and ``bench/results/pipeline.json``.

The corpus (deterministic, photo-like: multi-octave smooth noise, hard-edged shapes,
sensor-like grain; JPEGs at q92 ~2.4 bits/pixel, like phone photos) is generated once
into $IMAGEPIPE_BENCH_CACHE (default: <tmp>/imagepipe-bench), outside the repository.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# One core for everything, set before pyvips starts its thread pool so that its
# workers inherit the affinity; and one libvips worker thread.
_CPU = max(os.sched_getaffinity(0))
os.sched_setaffinity(0, {_CPU})
os.environ.setdefault("VIPS_CONCURRENCY", "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, features  # noqa: E402

from imagepipe.imaging import (  # noqa: E402
    RenderOptions,
    render_variants,
    scaled_jpeg,
)
from imagepipe.imaging.geometry import fit  # noqa: E402
from imagepipe.imaging.resample import draft_request  # noqa: E402

try:
    import pyvips

    pyvips.cache_set_max(0)  # no reuse of decoded pixels between repetitions
except (ImportError, OSError) as exc:  # OSError: binding found, libvips not
    pyvips = None
    PYVIPS_ERROR = f"{type(exc).__name__}: {exc}"
else:
    PYVIPS_ERROR = ""

BOXES = {"small": 150, "medium": 600, "large": 1200}
# The base format only: pyvips makes the same three JPEGs (or PNGs). The whole job with
# the extra formats is measured in bench/formats.py.
OPTIONS = RenderOptions(boxes=BOXES, extra_formats=())
RESULTS = Path(__file__).parent / "results"


def save(name: str, results: dict[str, Any]) -> None:
    """Write a suite's results, dated (docs/benchmarks.md says when each was run)."""
    results = {**results, "measured_on": f"{datetime.now(UTC):%Y-%m-%d}"}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")


R = Image.Resampling


# --------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Sample:
    name: str
    size: tuple[int, int]
    format: str  # "JPEG" or "PNG"
    alpha: bool = False
    seed: int = 1


CORPUS = {
    "jpeg-12mp": Sample("jpeg-12mp", (4000, 3000), "JPEG"),
    "jpeg-24mp": Sample("jpeg-24mp", (6000, 4000), "JPEG", seed=2),
    "png-rgba-12mp": Sample("png-rgba-12mp", (4000, 3000), "PNG", alpha=True, seed=3),
    "jpeg-50mp": Sample("jpeg-50mp", (8660, 5773), "JPEG", seed=4),
    "png-50mp": Sample("png-50mp", (8660, 5773), "PNG", seed=5),
    "png-rgba-50mp": Sample("png-rgba-50mp", (8660, 5773), "PNG", alpha=True, seed=6),
}


def cache_dir() -> Path:
    default = Path(tempfile.gettempdir()) / "imagepipe-bench"
    path = Path(os.environ.get("IMAGEPIPE_BENCH_CACHE", default))
    path.mkdir(parents=True, exist_ok=True)
    return path


def sample_path(name: str) -> Path:
    """Path of a corpus file, generating it on first use."""
    sample = CORPUS[name]
    suffix = ".jpg" if sample.format == "JPEG" else ".png"
    path = cache_dir() / f"{name}-v1{suffix}"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        image = photo_like(sample.size, seed=sample.seed, alpha=sample.alpha)
        tmp = path.with_suffix(".tmp")
        if sample.format == "JPEG":
            image.save(tmp, "JPEG", quality=92)
        else:
            image.save(tmp, "PNG", compress_level=1)
        tmp.replace(path)
    return path


def photo_like(size: tuple[int, int], *, seed: int, alpha: bool = False) -> Image.Image:
    """A deterministic image with the statistics of a photo, not of a test card."""
    width, height = size
    rng = np.random.default_rng(seed)
    acc = np.full((height, width, 3), 128, np.float32)
    # Octaves of smooth noise, from sky-sized gradients down to 3-pixel texture.
    for cell, amplitude in ((width // 3, 60), (width // 12, 30), (width // 48, 16),
                            (width // 200, 12), (8, 12), (3, 6)):  # fmt: skip
        _add_octave(acc, rng, max(cell, 3), amplitude)
    image = Image.fromarray(np.clip(acc, 0, 255).astype(np.uint8))
    del acc
    _draw_shapes(image, rng)
    pixels = np.asarray(image).copy()
    del image
    for top in range(0, height, 1024):  # grain, in bands to bound memory
        band = pixels[top : top + 1024]
        grain = rng.normal(0, 5, band.shape).astype(np.float32)
        band[...] = np.clip(band + grain, 0, 255).astype(np.uint8)
    rgb = Image.fromarray(pixels)
    if not alpha:
        return rgb
    # A cut-out: opaque subject with a feathered edge on a transparent background.
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((width * 0.15, height * 0.1, width * 0.85, height * 0.9), 255)
    rgb.putalpha(mask.filter(ImageFilter.GaussianBlur(width / 200)))
    return rgb


def _add_octave(acc: np.ndarray, rng: np.random.Generator, cell: int, amplitude: float) -> None:
    height, width, _ = acc.shape
    grid = rng.normal(0, 1, (height // cell + 2, width // cell + 2, 3)).astype(np.float32)
    for channel in range(3):
        small = Image.fromarray(np.ascontiguousarray(grid[..., channel]), "F")
        acc[..., channel] += np.asarray(small.resize((width, height), R.BICUBIC)) * amplitude


def _draw_shapes(image: Image.Image, rng: np.random.Generator) -> None:
    width, height = image.size
    draw = ImageDraw.Draw(image)
    for _ in range(80):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(width // 60, width // 6))
        y1 = y0 + int(rng.integers(height // 60, height // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.random()
        if kind < 0.4:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        elif kind < 0.7:
            draw.rectangle((x0, y0, x1, y1), outline=colour, width=int(rng.integers(1, 8)))
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 10)))


# --------------------------------------------------------------------------- methods


def _save(image: Image.Image, alpha: bool) -> bytes:
    buffer = io.BytesIO()
    if alpha:
        image.save(buffer, "PNG", compress_level=3)
    else:
        image.convert("RGB").save(buffer, "JPEG", quality=OPTIONS.jpeg_quality)
    return buffer.getvalue()


def run_imagepipe(path: Path, alpha: bool) -> list[bytes]:
    return [preview.data for preview in render_variants(path, OPTIONS).variants]


def run_tutorial(path: Path, alpha: bool) -> list[bytes]:
    out = []
    for box in sorted(BOXES.values(), reverse=True):
        with Image.open(path) as image:
            image.thumbnail((box, box))
            out.append(_save(image, alpha))
    return out


def run_lanczos(path: Path, alpha: bool) -> list[bytes]:
    with Image.open(path) as image:
        image.load()
        return [
            _save(image.resize(fit(image.size, box), R.LANCZOS), alpha)
            for box in sorted(BOXES.values(), reverse=True)
        ]


def run_pyvips(path: Path, alpha: bool) -> list[bytes]:
    assert pyvips is not None
    boxes = sorted(BOXES.values(), reverse=True)

    def save(image: Any) -> bytes:
        if alpha:
            return bytes(image.pngsave_buffer(compression=3))
        return bytes(image.jpegsave_buffer(Q=OPTIONS.jpeg_quality))

    # Materialise each step: libvips is lazy, and a sequential JPEG source cannot be
    # read twice.
    image = pyvips.Image.thumbnail(str(path), boxes[0]).copy_memory()
    out = [save(image)]
    for box in boxes[1:]:
        image = image.resize(box / max(image.width, image.height)).copy_memory()
        out.append(save(image))
    return out


def run_floor(path: Path, alpha: bool) -> list[bytes]:
    with Image.open(path) as image:
        image.draft(image.mode, fit(image.size, max(BOXES.values())))
        image.load()
    return []


def run_floor_clean(path: Path, alpha: bool) -> list[bytes]:
    with Image.open(path) as image:
        target = fit(image.size, max(BOXES.values()))
        if image.format == "JPEG" and scaled_jpeg.decode(path, image.mode, image.size, target):
            return []  # at the M/8 scale imagepipe picks
        image.draft(image.mode, draft_request(image.size, target))
        image.load()
    return []


METHODS: dict[str, Callable[[Path, bool], list[bytes]]] = {
    "imagepipe": run_imagepipe,
    "tutorial": run_tutorial,
    "lanczos": run_lanczos,
    "pyvips": run_pyvips,
    "floor": run_floor,
    "floor-clean": run_floor_clean,
}


# --------------------------------------------------------------------------- runner


def measure(name: str, reps: int) -> dict[str, Any]:
    sample = CORPUS[name]
    path = sample_path(name)
    methods = {k: v for k, v in METHODS.items() if k != "pyvips" or pyvips is not None}
    cpu: dict[str, list[float]] = {method: [] for method in methods}
    wall: dict[str, list[float]] = {method: [] for method in methods}
    # Every stage the render reports (decode, resize, encode, qa, placeholder, ...).
    stages: dict[str, list[float]] = {}
    for run in methods.values():  # warm-up: imports, page cache, lazy init
        run(path, sample.alpha)
    for _ in range(reps):
        for method, run in methods.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            run(path, sample.alpha)
            cpu[method].append(time.process_time() - start_cpu)
            wall[method].append(time.perf_counter() - start_wall)
        for stage, seconds in render_variants(path, OPTIONS).timings.items():
            stages.setdefault(stage, []).append(seconds)
    # CPU time of this process is the primary measure: on a shared machine the wall
    # clock also counts time spent waiting for the (pinned) core.
    medians = {method: statistics.median(times) * 1000 for method, times in cpu.items()}
    ours = medians["imagepipe"]
    return {
        "file": {
            "size": list(sample.size),
            "format": sample.format,
            "alpha": sample.alpha,
            "bytes": path.stat().st_size,
            "bits_per_pixel": round(path.stat().st_size * 8 / (sample.size[0] * sample.size[1]), 2),
        },
        "reps": reps,
        "median_ms": {k: round(v, 1) for k, v in medians.items()},
        "median_wall_ms": {k: round(statistics.median(v) * 1000, 1) for k, v in wall.items()},
        "images_per_s_per_core": {
            k: round(1000 / v, 2) for k, v in medians.items() if not k.startswith("floor")
        },
        "imagepipe_stage_wall_ms": {
            k: round(statistics.median(v) * 1000, 1) for k, v in stages.items()
        },
        "speedup_vs": {
            k: round(v / ours, 2)
            for k, v in medians.items()
            if k != "imagepipe" and not k.startswith("floor")
        },
        "imagepipe_over_floor": round(ours / medians["floor"], 2),
        "imagepipe_over_floor_clean": round(ours / medians["floor-clean"], 2),
    }


def environment() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {
        "cpu": cpu,
        "pinned_cpu": _CPU,
        "python": platform.python_version(),
        "pillow": Image.__version__,
        "libjpeg_turbo": features.version("libjpeg_turbo"),
        "zlib": features.version("zlib"),
        "pyvips": None if pyvips is None else pyvips.__version__,
        "libvips": None if pyvips is None else ".".join(str(pyvips.version(i)) for i in range(3)),
        "pyvips_error": PYVIPS_ERROR or None,
        "load_average_at_end": list(os.getloadavg()),
    }


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| image | imagepipe | tutorial | lanczos | pyvips | floor | floor-clean | vs tutorial "
        "| vs pyvips | / floor | / floor-clean | stages d/r/e |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, result in results.items():
        ms = result["median_ms"]
        speed = result["speedup_vs"]
        stage = result["imagepipe_stage_wall_ms"]

        def cell(key: str, table: dict[str, float], unit: str) -> str:
            return f"{table[key]}{unit}" if key in table else "n/a"

        lines.append(
            f"| {name} ({result['file']['bits_per_pixel']} bpp) | {ms['imagepipe']} ms "
            f"({result['images_per_s_per_core']['imagepipe']}/s) | {cell('tutorial', ms, ' ms')} "
            f"| {cell('lanczos', ms, ' ms')} | {cell('pyvips', ms, ' ms')} | {ms['floor']} ms "
            f"| {ms['floor-clean']} ms | {cell('tutorial', speed, 'x')} "
            f"| {cell('pyvips', speed, 'x')} | {result['imagepipe_over_floor']}x "
            f"| {result['imagepipe_over_floor_clean']}x "
            f"| {stage['decode']}/{stage['resize']}/{stage['encode']} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=0, help="repetitions (default: by size)")
    parser.add_argument("--only", nargs="*", choices=sorted(CORPUS), help="subset of images")
    args = parser.parse_args(argv)
    names = args.only or ["jpeg-12mp", "jpeg-24mp", "png-rgba-12mp", "jpeg-50mp"]
    if pyvips is None:
        print(f"WARNING: pyvips unavailable ({PYVIPS_ERROR}); SKIPPING the pyvips column.")
    results = {}
    for name in names:
        reps = args.reps or (15 if "12mp" in name and "png" not in name else 7)
        print(f"{name}: {reps} repetitions ...", file=sys.stderr, flush=True)
        results[name] = measure(name, reps)
    report = {"environment": environment(), "boxes": BOXES, "results": results}
    save("pipeline", report)
    print(markdown(results))
    print(f"\nms = median process CPU time (wall clock in the JSON); stages are wall clock."
          f"\nvs X = X's time / imagepipe's time; / floor = imagepipe's time / decode floor."
          f"\nenvironment: {json.dumps(report['environment'])}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
