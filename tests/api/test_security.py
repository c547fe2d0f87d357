"""API keys, CORS, security headers, and defaults that must not work as secrets."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from imagepipe.api import deps
from imagepipe.api.app import create_app
from imagepipe.api.middleware import SECURITY_HEADERS
from imagepipe.api.parts import Parts
from imagepipe.config import Settings
from tests.harness.app import SettingsWith, make_settings, open_client, run_inline
from tests.harness.server import free_port
from tests.images import photo

pytestmark = pytest.mark.anyio

KEYS = ("k3y-one-0123456789abcdef", "k3y-two-fedcba9876543210")
PUBLIC = {"/healthz", "/readyz"}
# A direct upload's PUT carries its own credential, like a presigned S3 URL.
TOKEN_ONLY = "/tasks/{task_id}/original"
# A signed on-demand link: its signature is the credential (no signing key here: 404).
SIGNED = "/r/"


def operations(app: FastAPI, task_id: str) -> list[tuple[str, str]]:
    """Every documented (method, path), path parameters filled in."""
    found = []
    for path, methods in app.openapi()["paths"].items():
        concrete = path.replace("{task_id}", task_id).replace("{name}", "small")
        found += [(method.upper(), concrete) for method in methods]
    found.append(("HEAD", f"/tasks/{task_id}/variants/small"))  # undocumented twin of GET
    return found


@pytest.fixture
def secured_settings(fast_settings_with: SettingsWith) -> Settings:
    return fast_settings_with(api_keys=KEYS)


@pytest.fixture
async def secured(secured_settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(secured_settings, parts=Parts())
    async with open_client(app) as client:
        yield app, client


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    if response.request.method != "HEAD":
        assert response.json() == {
            "error": {
                "code": "unauthorized",
                "message": "A valid API key is required (Authorization: Bearer <key>).",
            }
        }


async def test_every_endpoint_but_health_needs_a_key(
    secured: tuple[FastAPI, httpx.AsyncClient], secured_settings: Settings
) -> None:
    app, client = secured
    upload = await client.post(
        "/upload", files={"file": ("a.jpg", photo(300, 200))}, headers=bearer(KEYS[0])
    )
    assert upload.status_code == 202, upload.text
    task_id = upload.json()["task_id"]
    assert run_inline(secured_settings, task_id).value == "succeeded"

    ops = operations(app, task_id)
    assert {path for _, path in ops} >= PUBLIC | {"/upload", "/tasks", "/metrics"}
    for method, path in ops:
        if path in PUBLIC:
            response = await client.request(method, path)
            assert response.status_code in (200, 503), (method, path, response.status_code)
            continue
        if path == TOKEN_ONLY.format(task_id=task_id):
            for token in ("", "?token=guess"):
                response = await client.request(method, path + token, headers=bearer(KEYS[0]))
                assert response.status_code in (403, 422), (method, path, token)
            continue
        if path.startswith(SIGNED):
            response = await client.request(method, path)
            assert response.status_code in (403, 404), (method, path, response.status_code)
            continue
        assert_unauthorized(await client.request(method, path))
        if method == "DELETE":
            continue  # done last, below
        authorized = await client.request(method, path, headers=bearer(KEYS[1]))
        assert authorized.status_code not in (401, 403), (method, path)
        assert authorized.status_code < 500, (method, path, authorized.text)

    # The upload is refused before a byte is stored.
    files = {"file": ("a.jpg", photo(50, 40))}
    assert_unauthorized(await client.post("/upload", files=files))
    deleted = await client.delete(f"/tasks/{task_id}", headers=bearer(KEYS[0]))
    assert deleted.status_code == 204
    root = secured_settings.resolved_storage_root
    assert [p for p in (root / "originals").iterdir()] == []


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Basic {KEYS[0]}",
        f"Token {KEYS[0]}",
        f"Bearer {KEYS[0][:-1]}",  # a prefix of a key
        f"Bearer {KEYS[0]}x",
        f"Bearer {KEYS[0].upper()}",
        f"Bearer {KEYS[0]},{KEYS[1]}",
        f"{KEYS[0]}",
        "Bearer \u00e9\u00e8",
    ],
)
async def test_wrong_credentials_are_401(
    secured: tuple[FastAPI, httpx.AsyncClient], authorization: str | None
) -> None:
    _, client = secured
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8")}
    response = await client.get("/tasks", headers=headers)  # type: ignore[arg-type]
    assert_unauthorized(response)


async def test_a_key_elsewhere_than_the_header_is_not_accepted(
    secured: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = secured
    for params in ({"api_key": KEYS[0]}, {"access_token": KEYS[0]}, {"key": KEYS[0]}):
        assert_unauthorized(await client.get("/tasks", params=params))
    assert_unauthorized(await client.get("/tasks", headers={"Cookie": f"api_key={KEYS[0]}"}))


@pytest.mark.parametrize("authorization", [f"Bearer {KEYS[0]}", f"bearer  {KEYS[1]} "])
async def test_each_configured_key_works(
    secured: tuple[FastAPI, httpx.AsyncClient], authorization: str
) -> None:
    _, client = secured
    response = await client.get("/tasks", headers={"Authorization": authorization})
    assert response.status_code == 200, response.text


async def test_no_keys_configured_means_open(fast_client: httpx.AsyncClient) -> None:
    assert (await fast_client.get("/tasks")).status_code == 200


async def test_health_stays_open_with_keys(secured: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _, client = secured
    assert (await client.get("/healthz")).status_code == 200
    assert (await client.get("/readyz")).status_code == 200


async def test_an_empty_key_never_lets_anyone_in(fast_settings_with: SettingsWith) -> None:
    """IMAGEPIPE_API_KEYS='[""]' (an unset variable pasted into a list) must not make
    an empty bearer token a valid key: such settings are refused outright."""
    for blank in ("", "  "):
        with pytest.raises(ValidationError, match="must not be empty"):
            Settings(api_keys=(blank, KEYS[0]))
    settings = fast_settings_with(api_keys=(KEYS[0],))
    async with open_client(create_app(settings, parts=Parts())) as client:
        for authorization in ("Bearer ", "Bearer", "Bearer  "):
            response = await client.get("/tasks", headers={"Authorization": authorization})
            assert response.status_code == 401, authorization


# --- CORS -------------------------------------------------------------------------

ORIGIN = "https://app.example"
EVIL = "https://evil.example"


def preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization",
    }


async def test_cors_is_off_by_default(fast_client: httpx.AsyncClient) -> None:
    response = await fast_client.get("/tasks", headers={"Origin": EVIL})
    assert response.status_code == 200
    assert not any(h.startswith("access-control-") for h in response.headers)
    response = await fast_client.options("/upload", headers=preflight(EVIL))
    assert response.status_code in (404, 405)
    assert not any(h.startswith("access-control-") for h in response.headers)


async def test_cors_allows_only_the_configured_origins(fast_settings_with: SettingsWith) -> None:
    settings = fast_settings_with(cors_origins=(ORIGIN,), api_keys=KEYS)
    async with open_client(create_app(settings, parts=Parts())) as client:
        # Preflight needs no key (browsers never send one); it names what is allowed.
        ok = await client.options("/upload", headers=preflight(ORIGIN))
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in ok.headers["access-control-allow-methods"]
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in ok.headers
        for header, value in SECURITY_HEADERS.items():
            assert ok.headers[header] == value

        bad = await client.options("/upload", headers=preflight(EVIL))
        assert bad.status_code == 400
        assert "access-control-allow-origin" not in bad.headers
        assert (
            await client.options("/upload", headers=preflight(ORIGIN, "PUT"))
        ).status_code == 400

        allowed = await client.get("/tasks", headers={"Origin": ORIGIN, **bearer(KEYS[0])})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        # A refusal still carries CORS headers, so the page can read the 401 body.
        refused = await client.get("/tasks", headers={"Origin": ORIGIN})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == ORIGIN
        other = await client.get("/tasks", headers={"Origin": EVIL, **bearer(KEYS[0])})
        assert "access-control-allow-origin" not in other.headers


# --- security headers -------------------------------------------------------------


def assert_security_headers(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url.path} -> {response.status_code}"
    for header, value in SECURITY_HEADERS.items():
        assert response.headers.get(header) == value, (where, header)
    csp = response.headers.get("content-security-policy", "")
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, where


async def test_security_headers_on_every_response(
    fast_client: httpx.AsyncClient, fast_settings: Settings
) -> None:
    upload = await fast_client.post("/upload", files={"file": ("a.jpg", photo(300, 200))})
    task_id = upload.json()["task_id"]
    run_inline(fast_settings, task_id)
    variant = f"/tasks/{task_id}/variants/small"
    etag = (await fast_client.get(variant)).headers["etag"]
    responses = [
        upload,  # 202
        await fast_client.get("/healthz"),
        await fast_client.get("/readyz"),
        await fast_client.get("/tasks"),
        await fast_client.get(f"/tasks/{task_id}"),
        await fast_client.get(variant),
        await fast_client.head(variant),
        await fast_client.get(variant, headers={"If-None-Match": etag}),  # 304
        await fast_client.get("/"),
        await fast_client.get("/docs"),
        await fast_client.get("/openapi.json"),
        await fast_client.get("/metrics"),
        await fast_client.get(f"/tasks/{uuid.uuid4()}"),  # 404
        await fast_client.get("/no/such/route"),
        await fast_client.put("/upload"),  # 405
        await fast_client.post("/upload", content=b"x"),  # 400
        await fast_client.get("/tasks", params={"limit": 0}),  # 422
        await fast_client.post("/upload", files={"file": ("a.jpg", b"text")}),  # 415
        await fast_client.options("/upload", headers=preflight(ORIGIN)),
    ]
    static = re.findall(r'(?:src|href)="(/static/[^"]+)"', responses[8].text)
    assert static, responses[8].text[:500]
    responses += [await fast_client.get(path) for path in static]
    statuses = {r.status_code for r in responses}
    assert {200, 202, 304, 400, 404, 405, 415, 422} <= statuses
    for response in responses:
        assert_security_headers(response)
    assert responses[5].headers["content-type"] == "image/jpeg"


async def test_security_headers_on_401_413_and_503(
    tmp_path: Path, sqlite_url: str, redis_url: str
) -> None:
    settings = make_settings(tmp_path, sqlite_url, redis_url, api_keys=KEYS, max_upload_bytes=10)
    async with open_client(create_app(settings)) as client:
        assert_security_headers(await client.get("/tasks"))  # 401
        too_big = await client.post(
            "/upload", files={"file": ("a.jpg", photo(40, 30))}, headers=bearer(KEYS[0])
        )
        assert too_big.status_code == 413
        assert_security_headers(too_big)
    dead = make_settings(
        tmp_path / "dead",
        sqlite_url,
        f"redis://127.0.0.1:{free_port()}/0",
        broker_timeout_seconds=0.5,
    )
    async with open_client(create_app(dead)) as client:
        unavailable = await client.post("/upload", files={"file": ("a.jpg", photo(40, 30))})
        assert unavailable.status_code == 503
        assert_security_headers(unavailable)
        assert_security_headers(await client.get("/readyz"))


async def unexpected_error(settings: Settings) -> httpx.Response:
    """An upload whose storage dependency raises: the path of any unforeseen bug."""
    app = create_app(settings)

    def broken_storage() -> None:
        raise RuntimeError("secret detail: /srv/imagepipe/storage password=hunter2")

    app.dependency_overrides[deps.get_storage] = broken_storage
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/upload", files={"file": ("a.jpg", photo(40, 30))})


async def test_unexpected_error_is_500_without_a_trace(fast_settings: Settings) -> None:
    response = await unexpected_error(fast_settings)
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error", "message": "Internal error."}}
    assert "hunter2" not in response.text and "Traceback" not in response.text


async def test_security_headers_on_500(fast_settings: Settings) -> None:
    assert_security_headers(await unexpected_error(fast_settings))


# --- defaults ---------------------------------------------------------------------


def test_no_secret_has_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing secret is baked in: no default key, password or token works anywhere."""
    for name in list(os.environ):
        if name.startswith("IMAGEPIPE_"):
            monkeypatch.delenv(name)
    defaults = Settings()
    secretish = re.compile(r"key|secret|password|token|credential", re.IGNORECASE)
    for name in Settings.model_fields:
        value = getattr(defaults, name)
        # IMAGEPIPE_KEY_*: limits per API key, not secrets.
        if secretish.search(name) and not name.startswith("key_"):
            assert not value, f"{name} has a default: {value!r}"
        if isinstance(value, str) and "://" in value:
            assert urlsplit(value).password is None, f"{name} embeds a password"
            assert urlsplit(value).username is None, f"{name} embeds a user"
    assert defaults.api_keys == () and defaults.cors_origins == ()
    assert urlsplit(defaults.resolved_database_url).password is None
