"""S3 client candidates against a real SeaweedFS: many small objects, one large stream,
peak memory. The numbers and the choice are in docs/scaling.md ("Storage client").

    python -m bench.s3_clients [--rounds 3] [--objects 500] [--large-mb 25]

Each (client, scenario, round) runs in a fresh process, so its peak RSS is its own and
no connection pool is warm from the previous one. Requests are sequential, as one API
request or one worker task makes them. The median of the rounds is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "s3_clients.json"
CLIENTS = ["boto3", "obstore"]
SMALL_BYTES = 4 * 1024
CHUNK = 1024 * 1024


def _rss_mb() -> float:
    """Peak resident memory of this process so far (VmHWM: unlike ru_maxrss, it does
    not start from the parent's peak after fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


# --- the clients, each behind the same four calls -------------------------------------


class Boto3Client:
    def __init__(self, endpoint: str, bucket: str) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            config=Config(
                connect_timeout=3,
                read_timeout=10,
                retries={"mode": "standard", "total_max_attempts": 3},
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def put_file(self, key: str, path: Path) -> None:
        with path.open("rb") as handle:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=handle)

    def stream(self, key: str) -> int:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return sum(len(chunk) for chunk in body.iter_chunks(CHUNK))


class ObstoreClient:
    def __init__(self, endpoint: str, bucket: str) -> None:
        import obstore
        from obstore.store import S3Store

        self.obstore = obstore
        self.store = S3Store(
            bucket,
            endpoint=endpoint,
            access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
            secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"],
            region=os.environ.get("AWS_REGION", "us-east-1"),
            virtual_hosted_style_request=False,
            client_options={"allow_http": True, "connect_timeout": "3s", "timeout": "30s"},
            retry_config={"max_retries": 2, "retry_timeout": timedelta(seconds=30)},
        )

    def put_bytes(self, key: str, data: bytes) -> None:
        self.obstore.put(self.store, key, data)

    def get_bytes(self, key: str) -> bytes:
        return bytes(self.obstore.get(self.store, key).bytes())

    def put_file(self, key: str, path: Path) -> None:
        self.obstore.put(self.store, key, path)

    def stream(self, key: str) -> int:
        result = self.obstore.get(self.store, key)
        return sum(len(chunk) for chunk in result.stream(min_chunk_size=CHUNK))


def make_client(name: str, endpoint: str, bucket: str) -> Any:
    return {"boto3": Boto3Client, "obstore": ObstoreClient}[name](endpoint, bucket)


# --- one measurement, in its own process ----------------------------------------------


def child(args: argparse.Namespace) -> dict[str, float]:
    baseline = _rss_mb()
    started = time.perf_counter()
    client = make_client(args.client, args.endpoint, args.bucket)
    setup = time.perf_counter() - started
    prefix = f"{args.client}/{args.round}"
    out: dict[str, float] = {"setup_s": setup, "rss_after_import_mb": _rss_mb()}
    if args.scenario == "small":
        data = os.urandom(SMALL_BYTES)
        started = time.perf_counter()
        for i in range(args.objects):
            client.put_bytes(f"{prefix}/small/{i}", data)
        out["put_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for i in range(args.objects):
            assert len(client.get_bytes(f"{prefix}/small/{i}")) == SMALL_BYTES
        out["get_s"] = time.perf_counter() - started
    else:
        size = args.large_mb * 1024 * 1024
        with tempfile.NamedTemporaryFile() as handle:
            for _ in range(args.large_mb):  # in pieces: the file must not inflate the RSS
                handle.write(os.urandom(1024 * 1024))
            handle.flush()
            before = _rss_mb()
            started = time.perf_counter()
            client.put_file(f"{prefix}/large", Path(handle.name))
            out["put_s"] = time.perf_counter() - started
            out["put_rss_growth_mb"] = _rss_mb() - before
        before = _rss_mb()
        started = time.perf_counter()
        assert client.stream(f"{prefix}/large") == size
        out["stream_s"] = time.perf_counter() - started
        out["stream_rss_growth_mb"] = _rss_mb() - before
    out["peak_rss_mb"] = _rss_mb()
    out["baseline_rss_mb"] = baseline
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from tests.harness.seaweedfs import seaweedfs

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory, seaweedfs(Path(directory)) as server:
        env = {**os.environ, **server.client_env()}
        for name in CLIENTS:
            for scenario in ("small", "large"):
                rounds = []
                for number in range(args.rounds):
                    argv = [
                        sys.executable, "-m", "bench.s3_clients", "--child", name,
                        "--scenario", scenario, "--round", str(number),
                        "--endpoint", server.endpoint_url, "--bucket", server.bucket,
                        "--objects", str(args.objects), "--large-mb", str(args.large_mb),
                    ]  # fmt: skip
                    done = subprocess.run(
                        argv, cwd=ROOT, env=env, check=True, capture_output=True, text=True
                    )
                    rounds.append(json.loads(done.stdout.strip().splitlines()[-1]))
                median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                results[f"{name}/{scenario}"] = median
                print(name, scenario, json.dumps({k: round(v, 3) for k, v in median.items()}))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--large-mb", type=int, default=25)
    parser.add_argument("--child", choices=CLIENTS)
    parser.add_argument("--scenario", choices=["small", "large"])
    parser.add_argument("--round", type=int, default=0)
    parser.add_argument("--endpoint")
    parser.add_argument("--bucket")
    args = parser.parse_args()
    if args.child:
        args.client = args.child
        print(json.dumps(child(args)))
        return
    results = run(args)
    meta = {"objects": args.objects, "object_bytes": SMALL_BYTES, "large_mb": args.large_mb}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"params": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
