"""The task a signed /r/ link names (services/on_demand/serving.py, linked_task): any
owner's live task; a deleted or unknown one is not found."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from imagepipe.db.models import utcnow
from imagepipe.errors import TaskNotFound
from imagepipe.services.on_demand.serving import linked_task
from tests.services.conftest import AddTask

pytestmark = pytest.mark.anyio


async def test_a_link_finds_any_owners_live_task_only(
    add_task: AddTask, api_session: AsyncSession
) -> None:
    theirs = add_task(owner_scope="someone else")
    deleted = add_task(deleted_at=utcnow())
    assert (await linked_task(api_session, theirs)).id == theirs
    for missing in (deleted, uuid.uuid4()):
        with pytest.raises(TaskNotFound):
            await linked_task(api_session, missing)
