"""The CLI's client honours 429 + Retry-After as it does 503: it comes back as asked,
a bounded number of times, and reports the service's error when it gives up."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from imagepipe.client import UPLOAD_ATTEMPTS, Api, ServiceError
from tests.images import photo

pytestmark = pytest.mark.anyio

TASK = "6f1c0000-0000-4000-8000-000000000001"


def refusal(status: int, code: str) -> httpx.Response:
    body = {"error": {"code": code, "message": "Come back later."}}
    return httpx.Response(status, json=body, headers={"Retry-After": "1"})


class Scripted:
    """A server that answers each request with the next of ``answers``."""

    def __init__(self, *answers: httpx.Response) -> None:
        self.answers = list(answers)
        self.seen: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.seen.append(f"{request.method} {request.url.path}")
        return self.answers.pop(0)


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "a.jpg"
    path.write_bytes(photo(64, 48))
    return path


async def test_upload_comes_back_after_429_and_503(picture: Path) -> None:
    accepted = httpx.Response(202, json={"task_id": TASK, "status": "queued"})
    server = Scripted(refusal(429, "rate_limited"), refusal(503, "queue_full"), accepted)
    sent: list[int] = []
    size = len(photo(64, 48))
    async with Api("http://imagepipe", None, transport=httpx.MockTransport(server)) as api:
        assert await api.upload(picture, sent.append) == TASK
    assert server.seen == ["POST /upload"] * 3
    assert sum(sent) == size  # rewound before each retry


async def test_direct_upload_comes_back_after_429(picture: Path) -> None:
    created = {
        "task_id": TASK,
        "upload": {"method": "PUT", "url": "http://imagepipe/put", "headers": {}},
        "complete_url": f"/tasks/{TASK}/complete",
    }
    server = Scripted(
        refusal(429, "quota_exceeded"),
        httpx.Response(201, json=created),
        httpx.Response(204),
        refusal(429, "rate_limited"),
        httpx.Response(202, json={"task_id": TASK, "status": "queued"}),
    )
    transport = httpx.MockTransport(server)
    async with Api("http://imagepipe", None, direct=True, transport=transport) as api:
        assert await api.upload(picture, lambda _: None) == TASK
    assert server.seen == [
        "POST /uploads",
        "POST /uploads",
        "PUT /put",
        f"POST /tasks/{TASK}/complete",
        f"POST /tasks/{TASK}/complete",
    ]


async def test_gives_up_with_the_services_error(picture: Path) -> None:
    server = Scripted(*[refusal(429, "quota_exceeded") for _ in range(UPLOAD_ATTEMPTS)])
    async with Api("http://imagepipe", None, transport=httpx.MockTransport(server)) as api:
        with pytest.raises(ServiceError) as raised:
            await api.upload(picture, lambda _: None)
    assert raised.value.code == "quota_exceeded" and raised.value.status == 429
    assert len(server.seen) == UPLOAD_ATTEMPTS


async def test_wait_comes_back_when_a_key_has_too_many_followers() -> None:
    task = {"task_id": TASK, "status": "succeeded"}
    stream = f"event: status\ndata: {json.dumps(task)}\n\n"
    server = Scripted(
        refusal(429, "too_many_followers"),
        httpx.Response(200, text=stream, headers={"Content-Type": "text/event-stream"}),
    )
    async with Api("http://imagepipe", None, transport=httpx.MockTransport(server)) as api:
        assert (await api.wait(TASK, max_wait=30))["status"] == "succeeded"
    assert len(server.seen) == 2
