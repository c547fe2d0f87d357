"""Every variant in several formats: the task JSON's ``formats`` map, negotiation on
``Accept`` (``Vary: Accept``), the explicit ``{name}.{ext}`` URLs, one ETag per format."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image

from imagepipe.api.negotiate import choose, choose_stored
from imagepipe.config import Settings
from imagepipe.imaging.formats import FORMATS
from imagepipe.services import rendering
from tests.harness.app import run_inline
from tests.images import photo

pytestmark = pytest.mark.anyio

# What Chromium sends for an <img>.
CHROMIUM_IMG = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"


async def rendered(client: httpx.AsyncClient, settings: Settings) -> dict[str, Any]:
    response = await client.post("/upload", files={"file": ("a.jpg", photo(800, 600))})
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]
    assert run_inline(settings, task_id) == rendering.Outcome.succeeded
    task: dict[str, Any] = (await client.get(f"/tasks/{task_id}")).json()
    return task


@pytest.mark.parametrize(
    ("accept", "stored", "expected"),
    [
        (None, ("JPEG", "WEBP"), "JPEG"),
        ("*/*", ("JPEG", "WEBP", "AVIF"), "JPEG"),
        ("image/*", ("JPEG", "WEBP", "AVIF"), "JPEG"),
        (CHROMIUM_IMG, ("JPEG", "WEBP"), "WEBP"),
        (CHROMIUM_IMG, ("JPEG", "WEBP", "AVIF"), "AVIF"),
        (CHROMIUM_IMG, ("PNG", "WEBP"), "WEBP"),
        ("image/webp,*/*;q=0.8", ("JPEG", "WEBP", "AVIF"), "WEBP"),
        ("image/avif;q=0.5,image/webp;q=0.9,*/*", ("JPEG", "WEBP", "AVIF"), "JPEG"),
        ("image/avif;q=0.5,image/webp;q=0.9,*/*;q=0.1", ("JPEG", "WEBP", "AVIF"), "WEBP"),
        ("image/avif;q=0,image/webp,*/*", ("JPEG", "WEBP", "AVIF"), "WEBP"),
        ("image/webp, image/jpeg;q=0", ("JPEG", "WEBP"), "WEBP"),
        ("image/webp, image/jpeg;q=0", ("JPEG",), None),
        ("image/jpeg;q=0,*/*", ("JPEG", "WEBP"), None),
        ("image/png", ("JPEG", "WEBP"), None),
        ("image/webp;q=nonsense,*/*", ("JPEG", "WEBP"), "JPEG"),
    ],
)
def test_negotiation(accept: str | None, stored: tuple[str, ...], expected: str | None) -> None:
    formats = [spec for name in stored for spec in FORMATS.values() if spec.name == name]
    index = choose(accept, formats)
    assert (None if index is None else stored[index]) == expected


@pytest.mark.parametrize(
    ("accept", "stored", "due", "expected"),
    [
        (CHROMIUM_IMG, ("JPEG",), ("WEBP",), ("JPEG", True)),
        (CHROMIUM_IMG, ("JPEG", "WEBP"), ("AVIF",), ("WEBP", True)),
        ("*/*", ("JPEG",), ("WEBP",), ("JPEG", False)),
        (None, ("JPEG",), ("WEBP", "AVIF"), ("JPEG", False)),
        ("image/webp", ("JPEG",), ("WEBP",), (None, True)),
        (CHROMIUM_IMG, ("JPEG", "WEBP"), (), ("WEBP", False)),
    ],
)
def test_negotiation_while_extras_are_due(
    accept: str | None,
    stored: tuple[str, ...],
    due: tuple[str, ...],
    expected: tuple[str | None, bool],
) -> None:
    by_name = {spec.name: spec for spec in FORMATS.values()}
    index, waiting = choose_stored(accept, [by_name[n] for n in stored], [by_name[n] for n in due])
    assert (None if index is None else stored[index], waiting) == expected


async def test_each_variant_is_served_in_every_stored_format(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    task = await rendered(fast_client, fast_settings)
    variant = task["variants"]["medium"]
    url = variant["url"]
    assert list(variant["formats"]) == ["image/jpeg", "image/webp"]
    etags = set()
    for content_type, stored in variant["formats"].items():
        extension = {"image/jpeg": "jpg", "image/webp": "webp"}[content_type]
        assert stored["url"] == f"{url}.{extension}"
        response = await fast_client.get(stored["url"])
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert len(response.content) == stored["size_bytes"]
        assert "vary" not in response.headers  # the format is in the URL
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.get_format_mimetype() == content_type
            assert image.size == (600, 450)
        etag = response.headers["etag"]
        etags.add(etag)
        head = await fast_client.head(stored["url"])
        assert head.status_code == 200 and head.headers["etag"] == etag
        assert head.headers["content-length"] == str(stored["size_bytes"])
        cached = await fast_client.get(stored["url"], headers={"If-None-Match": etag})
        assert cached.status_code == 304
    assert len(etags) == 2  # one ETag per format
    assert variant["content_type"] == "image/jpeg"
    assert variant["size_bytes"] == variant["formats"]["image/jpeg"]["size_bytes"]

    # The variant URL negotiates, and says so.
    for accept, content_type in [("*/*", "image/jpeg"), (CHROMIUM_IMG, "image/webp")]:
        response = await fast_client.get(url, headers={"Accept": accept})
        assert response.status_code == 200
        assert response.headers["content-type"] == content_type
        assert response.headers["vary"] == "Accept"
        explicit = await fast_client.get(variant["formats"][content_type]["url"])
        assert response.headers["etag"] == explicit.headers["etag"]
        assert response.content == explicit.content
        head = await fast_client.head(url, headers={"Accept": accept})
        assert head.headers["content-type"] == content_type
        assert head.headers["vary"] == "Accept"
        # If-None-Match is compared with the format this Accept picks.
        etag = response.headers["etag"]
        cached = await fast_client.get(url, headers={"Accept": accept, "If-None-Match": etag})
        assert cached.status_code == 304 and cached.headers["vary"] == "Accept"
    webp_etag = variant["formats"]["image/webp"]["url"]
    webp_etag = (await fast_client.get(webp_etag)).headers["etag"]
    other = await fast_client.get(url, headers={"Accept": "*/*", "If-None-Match": webp_etag})
    assert other.status_code == 200 and other.headers["content-type"] == "image/jpeg"


async def test_formats_not_stored_have_stable_codes(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    task = await rendered(fast_client, fast_settings)
    url = task["variants"]["small"]["url"]
    for path, status, code in [
        (f"{url}.avif", 404, "format_not_found"),  # not configured
        (f"{url}.png", 404, "format_not_found"),  # an opaque image's base is JPEG
        (f"{url}.gif", 404, "variant_not_found"),
        (f"{url}.", 404, "variant_not_found"),
        (f"{url}.jpg.webp", 404, "variant_not_found"),
    ]:
        response = await fast_client.get(path)
        assert response.status_code == status, path
        assert response.json()["error"]["code"] == code, path
    refused = await fast_client.get(url, headers={"Accept": "image/png, image/jpeg;q=0"})
    assert refused.status_code == 406
    assert refused.json()["error"]["code"] == "not_acceptable"


async def test_avif_is_served_where_configured(
    avif_client: httpx.AsyncClient, avif_settings: Settings
) -> None:
    task = await rendered(avif_client, avif_settings)
    variant = task["variants"]["large"]
    assert list(variant["formats"]) == ["image/jpeg", "image/avif", "image/webp"]
    sizes = {kind: stored["size_bytes"] for kind, stored in variant["formats"].items()}
    assert sizes["image/avif"] < sizes["image/jpeg"]
    response = await avif_client.get(variant["url"], headers={"Accept": CHROMIUM_IMG})
    assert response.headers["content-type"] == "image/avif"
    with Image.open(io.BytesIO(response.content)) as image:
        assert image.format == "AVIF" and image.size == (800, 600)
    plain = await avif_client.get(variant["url"], headers={"Accept": "*/*"})
    assert plain.headers["content-type"] == "image/jpeg"
