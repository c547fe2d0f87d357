"""The compose stack's shape: what must hold for it to run on hosts that share nothing
and to be safe when started without the development override."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.names import setting_names

ROOT = Path(__file__).resolve().parents[2]
APP_ROLES = ("app", "celery_worker", "follow_up_worker", "beat")
SECRETS = ("POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and $$, for the values the tests look at."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, default = match["name"], match["default"]
        return env.get(name) or (default or "")

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}", one, value)


def _load(*names: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The files merged as compose merges them (maps by key; lists of ports/volumes
    appended), interpolated with `env` standing for the host's environment."""
    merged: dict[str, Any] = {}
    for name in names:
        document = _interpolate(yaml.safe_load((ROOT / name).read_text()), env or {})
        for service, spec in document.get("services", {}).items():
            target = merged.setdefault(service, {})
            for key, value in spec.items():
                if isinstance(value, dict) and isinstance(target.get(key), dict):
                    target[key] = {**target[key], **value}
                elif key in ("volumes", "ports") and key in target:
                    target[key] = target[key] + value
                else:
                    target[key] = value
    return merged


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    return _load("compose.yaml")


@pytest.fixture(scope="module")
def development() -> dict[str, Any]:
    return _load("compose.yaml", "compose.override.yaml")


def _named_volumes(spec: dict[str, Any]) -> set[str]:
    names = set()
    for mount in spec.get("volumes", []):
        source = mount.split(":", 1)[0] if isinstance(mount, str) else mount.get("source", "")
        if source and not source.startswith((".", "/")):
            names.add(source)
    return names


@pytest.mark.parametrize("stack", ["production", "development"])
def test_no_volume_is_shared_by_the_api_and_the_workers(
    stack: str, request: pytest.FixtureRequest
) -> None:
    services = request.getfixturevalue(stack)
    for role in APP_ROLES:
        assert _named_volumes(services[role]) == set(), f"{role} mounts a volume"
        # The development bind mount is the source code, read-only: never data.
        for mount in services[role].get("volumes", []):
            assert mount.endswith(":ro"), f"{role}: {mount} is writable"
    storage = services["app"]["environment"]["IMAGEPIPE_STORAGE_URL"]
    assert storage.startswith("s3://")
    for role in APP_ROLES:
        assert services[role]["environment"]["IMAGEPIPE_STORAGE_URL"] == storage
    # Each stateful service keeps its own volume.
    owners: dict[str, list[str]] = {}
    for name, spec in services.items():
        for volume in _named_volumes(spec):
            owners.setdefault(volume, []).append(name)
    assert {volume: names for volume, names in owners.items() if len(names) > 1} == {}
    assert owners.get("seaweedfs") == ["seaweedfs"]


def test_workers_scale(production: dict[str, Any]) -> None:
    worker = production["celery_worker"]
    # Either would make `up --scale celery_worker=3` fail on the second container.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert all("container_name" not in spec for spec in production.values())


def test_every_long_running_service_has_a_healthcheck(production: dict[str, Any]) -> None:
    for name, spec in production.items():
        if spec.get("restart") == "no":  # one-shot: migrate
            continue
        check = spec.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    # The app roles wait for what they need, and for the schema.
    for role in APP_ROLES:
        needs = production[role]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}
        for dependency in ("postgres", "redis", "seaweedfs"):
            assert needs[dependency] == {"condition": "service_healthy"}


def test_seaweedfs_healthcheck_uses_a_tool_in_its_image(production: dict[str, Any]) -> None:
    seaweedfs = production["seaweedfs"]
    assert seaweedfs["image"].startswith("chrislusf/seaweedfs:")
    test = " ".join(seaweedfs["healthcheck"]["test"])
    # The official image is Alpine-based: busybox wget, no curl, no python.
    assert "wget" in test and "curl" not in test and "python" not in test
    assert "-bucket=imagepipe" in seaweedfs["command"]


@pytest.mark.parametrize("stack", ["production", "development"])
def test_api_is_published_on_loopback_unless_told_otherwise(
    stack: str, request: pytest.FixtureRequest
) -> None:
    services = request.getfixturevalue(stack)
    published = [(name, port) for name, spec in services.items() for port in spec.get("ports", [])]
    assert ("app", "127.0.0.1:8000:8000") in published
    for name, port in published:
        assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    told = _load("compose.yaml", env={"IMAGEPIPE_BIND": "0.0.0.0"})
    assert told["app"]["ports"] == ["0.0.0.0:8000:8000"]


