"""The worker's fixed cost per task: CPU of ``rendering.process`` (claim, dedup look-up,
render, store, finish, notifications) beyond the imaging it calls, and the SQL
statements and transactions it sends.

In this process, on one core: a private PostgreSQL, local files, the runtime the
worker builds (its engine and storage), status notifications recorded instead of
published. Each round queues N distinct small JPEGs (so the imaging is a small part)
and processes them back to back, as a busy worker does; the imaging alone is
``render_variants`` on the same images in the same process. Fixed cost = CPU per task
- imaging CPU per image. No Celery: its hand-off is not in these figures. Two
versions compare by running this alternately with each one's ``src`` first on
PYTHONPATH (it calls only the worker's public functions); a few runs each, as the
machine drifts.

    python -m bench.fixed_cost [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker
from tests.harness.app import queue_upload

from bench.e2e import photo_jpeg
from bench.pipeline import _CPU, save
from bench.servers import postgres_database
from imagepipe.config import Settings
from imagepipe.db.engine import sync_session_factory
from imagepipe.db.migrate import upgrade
from imagepipe.imaging import render_variants
from imagepipe.runtime import open_runtime
from imagepipe.services import events, rendering
from imagepipe.services.hooks import Hooks
from imagepipe.storage import Storage

SIZE = (640, 480)


def _queue(
    sessions: sessionmaker[Session], storage: Storage, images: list[bytes]
) -> list[uuid.UUID]:
    return [queue_upload(sessions, storage, data, SIZE) for data in images]


def _cpu_ms_each(action: Any, items: list[Any]) -> float:
    started = time.process_time()
    for item in items:
        action(item)
    return 1000 * (time.process_time() - started) / len(items)


def run(quick: bool, rounds: int) -> dict[str, Any]:
    count = 20 if quick else 60
    runs: list[dict[str, float]] = []
    with postgres_database() as url, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp), database_url=url, redis_url="redis://127.0.0.1:9/0",
            extra_formats=(), log_level="WARNING", worker_metrics_port=0,
        )  # fmt: skip
        upgrade(settings.resolved_database_url)
        runtime = open_runtime(settings)
        # No Redis: the runtime's engine, with hooks that keep what is told.
        sessions = sync_session_factory(
            runtime.engine, Hooks(notifier=events.RecordingNotifier()).session_info()
        )
        statements: Counter[str] = Counter()
        transactions = [0]
        checkouts = [0]
        engine = runtime.engine
        event.listen(
            engine,
            "before_cursor_execute",
            lambda _c, _k, sql, *_: statements.update([sql.split(None, 1)[0].upper()]),
        )
        event.listen(engine, "commit", lambda _c: transactions.__setitem__(0, transactions[0] + 1))
        event.listen(engine.pool, "checkout", lambda *_: checkouts.__setitem__(0, checkouts[0] + 1))
        options = rendering.render_options(settings)

        def process(task_id: uuid.UUID) -> None:
            outcome = rendering.process(sessions, runtime.storage, settings, task_id)
            assert outcome == rendering.Outcome.succeeded, outcome

        try:
            for round_ in range(rounds + 1):  # the first warms every cache up
                images = [photo_jpeg(SIZE, seed=1000 * round_ + i) for i in range(count)]
                ids = _queue(sessions, runtime.storage, images)
                statements.clear()
                transactions[0] = checkouts[0] = 0
                task_ms = _cpu_ms_each(process, ids)
                per_task = {k: v / count for k, v in sorted(statements.items())}
                commits, connections = transactions[0] / count, checkouts[0] / count
                imaging_ms = _cpu_ms_each(
                    lambda data: render_variants(io.BytesIO(data), options), images
                )
                if round_:
                    runs.append(
                        {"task_cpu_ms": task_ms, "imaging_cpu_ms": imaging_ms,
                         "fixed_cpu_ms": task_ms - imaging_ms}
                    )  # fmt: skip
                    print(json.dumps(runs[-1]), flush=True)
        finally:
            runtime.close()
    summary = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    return {
        "images": count,
        "size": list(SIZE),
        "rounds": rounds,
        "cpu": _CPU,
        "runs": runs,
        "summary": summary,
        "statements_per_task": per_task,
        "commits_per_task": commits,
        "checkouts_per_task": connections,
    }


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    kinds = ", ".join(f"{k} {v:g}" for k, v in results["statements_per_task"].items())
    return "\n".join(
        [
            f"{results['images']} distinct {results['size'][0]}x{results['size'][1]} JPEGs "
            f"per round, processed back to back in one process on core {results['cpu']} "
            f"(PostgreSQL, local files, JPEG only); median of {results['rounds']} rounds.",
            "",
            "| CPU per task | imaging alone | fixed cost | SQL statements | commits "
            "| connection checkouts |",
            "| ---: | ---: | ---: | --- | ---: | ---: |",
            f"| {s['task_cpu_ms']:.2f} ms | {s['imaging_cpu_ms']:.2f} ms "
            f"| {s['fixed_cpu_ms']:.2f} ms | {kinds} | {results['commits_per_task']:g} "
            f"| {results['checkouts_per_task']:g} |",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = run(args.quick, args.rounds)
    save("fixed_cost", results)
    print(markdown(results))


if __name__ == "__main__":
    main()
