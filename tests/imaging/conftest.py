"""Imaging tests run as a process that has started: the decoder plugins registered
(as ``runtime.open_runtime`` and a worker's start do), so a test may write HEIF
fixtures before anything has opened an image."""

from __future__ import annotations

import pytest

from imagepipe.imaging import plugins


@pytest.fixture(scope="session", autouse=True)
def _plugins_registered() -> None:
    plugins.register()
