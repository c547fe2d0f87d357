"""Settings from the environment: lists, refusals of unsafe or inconsistent values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from imagepipe.config import Settings
from imagepipe.imaging import RenderOptions, shapes
from imagepipe.imaging.crop import Box
from imagepipe.worker.celery_app import create_celery


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("", ()), ("k1", ("k1",)), ("k1, k2", ("k1", "k2")), ('["k1", "k2"]', ("k1", "k2"))],
)
def test_lists_come_as_json_or_commas(
    monkeypatch: pytest.MonkeyPatch, raw: str, parsed: tuple[str, ...]
) -> None:
    monkeypatch.setenv("IMAGEPIPE_API_KEYS", raw)
    monkeypatch.setenv("IMAGEPIPE_CORS_ORIGINS", raw)
    settings = Settings()
    assert settings.api_keys == parsed and settings.cors_origins == parsed


@pytest.mark.parametrize(
    "overrides",
    [
        {"api_keys": ("",)},
        {"task_soft_time_limit": 90, "task_hard_time_limit": 60},
        {"visibility_timeout": 60, "task_hard_time_limit": 90},
        {"allowed_formats": ("JPEG", "EPS")},
        {"variants": {}},
        {"variants": {"../x": 10}},
        {"max_upload_bytes": 0},
        {
            "environment": "production",
            "database_url": "postgresql+asyncpg://u:dev-only-insecure-password@db/x",
        },
    ],
)
def test_unsafe_or_inconsistent_settings_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)  # type: ignore[arg-type]


def test_defaults_match_the_contract() -> None:
    settings = Settings()
    assert settings.variants == {"small": 150, "medium": 600, "large": 1200}
    assert settings.max_upload_bytes == 25 * 1024 * 1024
    assert settings.max_pixels == 50_000_000
    assert settings.resolved_database_url.startswith("sqlite+aiosqlite:///")


def test_unknown_format_names_are_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="cannot open"):
        Settings(allowed_formats=("JPG", "PNG"))


def test_to_env_round_trips_every_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A subprocess configured with ``to_env()`` reads back equal settings."""
    original = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}",
        storage_root=tmp_path / "store",
        storage_url=(tmp_path / "objects").as_uri(),
        spool_dir=tmp_path / "spool",
        s3_endpoint_url="http://127.0.0.1:9",
        s3_public_endpoint_url="http://localhost:9",
        variants={"thumb": 64, "big": 900},
        allowed_formats=("PNG", "GIF"),
        api_keys=("k3y-one", "k3y-two"),
        cors_origins=("https://a.example",),
        task_soft_time_limit=4.5,
        task_hard_time_limit=6,
        log_format="json",
        jpeg_quality=70,
        webhook_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        task_retention="90d",
        keep_originals="30d",
        key_rate_limit="600/minute",
        url_signing_keys=("[not json", "second key"),
        public_base_url="https://img.example.com",
        on_demand_presets={"thumb": "w:160,h:160,fit:cover"},
        on_demand_max_bytes=10_000_000,
    )
    env = original.to_env()
    assert set(env) == {f"IMAGEPIPE_{name.upper()}" for name in Settings.model_fields}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings() == original
    assert list(Settings().variants) == ["thumb", "big"]


def test_worker_memory_per_child_reaches_celery() -> None:
    conf = create_celery(Settings(worker_max_memory_per_child_mb=300)).conf
    assert conf.worker_max_memory_per_child == 300 * 1024  # Celery counts KiB
    assert (
        create_celery(Settings(worker_max_memory_per_child_mb=0)).conf[
            "worker_max_memory_per_child"
        ]
        is None
    )


def test_phone_and_modern_formats_are_allowed_by_default() -> None:
    settings = Settings()
    assert {"HEIF", "AVIF"} <= set(settings.allowed_formats)
    assert settings.extra_formats == ("WEBP",)
    assert Settings(extra_formats=("AVIF", "WEBP", "AVIF")).extra_formats == ("AVIF", "WEBP")


def test_render_defaults_match_the_settings_defaults() -> None:
    settings, options = Settings(), RenderOptions(boxes={"small": 150})
    names = ["allowed_formats", "extra_formats", "max_pixels", "max_frames", "jpeg_quality"]
    names += ["webp_quality", "avif_quality", "max_animation_frames"]
    for name in names:
        assert getattr(options, name) == getattr(settings, name), name


