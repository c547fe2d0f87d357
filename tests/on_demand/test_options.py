"""Option strings and link signatures: pure functions, no service needed."""

from __future__ import annotations

import pytest

from imagepipe.errors import InvalidOptions, InvalidSignature
from imagepipe.services.on_demand import signing
from imagepipe.services.on_demand.options import check_presets, parse

PRESETS = {"thumb": "w:160,h:160,fit:cover,g:smart", "hero": "w:1600"}


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("w:640", "w:640,fit:contain"),
        ("h:480", "h:480,fit:contain"),
        ("q:70,h:480,w:640", "w:640,h:480,fit:contain,q:70"),
        # contain crops nothing: a gravity changes nothing, so it is not in the key.
        ("w:640,h:480,g:smart", "w:640,h:480,fit:contain"),
        ("g:smart,fit:cover,h:480,w:640", "w:640,h:480,fit:cover,g:smart"),
        ("w:640,h:480,fit:cover", "w:640,h:480,fit:cover,g:center"),
        ("w:4096,h:1,fit:cover,g:focal,q:100", "w:4096,h:1,fit:cover,g:focal,q:100"),
    ],
)
def test_any_order_gives_one_canonical_form(text: str, canonical: str) -> None:
    parsed = parse(text, max_side=4096)
    assert parsed.canonical == canonical
    assert parsed.in_url == canonical
    # The canonical form parses back to itself.
    assert parse(canonical, max_side=4096).canonical == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "fit:cover",  # neither w nor h
        "w:640,w:640",  # duplicate
        "w:640,x:1",  # unknown key
        "w:0",
        "w:-5",
        "w:+5",
        "w:0640",
        "w:64.0",
        "w:4097",  # past the max side
        "w:640,h:480,fit:fill",
        "w:640,h:480,fit:cover,g:north",
        "w:640,q:0",
        "w:640,q:101",
        "w:640,q:",
        "w:640,",
        "w640",
        "w:640,fit:cover",  # cover needs both sides
        "W:640",
        "w:640," + "q:1," * 40,  # too long
    ],
)
def test_bad_options_are_refused(text: str) -> None:
    with pytest.raises(InvalidOptions):
        parse(text, max_side=4096)


def test_only_w_leaves_the_height_to_the_aspect_ratio() -> None:
    parsed = parse("w:640", max_side=2000)
    assert parsed.box(2000) == (640, 2000)
    assert parse("h:300", max_side=2000).box(2000) == (2000, 300)


def test_presets_resolve_and_take_no_overrides() -> None:
    parsed = parse("p:thumb", max_side=4096, presets=PRESETS)
    assert parsed.canonical == "w:160,h:160,fit:cover,g:smart"
    assert parsed.in_url == "p:thumb"
    for text in ("p:thumb,q:50", "q:50,p:thumb", "p:nope", "p:Thumb"):
        with pytest.raises(InvalidOptions):
            parse(text, max_side=4096, presets=PRESETS)
    with pytest.raises(InvalidOptions):
        parse("p:thumb", max_side=4096)  # no presets configured


def test_a_bad_preset_is_refused_at_start() -> None:
    check_presets(PRESETS, max_side=4096)
    with pytest.raises(ValueError, match="'wide'"):
        check_presets({"wide": "w:9000"}, max_side=4096)


TASK = "6f1c2f0e-8d4b-4c43-9a57-2f9b7b0c1d2e"


def test_signature_is_the_unpadded_base64url_hmac_of_the_path() -> None:
    import base64
    import hashlib
    import hmac

    expected = hmac.new(b"k1", f"/w:640,fit:contain/{TASK}.webp".encode(), hashlib.sha256)
    signature = base64.urlsafe_b64encode(expected.digest()).decode().rstrip("=")
    assert signing.sign("k1", "w:640,fit:contain", f"{TASK}.webp") == signature
    assert "=" not in signature
    signing.verify(["k1"], signature, "w:640,fit:contain", f"{TASK}.webp")


def test_tampered_and_foreign_signatures_are_refused() -> None:
    good = signing.sign("k1", "w:640,fit:contain", TASK)
    with pytest.raises(InvalidSignature):  # options changed
        signing.verify(["k1"], good, "w:641,fit:contain", TASK)
    with pytest.raises(InvalidSignature):  # extension added
        signing.verify(["k1"], good, "w:640,fit:contain", f"{TASK}.png")
    with pytest.raises(InvalidSignature):  # signed with a key we do not hold
        signing.verify(["k1"], signing.sign("other", "w:640,fit:contain", TASK), "w:640", TASK)
    with pytest.raises(InvalidSignature):  # not even base64
        signing.verify(["k1"], "é" * 43, "w:640,fit:contain", TASK)


def test_rotation_first_key_signs_every_key_verifies() -> None:
    old = signing.sign("old-key", "w:640,fit:contain", TASK)
    keys = ["new-key", "old-key"]
    signing.verify(keys, old, "w:640,fit:contain", TASK)
    link = signing.link(keys, "w:640,fit:contain", TASK, base_url=None)
    assert (
        link == f"/r/{signing.sign('new-key', 'w:640,fit:contain', TASK)}/w:640,fit:contain/{TASK}"
    )
    absolute = signing.link(keys, "p:thumb", TASK, base_url="https://img.example.com")
    assert absolute.startswith("https://img.example.com/r/")
