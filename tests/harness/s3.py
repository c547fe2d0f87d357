"""imagepipe on S3 storage in the tests: settings on a SeaweedFS, a worker that shares
no directory with the API, and what the bucket holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagepipe.config import Settings
from imagepipe.storage import open_storage
from tests.harness.app import make_settings
from tests.harness.processes import WorkerProcess, settings_env


def s3_settings(
    tmp_path: Path, database_url: str, redis_url: str, s3_env: dict[str, str], **overrides: object
) -> Settings:
    """Test settings whose storage is the bucket (and prefix) ``s3_env`` names."""
    return make_settings(
        tmp_path,
        database_url,
        redis_url,
        storage_url=s3_env["IMAGEPIPE_STORAGE_URL"],
        s3_endpoint_url=s3_env["IMAGEPIPE_S3_ENDPOINT_URL"],
        **overrides,
    )


@contextmanager
def remote_worker(settings: Settings) -> Iterator[WorkerProcess]:
    """A real worker with ``settings`` but a data directory of its own: as on another
    host, nothing local is shared with the API."""
    env = settings_env(settings)
    env["IMAGEPIPE_DATA_DIR"] = str(settings.data_dir.parent / "worker-data")
    process = WorkerProcess(env)
    process.start()
    try:
        yield process
    finally:
        process.stop()


def object_keys(settings: Settings, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in the settings' storage, sorted."""
    storage = open_storage(settings)
    try:
        return sorted(info.key for info in storage.list(prefix))
    finally:
        storage.close()
