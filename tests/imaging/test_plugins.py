"""The plugins registered at process start and the formats Settings accepts because of
them (config_formats.PLUGIN_FORMATS) are the same."""

from __future__ import annotations

from PIL import Image

from imagepipe.config_formats import PLUGIN_FORMATS
from imagepipe.imaging import plugins


def test_registration_makes_known_the_formats_settings_expects() -> None:
    Image.init()
    plugins.register()
    assert set(PLUGIN_FORMATS) <= set(Image.OPEN)


def test_registration_is_idempotent() -> None:
    plugins.register()
    known = set(Image.OPEN)
    plugins.register()
    assert set(Image.OPEN) == known
