"""The one retry policy of the worker's tasks, read from Settings."""

from __future__ import annotations

from pathlib import Path

from imagepipe.config import Settings
from imagepipe.services.transient import RetryPolicy


def test_waits_double_up_to_a_minute() -> None:
    policy = RetryPolicy(retries=8)
    assert [policy.delay(done) for done in range(8)] == [2, 4, 8, 16, 32, 60, 60, 60]


def test_gives_up_after_the_configured_retries(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, transient_retries=2)
    policy = RetryPolicy.from_settings(settings)
    assert [policy.exhausted(done) for done in range(4)] == [False, False, True, True]


def test_no_retries_gives_up_at_once(tmp_path: Path) -> None:
    policy = RetryPolicy.from_settings(Settings(data_dir=tmp_path, transient_retries=0))
    assert policy.exhausted(0)
