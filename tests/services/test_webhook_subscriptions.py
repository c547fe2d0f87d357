"""Subscriptions and a task's delivery history (services/webhooks/subscriptions.py,
history.py): each owner sees and removes only its own webhooks; a delivery is listed
attempt by attempt and replayed only for those who may see its task."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, sessionmaker

from imagepipe.db.models import DeliveryAttempt, DeliveryState, Task, WebhookDelivery, utcnow
from imagepipe.errors import DeliveryNotFound, WebhookNotFound
from imagepipe.services.webhooks import history, subscriptions, valid_secret
from tests.services.conftest import AddTask

pytestmark = pytest.mark.anyio

URL = "https://example.com/hook"


async def test_an_owner_lists_and_removes_only_its_own_subscriptions(
    api_session: AsyncSession,
) -> None:
    first = await subscriptions.subscribe(
        api_session, "me", URL, ["task.failed", "task.succeeded", "task.failed"]
    )
    second = await subscriptions.subscribe(api_session, "me", URL, ["task.failed"])
    theirs = await subscriptions.subscribe(api_session, "other", URL, ["task.failed"])
    assert first.events == "task.failed task.succeeded"  # each event once, in order
    assert valid_secret(first.secret) and first.secret != second.secret
    assert [hook.id for hook in await subscriptions.of_owner(api_session, "me")] == [
        first.id,
        second.id,
    ]

    with pytest.raises(WebhookNotFound):
        await subscriptions.unsubscribe(api_session, "me", theirs.id)
    with pytest.raises(WebhookNotFound):
        await subscriptions.unsubscribe(api_session, "me", uuid.uuid4())
    await subscriptions.unsubscribe(api_session, "me", first.id)
    assert [hook.id for hook in await subscriptions.of_owner(api_session, "me")] == [second.id]
    assert [hook.id for hook in await subscriptions.of_owner(api_session, "other")] == [theirs.id]


def _delivery(sessions: sessionmaker[Session], task_id: uuid.UUID, attempts: int) -> uuid.UUID:
    """A delivery of the task with ``attempts`` recorded attempts, the last failed."""
    now = utcnow()
    delivery = WebhookDelivery(
        id=uuid.uuid4(), task_id=task_id, webhook_id=None, url=URL, event="task.failed",
        state=DeliveryState.failed, attempts=attempts, created_at=now, owner="me",
    )  # fmt: skip
    with sessions.begin() as session:
        session.add(delivery)
        session.flush()  # the attempts' foreign key needs the row first
        session.add_all(
            DeliveryAttempt(
                delivery_id=delivery.id, attempt=n, status_code=500, at=now + timedelta(seconds=n)
            )
            for n in range(1, attempts + 1)
        )
    return delivery.id


async def test_the_history_lists_every_attempt_in_order(
    sessions: sessionmaker[Session], add_task: AddTask, api_session: AsyncSession
) -> None:
    task_id = add_task(owner_scope="me")
    delivery_id = _delivery(sessions, task_id, attempts=3)
    _delivery(sessions, add_task(owner_scope="me"), attempts=1)  # another task's
    listed = await history.attempts(api_session, task_id)
    assert [(d.id, a.attempt) for d, a in listed] == [(delivery_id, n) for n in (1, 2, 3)]


async def test_a_replay_is_published_once_and_only_for_those_who_see_the_task(
    sessions: sessionmaker[Session], add_task: AddTask, api_session: AsyncSession
) -> None:
    delivery_id = _delivery(sessions, add_task(owner_scope="me"), attempts=1)
    published: list[uuid.UUID] = []

    def mine(task: Task) -> bool:
        return task.owner_scope == "me"

    with pytest.raises(DeliveryNotFound):
        await history.replay(
            api_session, published.append, delivery_id, may_see=lambda _: False, max_pending=5
        )
    with pytest.raises(DeliveryNotFound):
        await history.replay(
            api_session, published.append, uuid.uuid4(), may_see=mine, max_pending=5
        )
    again = await history.replay(
        api_session, published.append, delivery_id, may_see=mine, max_pending=5
    )
    # While that replay waits, replaying again answers it and publishes nothing more.
    assert (
        await history.replay(
            api_session, published.append, delivery_id, may_see=mine, max_pending=5
        )
        == again
    )
    assert published == [again] and again != delivery_id


async def test_a_lost_replay_publish_is_left_to_the_sweep(
    sessions: sessionmaker[Session], add_task: AddTask, api_session: AsyncSession
) -> None:
    delivery_id = _delivery(sessions, add_task(owner_scope="me"), attempts=1)

    def broker_down(_: uuid.UUID) -> None:
        raise ConnectionError("broker down")

    again = await history.replay(
        api_session, broker_down, delivery_id, may_see=lambda _: True, max_pending=5
    )
    with sessions() as session:
        row = session.get(WebhookDelivery, again)
        assert row is not None and row.state == DeliveryState.pending
