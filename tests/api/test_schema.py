"""Property-based run of the whole OpenAPI schema against a real server: whatever the
schema lets a client send (and schemathesis' values around it), never a 5xx, never a
stack trace, always the error shape.

schemathesis' own pytest integration (``from_fixture``) does not run under pytest 9
(it reads ``request.node._nodeid``), so each operation's strategy drives a plain
Hypothesis test here; the operations are listed from the app's schema at collection.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.schemas import OpenApiSchema

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from tests.harness.processes import ApiProcess, live_api
from tests.harness.redis import RedisServer

# Per operation and mode (27 runs): 60 requests each, about 1 600 in all, against one
# live API. At 100 each this file alone took 80 to 110 s of one test process.
MAX_EXAMPLES = 60

SPEC = create_app(Settings()).openapi()  # building the app connects to nothing


def _forbids_something(operation: dict[str, Any]) -> bool:
    """Whether the schema rules out some input: a body, credentials, a header or query
    parameter, or a constrained path segment. (Any text is a valid plain path segment:
    an operation with only those, a signed /r/ link, has no negative data to generate.)"""
    if operation.get("requestBody") or operation.get("security"):
        return True
    return any(
        param["in"] != "path" or set(param.get("schema", {})) - {"type", "title"}
        for param in operation.get("parameters", [])
    )


# (method, path, mode): negative data only where the operation takes some input.
CASES = [
    (method.upper(), path, mode)
    for path, methods in SPEC["paths"].items()
    for method, spec in methods.items()
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode == GenerationMode.POSITIVE
    or ((spec.get("parameters") or spec.get("requestBody")) and _forbids_something(spec))
]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, shared_redis: RedisServer
) -> Iterator[ApiProcess]:
    with live_api(tmp_path_factory.mktemp("schema-api"), shared_redis.url) as api:
        yield api


@pytest.fixture(scope="module")
def api_schema(server: ApiProcess) -> OpenApiSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


@pytest.mark.parametrize(
    ("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode}" for m, p, mode in CASES]
)
def test_no_server_errors(
    api_schema: OpenApiSchema, server: ApiProcess, method: str, path: str, mode: GenerationMode
) -> None:
    """POSITIVE: data the schema allows; NEGATIVE: data it forbids (wrong types, missing
    parts, out-of-range limits, unknown extra fields...). Either way, never a 5xx."""
    operation = api_schema[path][method]
    seen: list[int] = []

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case[Any]) -> None:
        response = case.call(base_url=server.url, timeout=30)
        seen.append(response.status_code)
        where = (case.method, case.formatted_path, case.query, response.text[:300])
        assert response.status_code < 500, where
        assert "Traceback" not in response.text, where
        if response.status_code >= 400 and case.method != "HEAD":
            assert response.json()["error"]["code"], where

    check()
    assert seen, "no request was made"
