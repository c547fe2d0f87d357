"""A new focal point (services/rerender.py, set_focal_point): stored at once; a
re-render recorded as due in the same commit where a variant follows the point, and
published for a succeeded task; a lost publish is left to the reconciler."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus
from imagepipe.imaging.crop import FocalPoint
from imagepipe.services import rerender
from tests.harness.app import CROP_VARIANTS, SettingsWith
from tests.services.conftest import AddTask

pytestmark = pytest.mark.anyio


@pytest.fixture
def fast_settings(fast_settings_with: SettingsWith) -> Settings:
    return fast_settings_with(variants=CROP_VARIANTS)  # one variant follows the point


async def _set(
    api_session: AsyncSession,
    settings: Settings,
    task_id: uuid.UUID,
    focal: FocalPoint | None,
    published: list[uuid.UUID],
) -> Task:
    task = await api_session.get(Task, task_id)
    assert task is not None
    await rerender.set_focal_point(api_session, settings, task, focal, published.append)
    return task


def _row(sessions: sessionmaker[Session], task_id: uuid.UUID) -> Task:
    with sessions() as session:
        task = session.get(Task, task_id)
    assert task is not None
    return task


async def test_a_succeeded_tasks_re_render_is_recorded_and_published(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    fast_settings: Settings,
) -> None:
    task_id = add_task(status=TaskStatus.succeeded, rerender_attempts=2)
    published: list[uuid.UUID] = []
    task = await _set(api_session, fast_settings, task_id, FocalPoint(0.25, 0.75), published)
    assert (task.focal_x, task.focal_y) == (0.25, 0.75)
    row = _row(sessions, task_id)
    assert (row.focal_x, row.focal_y) == (0.25, 0.75)
    assert row.rerender_enqueued_at is not None and row.rerender_attempts == 0
    assert published == [task_id]


async def test_a_task_not_rendered_yet_is_recorded_but_not_published(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    fast_settings: Settings,
) -> None:
    task_id = add_task(status=TaskStatus.processing)
    published: list[uuid.UUID] = []
    await _set(api_session, fast_settings, task_id, FocalPoint(0.5, 0.5), published)
    # Its worker may have claimed it with the old point: the render's commit settles it.
    assert _row(sessions, task_id).rerender_enqueued_at is not None
    assert published == []


@pytest.mark.parametrize("plain", [False, True], ids=["failed task", "no focal variant"])
async def test_nothing_is_due_where_no_pixels_follow_the_point(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    fast_settings: Settings,
    tmp_path: Path,
    plain: bool,
) -> None:
    status = TaskStatus.succeeded if plain else TaskStatus.failed
    settings = Settings(data_dir=tmp_path / "plain") if plain else fast_settings
    task_id = add_task(status=status, focal_x=0.1, focal_y=0.1)
    published: list[uuid.UUID] = []
    await _set(api_session, settings, task_id, None, published)
    row = _row(sessions, task_id)
    assert (row.focal_x, row.focal_y, row.rerender_enqueued_at) == (None, None, None)
    assert published == []


async def test_a_lost_publish_leaves_the_re_render_due(
    sessions: sessionmaker[Session],
    add_task: AddTask,
    api_session: AsyncSession,
    fast_settings: Settings,
) -> None:
    task_id = add_task(status=TaskStatus.succeeded)
    task = await api_session.get(Task, task_id)
    assert task is not None

    def broker_down(_: uuid.UUID) -> None:
        raise ConnectionError("broker down")

    await rerender.set_focal_point(
        api_session, fast_settings, task, FocalPoint(0.5, 0.5), broker_down
    )
    assert _row(sessions, task_id).rerender_enqueued_at is not None