def test_secrets_have_no_default_outside_the_development_override(
    production: dict[str, Any],
) -> None:
    text = (ROOT / "compose.yaml").read_text()
    for secret in SECRETS:
        # Used, and never with a default value.
        assert "${" + secret + ":-}" in text
        assert not re.search(r"\$\{" + secret + r":-[^}]", text), secret
    assert production["postgres"]["environment"]["POSTGRES_PASSWORD"] == ""
    assert "POSTGRES_PASSWORD" in " ".join(production["postgres"]["environment"])
    # Unset, the app's URL has no password and the S3 store would be open: the
    # migrate step and the seaweedfs entrypoint refuse to start.
    assert ":@postgres" in production["app"]["environment"]["IMAGEPIPE_DATABASE_URL"]
    guard = " ".join(production["seaweedfs"]["entrypoint"])
    assert '[ -z "$AWS_ACCESS_KEY_ID" ]' in guard and "exit 1" in guard
    assert production["migrate"]["command"][-1].endswith("imagepipe-db-setup")


def test_production_mode_and_the_least_privileged_database_role(
    production: dict[str, Any], development: dict[str, Any]
) -> None:
    for role in APP_ROLES:
        env = production[role]["environment"]
        assert env["IMAGEPIPE_ENVIRONMENT"] == "production"
        assert env["IMAGEPIPE_DATABASE_URL"].startswith("postgresql+asyncpg://imagepipe_app:")
        # Keys or an explicit allowance come from the host, nothing by default.
        assert env["IMAGEPIPE_API_KEYS"] is None
        assert env["IMAGEPIPE_ALLOW_ANONYMOUS"] is None
        dev = development[role]["environment"]
        assert dev["IMAGEPIPE_ENVIRONMENT"] == "development"
        assert dev["IMAGEPIPE_ALLOW_ANONYMOUS"] == "true"
        assert dev["IMAGEPIPE_DATABASE_URL"].startswith("postgresql+asyncpg://imagepipe_app:")
    # Only the one-shot migrate logs in as the schema owner.
    for services in (production, development):
        migrate = services["migrate"]["environment"]
        assert migrate["IMAGEPIPE_DATABASE_URL"].startswith("postgresql+asyncpg://imagepipe:")
        assert migrate["POSTGRES_APP_USER"] == "imagepipe_app"


def test_memory_is_bounded(production: dict[str, Any]) -> None:
    for name, spec in production.items():
        assert spec.get("mem_limit"), f"{name} has no memory limit"
    redis = production["redis"]["command"]
    assert redis[redis.index("--maxmemory") + 1] == "256mb"
    assert redis[redis.index("--maxmemory-policy") + 1] == "noeviction"
    # Two pool processes per worker container, within its 1 GB.
    assert production["celery_worker"]["command"][-2:] == ["--concurrency", "2"]
    assert production["celery_worker"]["mem_limit"] == "1g"


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.override.yaml"]])
def test_docker_compose_accepts_the_files(files: list[str]) -> None:
    # Installed by scripts/bootstrap.sh (`make test`): missing, the test fails.
    assert shutil.which("docker-compose", path="/usr/bin:/bin:/usr/local/bin"), (
        "docker-compose is missing: run scripts/bootstrap.sh"
    )
    args = [part for name in files for part in ("-f", name)]
    result = subprocess.run(
        ["docker-compose", *args, "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin"},
    )
    assert result.returncode == 0, result.stderr


def test_every_imagepipe_variable_is_a_setting(production: dict[str, Any]) -> None:
    fields = setting_names()
    for name, spec in production.items():
        for key in spec.get("environment") or {}:
            if key.startswith("IMAGEPIPE_"):
                assert key in fields, f"{name}: {key}"


@pytest.mark.parametrize("stack", ["production", "development"])
def test_presigned_urls_name_the_published_s3_gateway(
    stack: str, request: pytest.FixtureRequest
) -> None:
    services = request.getfixturevalue(stack)
    env = services["app"]["environment"]
    public = urlsplit(env["IMAGEPIPE_S3_PUBLIC_ENDPOINT_URL"])
    inside = urlsplit(env["IMAGEPIPE_S3_ENDPOINT_URL"])
    # Clients on the host reach the gateway the stack publishes; the services, its name.
    assert (public.hostname, inside.hostname) == ("localhost", "seaweedfs")
    assert services["seaweedfs"]["ports"] == [f"127.0.0.1:{public.port}:{inside.port}"]
    told = _load("compose.yaml", env={"IMAGEPIPE_S3_PUBLIC_ENDPOINT_URL": "https://s3.example"})
    assert told["app"]["environment"]["IMAGEPIPE_S3_PUBLIC_ENDPOINT_URL"] == "https://s3.example"
