"""Crops: where the smart crop cuts, beside libvips' ``attention``, and what one
on-demand rendition costs the imaging, beside libvips doing the same.

- **Window**: generated scenes (a photo-like, low-detail background with one busy,
  saturated subject placed off-centre at random), each shrunk to cover the box; the
  window of ``gravity=smart``, of pyvips ``smartcrop(interesting="attention")`` and of a
  centre crop. Reported: the share of the subject each window keeps, how often the
  whole subject is kept, and how far our window lies from libvips' (pixels).
- **One rendition**: a 12 MP JPEG to a 640x480 ``cover`` WebP (q 80, effort 4 on both
  sides): ``render_one`` against pyvips ``thumbnail_buffer(crop=…)`` + ``webpsave``,
  what imgproxy does per request. Median of rounds, one core, both in this process.

    python -m bench.crops [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import pyvips
from PIL import Image, ImageDraw, ImageFilter

from bench.pipeline import photo_like, sample_path, save
from bench.timing import median_ms
from imagepipe.imaging.crop import Box, resize_size, window
from imagepipe.imaging.opening import Limits
from imagepipe.imaging.render import render_one

SCENE = (1200, 600)
BOX = Box(300, 300, "cover", "smart")
SUBJECT_RADIUS = 45


def _scene(seed: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """A soft background and one busy subject; returns the image and the subject's box."""
    rng = np.random.default_rng(seed)
    background = photo_like(SCENE, seed=seed).filter(ImageFilter.GaussianBlur(12))
    # A calm, muted background: scenery is quieter than the subject in front of it.
    image = Image.blend(background, background.convert("L").convert("RGB"), 0.85)
    margin = SUBJECT_RADIUS + 5
    # Off-centre: the subject's centre in the outer quarters of the width.
    quarter = SCENE[0] // 4
    left_x = rng.integers(margin, quarter)
    right_x = rng.integers(3 * quarter, SCENE[0] - margin)
    x = int(left_x if rng.random() < 0.5 else right_x)
    y = int(rng.integers(margin, SCENE[1] - margin))
    draw = ImageDraw.Draw(image)
    for ring in range(0, SUBJECT_RADIUS, 5):
        hue = int(rng.integers(0, 256))
        colour = Image.new("HSV", (1, 1), (hue, 230, 220)).convert("RGB").getpixel((0, 0))
        r = SUBJECT_RADIUS - ring
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)  # type: ignore[arg-type]
    subject = (x - SUBJECT_RADIUS, y - SUBJECT_RADIUS, x + SUBJECT_RADIUS, y + SUBJECT_RADIUS)
    return image, subject


def _kept(window_box: tuple[int, int, int, int], subject: tuple[int, int, int, int]) -> float:
    left, top, right, bottom = window_box
    s_left, s_top, s_right, s_bottom = subject
    inter_w = max(0, min(right, s_right) - max(left, s_left))
    inter_h = max(0, min(bottom, s_bottom) - max(top, s_top))
    return inter_w * inter_h / ((s_right - s_left) * (s_bottom - s_top))


def _vips_window(image: Image.Image, target: tuple[int, int]) -> tuple[int, int, int, int]:
    """Where pyvips' attention crop lies in ``image``: its output is a region of the
    input, found by matching it against every offset along the spare axis."""
    array = np.asarray(image.convert("RGB"))
    source = pyvips.Image.new_from_array(array, interpretation="srgb")
    cropped = np.asarray(source.smartcrop(target[0], target[1], interesting="attention").numpy())
    best, best_error = (0, 0), float("inf")
    for top in range(array.shape[0] - target[1] + 1):
        for left in range(array.shape[1] - target[0] + 1):
            region = array[top : top + target[1], left : left + target[0]]
            error = float(np.abs(region[::8, ::8].astype(int) - cropped[::8, ::8]).sum())
            if error < best_error:
                best, best_error = (left, top), error
    return best[0], best[1], best[0] + target[0], best[1] + target[1]


