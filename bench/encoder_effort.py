"""Encoder effort by preview size: WebP ``method`` and AVIF ``speed``, bytes against
encode time, for each size the service makes.

For a photo-like and a graphic image, each preview size is made once (LANCZOS from
the 2400x1800 original) and encoded at WebP q80 with methods 2 to 6 and AVIF q60 with
speeds 6 to 10 (one encoder thread, as the worker runs it). Each cell: the median
encode time and the bytes, and both relative to the current setting of that format
(``imaging/formats.py``) at the same size. The question it answers: can a small
preview afford more effort than a large one (the extra time is small where the image
is), and how much does less effort on the large one save?

One core (bench.pipeline pins it). Results: ``bench/results/encoder_effort.json``.

    python -m bench.encoder_effort [--quick]
"""

from __future__ import annotations

import argparse
import functools
import io
import sys
from typing import Any

from PIL import Image

from bench.formats import BOXES, SIZE, graphic
from bench.pipeline import photo_like, save
from bench.timing import median_ms
from imagepipe.imaging.formats import AVIF_SPEED, WEBP_METHOD
from imagepipe.imaging.geometry import fit

# format -> (its effort option, the values tried, the current one, the other options)
EFFORTS: dict[str, tuple[str, tuple[int, ...], int, dict[str, Any]]] = {
    "WEBP": ("method", (2, 3, 4, 5, 6), WEBP_METHOD, {"quality": 80}),
    "AVIF": (
        "speed",
        (6, 7, 8, 9, 10),
        AVIF_SPEED,
        {"quality": 60, "subsampling": "4:2:0", "max_threads": 1},
    ),
}


def _encode(image: Image.Image, fmt: str, options: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def run(quick: bool) -> dict[str, Any]:
    calls = 3 if quick else 9
    sources = {"photo": photo_like(SIZE, seed=11), "graphic": graphic(SIZE)}
    rows: list[dict[str, Any]] = []
    for kind, source in sources.items():
        for variant, box in BOXES.items():
            image = source.resize(fit(source.size, box), Image.Resampling.LANCZOS)
            for fmt, (option, values, current, others) in EFFORTS.items():
                cells = {}
                for value in values:
                    options = {**others, option: value}
                    data = _encode(image, fmt, options)
                    ms = median_ms(functools.partial(_encode, image, fmt, options), calls)
                    cells[value] = (ms, len(data))
                base_ms, base_bytes = cells[current]
                for value, (ms, size) in cells.items():
                    rows.append(
                        {
                            "image": kind, "variant": variant, "size": list(image.size),
                            "format": fmt, "option": option, "value": value,
                            "current": value == current, "ms": round(ms, 2), "bytes": size,
                            "time_vs_current": round(ms / base_ms, 2),
                            "bytes_vs_current": round(size / base_bytes - 1, 3),
                        }
                    )  # fmt: skip
            print(f"  {kind} {variant} done", file=sys.stderr, flush=True)
    return {"calls": calls, "original": list(SIZE), "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Each preview size LANCZOS-resized once from a {results['original'][0]}x"
        f"{results['original'][1]} original, encoded {results['calls']} times per setting "
        "on one core (median); time and bytes against the current setting (marked *) of "
        "the same size and image.",
        "",
        "| image | variant | format | setting | encode | bytes | time vs current "
        "| bytes vs current |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results["rows"]:
        mark = "*" if r["current"] else ""
        lines.append(
            f"| {r['image']} | {r['variant']} {r['size'][0]}x{r['size'][1]} | {r['format']} "
            f"| {r['option']} {r['value']}{mark} | {r['ms']:.2f} ms | {r['bytes']:,} "
            f"| {r['time_vs_current']:.2f}x | {r['bytes_vs_current']:+.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    results = run(parser.parse_args().quick)
    save("encoder_effort", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
