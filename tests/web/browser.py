"""Helpers for the page tests: what a page did besides what a test looks at, and
how to find an upload and its previews on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from playwright.sync_api import Locator, Page, expect

PROCESSING = 60_000  # ms: upload, queue, three previews

LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


@dataclass
class Watch:
    """What a page did besides what the test looks at."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def console(self, kind: str, text: str) -> None:
        # Chromium logs every 4xx answer; the tests that expect one check it themselves.
        if kind == "error" and not text.startswith("Failed to load resource"):
            self.errors.append(text)

    def foreign_requests(self) -> list[str]:
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).hostname not in LOCAL_HOSTS
        ]


def payload(name: str, data: bytes, mime: str = "image/jpeg") -> dict[str, object]:
    return {"name": name, "mimeType": mime, "buffer": data}


def upload_item(page: Page, name: str) -> Locator:
    return page.locator("#uploads li.upload").filter(has=page.locator(".name", has_text=name))


def expect_previews(page: Page, name: str, sizes: dict[str, tuple[int, int]]) -> Locator:
    item = upload_item(page, name)
    expect(item).to_have_attribute("data-status", "succeeded", timeout=PROCESSING)
    expect(item.locator("figure.preview")).to_have_count(3)
    for variant, (width, height) in sizes.items():
        figure = item.locator(f'figure.preview[data-variant="{variant}"]')
        expect(figure.locator(".dims")).to_have_text(f"{width} \N{MULTIPLICATION SIGN} {height} px")
        # The picture itself arrived and has the size the caption claims.
        figure.locator("img").evaluate(
            "(img, width) => new Promise((ok, fail) => {"
            "  const check = () => img.naturalWidth === width ? ok() :"
            "    fail(new Error(`naturalWidth ${img.naturalWidth}, expected ${width}`));"
            "  img.addEventListener('error', () => fail(new Error(`${img.src} did not load`)));"
            "  setTimeout(() => fail(new Error(`${img.src} still loading`)), 20000);"
            "  img.complete && img.naturalWidth ? check() : img.addEventListener('load', check);"
            "})",
            width,
        )
    return item
