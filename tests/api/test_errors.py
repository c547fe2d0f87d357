"""One table of error codes; transient failures are 503, bugs are 500; no failure's
detail (paths, hosts, SQL) reaches a client."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from imagepipe import errors
from imagepipe.api import deps
from imagepipe.api.app import create_app
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from imagepipe.services import transient
from imagepipe.storage import StorageUnavailable
from tests.harness.app import open_client
from tests.harness.server import free_port
from tests.images import photo
from tests.observe import stored_files

pytestmark = pytest.mark.anyio


def _subclasses(cls: type[errors.ImagepipeError]) -> list[type[errors.ImagepipeError]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def test_every_error_class_has_a_row_in_the_table() -> None:
    for cls in _subclasses(errors.ImagepipeError):
        if cls is errors.UploadClosed:
            continue  # answers the refused task's own code
        assert cls.code in errors.CODES, cls
    for code, spec in errors.CODES.items():
        assert 400 <= spec.status < 600 and spec.message, code
    # Retry-After goes with every retryable 503.
    assert {c for c, s in errors.CODES.items() if s.status == 503} <= {
        c for c, s in errors.CODES.items() if s.retryable
    }


def test_transient_is_one_definition() -> None:
    assert transient.is_transient(StorageUnavailable("S3 unreachable"))
    assert transient.is_transient(OSError(28, "No space left on device"))
    assert transient.is_transient(ConnectionRefusedError())
    assert not transient.is_transient(FileNotFoundError(2, "No such file", "/srv/x"))
    assert not transient.is_transient(PermissionError(13, "Permission denied"))
    assert not transient.is_transient(ValueError("a bug"))


async def _upload_with_storage(settings: Settings, storage: object) -> httpx.Response:
    app = create_app(settings)
    app.dependency_overrides[deps.get_storage] = lambda: storage
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/upload", files={"file": ("a.jpg", photo(40, 30))})


class _BuggyStorage:
    """A storage whose code has a bug that surfaces as an OSError (a wrong path)."""

    def local_temp(self) -> Path:
        raise FileNotFoundError(2, "No such file or directory", "/srv/secret/imagepipe/tmp")


async def test_an_oserror_bug_is_500_not_503(fast_settings: Settings) -> None:
    """An OSError is not a backend outage by its type alone: a missing file under our
    own paths is a bug, and a 503 would have clients retry it for ever."""
    response = await _upload_with_storage(fast_settings, _BuggyStorage())
    assert response.status_code == 500, response.text
    assert response.json() == {"error": {"code": "internal_error", "message": "Internal error."}}
    assert "retry-after" not in response.headers
    assert "/srv/secret" not in response.text


async def test_a_storage_failure_is_503_without_its_detail(fast_settings: Settings) -> None:
    """The disk under the storage refuses the write (a file where the originals
    directory must be): 503 with the fixed message; the path stays in the log."""
    root = fast_settings.resolved_storage_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "originals").write_bytes(b"not a directory")
    async with open_client(create_app(fast_settings, parts=Parts())) as client:
        response = await client.post("/upload", files={"file": ("a.jpg", photo(40, 30))})
    assert response.status_code == 503, response.text
    assert response.json()["error"] == {
        "code": "service_unavailable",
        "message": "The storage is unavailable; try again shortly.",
    }
    assert str(root) not in response.text and "originals" not in response.text
    assert response.headers["retry-after"]


async def test_a_database_failure_is_503_without_its_detail(tmp_path: Path, redis_url: str) -> None:
    port = free_port()
    dead = f"postgresql+asyncpg://imagepipe:hunter2@127.0.0.1:{port}/nowhere"
    settings = Settings(data_dir=tmp_path, database_url=dead, redis_url=redis_url)
    async with open_client(create_app(settings)) as client:
        for response in (
            await client.post("/upload", files={"file": ("a.jpg", photo(40, 30))}),
            await client.get("/tasks"),
        ):
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "service_unavailable"
            for detail in (str(port), "127.0.0.1", "hunter2", "asyncpg", "SELECT", "INSERT"):
                assert detail not in response.text
    assert stored_files(settings) == []
