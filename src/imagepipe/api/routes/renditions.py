"""On-demand renditions over HTTP: the signed ``/r/`` links (no API key), the owner's
unsigned URL, and making a link. Each route parses, calls ``services.on_demand`` and
renders; the waiting, single flight and storage live there."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from imagepipe.api import delivery, negotiate
from imagepipe.api.access import Refused, charge_rate
from imagepipe.api.deps import SessionDep, SettingsDep, StorageDep, TaskDep
from imagepipe.api.schemas import ErrorBody
from imagepipe.api.state import app_state
from imagepipe.config import Settings
from imagepipe.db.models import Task
from imagepipe.errors import (
    InvalidOptions,
    NotAcceptable,
    NotFound,
    PresetRequired,
    Rendering,
    SigningDisabled,
    TaskNotFound,
)
from imagepipe.imaging.formats import BY_EXTENSION, FORMATS, OutputFormat, can_write
from imagepipe.services.on_demand import options as parsing
from imagepipe.services.on_demand import serving, signing
from imagepipe.services.tenancy import ANONYMOUS
from imagepipe.storage import ObjectNotFound, Storage

# Not immutable: a link's bytes change when its task's focal point moves.
MAX_AGE = 86400
# Without an extension, Accept picks among these: the base ("auto": JPEG, or PNG with
# alpha) stands first, as image/jpeg, then the modern formats this build writes.
_NEGOTIATED: tuple[OutputFormat, ...] = tuple(
    FORMATS[name] for name in ("JPEG", "WEBP", "AVIF") if can_write(name)
)
Extension = Literal["jpg", "png", "webp", "avif"]

signed_router = APIRouter()  # no API key: the signature is the credential
router = APIRouter()  # behind the API key, like every task route

_IMAGE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {spec.content_type: {} for spec in FORMATS.values()}},
    304: {"description": "If-None-Match matched"},
    307: {"description": "IMAGEPIPE_VARIANT_DELIVERY=redirect: a presigned URL"},
    400: {"model": ErrorBody, "description": "`invalid_options`"},
    404: {"model": ErrorBody, "description": "`task_not_found` (unknown or failed task)"},
    406: {"model": ErrorBody, "description": "`not_acceptable`"},
    429: {"model": ErrorBody, "description": "a first render past the rate limit"},
    503: {"model": ErrorBody, "description": "`rendering`: try again after `Retry-After`"},
}


class LinkIn(BaseModel):
    options: str = Field(examples=["w:640,h:480,fit:cover,g:smart"])
    # Fixes the format in the link; without it, the client's Accept decides.
    extension: Extension | None = None


class LinkOut(BaseModel):
    url: str
    options: str  # as the link spells them (normalised, or p:<name>)


@signed_router.get(
    "/r/{signature}/{options}/{target}",
    response_class=Response,
    responses={**_IMAGE_RESPONSES, 403: {"model": ErrorBody, "description": "`invalid_signature`"}},
    summary="A signed on-demand rendition (no API key)",
    description="`{target}` is the task id, or `{task_id}.{jpg|png|webp|avif}`.",
    tags=["renditions"],
)
async def get_signed(
    signature: str,
    options: str,
    target: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    if not settings.url_signing_keys:
        raise NotFound()
    # Before anything is looked up: a forged link learns nothing, costs one HMAC.
    signing.verify(settings.url_signing_keys, signature, options, target)
    if settings.on_demand_presets and not options.startswith("p:"):
        raise PresetRequired()
    parsed = _parse(options, settings)
    task_id, wanted = _target(target)
    task = await serving.linked_task(session, task_id)
    await session.close()  # no pooled connection held while a render is waited for
    return await _serve(request, storage, settings, task, parsed, wanted, scope="public")


@router.get(
    "/tasks/{task_id}/renditions/{options}",
    response_class=Response,
    responses=_IMAGE_RESPONSES,
    summary="An on-demand rendition, for the task's owner",
    description="`{options}` may end in `.{jpg|png|webp|avif}`; otherwise Accept decides.",
    tags=["renditions"],
)
async def get_owned(
    task: TaskDep,
    options: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    storage: StorageDep,
) -> Response:
    text, dot, extension = options.partition(".")
    wanted = _extension(extension) if dot else None
    parsed = _parse(text, settings)
    await session.close()
    # With keys, the rendition is one key's: shared caches must not serve it to others.
    scope = "private" if settings.keys_required else "public"
    return await _serve(request, storage, settings, task, parsed, wanted, scope=scope)


@router.post(
    "/tasks/{task_id}/links",
    status_code=201,
    response_model=LinkOut,
    responses={
        400: {"model": ErrorBody, "description": "`invalid_options`"},
        403: {"model": ErrorBody, "description": "`preset_required` (presets-only mode)"},
        409: {"model": ErrorBody, "description": "`signing_disabled`"},
    },
    summary="Make a signed /r/ link to an on-demand rendition",
    tags=["renditions"],
)
async def create_link(
    task: TaskDep, body: Annotated[LinkIn, Body()], settings: SettingsDep
) -> LinkOut:
    if not settings.url_signing_keys:
        raise SigningDisabled()
    parsed = _parse(body.options, settings)
    if settings.on_demand_presets and parsed.preset is None:
        raise PresetRequired("Links serve only named presets here: use p:<name>.")
    if body.extension and not can_write(BY_EXTENSION[body.extension].name):
        raise InvalidOptions(f"This service cannot write .{body.extension} renditions.")
    target = f"{task.id}.{body.extension}" if body.extension else str(task.id)
    url = signing.link(
        settings.url_signing_keys, parsed.in_url, target, base_url=settings.public_base_url
    )
    return LinkOut(url=url, options=parsed.in_url)


# HEAD answers like GET without the body (a stat, never a read).
signed_router.add_api_route(
    "/r/{signature}/{options}/{target}", get_signed, methods=["HEAD"], include_in_schema=False
)
router.add_api_route(
    "/tasks/{task_id}/renditions/{options}", get_owned, methods=["HEAD"], include_in_schema=False
)


async def _serve(
    request: Request,
    storage: Storage,
    settings: Settings,
    task: Task,
    parsed: parsing.RenditionOptions,
    wanted: OutputFormat | None,
    *,
    scope: str,
) -> Response:
    headers = {"Cache-Control": f"{scope}, max-age={MAX_AGE}", "X-Content-Type-Options": "nosniff"}
    asked: str
    if wanted is not None:
        asked = wanted.name
    else:
        headers["Vary"] = "Accept"  # one URL, several bodies
        index = negotiate.choose(request.headers.get("accept"), _NEGOTIATED)
        if index is None:
            raise NotAcceptable("None of JPEG/PNG, WebP, AVIF is acceptable (Accept header).")
        asked = "auto" if index == 0 else _NEGOTIATED[index].name
    on_demand = app_state(request.app).services.on_demand
    owner = task.owner_scope or ANONYMOUS

    async def charge() -> None:
        refused = await charge_rate(request.scope, owner)
        if refused is not None:
            raise _RateRefusal(refused)

    try:
        row = await on_demand.rendition(task, parsed, asked, charge=charge)
    except _RateRefusal as refusal:
        error = refusal.refused.error
        body = {"error": {"code": error.code, "message": error.message}}
        return JSONResponse(body, status_code=error.status_code, headers=refusal.refused.headers)
    if row.source != "original":
        headers["X-Rendered-From"] = row.source
    try:
        return await delivery.deliver(
            request,
            storage,
            settings,
            key=row.storage_key,
            etag=row.etag,
            content_type=row.content_type,
            headers=headers,
        )
    except ObjectNotFound:
        await on_demand.forget(row)
        raise Rendering("The rendition is being made again; try again shortly.") from None


class _RateRefusal(Exception):
    def __init__(self, refused: Refused) -> None:
        self.refused = refused


def _parse(text: str, settings: Settings) -> parsing.RenditionOptions:
    return parsing.parse(
        text, max_side=settings.on_demand_max_side, presets=settings.on_demand_presets
    )


def _target(target: str) -> tuple[uuid.UUID, OutputFormat | None]:
    text, dot, extension = target.partition(".")
    wanted = _extension(extension) if dot else None
    try:
        return uuid.UUID(text), wanted
    except ValueError:
        raise TaskNotFound() from None


def _extension(extension: str) -> OutputFormat:
    spec = BY_EXTENSION.get(extension)
    if spec is None or not can_write(spec.name):
        raise NotFound("Rendition extensions: jpg, png, webp, avif.")
    return spec
