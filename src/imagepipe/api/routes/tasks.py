"""Reading and deleting tasks, and downloading their variants."""

from __future__ import annotations

import logging
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Query, Request, Response

from imagepipe.api import delivery, negotiate
from imagepipe.api.deps import CallerDep, SessionDep, SettingsDep, StorageDep, TaskDep
from imagepipe.api.schemas import ErrorBody, TaskOut, TaskPage, task_out
from imagepipe.api.state import app_state
from imagepipe.config import Settings
from imagepipe.db.models import Task, TaskStatus
from imagepipe.errors import FormatNotFound, FormatNotReady, NotAcceptable, VariantNotFound
from imagepipe.imaging.formats import BY_EXTENSION, FORMATS
from imagepipe.services import deletion, hooks, renditions, tasks
from imagepipe.services.following import ENDED, wait_until_ended
from imagepipe.storage import ObjectNotFound, Storage

log = logging.getLogger(__name__)
# Seconds a cache may keep the base served in place of a preferred format still being
# made (an extra format follows its task's success within seconds).
NOT_READY_MAX_AGE = 60

router = APIRouter()
_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorBody, "description": "`task_not_found`"}
}


@router.get("/tasks", response_model=TaskPage, summary="Recent tasks, newest first")
async def list_tasks(
    session: SessionDep,
    settings: SettingsDep,
    caller: CallerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: TaskStatus | None = None,
    cursor: str | None = None,
) -> TaskPage:
    page = await session.run_sync(
        tasks.list_page,
        visible=caller.visible_tasks(),
        status=status,
        limit=limit,
        cursor=cursor,
    )
    return TaskPage(
        tasks=[task_out(t, settings.variants) for t in page.tasks], next_cursor=page.next_cursor
    )


@router.get("/tasks/{task_id}", response_model=TaskOut, responses=_NOT_FOUND)
async def get_task(
    task: TaskDep,
    session: SessionDep,
    request: Request,
    settings: SettingsDep,
    wait: Annotated[
        float, Query(ge=0, le=60, description="Answer once the task has ended, or after N s.")
    ] = 0,
) -> TaskOut:
    if wait > 0 and task.status not in ENDED:
        await session.close()  # hold no pooled connection while waiting
        task = await wait_until_ended(
            app_state(request.app).services.sessions,
            app_state(request.app).services.listener,
            task,
            seconds=wait,
            reread_seconds=settings.events_reread_seconds,
        )
    return task_out(task, settings.variants)


@router.get(
    "/tasks/{task_id}/variants/{name}",
    response_class=Response,
    responses={
        200: {"content": {spec.content_type: {} for spec in FORMATS.values()}},
        304: {"description": "If-None-Match matched"},
        307: {"description": "IMAGEPIPE_VARIANT_DELIVERY=redirect: a presigned URL"},
        404: {
            "model": ErrorBody,
            "description": "`task_not_found` / `variant_not_found` / `format_not_found` / "
            "`format_not_ready` (an extra format still being made: `Retry-After`)",
        },
        406: {"model": ErrorBody, "description": "`not_acceptable`"},
    },
    summary="Download one preview",
    description=(
        "`{name}` negotiates the format on `Accept` (AVIF, then WebP, then the base "
        "format; `Vary: Accept`); `{name}.{jpg|png|webp|avif}` fixes it."
    ),
)
async def get_variant(
    task: TaskDep,
    name: str,
    request: Request,
    storage: StorageDep,
    settings: SettingsDep,
    session: SessionDep,
) -> Response:
    try:
        return await _variant(task, name, request, storage, settings)
    except ObjectNotFound:
        pass
    # A re-render (a new focal point, backfill) swapped the task's rows and removed the
    # old objects between our read and our open: the new ones are there. Read again.
    fresh = await tasks.find_live(session, task.id, fresh=True)
    if fresh is None:
        raise VariantNotFound("The variant file is missing.")
    try:
        return await _variant(fresh, name, request, storage, settings)
    except ObjectNotFound:
        raise VariantNotFound("The variant file is missing.") from None


async def _variant(
    task: Task, name: str, request: Request, storage: Storage, settings: Settings
) -> Response:
    """The answer for one of ``task``'s variants, as its rows say it is stored. Raises
    ObjectNotFound when the object they name is gone."""
    # Variant names are identifiers, so a dot can only start a format extension.
    name, dot, extension = name.partition(".")
    wanted = BY_EXTENSION.get(extension) if dot else None
    variant = next((v for v in task.variants if v.name == name), None)
    if task.status != TaskStatus.succeeded or variant is None or (dot and wanted is None):
        raise VariantNotFound(f"No variant {name!r} for this task (status: {task.status}).")
    choices = renditions.stored(variant)
    due = renditions.due(task.extras_due, variant)
    # With keys, a preview is one key's: shared caches must not serve it to others.
    scope = "private" if settings.keys_required else "public"
    headers = {
        "Cache-Control": f"{scope}, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if wanted is not None:
        found = [r for r in choices if r.format == wanted.name]
        if not found:
            if wanted.name in due:
                raise FormatNotReady(f"Variant {name!r} is not stored as {wanted.name} yet.")
            raise FormatNotFound(f"Variant {name!r} is not stored as {wanted.name}.")
        chosen = found[0]
    else:
        # One URL, several bodies: every answer says which header picked it.
        headers["Vary"] = "Accept"
        index, waiting = negotiate.choose_stored(
            request.headers.get("accept"),
            [FORMATS[r.format] for r in choices],
            [FORMATS[fmt] for fmt in due],
        )
        if waiting:
            # The client prefers a format still being made: the best stored one goes
            # now, and a cache may keep it only until that format is there.
            if index is None:
                raise FormatNotReady(f"Variant {name!r} has no acceptable format yet.")
            headers["Cache-Control"] = f"{scope}, max-age={NOT_READY_MAX_AGE}"
        if index is None:
            raise NotAcceptable()
        chosen = choices[index]
    return await delivery.deliver(
        request,
        storage,
        settings,
        key=chosen.storage_key,  # as written, whatever the key layout was then
        etag=chosen.etag,
        content_type=chosen.content_type,
        headers=headers,
    )


# HEAD answers like GET without the body (a stat, never a read).
router.add_api_route(
    "/tasks/{task_id}/variants/{name}", get_variant, methods=["HEAD"], include_in_schema=False
)


@router.delete("/tasks/{task_id}", status_code=204, responses=_NOT_FOUND)
async def delete_task(task: TaskDep, session: SessionDep, storage: StorageDep) -> Response:
    """``services.deletion``'s steps on the API's session: tombstone, files, row."""
    task_id = task.id
    await session.run_sync(deletion.mark_deleted, task_id)
    await session.commit()
    # Followers of the task stop now, not at their next re-read.
    await to_thread.run_sync(hooks.of(session).notify, task_id)
    if await to_thread.run_sync(deletion.remove_files, storage, task_id):
        await session.run_sync(deletion.remove_row, task_id)
        await session.commit()
    # Otherwise the storage failed: the reconciler retries from the tombstone. The
    # task is gone for every reader already, so the delete succeeded for the client.
    return Response(status_code=204)
