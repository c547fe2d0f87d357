"""Overhead per task beyond the imaging itself, on local files and on S3.

One worker process pinned to one core (the API, PostgreSQL, Redis, SeaweedFS and this
process on the other), the queue filled before
the worker starts so it is never idle: per task = (first claim → last success) / N,
from the tasks' timestamps in PostgreSQL. The pipeline alone is `render_previews` on
the same images, from memory, on the same core, in this process, between the rounds.
Overhead = per task - pipeline: the claim, the commits, reading the original and
writing the previews through the storage, the broker and Celery.

    python -m bench.overhead [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from typing import Any

from bench.e2e import BACKENDS, drain, photo_jpeg, save, stacks
from bench.pipeline import _CPU
from bench.servers import (
    pin_descendants,
)
from imagepipe.config import Settings
from imagepipe.imaging import render_previews
from imagepipe.worker.processing import render_options

TARGET = 0.25  # overhead at most this share of the pipeline time


def pipeline_ms(images: list[bytes]) -> float:
    """Median ms of the pipeline alone over the images (this process is on _CPU)."""
    options = render_options(Settings())
    times = []
    for data in images:
        started = time.perf_counter()
        render_previews(io.BytesIO(data), options)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def run(quick: bool = False, rounds: int = 3) -> dict[str, Any]:
    count = 12 if quick else 24
    images = [photo_jpeg((4000, 3000), seed=100 + i % 4) for i in range(count)]
    results: dict[str, Any] = {
        "images": count,
        "image_size": "4000x3000 JPEG",
        "rounds": rounds,
        "target": TARGET,
        "runs": [],
    }
    api_cpu = 1 - _CPU if _CPU in (0, 1) else None
    for stack in stacks("imagepipe-overhead-", BACKENDS, api_cpu=api_cpu):
        for round_ in range(rounds):
            pipeline = pipeline_ms(images)
            log = stack.root / f"worker-{stack.backend}.log"
            if api_cpu is not None:
                # The worker's core is its own: servers and this process (which polls
                # the API) on the other one while it drains.
                pin_descendants(api_cpu)
                os.sched_setaffinity(0, {api_cpu})
            seconds = drain(stack.api_url, stack.env, images, 1, log, cpu=_CPU)
            os.sched_setaffinity(0, {_CPU})
            per_task = 1000 * seconds / count
            row = {
                "backend": stack.backend,
                "round": round_,
                "per_task_ms": per_task,
                "pipeline_ms": pipeline,
                "overhead_ms": per_task - pipeline,
            }
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    results["summary"] = {}
    for backend in BACKENDS:
        runs = [r for r in results["runs"] if r["backend"] == backend]
        cell = {k: statistics.median(r[k] for r in runs) for k in ("per_task_ms", "pipeline_ms")}
        cell["overhead_ms"] = cell["per_task_ms"] - cell["pipeline_ms"]
        cell["overhead_share"] = cell["overhead_ms"] / cell["pipeline_ms"]
        results["summary"][backend] = cell
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"One worker process pinned to one core, {results['images']} queued "
        f"{results['image_size']}s, median of {results['rounds']} rounds. Overhead = "
        "upload → succeeded per task (first claim → last success, / N) - the pipeline "
        f"alone on the same core; target ≤ {results['target']:.0%} of the pipeline.",
        "",
        "| storage | per task | pipeline alone | overhead | overhead / pipeline |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for backend, cell in results["summary"].items():
        lines.append(
            f"| {backend} | {cell['per_task_ms']:.1f} ms | {cell['pipeline_ms']:.1f} ms "
            f"| {cell['overhead_ms']:.1f} ms | {cell['overhead_share']:.0%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = run(args.quick, args.rounds)
    save("overhead", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
