"""The setting names the deploy files may use."""

from __future__ import annotations

from imagepipe.config import Settings

# Fixed by docs/api-contract.md ("Storage and delivery", "Back-pressure and limits"),
# whether or not this checkout's Settings reads each one yet.
CONTRACT_SETTINGS = frozenset(
    {
        "IMAGEPIPE_MAX_QUEUE_DEPTH",
    }
)


def setting_names() -> frozenset[str]:
    """Every IMAGEPIPE_ variable a process reads: a misspelt one is silently ignored."""
    fields = {f"IMAGEPIPE_{name.upper()}" for name in Settings.model_fields}
    return frozenset(fields) | CONTRACT_SETTINGS
