"""Webhook settings that cannot work are refused when the service starts, not by every
delivery failing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from imagepipe.config import Settings
from imagepipe.services import webhooks


def test_the_signing_secret_is_checked_at_start_up() -> None:
    """A malformed IMAGEPIPE_WEBHOOK_SECRET stops the service from starting, with a
    message naming the variable, and never echoes the value."""
    for bad in (
        "my-webhook-password",
        "whsec_",
        "whsec_!!!!",
        "whsec_abc",  # not base64
        "whsec_" + "QUJD" * 5,  # 15 bytes
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # no prefix
    ):
        with pytest.raises(ValidationError) as raised:
            Settings(webhook_secret=bad)
        message = str(raised.value)
        assert "IMAGEPIPE_WEBHOOK_SECRET" in message, bad
        if tail := bad.removeprefix("whsec_")[-4:]:
            assert tail not in message, bad
    good = webhooks.new_secret()
    assert Settings(webhook_secret=good).webhook_secret == good
    assert Settings(webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").webhook_secret
    assert Settings(webhook_secret="").webhook_secret is None