def test_storage_url_defaults_and_alias(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).resolved_storage_url == (tmp_path / "storage").as_uri()
    alias = Settings(data_dir=tmp_path, storage_root=tmp_path / "old")
    assert alias.resolved_storage_root == (tmp_path / "old").resolve()
    # The URL wins over the alias.
    both = Settings(storage_root=tmp_path / "old", storage_url=(tmp_path / "new").as_uri())
    assert both.resolved_storage_root == (tmp_path / "new").resolve()
    assert Settings(storage_url="s3://bucket/prefix").resolved_storage_url == "s3://bucket/prefix"


@pytest.mark.parametrize("url", ["s3://", "file://relative/path", "ftp://host/x", "/just/a/path"])
def test_bad_storage_urls_are_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError):
        Settings(storage_url=url)


def test_url_signing_keys_are_raw_comma_separated_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_URL_SIGNING_KEYS", " first key ,{second},, third")
    assert Settings().url_signing_keys == ("first key", "{second}", "third")
    with pytest.raises(ValueError, match="on_demand_lock_seconds"):
        Settings(on_demand_lock_seconds=400)  # over half the visibility timeout
    with pytest.raises(ValueError):
        Settings(on_demand_presets={"Bad Name": "w:10"})


def test_the_webhook_retry_schedule_reads_durations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_WEBHOOK_RETRY_SCHEDULE", "5s, 30s,2m")
    assert Settings().webhook_retry_schedule == (5, 30, 120)
    monkeypatch.setenv("IMAGEPIPE_WEBHOOK_RETRY_SCHEDULE", "[1, 2.5]")
    assert Settings().webhook_retry_schedule == (1, 2.5)
    for bad in ("", "0s", "soon"):
        monkeypatch.setenv("IMAGEPIPE_WEBHOOK_RETRY_SCHEDULE", bad)
        with pytest.raises(ValueError):
            Settings()


# --- variants: numbers and boxes ------------------------------------------------------

AVATAR = {"width": 160, "height": 160, "fit": "cover", "gravity": "smart"}


def test_variants_mix_numbers_and_boxes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEPIPE_VARIANTS", json.dumps({"small": 150, "avatar": AVATAR}))
    settings = Settings()
    assert settings.variants == {"small": 150, "avatar": AVATAR}
    assert shapes.boxes(settings.variants) == {
        "small": Box.square(150),
        "avatar": Box(160, 160, "cover", "smart"),
    }
    assert shapes.largest_first(settings.variants) == [
        ("avatar", Box(160, 160, "cover", "smart")),
        ("small", Box.square(150)),
    ]
    # Printed as given, read back equal (what a worker subprocess is started with).
    printed = settings.to_env()["IMAGEPIPE_VARIANTS"]
    assert json.loads(printed) == {"small": 150, "avatar": AVATAR}
    monkeypatch.setenv("IMAGEPIPE_VARIANTS", printed)
    assert Settings().variants == settings.variants


def test_a_box_takes_defaults_for_fit_and_gravity() -> None:
    settings = Settings(variants={"card": {"width": 300, "height": 200}})
    assert settings.variants == {
        "card": {"width": 300, "height": 200, "fit": "contain", "gravity": "center"}
    }
    assert shapes.boxes(settings.variants) == {"card": Box(300, 200, "contain", "center")}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (0, "must be > 0"),
        (True, "expected a number"),
        ("150", "expected a number"),
        ({"width": 160}, "height must be a whole number > 0"),
        ({"width": 160, "height": 0}, "height must be a whole number > 0"),
        ({"width": 1.5, "height": 10}, "width must be a whole number > 0"),
        ({"width": 10, "height": 10, "fit": "fill"}, "fit must be one of"),
        ({"width": 10, "height": 10, "fit": "cover", "gravity": "north"}, "gravity must be"),
        ({"width": 10, "height": 10, "gravity": "smart"}, "needs fit 'cover'"),
        ({"width": 10, "height": 10, "crop": True}, "unknown fields"),
    ],
)
def test_bad_variant_entries_are_refused_with_a_clear_message(entry: object, message: str) -> None:
    with pytest.raises(ValidationError, match=f"variant 'bad': .*{message}"):
        Settings(variants={"good": 10, "bad": entry})  # type: ignore[dict-item]


def test_the_on_demand_lock_follows_a_short_visibility_timeout() -> None:
    short = {"task_soft_time_limit": 20, "task_hard_time_limit": 30}
    assert Settings(visibility_timeout=60, **short).on_demand_lock_seconds == 30
    assert Settings().on_demand_lock_seconds == 120
    with pytest.raises(ValueError, match="at most half"):
        Settings(visibility_timeout=60, on_demand_lock_seconds=40, **short)
