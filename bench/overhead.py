"""Overhead per task beyond the imaging itself, on local files and on S3.

One worker process pinned to one core (the API, PostgreSQL, Redis, SeaweedFS and this
process on the other), the queue filled before
the worker starts so it is never idle: per task = (first claim → last success) / N,
from the tasks' timestamps in PostgreSQL. The pipeline alone is `render_variants` on
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
import uuid
from typing import Any

import psycopg

from bench.e2e import BACKENDS, distinct_photos, drain_tasks, save, stacks
from bench.pipeline import _CPU
from bench.servers import (
    pin_descendants,
)
from imagepipe.config import Settings
from imagepipe.imaging import render_variants
from imagepipe.services.rendering import render_options

TARGET = 0.25  # overhead at most this share of the pipeline time
IMAGING_STAGES = {"decode", "resize", "encode", "animate", "qa", "placeholder"}


def pipeline_ms(images: list[bytes]) -> float:
    """Median ms of the pipeline alone over the images (this process is on _CPU): the
    base renditions, all a task waits for before it is ``succeeded`` (the extra formats
    follow on the follow-up pool)."""
    options = render_options(Settings())
    times = []
    for data in images:
        started = time.perf_counter()
        render_variants(io.BytesIO(data), options, extras=False)
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def imaging_in_worker_ms(database_url: str, ids: list[str]) -> float:
    """Mean ms per task the worker spent in the imaging stages (decode, resize, encode,
    qa, placeholder: its tasks' report timings, without storing)."""
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        reports = conn.execute(
            "SELECT report FROM tasks WHERE id = ANY(%s)", ([uuid.UUID(i) for i in ids],)
        ).fetchall()
    stages = [
        sum(ms for stage, ms in report["timings_ms"].items() if stage in IMAGING_STAGES)
        for (report,) in reports
    ]
    return float(statistics.mean(stages))


def run(quick: bool = False, rounds: int = 3) -> dict[str, Any]:
    count = 12 if quick else 24
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
            images = distinct_photos(count, f"{stack.backend} round {round_}")
            before = pipeline_ms(images)
            log = stack.root / f"worker-{stack.backend}.log"
            if api_cpu is not None:
                # The worker's core is its own: servers and this process (which polls
                # the API) on the other one while it drains.
                pin_descendants(api_cpu)
                os.sched_setaffinity(0, {api_cpu})
            seconds, ids = drain_tasks(stack.api_url, stack.env, images, 1, log, cpu=_CPU)
            os.sched_setaffinity(0, {_CPU})
            # Before and after the drain: this machine's speed drifts within minutes.
            pipeline = (before + pipeline_ms(images)) / 2
            per_task = 1000 * seconds / count
            in_worker = imaging_in_worker_ms(stack.env["IMAGEPIPE_DATABASE_URL"], ids)
            row = {
                "backend": stack.backend,
                "round": round_,
                "per_task_ms": per_task,
                "pipeline_ms": pipeline,
                "overhead_ms": per_task - pipeline,
                "overhead_share": (per_task - pipeline) / pipeline,
                "imaging_in_worker_ms": in_worker,
                "overhead_in_worker_share": (per_task - in_worker) / in_worker,
            }
            results["runs"].append(row)
            print(json.dumps(row), flush=True)
    results["summary"] = {}
    for backend in BACKENDS:
        runs = [r for r in results["runs"] if r["backend"] == backend]
        # Medians of each round's own figures: a round compares the drain with the
        # pipeline measured just before and after it, as close in time as can be.
        keys = (
            "per_task_ms",
            "pipeline_ms",
            "overhead_ms",
            "overhead_share",
            "imaging_in_worker_ms",
            "overhead_in_worker_share",
        )
        cell = {k: statistics.median(r[k] for r in runs) for k in keys}
        results["summary"][backend] = cell
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"One worker process pinned to one core, {results['images']} queued "
        f"{results['image_size']}s, median of {results['rounds']} rounds. Overhead = "
        "upload → succeeded per task (first claim → last success, / N) - the pipeline "
        f"alone on the same core; target ≤ {results['target']:.0%} of the pipeline.",
        "",
        "| storage | per task | pipeline alone | overhead | overhead / pipeline "
        "| imaging inside the worker | per task / imaging inside the worker - 1 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for backend, cell in results["summary"].items():
        lines.append(
            f"| {backend} | {cell['per_task_ms']:.1f} ms | {cell['pipeline_ms']:.1f} ms "
            f"| {cell['overhead_ms']:.1f} ms | {cell['overhead_share']:.0%} "
            f"| {cell['imaging_in_worker_ms']:.1f} ms | {cell['overhead_in_worker_share']:.0%} |"
        )
    lines += [
        "",
        "Pipeline alone: `render_variants` from memory in the benchmark's process on the "
        "worker's core, the median over the images, measured before and after each drain. "
        "Imaging inside the worker: the decode, resize, encode, QA and placeholder stages "
        "of the drained tasks by the worker's own clock (their reports' timings), so "
        "the last column compares two figures from the same minutes.",
    ]
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
