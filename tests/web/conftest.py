"""Fixtures for the page tests: the real dev server and Debian's headless Chromium,
driven by Playwright (never a downloaded browser build)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.web.browser import Watch

CHROMIUM = os.environ.get("IMAGEPIPE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Package scope: Playwright's sync API keeps an event loop running in this thread
# until it stops, so it must stop before the async tests that run after tests/web.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs it (scripts/bootstrap.sh)", pytrace=False
        )
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


def open_page(browser: Browser, watch: Watch, *, width: int = 1100, height: int = 900) -> Page:
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(30_000)
    context.on("request", lambda request: watch.requests.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.on("console", lambda message: watch.console(message.type, message.text))
    return page


@pytest.fixture
def page(browser: Browser, watch: Watch) -> Iterator[Page]:
    page = open_page(browser, watch)
    yield page
    page.context.close()
    # Every page test also checks the page stayed offline and threw nothing.
    assert watch.foreign_requests() == []
    assert watch.errors == []


@pytest.fixture
def phone(browser: Browser, watch: Watch) -> Iterator[Page]:
    page = open_page(browser, watch, width=375, height=740)
    yield page
    page.context.close()
    assert watch.foreign_requests() == []
    assert watch.errors == []
