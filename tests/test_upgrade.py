"""Data written by the previous release keeps serving after `imagepipe migrate`.

The previous release: schema at Alembic revision 0002, rows as its code wrote them,
files at its local layout (``originals/{id}``, ``variants/{id}/{name}.jpg``, no attempt
in the key). After the upgrade the new code serves them, renders a task that was still
queued, and DELETE removes the old files.
"""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from imagepipe.api.app import create_app
from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine, sync_session_factory
from imagepipe.db.migrate import alembic_config, upgrade
from imagepipe.db.models import IdempotencyKey, Task, Webhook
from imagepipe.imaging.spec import make_spec
from imagepipe.services import backfill, extras, refresh, rendering
from imagepipe.storage import open_storage
from tests.harness.app import make_settings, open_client, run_inline
from tests.harness.processes import settings_env
from tests.images import photo

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# The tables as revision 0002 has them (only what the old code wrote).
_OLD = sa.MetaData()
OLD_TASKS = sa.Table(
    "tasks", _OLD,
    sa.Column("id", sa.Uuid()), sa.Column("status", sa.String(16)),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("enqueued_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer()), sa.Column("filename", sa.String(255)),
    sa.Column("original_key", sa.String(255)), sa.Column("original_format", sa.String(16)),
    sa.Column("original_width", sa.Integer()), sa.Column("original_height", sa.Integer()),
    sa.Column("original_frames", sa.Integer()), sa.Column("original_size_bytes", sa.BigInteger()),
    sa.Column("original_sha256", sa.String(64)), sa.Column("claimed_by", sa.String(255)),
)  # fmt: skip
OLD_VARIANTS = sa.Table(
    "variants", _OLD,
    sa.Column("task_id", sa.Uuid()), sa.Column("name", sa.String(64)),
    sa.Column("storage_key", sa.String(255)), sa.Column("width", sa.Integer()),
    sa.Column("height", sa.Integer()), sa.Column("size_bytes", sa.BigInteger()),
    sa.Column("content_type", sa.String(64)), sa.Column("sha256", sa.String(64)),
)  # fmt: skip

SIZES = {"small": (150, 113), "medium": (600, 450), "large": (800, 600)}


def write_previous_release(settings: Settings) -> tuple[uuid.UUID, uuid.UUID]:
    """One succeeded and one queued task, exactly as the previous release left them."""
    upgrade(settings.resolved_database_url, "0002")
    root = settings.resolved_storage_root
    done, queued = uuid.uuid4(), uuid.uuid4()
    original = photo(800, 600)
    now = datetime.now(UTC)
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        with engine.begin() as connection:
            for task_id, status in [(done, "succeeded"), (queued, "queued")]:
                (root / "originals").mkdir(parents=True, exist_ok=True)
                (root / "originals" / str(task_id)).write_bytes(original)
                connection.execute(
                    OLD_TASKS.insert().values(
                        id=task_id, status=status, created_at=now, enqueued_at=now,
                        started_at=now if status == "succeeded" else None,
                        finished_at=now if status == "succeeded" else None,
                        attempts=1 if status == "succeeded" else 0, filename="old.jpg",
                        original_key=f"originals/{task_id}", original_format="JPEG",
                        original_width=800, original_height=600, original_frames=1,
                        original_size_bytes=len(original),
                        original_sha256=hashlib.sha256(original).hexdigest(),
                    )
                )  # fmt: skip
            for name, (width, height) in SIZES.items():
                data = photo(width, height)
                path = root / "variants" / str(done) / f"{name}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                connection.execute(
                    OLD_VARIANTS.insert().values(
                        task_id=done, name=name, storage_key=f"variants/{done}/{name}.jpg",
                        width=width, height=height, size_bytes=len(data),
                        content_type="image/jpeg", sha256=hashlib.sha256(data).hexdigest(),
                    )
                )  # fmt: skip
    finally:
        engine.dispose()
    return done, queued


