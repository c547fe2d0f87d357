"""Peak memory of one render_previews call, in a fresh process.

    .venv/bin/python -m bench.memory [--only NAME ...]

Each image is rendered in its own child process (``MALLOC_ARENA_MAX=2``, as a worker
would run), which reports its peak RSS (``ru_maxrss``) before and after the render.
"Baseline" is the interpreter with Pillow and imagepipe imported; the budget for a
50 MP JPEG is 250 MB peak. Results: markdown table and ``bench/results/memory.json``.

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
from pathlib import Path
from typing import Any

from bench.pipeline import BOXES, CORPUS, RESULTS

BUDGET_MB = {"JPEG": 250.0}

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from imagepipe.imaging import RenderOptions, render_previews

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

def hwm_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")

baseline = peak_mb()
start = time.perf_counter()
result = render_previews(Path(sys.argv[1]), RenderOptions(boxes=json.loads(sys.argv[2])))
print(json.dumps({
    "baseline_mb": round(baseline, 1),
    "peak_mb": round(peak_mb(), 1),
    "vmhwm_mb": round(hwm_mb(), 1),
    "seconds": round(time.perf_counter() - start, 3),
    "previews": [[p.name, p.width, p.height, p.format] for p in result.previews],
}))
"""


def measure(name: str) -> dict[str, Any]:
    sample = CORPUS[name]
    # Generate (if needed) in another process, so this one stays small.
    make = f"from bench.pipeline import sample_path; print(sample_path({name!r}))"
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
    width, height = sample.size
    bands = 4  # Pillow stores RGB, RGBA (and CMYK) at 4 bytes per pixel
    report["image"] = {"size": [width, height], "format": sample.format, "alpha": sample.alpha}
    report["full_decode_mb"] = round(width * height * bands / 2**20, 1)
    report["render_mb"] = round(report["peak_mb"] - report["baseline_mb"], 1)
    budget = BUDGET_MB.get(sample.format)
    report["budget_mb"] = budget
    report["within_budget"] = None if budget is None else report["peak_mb"] <= budget
    return report


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| image | peak RSS | (VmHWM) | baseline | render adds | full-size buffer | budget "
        "| time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for name, r in results.items():
        budget = "n/a" if r["budget_mb"] is None else f"{r['budget_mb']:.0f} MB"
        if r["within_budget"] is not None:
            budget += " ok" if r["within_budget"] else " EXCEEDED"
        lines.append(
            f"| {name} | {r['peak_mb']} MB | {r['vmhwm_mb']} MB | {r['baseline_mb']} MB "
            f"| {r['render_mb']} MB "
            f"| {r['full_decode_mb']} MB | {budget} | {r['seconds']} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(CORPUS), help="subset of images")
    args = parser.parse_args(argv)
    names = args.only or ["jpeg-50mp", "png-50mp", "png-rgba-50mp"]
    results = {}
    for name in names:
        print(f"{name} ...", file=sys.stderr, flush=True)
        results[name] = measure(name)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.json").write_text(json.dumps({"results": results}, indent=2) + "\n")
    print(markdown(results))
    print("\nfull-size buffer = width x height x 4 bytes, what one full decode costs in Pillow.")
    return 0 if all(r["within_budget"] is not False for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