def windows(count: int) -> dict[str, Any]:
    kept: dict[str, list[float]] = {"smart": [], "pyvips attention": [], "centre": []}
    distance: list[float] = []
    for seed in range(count):
        scene, subject = _scene(100 + seed)
        size = resize_size(scene.size, BOX)
        scale = size[0] / scene.width
        resized = scene.resize(size, Image.Resampling.LANCZOS)
        subject_here = tuple(round(v * scale) for v in subject)
        ours = window(resized, BOX, None)
        theirs = _vips_window(resized, (BOX.width, BOX.height))
        centre = window(resized, Box(BOX.width, BOX.height, "cover"), None)
        for name, area in (("smart", ours), ("pyvips attention", theirs), ("centre", centre)):
            kept[name].append(_kept(area, subject_here))  # type: ignore[arg-type]
        distance.append(float(np.hypot(ours[0] - theirs[0], ours[1] - theirs[1])))
    return {
        "scenes": count,
        "scene": list(SCENE),
        "box": [BOX.width, BOX.height],
        "mean_share_kept": {k: statistics.fmean(v) for k, v in kept.items()},
        "whole_subject_kept": {k: sum(x >= 0.999 for x in v) for k, v in kept.items()},
        "median_distance_to_pyvips_px": statistics.median(distance),
    }


def one_rendition(rounds: int, calls: int) -> dict[str, Any]:
    data = sample_path("jpeg-12mp").read_bytes()
    limits = Limits(allowed_formats=("JPEG",), max_pixels=50_000_000)
    box = Box(640, 480, "cover", "smart")

    def ours(gravity: str) -> Callable[[], object]:
        chosen = Box(box.width, box.height, "cover", gravity)  # type: ignore[arg-type]
        return lambda: render_one(
            io.BytesIO(data), chosen, "WEBP", quality=80, focal=None, limits=limits
        )

    def theirs(crop: str) -> Callable[[], object]:
        def run() -> bytes:
            image = pyvips.Image.thumbnail_buffer(data, 640, height=480, crop=crop)
            return bytes(image.webpsave_buffer(Q=80, effort=4, strip=True))

        return run

    cases = {
        "imagepipe, smart": ours("smart"),
        "pyvips, attention": theirs("attention"),
        "imagepipe, center": ours("center"),
        "pyvips, centre": theirs("centre"),
    }
    per_round: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, action in cases.items():  # interleaved: drift hits every case alike
            per_round[name].append(median_ms(action, calls))
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    return {
        "rounds": rounds,
        "calls_per_round": calls,
        "median_ms": medians,
        "smart_vs_pyvips": medians["pyvips, attention"] / medians["imagepipe, smart"],
        "center_vs_pyvips": medians["pyvips, centre"] / medians["imagepipe, center"],
    }


def markdown(results: dict[str, Any]) -> str:
    win = results["windows"]
    one = results["one_rendition"]
    lines = [
        f"Window: {win['scenes']} generated {win['scene'][0]}x{win['scene'][1]} scenes with "
        f"one off-centre subject, box {win['box'][0]}x{win['box'][1]} cover.",
        "",
        "| crop | subject kept (mean share) | whole subject kept |",
        "| --- | ---: | ---: |",
    ]
    for name, share in win["mean_share_kept"].items():
        whole = win["whole_subject_kept"][name]
        lines.append(f"| {name} | {share:.0%} | {whole} of {win['scenes']} |")
    lines += [
        "",
        f"Median distance between our smart window and libvips' attention window: "
        f"{win['median_distance_to_pyvips_px']:.0f} px.",
        "",
        f"One on-demand rendition, 12 MP JPEG -> 640x480 cover WebP, CPUs {results['cpu']}, "
        f"median of {one['rounds']} rounds of {one['calls_per_round']} calls:",
        "",
        "| case | ms |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in one["median_ms"].items()]
    lines += [
        "",
        f"Speed against pyvips: smart {one['smart_vs_pyvips']:.2f}x, "
        f"centre {one['center_vs_pyvips']:.2f}x (above 1: imagepipe is faster).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # one core, as a worker's pool process
    pyvips.cache_set_max(0)  # no libvips operation cache: each call does the work
    rounds = 3 if args.quick else args.rounds
    save(
        "crops",
        {
            "cpu": sorted(os.sched_getaffinity(0)),
            "windows": windows(8 if args.quick else 24),
            "one_rendition": one_rendition(rounds, 3 if args.quick else 7),
        },
    )


if __name__ == "__main__":
    main()
