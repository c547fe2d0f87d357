"""``imagepipe upload``, ``imagepipe status`` and ``imagepipe sign``: their options,
exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import click
from rich.console import Console

from imagepipe.client.api import Api
from imagepipe.client.bodies import TaskBody
from imagepipe.client.errors import ServiceError
from imagepipe.client.files import collect_files
from imagepipe.client.report import Outcome, error_line, print_task, upload_all
from imagepipe.client.wire import normalise_url

DEFAULT_URL = "http://127.0.0.1:8000"


_URL_OPTION = click.option(
    "--url",
    envvar="IMAGEPIPE_URL",
    default=DEFAULT_URL,
    show_default=True,
    show_envvar=True,
    help="Base URL of the imagepipe API.",
)
_KEY_OPTION = click.option(
    "--api-key",
    envvar="IMAGEPIPE_API_KEY",
    default=None,
    show_envvar=True,
    help="Sent as 'Authorization: Bearer KEY' (needed when the service sets IMAGEPIPE_API_KEYS).",
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--wait", is_flag=True, help="Wait for the previews and print their URLs.")
@click.option(
    "--concurrency",
    "-j",
    default=4,
    show_default=True,
    type=click.IntRange(min=1),
    help="Uploads in flight at once.",
)
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="With --wait: seconds to wait for each task.",
)
@click.option(
    "--direct",
    is_flag=True,
    help="Send the bytes straight to storage (POST /uploads, PUT, complete).",
)
@_URL_OPTION
@_KEY_OPTION
def upload(
    paths: tuple[Path, ...],
    wait: bool,
    concurrency: int,
    timeout: float,
    direct: bool,
    url: str,
    api_key: str | None,
) -> None:
    """Upload images (files, or folders searched recursively); print each task id.

    Exits 1 if any file was rejected or, with --wait, any task failed.
    """
    files = collect_files(paths)
    if not files:
        raise click.UsageError("no files found in the given paths")

    async def main() -> list[Outcome]:
        async with Api(url, api_key, direct=direct) as api:
            return await upload_all(
                api, files, concurrency=concurrency, wait=wait, max_wait=timeout
            )

    outcomes = anyio.run(main)
    bad = [o for o in outcomes if not o.ok]
    if bad:
        click.echo(f"{len(bad)} of {len(outcomes)} file(s) did not go through.", err=True)
        raise SystemExit(1)


@click.command()
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the task as the API returns it.")
@_URL_OPTION
@_KEY_OPTION
def status(task_id: str, as_json: bool, url: str, api_key: str | None) -> None:
    """Show one task: status, original, previews, error. Exits 1 if it is unknown."""

    async def main() -> tuple[TaskBody, str]:
        async with Api(url, api_key) as api:
            return await api.task(task_id)

    try:
        task, raw = anyio.run(main)
    except ServiceError as error:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            error_line("", error.code, error.message)
        )
        raise SystemExit(1) from None
    if as_json:
        click.echo(json.dumps(json.loads(raw), indent=2))
        return
    print_task(Console(soft_wrap=True, highlight=False), normalise_url(url), task)


@click.command()
@click.argument("task_id")
@click.argument("options")
@click.option(
    "--format",
    "extension",
    type=click.Choice(["jpg", "png", "webp", "avif"]),
    help="Fix the format in the link (otherwise the browser's Accept decides).",
)
@_URL_OPTION
@_KEY_OPTION
def sign(task_id: str, options: str, extension: str | None, url: str, api_key: str | None) -> None:
    """Print a signed link to an on-demand rendition, e.g. OPTIONS w:640,h:480,fit:cover.

    The service signs it (POST /tasks/{id}/links); no secret is needed here."""

    async def main() -> str:
        async with Api(url, api_key) as api:
            return await api.sign(task_id, options, extension)

    try:
        click.echo(anyio.run(main))
    except ServiceError as error:
        Console(stderr=True, highlight=False, soft_wrap=True).print(
            error_line("", error.code, error.message)
        )
        raise SystemExit(1) from None
