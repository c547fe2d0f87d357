"""The upload page at /, end to end: real browser, real API, real worker."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, expect

from tests.harness.processes import TEST_API_KEY, DevServer
from tests.images import photo
from tests.web.browser import Watch, expect_previews, payload, upload_item

# Sizes chosen so every preview's size is exact: box 150/600/1200, never upscaled.
ONE = (
    "one.jpg",
    photo(1000, 800),
    {"small": (150, 120), "medium": (600, 480), "large": (1000, 800)},
)
TWO = (
    "two.png",
    photo(1200, 600, "PNG"),
    {"small": (150, 75), "medium": (600, 300), "large": (1200, 600)},
)


def test_two_images_get_three_previews_each(
    page: Page, dev_server: DevServer, tmp_path: Path
) -> None:
    page.goto(dev_server.url + "/")
    picker = page.get_by_label("Or choose images")
    picker.set_input_files([payload(ONE[0], ONE[1]), payload(TWO[0], TWO[1], "image/png")])

    expect(page.locator("#uploads li.upload")).to_have_count(2)
    for name, _, sizes in (ONE, TWO):
        item = expect_previews(page, name, sizes)
        task_id = item.get_attribute("data-task-id")
        assert task_id and dev_server.wait(task_id)["original"]["filename"] == name
    # Status changes were announced to screen readers.
    expect(page.locator("#announcer")).not_to_be_empty()

    page.screenshot(path=tmp_path / "page.png", full_page=True)
    if target := os.environ.get("IMAGEPIPE_SCREENSHOT"):  # to refresh docs/screenshot.png
        page.screenshot(path=target, full_page=True)


def test_rejected_file_shows_the_service_error(page: Page, dev_server: DevServer) -> None:
    text = b"this is not an image, whatever its name says\n"
    expected = dev_server.upload("notes.jpg", text)
    assert expected.status_code == 415
    error = expected.json()["error"]

    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("notes.jpg", text)])

    item = upload_item(page, "notes.jpg")
    expect(item).to_have_attribute("data-status", "rejected")
    expect(item.locator(".error .message")).to_have_text(error["message"])
    expect(item.locator(".error .code")).to_have_text("unsupported_media_type")
    expect(item.locator("figure")).to_have_count(0)


def test_recent_tasks_newest_first_with_more(page: Page, dev_server: DevServer) -> None:
    # More than one page (10) of tasks, uploaded one after the other.
    ids = []
    for i in range(11):
        response = dev_server.upload(f"recent-{i}.jpg", photo(64 + i, 48))
        assert response.status_code == 202, response.text
        ids.append(response.json()["task_id"])
    dev_server.wait(ids[-1])

    page.goto(dev_server.url + "/")
    rows = page.locator("#recent li.task")
    expect(rows).to_have_count(10)
    newest_first = list(reversed(ids))
    assert [rows.nth(i).get_attribute("data-task-id") for i in range(10)] == newest_first[:10]
    expect(rows.first.locator(".name")).to_have_text("recent-10.jpg")

    more = page.get_by_role("button", name="More")
    expect(more).to_be_visible()
    more.click()
    expect(page.locator(f'#recent li.task[data-task-id="{ids[0]}"]')).to_have_count(1)
    shown = [rows.nth(i).get_attribute("data-task-id") for i in range(11)]
    assert shown == newest_first
    assert rows.count() > 10


def test_upload_appears_in_recent_tasks(page: Page, dev_server: DevServer) -> None:
    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("listed.jpg", photo(300, 200))])
    item = expect_previews(page, "listed.jpg", {"small": (150, 100)})
    task_id = item.get_attribute("data-task-id")
    row = page.locator(f'#recent li.task[data-task-id="{task_id}"]')
    expect(row).to_have_attribute("data-status", "succeeded")
    expect(row.locator(".name")).to_have_text("listed.jpg")
    expect(page.locator("#recent li.task").first).to_have_attribute("data-task-id", task_id or "")


def test_page_loads_nothing_from_other_hosts(
    page: Page, dev_server: DevServer, watch: Watch
) -> None:
    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("offline.jpg", photo(200, 100))])
    expect_previews(page, "offline.jpg", {"small": (150, 75)})
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("#recent li.task").first).to_be_visible()
    assert any("/static/app.js" in url for url in watch.requests)
    assert watch.requests and watch.foreign_requests() == []


def test_drop_zone_opens_the_picker_from_the_keyboard(page: Page, dev_server: DevServer) -> None:
    # Playwright turns file-chooser interception on without waiting for it; a listener
    # added before the page loads makes sure it is on before the first key press.
    page.on("filechooser", lambda _: None)
    page.goto(dev_server.url + "/")
    zone = page.get_by_role("button", name=re.compile("Drop images here"))
    # Tab order: skip link, API key summary, then the drop zone.
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    expect(zone).to_be_focused()
    outline = zone.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline not in ("", "none")  # focus is visible
    # A pending chooser blocks the next one, so each is answered before the next key.
    for key, name in (("Enter", "enter.jpg"), (" ", "space.jpg")):
        with page.expect_file_chooser() as chooser:
            page.keyboard.press(key)
        assert chooser.value.is_multiple()
        chooser.value.set_files([payload(name, photo(600, 300))])
        expect_previews(page, name, {"small": (150, 75), "medium": (600, 300)})
        zone.focus()


def test_drop_files_on_the_zone(page: Page, dev_server: DevServer) -> None:
    page.goto(dev_server.url + "/")
    data = list(photo(240, 120))
    page.locator("#drop-zone").evaluate(
        """(zone, bytes) => {
          const file = new File([new Uint8Array(bytes)], "dropped.jpg", {type: "image/jpeg"});
          const dataTransfer = new DataTransfer();
          dataTransfer.items.add(file);
          zone.dispatchEvent(new DragEvent("drop", {dataTransfer, cancelable: true}));
        }""",
        data,
    )
    expect_previews(page, "dropped.jpg", {"small": (150, 75), "large": (240, 120)})


def test_usable_on_a_phone(phone: Page, dev_server: DevServer) -> None:
    phone.goto(dev_server.url + "/")
    phone.get_by_label("Or choose images").set_input_files([payload("phone.jpg", photo(1000, 800))])
    item = expect_previews(phone, "phone.jpg", ONE[2])
    expect(phone.locator("#recent li.task").first).to_be_visible()
    # No sideways scrolling, and the three previews sit side by side.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    tops = [box["y"] for box in (f.bounding_box() for f in item.locator("figure").all()) if box]
    assert len(tops) == 3 and max(tops) - min(tops) < 200


def test_api_key_pasted_on_the_page(page: Page, secured_dev_server: DevServer) -> None:
    server = secured_dev_server
    page.goto(server.url + "/")
    expect(page.locator("#recent-error")).to_contain_text("unauthorized")

    # The 401 opens the key panel by itself.
    expect(page.locator("#key-panel")).to_have_attribute("open", "")
    page.get_by_label("API key").fill(TEST_API_KEY)
    page.get_by_role("button", name="Save key").click()
    expect(page.locator("#recent-error")).to_be_hidden()
    assert page.evaluate("localStorage.getItem('imagepipe.apiKey')") == TEST_API_KEY

    page.reload()  # the key is remembered
    page.get_by_label("Or choose images").set_input_files([payload("keyed.jpg", photo(300, 300))])
    expect_previews(page, "keyed.jpg", {"small": (150, 150), "medium": (300, 300)})


def test_page_follows_the_event_stream(page: Page, dev_server: DevServer, watch: Watch) -> None:
    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload("live.jpg", photo(400, 300))])
    item = expect_previews(page, "live.jpg", {"small": (150, 113), "medium": (400, 300)})
    task_id = item.get_attribute("data-task-id")
    paths = [urlsplit(url).path for url in watch.requests]
    assert paths.count(f"/tasks/{task_id}/events") == 1
    assert f"/tasks/{task_id}" not in paths  # followed, never polled


def test_a_task_offers_an_on_demand_link(page: Page, dev_server: DevServer) -> None:
    """The form under the previews asks the service for a signed link; `imagepipe dev`
    has no signing key, so the page shows the service's answer saying so."""
    page.goto(dev_server.url + "/")
    page.get_by_label("Or choose images").set_input_files([payload(ONE[0], ONE[1])])
    item = expect_previews(page, ONE[0], ONE[2])
    item.get_by_label("Rendition options").fill("w:300")
    item.get_by_role("button", name="Make link").click()
    expect(item.locator(".link-result code")).to_have_text("signing_disabled")
