"""Swagger UI at /docs (served offline by the app): "Try it out" on POST /upload."""

from __future__ import annotations

import json
import re

from playwright.sync_api import Page, expect

from tests.harness.processes import DevServer
from tests.images import photo


def test_try_it_out_upload_answers_202(page: Page, dev_server: DevServer) -> None:
    page.goto(dev_server.url + "/docs")
    operation = page.locator(".opblock-post").filter(
        has=page.locator(".opblock-summary-path", has_text=re.compile(r"^/upload$"))
    )
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator('input[type="file"]').set_input_files(
        {"name": "swagger.jpg", "mimeType": "image/jpeg", "buffer": photo(320, 240)}
    )
    operation.get_by_role("button", name="Execute").click()

    live = operation.locator(".live-responses-table")
    row = live.locator("tbody tr.response")
    expect(row.locator("td.response-col_status")).to_have_text("202", timeout=15_000)
    body = json.loads(row.locator(".response-col_description pre").first.inner_text())
    assert body["status"] == "queued"
    assert body["status_url"] == f"/tasks/{body['task_id']}"
    assert dev_server.wait(body["task_id"])["original"]["filename"] == "swagger.jpg"
