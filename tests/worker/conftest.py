"""Fixtures of the worker-side tests: a sync engine and sessions on both databases."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory


@pytest.fixture
def engine(any_db_settings: Settings) -> Iterator[Engine]:
    engine = make_sync_engine(any_db_settings.resolved_database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return sync_session_factory(engine)
