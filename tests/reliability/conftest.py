"""Fixtures for fault-injection tests: a whole imagepipe (API server, workers, beat) made
of real processes, on a private Redis that the test may stop, and a database.

Every process a test starts is stopped at teardown, even when the test failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.app import make_settings
from tests.harness.processes import ApiProcess, settings_env
from tests.harness.redis import RedisServer, redis_server
from tests.reliability.stack import FAST_LIMITS, Records, Stack, StackFactory


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Build a Stack: ``make_stack(database_url, redis_url, **setting_overrides)``.

    The API server is started; workers and beat are started by the test. Request it
    after the Redis and database fixtures, so its processes stop before those do.
    """
    stacks: list[Stack] = []

    def build(database_url: str, redis_url: str, **overrides: object) -> Stack:
        directory = tmp_path / f"stack-{len(stacks)}"
        directory.mkdir()
        settings = make_settings(directory, database_url, redis_url, **{**FAST_LIMITS, **overrides})
        env = settings_env(settings)
        stack = Stack(
            settings=settings,
            env=env,
            directory=directory,
            records=Records(settings),
            api=ApiProcess(env, directory / "api.log"),
        )
        stacks.append(stack)
        stack.api.start()
        return stack

    yield build
    for stack in stacks:
        stack.close()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A redis-server of this test alone (no persistence): it may be stopped and started."""
    with redis_server() as server:
        yield server


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    """A throwaway database on the run's private PostgreSQL (production's database)."""
    return postgres_url
