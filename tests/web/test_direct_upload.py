"""The page's direct uploads: POST /uploads, the PUT to the upload URL, complete; and the
fall-back to POST /upload when the service or the browser cannot do them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from tests.harness import s3
from tests.harness.processes import ApiProcess, DevServer, live_api
from tests.harness.seaweedfs import SeaweedFS
from tests.images import photo
from tests.web.browser import expect_previews, payload, upload_item


def record_requests(page: Page) -> list[tuple[str, str, str]]:
    """(method, host:port, path) of every request the page makes from now on."""
    seen: list[tuple[str, str, str]] = []

    def note(request: Request) -> None:
        url = urlsplit(request.url)
        seen.append((request.method, url.netloc, url.path))

    page.on("request", note)
    return seen


def test_page_uploads_directly(page: Page, dev_server: DevServer) -> None:
    requests = record_requests(page)
    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("direct.jpg", photo(600, 300))])
    item = expect_previews(page, "direct.jpg", {"small": (150, 75), "medium": (600, 300)})
    task_id = item.get_attribute("data-task-id")
    calls = [(method, path) for method, _, path in requests]
    assert ("POST", "/uploads") in calls
    assert ("PUT", f"/tasks/{task_id}/original") in calls
    assert ("POST", f"/tasks/{task_id}/complete") in calls
    assert ("POST", "/upload") not in calls
    assert dev_server.wait(str(task_id))["original"]["filename"] == "direct.jpg"


def test_too_large_is_refused_before_any_byte_is_sent(
    page: Page, dev_server: DevServer, tmp_path: Path
) -> None:
    requests = record_requests(page)
    page.goto(dev_server.url + "/")
    # 27 MB (a sparse file of zeros): over the 25 MiB limit, which POST /uploads answers
    # at once. Given as a path, the browser reads it from disk; as a buffer, the 27 MB
    # would cross the DevTools protocol in base64 (half a minute here).
    big = tmp_path / "huge.jpg"
    with big.open("wb") as sparse:
        sparse.truncate(27 * 1000 * 1000)
    page.get_by_label("Or choose images").set_input_files(big)
    item = upload_item(page, "huge.jpg")
    expect(item).to_have_attribute("data-status", "rejected")
    expect(item.locator(".error .code")).to_have_text("file_too_large")
    assert [m for m, _, path in requests if path.endswith("/original") or path == "/upload"] == []


def test_page_falls_back_when_the_service_has_no_direct_uploads(
    page: Page, dev_server: DevServer
) -> None:
    requests = record_requests(page)
    # An older service: POST /uploads is not a route.
    page.route(
        "**/uploads",
        lambda route: route.fulfill(
            status=404, json={"error": {"code": "not_found", "message": "Not Found"}}
        ),
    )
    page.goto(dev_server.url + "/")
    picker = page.get_by_label("Or choose images")
    picker.set_input_files([payload("old-1.jpg", photo(300, 200))])
    expect_previews(page, "old-1.jpg", {"small": (150, 100)})
    picker.set_input_files([payload("old-2.jpg", photo(300, 200))])
    expect_previews(page, "old-2.jpg", {"small": (150, 100)})
    calls = [(method, path) for method, _, path in requests]
    # Asked once, then straight to POST /upload.
    assert calls.count(("POST", "/uploads")) == 1
    assert calls.count(("POST", "/upload")) == 2


def test_page_falls_back_when_the_upload_url_is_out_of_reach(
    page: Page, dev_server: DevServer
) -> None:
    requests = record_requests(page)
    # What a browser sees of a storage it cannot reach, or one without CORS.
    page.route("**/original?token=*", lambda route: route.abort("connectionrefused"))
    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("far.jpg", photo(300, 200))])
    item = expect_previews(page, "far.jpg", {"small": (150, 100)})
    calls = [(method, path) for method, _, path in requests]
    assert ("POST", "/upload") in calls
    # The direct upload it gave up on is removed, not left to expire.
    abandoned = [path for method, path in calls if method == "DELETE"]
    assert len(abandoned) == 1
    with dev_server.client() as client:
        assert client.get(abandoned[0]).status_code == 404
    assert abandoned[0] != f"/tasks/{item.get_attribute('data-task-id')}"


def test_awaiting_upload_is_a_status_on_the_page(page: Page, dev_server: DevServer) -> None:
    with dev_server.client() as client:
        created = client.post(
            "/uploads",
            json={"filename": "later.jpg", "size_bytes": 4321, "content_type": "image/jpeg"},
        )
    assert created.status_code == 201, created.text
    task_id = created.json()["task_id"]
    page.goto(dev_server.url + "/")
    page.get_by_label("Status").select_option("awaiting_upload")
    row = page.locator(f'#recent li.task[data-task-id="{task_id}"]')
    expect(row.locator(".badge")).to_have_text("Awaiting upload")
    expect(row.locator(".detail")).to_contain_text("4.3 kB announced")
    expect(page.locator("#recent li.task")).to_have_count(
        page.locator('#recent li.task[data-status="awaiting_upload"]').count()
    )


@pytest.fixture
def s3_stack(
    tmp_path: Path, redis_url: str, s3_env: dict[str, str], seaweed: SeaweedFS
) -> Iterator[tuple[ApiProcess, SeaweedFS]]:
    """A real API and worker on S3 storage, sharing no directory."""
    storage = {
        "storage_url": s3_env["IMAGEPIPE_STORAGE_URL"],
        "s3_endpoint_url": seaweed.endpoint_url,
    }
    with live_api(tmp_path / "api", redis_url, **storage) as api:
        assert api.settings is not None
        with s3.remote_worker(api.settings):
            yield api, seaweed


def test_page_uploads_straight_to_s3(page: Page, s3_stack: tuple[ApiProcess, SeaweedFS]) -> None:
    api, seaweed = s3_stack
    requests = record_requests(page)
    page.goto(api.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("s3.jpg", photo(1000, 800))])
    item = expect_previews(
        page, "s3.jpg", {"small": (150, 120), "medium": (600, 480), "large": (1000, 800)}
    )
    task_id = item.get_attribute("data-task-id")
    api_host = urlsplit(api.url).netloc
    s3_host = urlsplit(seaweed.endpoint_url).netloc
    # The bytes went to SeaweedFS (a cross-origin PUT its CORS answer allows), never
    # to the API.
    puts = [(host, path) for method, host, path in requests if method == "PUT"]
    assert len(puts) == 1 and puts[0][0] == s3_host
    assert puts[0][1].endswith(f"/staging/{task_id}")
    assert ("POST", api_host, "/upload") not in requests
    assert ("POST", api_host, f"/tasks/{task_id}/complete") in requests
    # The page's Content-Security-Policy lets it reach the bucket, and only that.
    csp = httpx.get(api.url + "/").headers["content-security-policy"]
    assert f"connect-src 'self' http://{s3_host};" in csp
