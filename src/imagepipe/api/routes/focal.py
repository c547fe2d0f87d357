"""PATCH /tasks/{task_id}: the owner sets (or clears) the task's focal point.

The point is stored at once. It decides the pixels of ``cover`` variants with
``gravity: focal`` only (every other variant ignores it), so only a succeeded task
whose settings have such variants is re-rendered: by the follow-up workers, through
the same fenced re-render ``imagepipe backfill`` uses, recorded as due so that the
reconciler publishes it again if the message is lost. Its old variants serve until
the new ones replace them in one commit. A task not rendered yet just keeps the point:
its render reads it when the worker claims the task. The route parses the body;
``services.rerender.set_focal_point`` stores the point and publishes the re-render.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import APIRouter, Request

from imagepipe.api.deps import SessionDep, SettingsDep, TaskDep
from imagepipe.api.schemas import ErrorBody, TaskOut, task_out
from imagepipe.api.state import app_state
from imagepipe.errors import InvalidFocalPoint, UnprocessableRequest
from imagepipe.imaging.crop import FocalPoint
from imagepipe.services import rerender

router = APIRouter()

_POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "number", "minimum": 0, "maximum": 1},
        "y": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["x", "y"],
}
# Parsed by the route itself (stable error codes); described here for OpenAPI.
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"focal_point": {"anyOf": [_POINT, {"type": "null"}]}},
                    "required": ["focal_point"],
                },
                "example": {"focal_point": {"x": 0.31, "y": 0.42}},
            }
        },
    }
}


def parse(body: bytes) -> FocalPoint | None:
    """``{"focal_point": {"x", "y"} | null}``: the point, or None to clear it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise UnprocessableRequest("The body must be a JSON object.") from None
    if not isinstance(data, dict) or set(data) != {"focal_point"}:
        raise UnprocessableRequest('The body must be {"focal_point": {"x": …, "y": …} | null}.')
    point = data["focal_point"]
    if point is None:
        return None
    if not isinstance(point, dict) or set(point) != {"x", "y"}:
        raise InvalidFocalPoint()
    x, y = point["x"], point["y"]
    if not all(_fraction(value) for value in (x, y)):
        raise InvalidFocalPoint()
    return FocalPoint(float(x), float(y))


def _fraction(value: Any) -> bool:
    # bool is an int in Python; true is not a coordinate.
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and 0.0 <= value <= 1.0


@router.patch(
    "/tasks/{task_id}",
    response_model=TaskOut,
    summary="Set or clear the task's focal point",
    responses={
        404: {"model": ErrorBody, "description": "`task_not_found`"},
        422: {
            "model": ErrorBody,
            "description": "`invalid_focal_point` (out of 0..1, not numbers), or a "
            "malformed body (`invalid_request`)",
        },
    },
    openapi_extra=_BODY,
)
async def patch_task(
    task: TaskDep,
    session: SessionDep,
    settings: SettingsDep,
    request: Request,
) -> TaskOut:
    point = parse(await request.body())
    publish = app_state(request.app).services.queue.enqueue_refresh
    await rerender.set_focal_point(session, settings, task, point, publish)
    return task_out(task, settings.variants)