@pytest.fixture
def old_settings(tmp_path: Path, database_url: str, redis_url: str) -> Settings:
    # Only IMAGEPIPE_STORAGE_ROOT, as the previous release was configured.
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        redis_url=redis_url,
        storage_root=tmp_path / "storage",
        log_format="text",
    )


@pytest.fixture
def old_ids(old_settings: Settings) -> list[uuid.UUID]:
    ids = write_previous_release(old_settings)
    # The operator's step, as the operator runs it.
    subprocess.run(
        [sys.executable, "-m", "imagepipe.cli", "migrate"],
        env=settings_env(old_settings),
        check=True,
        capture_output=True,
    )
    return list(ids)


Upgraded = tuple[httpx.AsyncClient, list[uuid.UUID]]


@pytest.fixture
async def upgraded(old_settings: Settings, old_ids: list[uuid.UUID]) -> AsyncIterator[Upgraded]:
    async with open_client(create_app(old_settings)) as client:
        yield client, old_ids


async def test_old_data_keeps_serving_after_migrate(
    upgraded: Upgraded, old_settings: Settings
) -> None:
    client, (done, queued) = upgraded
    root = old_settings.resolved_storage_root

    status = (await client.get(f"/tasks/{done}")).json()
    assert status["status"] == "succeeded"
    assert set(status["variants"]) == set(SIZES)
    for name, variant in status["variants"].items():
        old_file = (root / "variants" / str(done) / f"{name}.jpg").read_bytes()
        response = await client.get(variant["url"])
        assert response.status_code == 200
        assert response.content == old_file
        assert response.headers["etag"] == f'"{hashlib.sha256(old_file).hexdigest()}"'
        head = await client.head(variant["url"])
        assert head.headers["content-length"] == str(len(old_file))
        # Only the base format was stored: it is all the task lists, and what a
        # browser asking for WebP or AVIF gets.
        assert variant["formats"] == {
            "image/jpeg": {"url": f"{variant['url']}.jpg", "size_bytes": len(old_file)}
        }
        modern = await client.get(variant["url"], headers={"Accept": "image/avif,image/webp,*/*"})
        assert modern.content == old_file and modern.headers["vary"] == "Accept"
        assert (await client.get(f"{variant['url']}.jpg")).content == old_file
        missing = await client.get(f"{variant['url']}.webp")
        assert missing.json()["error"]["code"] == "format_not_found"

        # Its variants are as the old release made them: nothing is due, so the
        # interim short cache never applies to them.
        assert "immutable" in modern.headers["cache-control"]

    engine = make_sync_engine(old_settings.resolved_database_url)
    storage = open_storage(old_settings)
    try:
        sessions = sync_session_factory(engine)
        # Rows written before extras followed the base are not missing any extras.
        assert extras.due_pending(sessions, old_settings) == []
        # A task the old release left queued is rendered by the new worker code: its
        # base now, its extra formats due.
        outcome = rendering.process(sessions, storage, old_settings, queued)
        assert extras.due_pending(sessions, old_settings) == [queued]
    finally:
        engine.dispose()
    assert outcome == rendering.Outcome.succeeded
    rendered = (await client.get(f"/tasks/{queued}")).json()
    assert rendered["status"] == "succeeded"
    for variant in rendered["variants"].values():
        assert (await client.get(variant["url"])).status_code == 200

    for task_id in (done, queued):
        assert (await client.delete(f"/tasks/{task_id}")).status_code == 204
        assert not (root / "originals" / str(task_id)).exists()
        assert [p for p in (root / "variants").rglob("*") if str(task_id) in str(p)] == []


