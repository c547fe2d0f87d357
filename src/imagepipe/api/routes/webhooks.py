"""Webhook subscriptions, and each task's delivery log."""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import Literal

from anyio import to_thread
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field, field_serializer
from sqlalchemy import select

from imagepipe.api.deps import CallerDep, SessionDep, SettingsDep, TaskDep
from imagepipe.api.schemas import ErrorBody
from imagepipe.api.scope import key_scope
from imagepipe.api.state import app_state
from imagepipe.api.webhook_urls import accept_url
from imagepipe.db.models import (
    DeliveryAttempt,
    DeliveryState,
    Task,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from imagepipe.errors import DeliveryNotFound, WebhookNotFound
from imagepipe.services import webhooks

router = APIRouter()

EventType = Literal["task.succeeded", "task.failed"]


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.replace(microsecond=0, tzinfo=None).isoformat() + "Z"


class WebhookIn(BaseModel):
    url: str = Field(max_length=2048)
    events: list[EventType] = Field(default=["task.succeeded", "task.failed"], min_length=1)


class WebhookOut(BaseModel):
    id: uuid.UUID
    url: str
    events: list[str]
    created_at: datetime

    @field_serializer("created_at")
    def _created(self, value: datetime) -> str | None:
        return _iso(value)


class WebhookCreated(WebhookOut):
    secret: str


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: uuid.UUID
    webhook_id: uuid.UUID | None
    event: str
    attempt: int
    status_code: int | None
    error: str | None
    at: datetime
    next_attempt_at: datetime | None

    @field_serializer("at", "next_attempt_at")
    def _times(self, value: datetime | None) -> str | None:
        return _iso(value)


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]


class ReplayAccepted(BaseModel):
    id: uuid.UUID
    replay_of: uuid.UUID


def _out(hook: Webhook) -> WebhookOut:
    return WebhookOut(
        id=hook.id, url=hook.url, events=hook.events.split(), created_at=hook.created_at
    )


@router.post("/webhooks", status_code=201, response_model=WebhookCreated, summary="Subscribe")
async def create_webhook(
    body: WebhookIn, request: Request, session: SessionDep, settings: SettingsDep
) -> WebhookCreated:
    url = await accept_url(body.url, settings)
    hook = Webhook(
        id=uuid.uuid4(),
        scope=key_scope(request),
        url=url,
        events=" ".join(dict.fromkeys(body.events)),
        secret=webhooks.new_secret(),
        created_at=utcnow(),
    )
    session.add(hook)
    await session.commit()
    return WebhookCreated(**_out(hook).model_dump(), secret=hook.secret)


@router.get("/webhooks", response_model=WebhookList, summary="This key's subscriptions")
async def list_webhooks(request: Request, session: SessionDep) -> WebhookList:
    rows = await session.scalars(
        select(Webhook).where(Webhook.scope == key_scope(request)).order_by(Webhook.created_at)
    )
    return WebhookList(webhooks=[_out(hook) for hook in rows])


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    responses={404: {"model": ErrorBody, "description": "`webhook_not_found`"}},
)
async def delete_webhook(webhook_id: str, request: Request, session: SessionDep) -> Response:
    hook = await _own_webhook(webhook_id, request, session)
    await session.delete(hook)
    await session.commit()
    return Response(status_code=204)


async def _own_webhook(webhook_id: str, request: Request, session: SessionDep) -> Webhook:
    try:
        parsed = uuid.UUID(webhook_id)
    except ValueError:
        raise WebhookNotFound() from None
    hook = await session.get(Webhook, parsed)
    if hook is None or hook.scope != key_scope(request):
        raise WebhookNotFound()
    return hook


@router.get(
    "/tasks/{task_id}/deliveries",
    response_model=DeliveryList,
    responses={404: {"model": ErrorBody, "description": "`task_not_found`"}},
    summary="Every webhook delivery attempt for this task",
)
async def task_deliveries(task: TaskDep, session: SessionDep) -> DeliveryList:
    rows = await session.execute(
        select(WebhookDelivery, DeliveryAttempt)
        .join(DeliveryAttempt, DeliveryAttempt.delivery_id == WebhookDelivery.id)
        .where(WebhookDelivery.task_id == task.id)
        .order_by(DeliveryAttempt.at, DeliveryAttempt.id)
    )
    return DeliveryList(
        deliveries=[
            DeliveryOut(
                id=delivery.id,
                webhook_id=delivery.webhook_id,
                event=delivery.event,
                attempt=attempt.attempt,
                status_code=attempt.status_code,
                error=attempt.error,
                at=attempt.at,
                next_attempt_at=attempt.next_attempt_at,
            )
            for delivery, attempt in rows.all()
        ]
    )


@router.post(
    "/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=ReplayAccepted,
    responses={404: {"model": ErrorBody, "description": "`delivery_not_found`"}},
    summary="Send this delivery's event again",
)
async def replay_delivery(
    delivery_id: str, request: Request, session: SessionDep, caller: CallerDep
) -> ReplayAccepted:
    try:
        parsed = uuid.UUID(delivery_id)
    except ValueError:
        raise DeliveryNotFound() from None
    original = await session.get(WebhookDelivery, parsed)
    if original is None:
        raise DeliveryNotFound()
    # Only those who may see the task may replay its events.
    task = await session.get(Task, original.task_id)
    if task is None or not caller.may_see(task):
        raise DeliveryNotFound()
    now = utcnow()
    again = WebhookDelivery(
        id=uuid.uuid4(),
        task_id=original.task_id,
        webhook_id=original.webhook_id,
        url=original.url,
        event=original.event,
        payload=None,  # re-rendered: the task as it is now, under a new message id
        state=DeliveryState.pending,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(again)
    await session.commit()
    # A lost publish is picked up by the worker's sweep.
    with contextlib.suppress(Exception):
        await to_thread.run_sync(app_state(request.app).services.queue.publish_delivery, again.id)
    return ReplayAccepted(id=again.id, replay_of=original.id)
