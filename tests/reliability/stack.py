"""Real processes for fault-injection tests: the API server, a private PostgreSQL, and
helpers that look at the database and the storage the way an auditor would.

Everything here is bounded in time: each wait has a deadline and fails with the logs
of the processes involved.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from sqlalchemy import Engine, func, select

from imagepipe.config import Settings
from imagepipe.db.engine import make_sync_engine
from imagepipe.db.models import Task, TaskStatus, Variant
from tests.conftest import make_settings, settings_env
from tests.services import free_port, require_binary, wait_for_port

T = TypeVar("T")

# Small limits for the worker, so faults recover in seconds (see docs/reliability.md).
FAST_LIMITS: dict[str, object] = {
    "task_soft_time_limit": 4,
    "task_hard_time_limit": 6,
    "lease_margin_seconds": 2,
    "queued_grace_seconds": 2,
    "reconcile_interval_seconds": 1,
    "visibility_timeout": 30,
    "broker_timeout_seconds": 1,
}


def wait_until(
    check: Callable[[], T | None],
    *,
    within: float,
    what: str,
    logs: Callable[[], str] = lambda: "",
    every: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy; fail after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}\n{logs()[-4000:]}")
        time.sleep(every)


def report(test: str, outcome: str, **numbers: object) -> None:
    """Append a measured outcome to $IMAGEPIPE_RELIABILITY_REPORT (JSON lines), if set.

    docs/reliability.md is filled from these lines; without the variable it is a no-op.
    """
    path = os.environ.get("IMAGEPIPE_RELIABILITY_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"test": test, "outcome": outcome, **numbers}) + "\n")


def stack_env(settings: Settings) -> dict[str, str]:
    """The environment giving a subprocess ``settings``: settings_env and what it omits."""
    env = settings_env(settings)
    env.update(
        IMAGEPIPE_BROKER_TIMEOUT_SECONDS=str(settings.broker_timeout_seconds),
        IMAGEPIPE_RETRY_AFTER_SECONDS=str(settings.retry_after_seconds),
        IMAGEPIPE_VARIANTS=json.dumps(settings.variants),
        IMAGEPIPE_API_KEYS=json.dumps(list(settings.api_keys)),
        IMAGEPIPE_CORS_ORIGINS=json.dumps(list(settings.cors_origins)),
        IMAGEPIPE_LOG_LEVEL="INFO",
    )
    return env


# --- the API server ----------------------------------------------------------------


class ApiProcess:
    """A real ``imagepipe api`` (uvicorn, httptools, uvloop) on a free port."""

    def __init__(
        self, env: dict[str, str], log_path: Path, *, settings: Settings | None = None
    ) -> None:
        self.env = env
        self.log_path = log_path
        self.settings = settings
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, within: float = 30) -> None:
        argv = [sys.executable, "-m", "imagepipe.cli", "api", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

        def healthy() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"imagepipe api exited:\n{self.output()}"
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, within=within, what="imagepipe api to serve", logs=self.output)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(25)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.process = None

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def api_server(env: dict[str, str], log_path: Path) -> Iterator[ApiProcess]:
    server = ApiProcess(env, log_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def live_api(directory: Path, redis_url: str, **overrides: object) -> Iterator[ApiProcess]:
    """A real API server on SQLite in ``directory``; its settings are ``server.settings``."""
    settings = make_settings(
        directory, f"sqlite+aiosqlite:///{directory / 'imagepipe.db'}", redis_url, **overrides
    )
    server = ApiProcess(stack_env(settings), directory / "api.log", settings=settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- a private PostgreSQL ---------------------------------------------------------


def postgres_binary(name: str) -> str:
    """``name`` from PATH, else from Debian's versioned directory (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
        reverse=True,
    )
    if candidates:
        return str(candidates[0])
    return require_binary(name)  # fails the test, loudly