async def test_backfill_brings_old_variants_to_every_format(
    upgraded: Upgraded, old_settings: Settings
) -> None:
    client, (done, _) = upgraded
    engine = make_sync_engine(old_settings.resolved_database_url)
    storage = open_storage(old_settings)
    try:
        sessions = sync_session_factory(engine)
        options = rendering.render_options(old_settings)
        # Written before specs were recorded: out of date, whatever the settings.
        assert [t for b in backfill.scan(sessions, options) for t in b.stale] == [done]
        assert refresh.refresh(sessions, storage, old_settings, done).value == "succeeded"
        assert [t for b in backfill.scan(sessions, options) for t in b.stale] == []
    finally:
        engine.dispose()
    task = (await client.get(f"/tasks/{done}")).json()
    for variant in task["variants"].values():
        assert list(variant["formats"]) == ["image/jpeg", "image/webp"]
        webp = await client.get(variant["url"], headers={"Accept": "image/webp,*/*"})
        assert webp.headers["content-type"] == "image/webp"
    # The old layout's files went with the rows that named them.
    root = old_settings.resolved_storage_root
    assert not list((root / "variants" / str(done)).glob("*.jpg"))


# --- tenants: what keys owned before they were grouped --------------------------------

KEY_ONE, KEY_TWO, KEY_NEW = "release-key-one-0123456789", "release-key-two-0123456789", "new-k3y"


def _digest(key: str) -> str:
    """The owner every earlier release stored for a request made with ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _insert_at_0012(name: str, **values: object) -> sa.Insert:
    """An INSERT naming only ``values``' columns, typed as the models type them: the
    models' later columns (and their defaults) did not exist at revision 0012."""
    model = {t.name: t for t in (Task.__table__, Webhook.__table__, IdempotencyKey.__table__)}
    columns = [sa.column(column, model[name].c[column].type) for column in values]
    return sa.table(name, *columns).insert().values(**values)


def write_keyed_release(settings: Settings) -> dict[str, uuid.UUID]:
    """At revision 0012: a task, a webhook and an answered Idempotency-Key of each of two
    keys, owned by the keys' digests as the release before tenants wrote them."""
    upgrade(settings.resolved_database_url, "0012")
    engine = make_sync_engine(settings.resolved_database_url)
    ids: dict[str, uuid.UUID] = {}
    now = datetime.now(UTC)
    try:
        with engine.begin() as connection:
            for key in (KEY_ONE, KEY_TWO):
                task_id = ids[key] = uuid.uuid4()
                connection.execute(
                    _insert_at_0012(
                        "tasks",
                        id=task_id, status="queued", created_at=now, enqueued_at=now,
                        attempts=0, transient_releases=0, filename="old.jpg",
                        original_key=f"originals/{task_id}", original_format="JPEG",
                        original_width=8, original_height=6, original_frames=1,
                        original_size_bytes=1, original_sha256="0" * 64,
                        owner_scope=_digest(key),
                    )
                )  # fmt: skip
                connection.execute(
                    _insert_at_0012(
                        "webhooks",
                        id=uuid.uuid4(), scope=_digest(key), url="http://127.0.0.1:9/h",
                        events="task.succeeded", secret="whsec_x", created_at=now,
                    )
                )  # fmt: skip
                body = f'{{"task_id": "{task_id}", "status": "queued"}}'
                connection.execute(
                    _insert_at_0012(
                        "idempotency_keys",
                        scope=_digest(key), key="order-1", fingerprint="f" * 64,
                        task_id=task_id, response_status=202, response_body=body,
                        created_at=now, expires_at=now + timedelta(hours=1),
                    )
                )  # fmt: skip
    finally:
        engine.dispose()
    return ids


