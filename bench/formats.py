"""Output formats side by side, and the whole job with the default extra formats.

    .venv/bin/python -m bench.formats [--reps N]

1. Encoders: for a photo-like and a graphic image (2400x1800), at each preview size,
   the same resized image (LANCZOS from the full-resolution original: the reference)
   is encoded by each candidate setting — JPEG q85, PNG level 3, WebP q80 at methods
   2/4/6, AVIF q60 at speeds 6/8/10. Reported: encode ms (median of the rounds),
   bytes, and SSIM of the decoded result against the reference.
2. As served: the same two images through imagepipe's own pipeline (decode, resize
   cascade, colour, then each format with the settings of imaging/formats.py), each
   format at each preview size side by side: encode ms, bytes, and SSIM against the
   full-resolution reference (LANCZOS from the original), so resize and codec together.
3. Whole job: a 12 MP JPEG, every variant in JPEG + WebP (the defaults), and in JPEG +
   WebP + AVIF; imagepipe's ``render_variants`` against pyvips producing the same
   renditions (shrink-on-load, cascade, jpegsave + webpsave + heifsave AV1 at the same
   qualities, WebP effort and AVIF speed).

One core (bench.pipeline pins it). Results: markdown on stdout and
``bench/results/formats.json``.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from skimage.metrics import structural_similarity

from bench.pipeline import photo_like, pyvips, sample_path, save
from bench.timing import median_ms
from imagepipe.imaging import RenderOptions, render_variants
from imagepipe.imaging.cascade import cascade
from imagepipe.imaging.decode import decode
from imagepipe.imaging.encode import encode
from imagepipe.imaging.formats import AVIF_SPEED, FORMATS, WEBP_METHOD, FormatName
from imagepipe.imaging.geometry import fit

BOXES = {"small": 150, "medium": 600, "large": 1200}
SIZE = (2400, 1800)
# name -> (Pillow format, save options)
CANDIDATES: dict[str, tuple[str, dict[str, Any]]] = {
    "JPEG q85": ("JPEG", {"quality": 85, "subsampling": "4:2:0"}),
    "PNG l3": ("PNG", {"compress_level": 3}),
    "WEBP q80 m2": ("WEBP", {"quality": 80, "method": 2}),
    "WEBP q80 m4": ("WEBP", {"quality": 80, "method": 4}),
    "WEBP q80 m6": ("WEBP", {"quality": 80, "method": 6}),
    "AVIF q60 s6": ("AVIF", {"quality": 60, "speed": 6, "subsampling": "4:2:0"}),
    "AVIF q60 s8": ("AVIF", {"quality": 60, "speed": 8, "subsampling": "4:2:0"}),
    "AVIF q60 s10": ("AVIF", {"quality": 60, "speed": 10, "subsampling": "4:2:0"}),
}


def graphic(size: tuple[int, int]) -> Image.Image:
    """Flat colours, hard edges and thin lines: a screenshot, chart or logo."""
    width, height = size
    image = Image.new("RGB", size, (245, 245, 240))
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(7)
    for index in range(60):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(20, width // 4)), y0 + int(rng.integers(10, height // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if index % 3 == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif index % 3 == 1:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 6)))
        else:
            draw.text((x0, y0), "imagepipe 0123", fill=colour, font_size=int(rng.integers(12, 60)))
    return image


def ssim(reference: Image.Image, data: bytes) -> float:
    with Image.open(io.BytesIO(data)) as decoded:
        received = np.asarray(decoded.convert("RGB"))
    return float(
        structural_similarity(np.asarray(reference), received, channel_axis=2, data_range=255)
    )


def encoders(reps: int) -> dict[str, Any]:
    sources = {"photo": photo_like(SIZE, seed=11), "graphic": graphic(SIZE)}
    rows: dict[str, Any] = {}
    for kind, source in sources.items():
        for variant, box in BOXES.items():
            reference = source.resize(fit(source.size, box), Image.Resampling.LANCZOS)
            for name, (fmt, options) in CANDIDATES.items():
                times, data = [], b""
                for _ in range(reps):
                    buffer = io.BytesIO()
                    start = time.perf_counter()
                    reference.save(buffer, fmt, **options)
                    times.append(time.perf_counter() - start)
                    data = buffer.getvalue()
                rows[f"{kind}/{variant}/{name}"] = {
                    "image": kind,
                    "variant": variant,
                    "size": list(reference.size),
                    "candidate": name,
                    "ms": round(statistics.median(times) * 1000, 2),
                    "bytes": len(data),
                    "ssim": round(ssim(reference, data), 4),
                }
            print(f"  {kind} {variant} done", file=sys.stderr, flush=True)
    return rows


def _median_ms(run: Callable[[], object], reps: int) -> float:
    return round(median_ms(run, reps), 1)


# The formats of section 2, as the worker writes them (its default qualities).
SERVED: tuple[FormatName, ...] = ("JPEG", "PNG", "WEBP", "AVIF")


def served(reps: int) -> dict[str, Any]:
    """Each format of imagepipe's real previews against the full-resolution reference."""
    options = RenderOptions(boxes=BOXES)
    rows: dict[str, Any] = {}
    for kind, source in {"photo": photo_like(SIZE, seed=11), "graphic": graphic(SIZE)}.items():
        lossless = io.BytesIO()
        source.save(lossless, "PNG", compress_level=1)
        boxes = sorted(BOXES.items(), key=lambda item: item[1], reverse=True)
        decoded = decode(lossless, largest_box=boxes[0][1], limits=options.limits)
        for variant, image in cascade(decoded, boxes):
            reference = source.resize(image.size, Image.Resampling.LANCZOS)
            for fmt in SERVED:
                quality = options.quality(fmt)
                times, data = [], b""
                for _ in range(reps):
                    start = time.perf_counter()
                    data = encode(image, fmt, quality=quality)
                    times.append(time.perf_counter() - start)
                rows[f"{kind}/{variant}/{fmt}"] = {
                    "image": kind,
                    "variant": variant,
                    "size": list(image.size),
                    "format": fmt,
                    "settings": FORMATS[fmt].save_options(quality),
                    "ms": round(statistics.median(times) * 1000, 2),
                    "bytes": len(data),
                    "ssim": round(ssim(reference, data), 4),
                }
        print(f"  served {kind} done", file=sys.stderr, flush=True)
    return rows


