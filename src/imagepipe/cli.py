"""The ``imagepipe`` command: api, worker, beat, migrate, backfill and dev."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import click

from imagepipe import client
from imagepipe.config import Settings


@click.group()
def main() -> None:
    """imagepipe: upload an image, get a task id at once, previews in the background."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
@click.option("--reload", is_flag=True, help="Restart on source changes (development).")
def api(host: str, port: int, workers: int, reload: bool) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from imagepipe import logs
    from imagepipe.api.app import create_app
    from imagepipe.api.protocol import LimitedHttpToolsProtocol

    settings = Settings()
    logs.configure(settings)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "loop": "uvloop",
        # httptools with a 64 KiB head limit (431) and a head deadline (408).
        "http": LimitedHttpToolsProtocol,
        "log_config": None,
        "access_log": False,
        "timeout_graceful_shutdown": 20,
    }
    if workers == 1 and not reload:
        # One process: the app is built here, from these settings.
        uvicorn.run(create_app(settings), **options)
    else:
        # Each server process (or each reload) runs the factory, reading its own.
        factory = "imagepipe.api.app:create_app"
        uvicorn.run(
            factory, factory=True, workers=None if reload else workers, reload=reload, **options
        )


@main.command()
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (default: CPUs).")
@click.option("--beat", is_flag=True, help="Also run the periodic reconciler in this worker.")
@click.option(
    "--queues",
    "-Q",
    default=None,
    help="Serve only these (comma-separated: render, on_demand, follow_up, maintenance). "
    "Default: all of them, follow_up and maintenance in a small pool of their own.",
)
@click.option("--hostname", "-n", default=None, help="Celery node name (default celery@%h).")
def worker(concurrency: int | None, beat: bool, queues: str | None, hostname: str | None) -> None:
    """Run a Celery worker that makes the previews."""
    from imagepipe.worker import pools

    if parent := os.environ.pop(pools.PARENT_VARIABLE, None):
        pools.become_follow_up_pool(int(parent))
    try:
        served = pools.queue_names(queues or "render,on_demand")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--queues") from None
    # Before the settings are read. An explicit spool directory may be a volume shared
    # with the follow-up workers: then the operator's size stands.
    narrowed = queues is not None
    if not pools.keeps_pixels(served, narrowed) and "IMAGEPIPE_SPOOL_DIR" not in os.environ:
        os.environ["IMAGEPIPE_SPOOL_MAX_MB"] = "0"
    # Before prometheus_client is imported: children write their samples here and
    # the main process serves the merged view (see imagepipe.worker.observe). A
    # follow-up pool started below writes into its parent's directory.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ or not parent:
        metrics_dir = tempfile.mkdtemp(prefix="imagepipe-metrics-")
        atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from imagepipe.worker.app import celery_app, settings

    argv = ["worker", "--loglevel", settings.log_level, "--pool", "prefork"]
    # Mingle asks the other workers for revoked task ids at start (a one-second wait)
    # and gossip follows their events: imagepipe revokes nothing and its workers
    # coordinate through the database, so both would cost start time and broker traffic.
    argv += ["--without-mingle", "--without-gossip"]
    argv += ["--queues", ",".join(served)]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if hostname:
        argv += ["--hostname", hostname]
    if beat:
        argv += ["--beat", "--schedule", str(_beat_schedule_path(settings))]
    follow_up = (
        None if queues else pools.FollowUpPool(dict(os.environ), log_level=settings.log_level)
    )
    if follow_up is not None:
        follow_up.start()
        from celery.signals import worker_shutting_down

        # The follow-up pool winds down beside the render pool, not after it: a
        # container runtime signals only this process, and its grace period is short.
        worker_shutting_down.connect(lambda **_: follow_up.terminate(), weak=False)
    try:
        celery_app.worker_main(argv)
    finally:
        if follow_up is not None:
            # Its running work (a webhook delivery, a re-render) finishes first.
            follow_up.stop(settings.task_hard_time_limit + 10)


@main.command()
def beat() -> None:
    """Run the periodic reconciler (Celery beat)."""
    from imagepipe.worker.app import celery_app, settings

    schedule = str(_beat_schedule_path(settings))
    celery_app.start(["beat", "--loglevel", settings.log_level, "--schedule", schedule])


@main.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from imagepipe.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url)
    click.echo("database schema is up to date")


@main.command()
@click.option("--dry-run", is_flag=True, help="Count the out-of-date tasks; queue nothing.")
@click.option("--after", type=click.UUID, default=None, help="Resume after this task id.")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=200, show_default=True)
def backfill(dry_run: bool, after: uuid.UUID | None, batch_size: int) -> None:
    """Re-render, through the workers, every task whose variants no longer match the
    settings (sizes, formats, qualities). Safe to run twice or to stop and resume."""
    from imagepipe.runtime import open_runtime
    from imagepipe.services import backfill as service
    from imagepipe.services.rendering import render_options

    runtime = open_runtime()

    def progress(batch: service.Batch) -> None:
        click.echo(f"checked {batch.checked}, out of date {len(batch.stale)}, up to {batch.last}")

    try:
        checked, stale = service.run(
            runtime.sessions,
            render_options(runtime.settings),
            None if dry_run else runtime.queue.enqueue_refresh,
            after=after,
            batch_size=batch_size,
            progress=progress,
        )
    finally:
        runtime.close()
    verb = "would re-render" if dry_run else "queued for re-rendering"
    click.echo(f"{checked} tasks checked, {stale} {verb}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
def purge(dry_run: bool) -> None:
    """Apply IMAGEPIPE_KEEP_ORIGINALS and IMAGEPIPE_TASK_RETENTION now."""
    from imagepipe.runtime import open_runtime
    from imagepipe.services import retention

    runtime = open_runtime()
    try:
        report = retention.purge(
            runtime.sessions, runtime.storage, runtime.settings, dry_run=dry_run
        )
    finally:
        runtime.close()
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {report.tasks_removed} tasks and {report.originals_removed} originals")
    if report.interrupted:
        raise click.ClickException("stopped by a storage or database error; run it again")


@main.command()
@click.option("--dry-run", is_flag=True, help="Only list the tasks that would be queued.")
def requeue(dry_run: bool) -> None:
    """Queue again the tasks that failed because storage or the database failed."""
    from imagepipe.runtime import open_runtime
    from imagepipe.services import recovery

    runtime = open_runtime()
    queued = 0
    try:
        if dry_run:
            for task_id in recovery.requeueable(runtime.sessions):
                click.echo(str(task_id))
                queued += 1
        else:
            # Batch by batch: a task moved to queued no longer matches, so this ends.
            while batch := recovery.requeue(runtime.sessions):
                for task_id in batch:
                    # A lost publish is not lost work: the reconciler publishes
                    # queued rows after the grace period.
                    runtime.queue.enqueue(task_id)
                queued += len(batch)
    finally:
        runtime.close()
    click.echo(f"{'would queue' if dry_run else 'queued'} {queued} tasks")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
def dev(host: str, port: int, concurrency: int) -> None:
    """API + worker + reconciler on this machine: SQLite, local storage, no Docker."""
    from imagepipe.devserver import run

    raise SystemExit(run(host=host, port=port, concurrency=concurrency))


def _beat_schedule_path(settings: Settings) -> Path:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.data_dir / "celerybeat-schedule"


# The HTTP client side: `imagepipe upload` and `imagepipe status`.
main.add_command(client.upload)
main.add_command(client.status)
main.add_command(client.sign)

if __name__ == "__main__":
    main()
