"""Peak memory of one render_variants call, in a fresh process.

    .venv/bin/python -m bench.memory [--only NAME ...]

Each image is rendered in its own child process (``MALLOC_ARENA_MAX=2``, as a worker
would run), which reports its peak RSS (``ru_maxrss``) before and after the render.
"Baseline" is the interpreter with Pillow and the imaging package imported, OpenCV
loaded (as a warm worker pool process has it). The budget: every
input under the pixel cap peaks below 250 MB — photos, and the memory-heavy pixel
formats (16-bit grey and colour, I;16 TIFF, CMYK, a 12 MB ICC profile, 1000 pages).
Results: markdown table and ``bench/results/memory.json``.

Linux keeps ``ru_maxrss`` across ``exec``: a child spawned straight from this process
would report this process's own peak (the corpus generator's ~1.3 GB). So the corpus
is generated in a separate process, the child is started through ``sh`` (a fork from
a small process), and its ``VmHWM`` (reset by exec) is reported beside as a check.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from bench.pipeline import BOXES, CORPUS, cache_dir, save
from imagepipe.imaging.colour import bytes_per_pixel

BUDGET_MB = 250.0
# The heavy inputs are 7000x7000 = 49 MP, just under the 50 MP cap.
SIDE = 7000


@dataclass(frozen=True)
class Heavy:
    size: tuple[int, int]
    format: str
    alpha: bool
    make: Callable[[Path], None]


def _save(image_factory: Callable[[], Any], fmt: str, **params: Any) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        image_factory().save(path, fmt, **params)

    return make


def _write(data_factory: Callable[[], bytes]) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        path.write_bytes(data_factory())

    return make


def _heavy() -> dict[str, Heavy]:
    from tests.imaging import images  # the test suite's generators, at the cap

    side = (SIDE, SIDE)
    return {
        "grey16-png-49mp": Heavy(side, "PNG", False, _save(lambda: images.grey16(side), "PNG")),
        "grey16-tiff-49mp": Heavy(
            side,
            "TIFF",
            False,
            _save(lambda: images.grey16(side), "TIFF", compression="tiff_adobe_deflate"),
        ),
        "rgb16-png-49mp": Heavy(
            side, "PNG", False, _write(lambda: images.png16(side, alpha=False))
        ),
        "rgba16-png-49mp": Heavy(side, "PNG", True, _write(lambda: images.png16(side, alpha=True))),
        "cmyk-jpeg-49mp": Heavy(
            side,
            "JPEG",
            False,
            _save(lambda: images.photo(side).convert("CMYK"), "JPEG", quality=90),
        ),
        "huge-icc-jpeg-12mp": Heavy(
            (4000, 3000),
            "JPEG",
            False,
            _save(
                lambda: images.photo((4000, 3000)),
                "JPEG",
                quality=90,
                icc_profile=images.adobe_rgb_like_profile(padding=12 * 2**20),
            ),
        ),
        "tiff-1000-pages": Heavy(
            (220, 220), "TIFF", False, _write(lambda: images.many_page_tiff(1000, size=(220, 220)))
        ),
    }


def input_path(name: str) -> Path:
    """Path of a benchmark input (a photo of the corpus or a heavy one), made on first use."""
    if name in CORPUS:
        from bench.pipeline import sample_path

        return sample_path(name)
    heavy = _heavy()[name]
    path = cache_dir() / f"{name}-v1.{heavy.format.lower()}"
    if not path.exists():
        print(f"generating {path} ...", file=sys.stderr, flush=True)
        tmp = path.with_suffix(".tmp")
        heavy.make(tmp)
        tmp.replace(path)
    return path


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from imagepipe.imaging import RenderOptions, render_variants, resample
resample.opencv()  # loaded as in a warm worker pool process, whatever the image

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def hwm_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

baseline = peak_mb()
start = time.perf_counter()
result = render_variants(Path(sys.argv[1]), RenderOptions(boxes=json.loads(sys.argv[2])))
print(json.dumps({
    "baseline_mb": round(baseline, 1),
    "peak_mb": round(peak_mb(), 1),
    "vmhwm_mb": round(hwm_mb(), 1),
    "seconds": round(time.perf_counter() - start, 3),
    "previews": [[p.name, p.width, p.height, p.format] for p in result.variants],
}))
"""


def measure(name: str) -> dict[str, Any]:
    # Generate (if needed) in another process, so this one stays small.
    make = f"from bench.memory import input_path; print(input_path({name!r}))"
    made = subprocess.run([sys.executable, "-c", make], capture_output=True, text=True, check=True)
    path = Path(made.stdout.strip())
    env = {**os.environ, "MALLOC_ARENA_MAX": "2"}
    src = str(Path(__file__).resolve().parent.parent / "src")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    # "; exit" keeps sh from exec-ing python in place: python is then forked from sh.
    command = '"$@"; exit $?'
    child = subprocess.run(
        ["sh", "-c", command, "sh", sys.executable, "-c", _CHILD, str(path), json.dumps(BOXES)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report: dict[str, Any] = json.loads(child.stdout)
    sample = CORPUS.get(name) or _heavy()[name]
    width, height = sample.size
    with Image.open(path) as opened:
        bands = bytes_per_pixel(opened.mode)  # what Pillow's decode of frame 0 costs
        mode = opened.mode
    report["image"] = {
        "size": [width, height],
        "format": sample.format,
        "alpha": sample.alpha,
        "mode": mode,
        "file_mb": round(path.stat().st_size / 2**20, 1),
    }
    report["full_decode_mb"] = round(width * height * bands / 2**20, 1)
    report["render_mb"] = round(report["peak_mb"] - report["baseline_mb"], 1)
    report["budget_mb"] = BUDGET_MB
    report["within_budget"] = report["peak_mb"] <= BUDGET_MB
    return report


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| image | decoded as | peak RSS | (VmHWM) | baseline | render adds | full-size buffer "
        "| budget | time |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, r in results.items():
        budget = f"{r['budget_mb']:.0f} MB"
        budget += " ok" if r["within_budget"] else " EXCEEDED"
        mode = r["image"].get("mode", "")
        lines.append(
            f"| {name} | {mode} | {r['peak_mb']} MB | {r['vmhwm_mb']} MB | {r['baseline_mb']} MB "
            f"| {r['render_mb']} MB "
            f"| {r['full_decode_mb']} MB | {budget} | {r['seconds']} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["jpeg-50mp", "png-50mp", "png-rgba-50mp", *_heavy()]
    parser.add_argument("--only", nargs="*", choices=names, help="subset of images")
    args = parser.parse_args(argv)
    names = args.only or names
    results = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name)
    save("memory", {"results": results})
    print(markdown(results))
    print("\nfull-size buffer = width x height x bytes per pixel of the decoded mode (one decode).")
    return 0 if all(r["within_budget"] for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
