"""The ``imagepipe`` command: api, worker, beat, migrate and dev."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

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
    from imagepipe.api.protocol import LimitedHttpToolsProtocol

    logs.configure(Settings())
    uvicorn.run(
        "imagepipe.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=None if reload else workers,
        reload=reload,
        loop="uvloop",
        # httptools with a 64 KiB head limit (431) and a head deadline (408).
        http=LimitedHttpToolsProtocol,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
    )


@main.command()
@click.option("--concurrency", "-c", type=int, default=None, help="Processes (default: CPUs).")
@click.option("--beat", is_flag=True, help="Also run the periodic reconciler in this worker.")
def worker(concurrency: int | None, beat: bool) -> None:
    """Run a Celery worker that makes the previews."""
    # Before prometheus_client is imported: children write their samples here and
    # the main process serves the merged view (see imagepipe.worker.observe).
    metrics_dir = tempfile.mkdtemp(prefix="imagepipe-metrics-")
    atexit.register(shutil.rmtree, metrics_dir, ignore_errors=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from imagepipe.worker.app import celery_app

    argv = ["worker", "--loglevel", Settings().log_level, "--pool", "prefork"]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    if beat:
        argv += ["--beat", "--schedule", str(_beat_schedule_path())]
    celery_app.worker_main(argv)


@main.command()
def beat() -> None:
    """Run the periodic reconciler (Celery beat)."""
    from imagepipe.worker.app import celery_app

    celery_app.start(
        ["beat", "--loglevel", Settings().log_level, "--schedule", str(_beat_schedule_path())]
    )


@main.command()
def migrate() -> None:
    """Bring the database schema up to date (Alembic)."""
    from imagepipe.db.migrate import upgrade

    settings = Settings()
    upgrade(settings.resolved_database_url)
    click.echo("database schema is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--concurrency", "-c", type=int, default=2, show_default=True)
def dev(host: str, port: int, concurrency: int) -> None:
    """API + worker + reconciler on this machine: SQLite, local storage, no Docker."""
    from imagepipe.devserver import run

    raise SystemExit(run(host=host, port=port, concurrency=concurrency))


def _beat_schedule_path() -> object:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings.data_dir / "celerybeat-schedule"


# The HTTP client side: `imagepipe upload` and `imagepipe status`.
main.add_command(client.upload)
main.add_command(client.status)

if __name__ == "__main__":
    main()
