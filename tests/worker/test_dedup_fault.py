"""Dedup only saves work: a bug in its look-up must not keep a task from rendering."""

from __future__ import annotations

import pytest

from imagepipe.config import Settings
from imagepipe.services import dedup, rendering
from imagepipe.storage import MemoryStorage
from tests.harness.app import queue_upload, worker_sessions
from tests.images import photo


def test_a_failing_look_up_renders_as_if_nothing_matched(
    fast_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(dedup, "look_up", broken)
    storage = MemoryStorage()
    with worker_sessions(fast_settings) as sessions:
        task_id = queue_upload(sessions, storage, photo(64, 48), (64, 48))
        outcome = rendering.process(sessions, storage, fast_settings, task_id)
    assert outcome == rendering.Outcome.succeeded
