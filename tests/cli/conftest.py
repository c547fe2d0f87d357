"""The CLI tests talk to the same real dev server as the page tests."""

from __future__ import annotations

import pytest

from tests.devserver import DevServer, shared_dev_server


@pytest.fixture(scope="session")
def dev_server(request: pytest.FixtureRequest) -> DevServer:
    return shared_dev_server(request)


@pytest.fixture(scope="session")
def secured_dev_server(request: pytest.FixtureRequest) -> DevServer:
    return shared_dev_server(request, secured=True)
