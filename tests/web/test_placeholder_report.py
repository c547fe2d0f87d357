"""The page shows a task's placeholder (dominant colour, ThumbHash blur) while its
previews download, and the report of what was done once they are made."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from tests.harness.processes import DevServer
from tests.images import photo
from tests.web.browser import PROCESSING, payload, upload_item


def rgb(hex_colour: str) -> str:
    red, green, blue = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def test_placeholder_while_previews_load_then_the_report(page: Page, dev_server: DevServer) -> None:
    held: list[Route] = []
    # The preview downloads wait until the test lets them go: meanwhile only the
    # placeholder can be on screen.
    page.route("**/variants/**", lambda route: held.append(route))
    page.goto(dev_server.url + "/")
    name = "placeholder.jpg"
    page.get_by_label("Or choose images").set_input_files(payload(name, photo(900, 700)))

    item = upload_item(page, name)
    expect(item).to_have_attribute("data-status", "succeeded", timeout=PROCESSING)
    task = dev_server.wait(item.get_attribute("data-task-id") or "")
    placeholder = task["placeholder"]
    frames = item.locator("a.preview-link.placeholder")
    expect(frames).to_have_count(3)
    for index in range(3):
        frame = frames.nth(index)
        expect(frame).to_have_attribute("data-dominant-color", placeholder["dominant_color"])
        expect(frame).to_have_css("background-color", rgb(placeholder["dominant_color"]))
        expect(frame).to_have_css("background-image", re.compile(r'^url\("data:image/png;base64,'))
    expect(item.locator("a.preview-link.loaded")).to_have_count(0)

    for route in held:
        route.continue_()
    page.unroute("**/variants/**")
    expect(item.locator("a.preview-link.loaded")).to_have_count(3, timeout=20_000)

    report = item.locator("details.report")
    expect(report).to_have_count(1)
    report.locator("summary").click()
    expect(report.locator("dd").first).to_have_text("JPEG, RGB, 8-bit")
    checks = "passed: dimensions, not_blank, not_inverted, aspect, alpha_kept"
    expect(report).to_contain_text(checks)
    expect(report).to_contain_text("resize")
    expect(report).to_contain_text("queued")
