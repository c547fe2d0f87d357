"""GET /tasks/{task_id}/events: the task's status as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from imagepipe.api.deps import SettingsDep, TaskDep
from imagepipe.api.schemas import ErrorBody, task_out
from imagepipe.api.state import app_state
from imagepipe.services.following import follow

router = APIRouter()


@router.get(
    "/tasks/{task_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "`event: status` per change"},
        404: {"model": ErrorBody, "description": "`task_not_found`"},
    },
    summary="Follow a task: one `status` event now and one per change, until it ends",
    description=(
        "A stream still open after `IMAGEPIPE_EVENTS_MAX_STREAM_SECONDS` (600 s) ends; "
        "the client opens it again and gets the current status first."
    ),
)
async def task_events(
    task: TaskDep, request: Request, settings: SettingsDep
) -> EventSourceResponse:
    # The request's session closes when this returns; the stream reads with its own.
    services = app_state(request.app).services
    sessions, listener = services.sessions, services.listener
    task_id = task.id

    # A follower holds a slot of its tenant and re-reads the row on a timer: bounded.
    deadline = anyio.current_time() + settings.events_max_stream_seconds

    async def stream() -> AsyncIterator[ServerSentEvent]:
        async for current in follow(
            sessions,
            listener,
            task_id,
            reread_seconds=settings.events_reread_seconds,
            deadline=deadline,
        ):
            yield ServerSentEvent(
                data=task_out(current, settings.variants).model_dump_json(), event="status"
            )

    return EventSourceResponse(
        stream(),
        ping=settings.events_keepalive_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
