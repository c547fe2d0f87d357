"""Webhook subscriptions, the key's own signing secret, and each task's delivery log."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError, field_serializer

from imagepipe.api.deps import CallerDep, SessionDep, SettingsDep, TaskDep
from imagepipe.api.errors import error_response
from imagepipe.api.schemas import ErrorBody
from imagepipe.api.state import app_state
from imagepipe.api.webhook_urls import accept_url
from imagepipe.config import Settings
from imagepipe.db.models import Webhook
from imagepipe.errors import (
    DeliveryNotFound,
    TooManyReplays,
    WebhookNotFound,
    WebhookSecretConfigured,
)
from imagepipe.services.representation import iso_z
from imagepipe.services.webhooks import history, outbox, signing, subscriptions

router = APIRouter()

EventType = Literal["task.succeeded", "task.failed"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else iso_z(value)


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


class SecretOut(BaseModel):
    secret: str
    created_at: datetime
    # Until then the secret this one replaced signs deliveries too.
    previous_valid_until: datetime | None

    @field_serializer("created_at", "previous_valid_until")
    def _times(self, value: datetime | None) -> str | None:
        return _iso(value)


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


_WEBHOOK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": WebhookIn.model_json_schema()}},
    }
}
# Replays wait for deliveries that end within seconds, or after the last retry.
_REPLAY_RETRY_AFTER = "60"


def _errors(described: dict[int, str]) -> dict[int | str, dict[str, object]]:
    return {code: {"model": ErrorBody, "description": text} for code, text in described.items()}


@router.post(
    "/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe",
    openapi_extra=_WEBHOOK_BODY,
    responses=_errors(
        {
            409: "the key has IMAGEPIPE_KEY_MAX_WEBHOOKS subscriptions (`webhook_limit`)",
            422: "a malformed body (`invalid_request`), a URL that may not receive webhooks "
            "(`invalid_callback_url`)",
        }
    ),
)
async def create_webhook(
    request: Request, session: SessionDep, settings: SettingsDep, caller: CallerDep
) -> WebhookCreated:
    # The limit answers before the body is read or the URL resolved.
    await outbox.check_webhook_limit(session, caller.owner, settings.key_max_webhooks)
    await session.rollback()  # no pooled connection held while the URL resolves
    body = _webhook_in(await request.body())
    url = await accept_url(body.url, settings)
    hook = await subscriptions.subscribe(session, caller.owner, url, body.events)
    return WebhookCreated(**_out(hook).model_dump(), secret=hook.secret)


def _webhook_in(body: bytes) -> WebhookIn:
    try:
        return WebhookIn.model_validate_json(body)
    except ValidationError as error:
        problems = [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        raise RequestValidationError(problems) from None


@router.get("/webhooks", response_model=WebhookList, summary="This key's subscriptions")
async def list_webhooks(session: SessionDep, caller: CallerDep) -> WebhookList:
    hooks = await subscriptions.of_owner(session, caller.owner)
    return WebhookList(webhooks=[_out(hook) for hook in hooks])


@router.delete(
    "/webhooks/{webhook_id}",
    status_code=204,
    responses={404: {"model": ErrorBody, "description": "`webhook_not_found`"}},
)
async def delete_webhook(webhook_id: str, session: SessionDep, caller: CallerDep) -> Response:
    try:
        parsed = uuid.UUID(webhook_id)
    except ValueError:
        raise WebhookNotFound() from None
    await subscriptions.unsubscribe(session, caller.owner, parsed)
    return Response(status_code=204)


_SECRET_ERRORS = _errors(
    {
        409: "keys are off: deliveries are signed with IMAGEPIPE_WEBHOOK_SECRET "
        "(`webhook_secret_configured`)"
    }
)


def _keyed(settings: Settings) -> None:
    # Without keys every client is one scope, and IMAGEPIPE_WEBHOOK_SECRET its secret.
    if not settings.keys_required:
        raise WebhookSecretConfigured()


def _secret_out(own: signing.OwnSecret) -> SecretOut:
    return SecretOut(
        secret=own.secret,
        created_at=own.created_at,
        previous_valid_until=own.previous_valid_until,
    )


@router.get(
    "/webhooks/secret",
    response_model=SecretOut,
    responses=_SECRET_ERRORS,
    summary="This key's secret for its uploads' callback_url deliveries (made on first use)",
)
async def get_secret(session: SessionDep, settings: SettingsDep, caller: CallerDep) -> SecretOut:
    _keyed(settings)
    return _secret_out(await signing.own_secret(session, caller.owner))


@router.post(
    "/webhooks/secret/rotate",
    response_model=SecretOut,
    responses=_SECRET_ERRORS,
    summary="A new secret; the one it replaces signs beside it for 24 hours",
)
async def rotate_secret(session: SessionDep, settings: SettingsDep, caller: CallerDep) -> SecretOut:
    _keyed(settings)
    return _secret_out(await signing.rotate(session, caller.owner))


@router.get(
    "/tasks/{task_id}/deliveries",
    response_model=DeliveryList,
    responses={404: {"model": ErrorBody, "description": "`task_not_found`"}},
    summary="Every webhook delivery attempt for this task",
)
async def task_deliveries(task: TaskDep, session: SessionDep) -> DeliveryList:
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
            for delivery, attempt in await history.attempts(session, task.id)
        ]
    )


@router.post(
    "/deliveries/{delivery_id}/replay",
    status_code=202,
    response_model=ReplayAccepted,
    responses=_errors(
        {
            404: "`delivery_not_found`",
            429: "IMAGEPIPE_KEY_MAX_PENDING_REPLAYS replays of the task's key wait to be "
            "delivered (`too_many_replays`); with Retry-After",
        }
    ),
    summary="Send this delivery's event again (while an earlier replay of it waits: that one)",
)
async def replay_delivery(
    delivery_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
) -> ReplayAccepted | JSONResponse:
    try:
        parsed = uuid.UUID(delivery_id)
    except ValueError:
        raise DeliveryNotFound() from None
    try:
        again = await history.replay(
            session,
            app_state(request.app).services.queue.publish_delivery,
            parsed,
            may_see=caller.may_see,
            max_pending=settings.key_max_pending_replays,
        )
    except TooManyReplays as error:
        return error_response(error, {"Retry-After": _REPLAY_RETRY_AFTER})
    return ReplayAccepted(id=again, replay_of=parsed)
