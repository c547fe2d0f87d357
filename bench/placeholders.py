"""Placeholders: what BlurHash, ThumbHash and the dominant colour cost a task.

``placeholders.compute`` on the smallest preview (150 pixels on the long side, as the
worker calls it), each part on its own, and the pure-Python ``blurhash`` encoder of the
same 24-pixel input beside the compiled one the service uses. Median of rounds, each
round the median of many calls; one core.

    python -m bench.placeholders [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import statistics
from collections.abc import Callable
from typing import Any

from PIL import Image

from bench.pipeline import photo_like, save
from bench.timing import median_ms
from imagepipe.imaging import placeholders

TARGET_MS = 1.0


def _pure_python_blurhash(flat: Image.Image) -> Callable[[], object]:
    import blurhash  # the pure-Python package: a test dependency, for comparison only

    width, height = flat.size
    data = flat.tobytes()
    rows = [
        [list(data[i : i + 3]) for i in range(row * width * 3, (row + 1) * width * 3, 3)]
        for row in range(height)
    ]
    return lambda: blurhash.encode(rows, components_x=4, components_y=3)


def run(quick: bool, rounds: int) -> dict[str, Any]:
    calls = 50 if quick else 300
    preview = photo_like((150, 113), seed=7)
    rgba = preview.convert("RGBA")
    small = rgba.copy()
    small.thumbnail((48, 48), Image.Resampling.BOX)
    flat = preview.copy()
    flat.thumbnail((24, 24), Image.Resampling.BOX)
    parts: dict[str, Callable[[], object]] = {
        "all three (compute)": lambda: placeholders.compute(preview),
        "BlurHash": lambda: placeholders._blurhash(small),
        "ThumbHash": lambda: placeholders._thumbhash(small),
        "dominant colour": lambda: placeholders.dominant_colour(small),
        "BlurHash, pure-Python encoder": _pure_python_blurhash(flat),
    }
    per_round: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(rounds):
        for name, action in parts.items():  # interleaved: drift hits every part alike
            per_round[name].append(median_ms(action, calls))
    medians = {name: statistics.median(values) for name, values in per_round.items()}
    return {
        "rounds": rounds,
        "calls_per_round": calls,
        "cpu": sorted(os.sched_getaffinity(0)),
        "median_ms": medians,
        "target_ms": TARGET_MS,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"The smallest preview (150x113), median of {results['rounds']} rounds of "
        f"{results['calls_per_round']} calls, CPUs {results['cpu']}. Target: all three in "
        f"at most {results['target_ms']:g} ms.",
        "",
        "| part | ms |",
        "| --- | ---: |",
    ]
    lines += [f"| {name} | {ms:.3f} |" for name, ms in results["median_ms"].items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})  # one core, as a worker's pool process
    save("placeholders", run(args.quick, args.rounds))


if __name__ == "__main__":
    main()