def whole_job(reps: int, extra_formats: tuple[FormatName, ...]) -> dict[str, Any]:
    path = sample_path("jpeg-12mp")
    options = RenderOptions(boxes=BOXES, extra_formats=extra_formats)

    def imagepipe() -> None:
        render_variants(path, options)

    def vips() -> None:
        assert pyvips is not None
        boxes = sorted(BOXES.values(), reverse=True)
        image = pyvips.Image.thumbnail(str(path), boxes[0]).copy_memory()
        for index, box in enumerate(boxes):
            if index:
                image = image.resize(box / max(image.width, image.height)).copy_memory()
            image.jpegsave_buffer(Q=options.jpeg_quality)
            if "WEBP" in extra_formats:
                image.webpsave_buffer(Q=options.webp_quality, effort=WEBP_METHOD)
            if "AVIF" in extra_formats:
                # libvips' effort is libavif's speed the other way round (0-9).
                image.heifsave_buffer(
                    compression="av1", Q=options.avif_quality, effort=9 - AVIF_SPEED
                )

    imagepipe()  # warm up both (imports, caches)
    result: dict[str, Any] = {"renditions": " + ".join(("JPEG", *extra_formats)) + " x 3 variants"}
    if pyvips is None:
        result["imagepipe_ms"] = _median_ms(imagepipe, reps)
        return result
    vips()
    pipe_times, vips_times = [], []
    for _ in range(reps):  # interleaved, so both see the same machine
        pipe_times.append(_median_ms(imagepipe, 1))
        vips_times.append(_median_ms(vips, 1))
    timings = render_variants(path, options).timings
    result.update(
        imagepipe_ms=statistics.median(pipe_times),
        pyvips_ms=statistics.median(vips_times),
        stages_ms={stage: round(seconds * 1000, 1) for stage, seconds in timings.items()},
    )
    result["speedup_vs_pyvips"] = round(result["pyvips_ms"] / result["imagepipe_ms"], 2)
    return result


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| image | variant | size | " + " | ".join(CANDIDATES) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in CANDIDATES) + " |",
    ]
    lines += table_rows(results["encoders"], CANDIDATES)
    lines += ["", *served_markdown(results["served"]), ""]
    for job in results["whole_jobs"]:
        lines.append(
            f"Whole job, 12 MP JPEG, {job['renditions']}: imagepipe {job['imagepipe_ms']} ms"
            + (
                f", pyvips {job['pyvips_ms']} ms, {job['speedup_vs_pyvips']}x; "
                f"imagepipe stages {job['stages_ms']}"
                if "pyvips_ms" in job
                else " (pyvips not installed)"
            )
        )
        lines.append("")
    return "\n".join(lines).rstrip("\n")


def served_markdown(rows: dict[str, Any]) -> list[str]:
    """Section 2: one row per image and size, one column per format (ms, KB, SSIM)."""
    first = {fmt: rows[f"photo/large/{fmt}"]["settings"] for fmt in SERVED}
    settings = ", ".join(
        f"{fmt} " + " ".join(f"{k}={v}" for k, v in options.items())
        for fmt, options in first.items()
    )
    lines = [
        f"As served (imagepipe's previews; {settings}); SSIM against the full-resolution "
        "reference:",
        "",
        "| image | variant | size | " + " | ".join(SERVED) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in SERVED) + " |",
    ]
    return lines + table_rows(rows, SERVED)


def table_rows(rows: dict[str, Any], columns: Sequence[str]) -> list[str]:
    """One markdown row per image and size; a cell per column: ms, KB, SSIM."""
    lines = []
    for kind in ("photo", "graphic"):
        for variant in BOXES:
            cells = [rows[f"{kind}/{variant}/{name}"] for name in columns]
            size = "x".join(map(str, cells[0]["size"]))
            lines.append(
                f"| {kind} | {variant} | {size} | "
                + " | ".join(
                    f"{c['ms']} ms, {c['bytes'] / 1024:.1f} KB, {c['ssim']}" for c in cells
                )
                + " |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args(argv)
    results = {
        "encoders": encoders(args.reps),
        "served": served(args.reps),
        "whole_jobs": [whole_job(args.reps, ("WEBP",)), whole_job(args.reps, ("WEBP", "AVIF"))],
    }
    save("formats", results)
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