async def test_keys_grouped_into_a_tenant_keep_what_they_owned(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """KEY_ONE moves into tenant "acme" beside a new key; KEY_TWO stays a list-form
    key (its own tenant). Nothing is orphaned, nothing crosses tenants."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, redis_url=redis_url,
        log_format="text",
    )  # fmt: skip
    ids = write_keyed_release(settings)
    env = {
        **settings_env(settings),
        "IMAGEPIPE_API_KEYS": json.dumps({"acme": [KEY_ONE, KEY_NEW], "solo": [KEY_TWO]}),
    }
    migrate = [sys.executable, "-m", "imagepipe.cli", "migrate"]
    run = functools.partial(subprocess.run, migrate, env=env, check=True, capture_output=True)
    await anyio.to_thread.run_sync(run)
    grouped = settings.model_copy(
        update={"api_keys": {"acme": (KEY_ONE, KEY_NEW), "solo": (KEY_TWO,)}}
    )
    async with open_client(create_app(grouped)) as client:
        for key in (KEY_ONE, KEY_NEW):
            auth = {"Authorization": f"Bearer {key}"}
            listing = (await client.get("/tasks", headers=auth)).json()["tasks"]
            assert [t["task_id"] for t in listing] == [str(ids[KEY_ONE])]
            assert len((await client.get("/webhooks", headers=auth)).json()["webhooks"]) == 1
            replay = await client.post(
                "/uploads",
                json={"filename": "a.jpg", "size_bytes": 1, "content_type": "image/jpeg"},
                headers={**auth, "Idempotency-Key": "order-1"},
            )
            # The key's first answer is the tenant's now (another body: reused).
            assert replay.json()["error"]["code"] == "idempotency_key_reused", replay.text
        solo = {"Authorization": f"Bearer {KEY_TWO}"}
        listing = (await client.get("/tasks", headers=solo)).json()["tasks"]
        assert [t["task_id"] for t in listing] == [str(ids[KEY_TWO])]
        missing = await client.get(f"/tasks/{ids[KEY_ONE]}", headers=solo)
        assert missing.status_code == 404


# --- specs: the box's shape (revision 0019) --------------------------------------------


def _stale(settings: Settings) -> list[uuid.UUID]:
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        options = rendering.render_options(settings)
        sessions = sync_session_factory(engine)
        return [t for batch in backfill.scan(sessions, options) for t in batch.stale]
    finally:
        engine.dispose()


def _specs(settings: Settings) -> list[tuple[str, str]]:
    engine = make_sync_engine(settings.resolved_database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(sa.text("SELECT spec, spec_digest FROM renditions"))
            return [(row.spec, row.spec_digest) for row in rows]
    finally:
        engine.dispose()


async def test_renditions_of_earlier_releases_stay_up_to_date_after_0019(
    tmp_path: Path, database_url: str, redis_url: str
) -> None:
    """Specs written as {"box": n} (what 0019's downgrade gives back, checked here
    against that form) are rewritten as the square contain boxes they were: backfill
    finds nothing to re-render, and the variants keep serving."""
    settings = make_settings(tmp_path, database_url, redis_url)
    async with open_client(create_app(settings)) as client:
        response = await client.post("/upload", files={"file": ("a.jpg", photo(800, 600))})
        task_id = response.json()["task_id"]
        assert run_inline(settings, task_id) == rendering.Outcome.succeeded
        assert _stale(settings) == []

        config = alembic_config(settings.resolved_database_url)
        before = ScriptDirectory.from_config(config).get_revision("0019").down_revision
        assert isinstance(before, str)
        await anyio.to_thread.run_sync(command.downgrade, config, before)
        specs = _specs(settings)
        assert len(specs) == 6  # three variants, JPEG and WebP
        for text, digest in specs:
            fields = json.loads(text)
            assert set(fields) == {"box", "format", "quality", "options", "pipeline"}
            assert fields["box"] in (150, 600, 1200)
            assert digest == hashlib.sha256(text.encode()).hexdigest()[:16]
            # Without the migration, not one digest this release gives would match.
            current = make_spec(fields["box"], fields["format"], fields["quality"] or 0)
            assert digest != current.digest

        await anyio.to_thread.run_sync(upgrade, settings.resolved_database_url)
        assert _stale(settings) == []
        for text, _ in _specs(settings):
            assert json.loads(text)["fit"] == "contain"
        task = (await client.get(f"/tasks/{task_id}")).json()
        for variant in task["variants"].values():
            assert (await client.get(variant["url"])).status_code == 200
