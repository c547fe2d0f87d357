"""What a real browser gets: Chromium's <img> asks for AVIF and WebP, so it gets WebP by
default and AVIF where AVIF is configured; its fetch() sends */* and gets the base."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page

from imagepipe.services import rendering
from tests.harness.app import run_inline
from tests.harness.processes import live_api
from tests.images import photo


@pytest.mark.parametrize(
    ("extra_formats", "img_type"),
    [(("WEBP",), "image/webp"), (("AVIF", "WEBP"), "image/avif")],
)
def test_img_gets_the_best_format_configured(
    page: Page, tmp_path: Path, redis_url: str, extra_formats: tuple[str, ...], img_type: str
) -> None:
    with live_api(tmp_path, redis_url, extra_formats=extra_formats) as server:
        assert server.settings is not None
        with server.client() as client:
            response = client.post("/upload", files={"file": ("a.jpg", photo(800, 600))})
            task_id = response.json()["task_id"]
            assert run_inline(server.settings, task_id) == rendering.Outcome.succeeded
            variant = client.get(f"/tasks/{task_id}").json()["variants"]["medium"]
            # A client that accepts anything gets the base format.
            plain = client.get(variant["url"], headers={"Accept": "*/*"})
            assert plain.headers["content-type"] == "image/jpeg"

        page.goto(server.url + "/")
        url = server.url + variant["url"]
        with page.expect_response(url) as answer:
            page.evaluate(
                "(url) => { const img = document.createElement('img');"
                " img.id = 'negotiated'; img.src = url; document.body.append(img); }",
                url,
            )
        response = answer.value
        assert "image/avif" in response.request.all_headers()["accept"]
        assert response.status == 200
        assert response.headers["content-type"] == img_type
        assert response.headers["vary"] == "Accept"
        # The browser decoded what it got, at the variant's size.
        width = page.locator("#negotiated").evaluate(
            "(img) => img.decode().then(() => img.naturalWidth)"
        )
        assert width == variant["width"] == 600

        # fetch() sends Accept: */* — the base format.
        fetched = page.evaluate(
            "(url) => fetch(url, {cache: 'no-store'}).then(r => r.headers.get('content-type'))",
            url,
        )
        assert fetched == "image/jpeg"