class PrivatePostgres:
    """initdb + pg_ctl in a temp dir on a free port, stopped and started by the test.

    PostgreSQL refuses to run as root: as root, its commands run as ``postgres``.
    """

    def __init__(self, directory: Path) -> None:
        self.initdb = postgres_binary("initdb")
        self.pg_ctl = postgres_binary("pg_ctl")
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.runas: list[str] = []
        if os.geteuid() == 0:
            self.runas = [require_binary("setpriv"), "--reuid=postgres", "--regid=postgres"]
            self.runas.append("--init-groups")
            shutil.chown(directory, "postgres", "postgres")

    def _run(self, *argv: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self.runas, *argv], capture_output=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed: {result.stdout.decode()}{result.stderr.decode()}\n{self.log()}"
            )

    def init(self) -> None:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-N")

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.directory} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w",
            "start",
        )  # fmt: skip
        wait_for_port(self.port)

    def stop(self, mode: str = "immediate") -> None:
        """``immediate``: the server dies at once, like a crash (it recovers at start)."""
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def log_path(self) -> Path:
        return self.directory / "postgres.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    directory = Path(tempfile.mkdtemp(prefix="imagepipe-test-pg-"))
    server = PrivatePostgres(directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            server.stop()  # it may be stopped already
        shutil.rmtree(directory, ignore_errors=True)


# --- looking at the record ---------------------------------------------------------


@dataclass(frozen=True)
class Row:
    status: TaskStatus
    attempts: int
    error_code: str | None


class Records:
    """Reads the tasks/variants tables and the storage directly (never through the API)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.root = settings.resolved_storage_root
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_sync_engine(self.settings.resolved_database_url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def tasks(self) -> dict[uuid.UUID, Row]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(Task.id, Task.status, Task.attempts, Task.error_code))
            return {r.id: Row(TaskStatus(r.status), r.attempts, r.error_code) for r in rows}

    def count(self, status: TaskStatus) -> int:
        with self.engine.connect() as connection:
            query = select(func.count()).select_from(Task).where(Task.status == status)
            return int(connection.scalar(query) or 0)

    def variant_rows(self) -> list[tuple[uuid.UUID, str, str]]:
        return [(task_id, name, key) for task_id, name, key, _ in self._variants()]

    def _variants(self) -> list[tuple[uuid.UUID, str, str, str]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(Variant.task_id, Variant.name, Variant.storage_key, Variant.sha256)
            )
            return [(r.task_id, r.name, r.storage_key, r.sha256) for r in rows]

    def all_finished(self, ids: list[uuid.UUID]) -> bool:
        rows = self.tasks()
        finished = (TaskStatus.succeeded, TaskStatus.failed)
        return all(rows[i].status in finished for i in ids)

    def storage_files(self, prefix: str) -> list[Path]:
        base = self.root / prefix
        return sorted(p for p in base.rglob("*") if p.is_file()) if base.exists() else []

    def problems(self, ids: list[uuid.UUID]) -> list[str]:
        """Everything that breaks "one set of previews each, nothing half-written".

        Succeeded: exactly one row per configured variant, each file present, and the
        task's variant directory holds those files and nothing else. Not succeeded: no
        variant rows. Anywhere: no temp files in variants/ or tmp/.
        """
        found: list[str] = []
        names = set(self.settings.variants)
        rows = self.tasks()
        variants = self._variants()
        per_task = Counter(task_id for task_id, _, _, _ in variants)
        for task_id in ids:
            row = rows.get(task_id)
            if row is None:
                found.append(f"{task_id}: no row")
                continue
            mine = [(name, key) for t, name, key, _ in variants if t == task_id]
            digests = {key: sha for t, _, key, sha in variants if t == task_id}
            if row.status != TaskStatus.succeeded:
                if mine:
                    found.append(f"{task_id}: {row.status} but {len(mine)} variant rows")
                continue
            if per_task[task_id] != len(names) or {n for n, _ in mine} != names:
                found.append(f"{task_id}: variant rows {sorted(n for n, _ in mine)}")
            keys = {key for _, key in mine}
            for key in keys:
                path = self.root / key
                if not path.is_file():
                    found.append(f"{task_id}: row points at missing file {key}")
                elif hashlib.sha256(path.read_bytes()).hexdigest() != digests[key]:
                    found.append(f"{task_id}: {key} does not match its row's sha256")
            on_disk = {
                str(p.relative_to(self.root)) for p in self.storage_files(f"variants/{task_id}")
            }
            if on_disk != keys:
                found.append(f"{task_id}: files {sorted(on_disk)} != rows {sorted(keys)}")
        for path in self.storage_files("variants") + self.storage_files("tmp"):
            if path.name.startswith((".", "up-")):
                found.append(f"temp file left behind: {path.relative_to(self.root)}")
        return found


# --- processes of a worker ---------------------------------------------------------


def children(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(found))


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid``; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return 0
    return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks; 0 once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def upload(client: httpx.Client, data: bytes, name: str = "image.png") -> uuid.UUID:
    response = client.post("/upload", files={"file": (name, data)})
    if response.status_code != 202:
        pytest.fail(f"upload answered {response.status_code}: {response.text}")
    return uuid.UUID(response.json()["task_id"])
