"""What content dedup saves: a batch of distinct uploads against a batch of one image
uploaded many times (one render, then copies), drained by one real worker process.

Both batches are queued before the worker starts (bench.e2e.drain) and timed from the
first claim to the last success in PostgreSQL; local files. Each round uses images of
its own, so no round finds the previous one's tasks. A duplicate's cost is what the
identical batch took beyond its one render: (identical x N - distinct) / (N - 1).

    python -m bench.dedup [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.e2e import drain_tasks, photo_jpeg, save
from bench.servers import api_server, env_for, postgres_database, redis_server


def run(quick: bool = False, rounds: int = 3) -> dict[str, Any]:
    count = 8 if quick else 16
    results: dict[str, Any] = {
        "images": count,
        "image_size": "4000x3000 JPEG",
        "rounds": rounds,
        "runs": [],
    }
    with (
        tempfile.TemporaryDirectory(prefix="imagepipe-dedup-") as tmp,
        redis_server() as redis,
        postgres_database() as database,
    ):
        root = Path(tmp)
        env = env_for(root / "data", redis.url, database)
        with api_server(env, root / "api.log") as url:
            for round_ in range(rounds):
                seed = 1000 * (round_ + 1)
                distinct = [photo_jpeg((4000, 3000), seed=seed + i) for i in range(count)]
                identical = [photo_jpeg((4000, 3000), seed=seed + 500)] * count
                log = root / "worker.log"
                distinct_ms = 1000 * drain_tasks(url, env, distinct, 1, log)[0] / count
                identical_ms = 1000 * drain_tasks(url, env, identical, 1, log)[0] / count
                copy_ms = (identical_ms * count - distinct_ms) / (count - 1)
                row = {
                    "round": round_,
                    "distinct_per_task_ms": distinct_ms,
                    "identical_per_task_ms": identical_ms,
                    "duplicate_ms": copy_ms,
                }
                results["runs"].append(row)
                print(json.dumps(row), flush=True)
    keys = ("distinct_per_task_ms", "identical_per_task_ms", "duplicate_ms")
    summary = {key: statistics.median(r[key] for r in results["runs"]) for key in keys}
    summary["saved_per_duplicate_ms"] = summary["distinct_per_task_ms"] - summary["duplicate_ms"]
    summary["saved_share"] = summary["saved_per_duplicate_ms"] / summary["distinct_per_task_ms"]
    results["summary"] = summary
    return results


def markdown(results: dict[str, Any]) -> str:
    cell = results["summary"]
    return "\n".join(
        [
            f"One worker process, batches of {results['images']} queued "
            f"{results['image_size']}s, median of {results['rounds']} rounds, local files. "
            "A duplicate (same sha256, same render spec) copies the earlier task's stored "
            "variants instead of decoding, resizing and encoding.",
            "",
            "| per task | distinct images | one image N times | a duplicate | saved per "
            "duplicate |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| upload → succeeded (drain) | {cell['distinct_per_task_ms']:.1f} ms "
            f"| {cell['identical_per_task_ms']:.1f} ms | {cell['duplicate_ms']:.1f} ms "
            f"| {cell['saved_per_duplicate_ms']:.1f} ms ({cell['saved_share']:.0%}) |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results = run(args.quick, args.rounds)
    save("dedup", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
