"""What the commands print: uploads with their progress bars and results, a finished
task's previews, one task's record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from imagepipe.client.api import Api
from imagepipe.client.bodies import TaskBody
from imagepipe.client.errors import ServiceError


@dataclass
class Outcome:
    path: Path
    task_id: str | None = None
    error: ServiceError | None = None
    task: TaskBody | None = None

    @property
    def ok(self) -> bool:
        if self.error is not None:
            return False
        return self.task is None or self.task["status"] == "succeeded"


def error_line(prefix: str, code: str, message: str) -> Text:
    return Text.assemble(prefix, ("✗ ", "bold red"), (code, "red"), f": {message}")


def _variant_lines(base: httpx.URL, task: TaskBody) -> list[Text]:
    """One line per preview, smallest first, with its absolute URL."""
    ordered = sorted(task["variants"].items(), key=lambda kv: kv[1]["width"] * kv[1]["height"])
    return [
        Text.assemble(
            f"    {name:<7} ",
            (f"{v['width']}x{v['height']}".ljust(10), "cyan"),
            f" {_size(v['size_bytes']):>9}  ",
            str(base.join(v["url"])),
        )
        for name, v in ordered
    ]


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


async def upload_all(
    api: Api, files: list[Path], *, concurrency: int, wait: bool, max_wait: float
) -> list[Outcome]:
    out = Console(soft_wrap=True, highlight=False)
    err = Console(stderr=True, highlight=False)
    outcomes = [Outcome(path) for path in files]
    sizes = {path: path.stat().st_size for path in files}
    limiter = anyio.CapacityLimiter(concurrency)
    progress = Progress(
        TextColumn("{task.description}", style="bold", markup=False),  # names are not markup
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=not err.is_terminal,
    )
    # Results go to stdout. When stdout and the bar share a terminal they must be drawn
    # by the bar's console, above the bar (a second Console would scribble over it).
    shown_on = err if out.is_terminal and err.is_terminal else out

    def print_(line: Text) -> None:
        shown_on.print(line, soft_wrap=True)  # a URL must stay on one line

    async def one(outcome: Outcome) -> None:
        async with limiter:
            bar = progress.add_task(outcome.path.name, total=sizes[outcome.path])

            def advance(n: int) -> None:
                progress.advance(bar, n)
                progress.advance(overall, n)

            try:
                outcome.task_id = await api.upload(outcome.path, advance)
            except ServiceError as error:
                outcome.error = error
            except OSError as error:  # the file vanished or became unreadable meanwhile
                outcome.error = ServiceError("read_error", str(error))
            finally:
                progress.remove_task(bar)
        if outcome.error is not None:
            print_(error_line(f"{outcome.path} ", outcome.error.code, outcome.error.message))
            return
        assert outcome.task_id is not None
        print_(Text.assemble(f"{outcome.path} → ", (outcome.task_id, "bold")))
        if not wait:
            return
        try:
            outcome.task = await api.wait(outcome.task_id, max_wait)
        except ServiceError as error:
            outcome.error = error
            print_(error_line(f"{outcome.path} {outcome.task_id} ", error.code, error.message))
            return
        _print_finished(print_, api, outcome)

    with progress:
        overall = progress.add_task("total", total=sum(sizes.values()))
        async with anyio.create_task_group() as group:
            for outcome in outcomes:
                group.start_soon(one, outcome)
    return outcomes


def _print_finished(print_: Callable[[Text], None], api: Api, outcome: Outcome) -> None:
    task = outcome.task
    assert task is not None
    prefix = f"{outcome.path} {task['task_id']} "
    if task["status"] == "succeeded":
        print_(Text.assemble(prefix, ("✓ succeeded", "bold green")))
        for line in _variant_lines(api.http.base_url, task):
            print_(line)
    else:
        error = task["error"] or {"code": "internal_error", "message": "no error recorded"}
        print_(error_line(prefix + "failed ", error["code"], error["message"]))


def print_task(out: Console, base_url: str, task: TaskBody) -> None:
    colour = {"succeeded": "green", "failed": "red"}.get(task["status"], "yellow")
    original = task["original"]
    rows: list[tuple[str, Text | str]] = [
        ("task", task["task_id"]),
        ("status", Text(task["status"], style=f"bold {colour}")),
        ("created", task["created_at"]),
        ("started", task["started_at"] or "-"),
        ("finished", task["finished_at"] or "-"),
        (
            "original",
            f"{original['filename']}  {original['format']} "
            f"{original['width']}x{original['height']}  {_size(original['size_bytes'])}",
        ),
    ]
    error = task["error"]
    if error:
        rows.append(("error", Text(f"{error['code']}: {error['message']}", style="red")))
    for label, value in rows:
        out.print(Text.assemble(f"{label:<9} ", value))
    if task["variants"]:
        out.print("variants")
        for line in _variant_lines(httpx.URL(base_url), task):
            out.print(line)
