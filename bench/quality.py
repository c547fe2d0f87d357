"""Quality of the fast path against a full-resolution LANCZOS reference.

    .venv/bin/python -m bench.quality [--only NAME ...]

For every preview size, the reference is the full-size decode (no draft), EXIF-oriented,
resized straight to that size with LANCZOS. Three comparisons per size:

* pixels     imagepipe's preview before encoding (draft + BILINEAR + cascade): the
             resampling quality, the number that must stay >= 0.98 SSIM
* encoded    imagepipe's encoded preview, decoded again: what a client receives
* codec      the reference itself encoded the same way: the part of "encoded" that
             any pipeline pays for the codec, not for resampling
* pyvips     (for comparison, if installed) pyvips thumbnail + cascade, before encoding

SSIM is scikit-image's ``structural_similarity`` (7x7 uniform window) when installed,
else an equivalent numpy implementation. Results: markdown table and
``bench/results/quality.json``. Exit code 1 if any "pixels" SSIM is below 0.98.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from bench.pipeline import BOXES, CORPUS, OPTIONS, pyvips, sample_path, save
from imagepipe.imaging.cascade import cascade
from imagepipe.imaging.decode import decode
from imagepipe.imaging.encode import encode
from imagepipe.imaging.render import render_variants

THRESHOLD = 0.98

try:
    from skimage.metrics import structural_similarity as _skimage_ssim
except ImportError:
    _skimage_ssim = None


def ssim(reference: np.ndarray, image: np.ndarray) -> float:
    if _skimage_ssim is not None:
        axis = 2 if reference.ndim == 3 else None
        return float(_skimage_ssim(reference, image, channel_axis=axis, data_range=255))
    return _numpy_ssim(reference, image)


def _numpy_ssim(reference: np.ndarray, image: np.ndarray, window: int = 7) -> float:
    """scikit-image's default SSIM (uniform window, sample covariance), per channel."""
    a = np.atleast_3d(reference).astype(np.float64)
    b = np.atleast_3d(image).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    n = window * window
    cov_norm = n / (n - 1)
    pad = (window - 1) // 2
    scores = []
    for channel in range(a.shape[2]):
        x, y = a[..., channel], b[..., channel]
        ux, uy = _box_mean(x, window), _box_mean(y, window)
        vx = cov_norm * (_box_mean(x * x, window) - ux * ux)
        vy = cov_norm * (_box_mean(y * y, window) - uy * uy)
        vxy = cov_norm * (_box_mean(x * y, window) - ux * uy)
        s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
        scores.append(s[pad:-pad, pad:-pad].mean())
    return float(np.mean(scores))


def _box_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean over a window x window neighbourhood (same size out, edges reflected)."""
    pad = window // 2
    padded = np.pad(x, pad, mode="reflect")
    summed = padded.cumsum(0).cumsum(1)
    summed = np.pad(summed, ((1, 0), (1, 0)))
    total = (
        summed[window:, window:]
        - summed[:-window, window:]
        - summed[window:, :-window]
        + summed[:-window, :-window]
    )
    return total / (window * window)


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    mse = float(np.mean((reference.astype(np.float64) - image.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def evaluate(name: str) -> dict[str, Any]:
    path = sample_path(name)
    boxes = sorted(BOXES.items(), key=lambda item: item[1], reverse=True)
    decoded = decode(path, largest_box=boxes[0][1], limits=OPTIONS.limits)
    fast = dict(cascade(decoded, boxes))
    encoded = {p.name: p for p in render_variants(path, OPTIONS).variants}
    with Image.open(path) as opened:
        opened.load()
        full = ImageOps.exif_transpose(opened)
    vips = _pyvips_previews(path)
    rows: dict[str, Any] = {}
    # Alpha images are compared premultiplied: the colour of a (nearly) transparent
    # pixel is invisible, and only premultiplied values are what a viewer composites.
    mode_for = {"RGBA": "RGBa", "LA": "La"}
    for variant, image in fast.items():
        mode = mode_for.get(image.mode, image.mode)
        reference = full.resize(image.size, Image.Resampling.LANCZOS).convert(image.mode)
        preview = encoded[variant]
        received = Image.open(io.BytesIO(preview.data)).convert(mode)
        again = encode(reference.copy(), preview.format, quality=OPTIONS.quality(preview.format))
        codec_round_trip = Image.open(io.BytesIO(again)).convert(mode)
        ref = np.asarray(reference.convert(mode))
        image = image.convert(mode)
        rows[variant] = {
            "size": list(image.size),
            "compared_as": mode,
            "format": preview.format,
            "ssim_pixels": round(ssim(ref, np.asarray(image)), 4),
            "psnr_pixels": round(psnr(ref, np.asarray(image)), 2),
            "ssim_encoded": round(ssim(ref, np.asarray(received)), 4),
            "psnr_encoded": round(psnr(ref, np.asarray(received)), 2),
            "ssim_codec": round(ssim(ref, np.asarray(codec_round_trip)), 4),
        }
        if variant in vips:
            theirs = vips[variant].resize(image.size, Image.Resampling.LANCZOS).convert(mode)
            rows[variant]["ssim_pyvips"] = round(ssim(ref, np.asarray(theirs)), 4)
    return rows


def _pyvips_previews(path: Any) -> dict[str, Image.Image]:
    """pyvips' cascade (as in bench.pipeline), as Pillow images, before encoding."""
    if pyvips is None:
        return {}
    out = {}
    boxes = sorted(BOXES.items(), key=lambda item: item[1], reverse=True)
    image = pyvips.Image.thumbnail(str(path), boxes[0][1]).copy_memory()
    for name, box in boxes:
        if max(image.width, image.height) > box:
            image = image.resize(box / max(image.width, image.height)).copy_memory()
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[image.bands]
        pixels = np.ndarray(
            (image.height, image.width, image.bands), np.uint8, image.write_to_memory()
        )
        out[name] = Image.fromarray(pixels.squeeze() if image.bands == 1 else pixels, mode)
    return out


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| image | variant | size | SSIM pixels | PSNR pixels | SSIM encoded | PSNR encoded "
        "| SSIM codec only | SSIM pyvips |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, rows in results.items():
        for variant, row in rows.items():
            width, height = row["size"]
            lines.append(
                f"| {name} | {variant} | {width}x{height} {row['format']} | {row['ssim_pixels']} "
                f"| {row['psnr_pixels']} dB | {row['ssim_encoded']} | {row['psnr_encoded']} dB "
                f"| {row['ssim_codec']} | {row.get('ssim_pyvips', 'n/a')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CORPUS), help="subset of images")
    args = parser.parse_args(argv)
    names = args.only or ["jpeg-12mp", "jpeg-24mp", "png-rgba-12mp", "jpeg-50mp"]
    results = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = evaluate(name)
    minimum = min(row["ssim_pixels"] for rows in results.values() for row in rows.values())
    report = {
        "ssim": "scikit-image" if _skimage_ssim is not None else "numpy",
        "threshold": THRESHOLD,
        "min_ssim_pixels": minimum,
        "results": results,
    }
    save("quality", report)
    print(markdown(results))
    verdict = "PASS" if minimum >= THRESHOLD else "FAIL"
    print(f"\nminimum SSIM (pixels) = {minimum} -> {verdict} (threshold {THRESHOLD})")
    return 0 if minimum >= THRESHOLD else 1


if __name__ == "__main__":
    raise SystemExit(main())
