"""deploy/kubernetes: every manifest validates against the Kubernetes API schemas
(offline, kubernetes-validate), and the parts fit together."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from imagepipe.queue import FOLLOW_UP_QUEUE, QUEUES, RENDER_LISTS
from tests.deploy.names import setting_names

KUSTOMIZE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
# The oldest Kubernetes release the manifests must work on (strict: unknown fields fail).
KUBERNETES_VERSION = "1.30"

# KEDA's CRD is not among kubernetes-validate's schemas: the fields KEDA requires and
# the types it insists on (trigger metadata values are strings), per keda.sh/v1alpha1.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "minLength": 1}},
        },
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "kind": {"type": "string"},
                        "apiVersion": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "advanced": {"type": "object"},
                "fallback": {"type": "object"},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {"type": "object"},
                        },
                    },
                },
            },
        },
    },
}


def _manifests() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        for document in yaml.safe_load_all((KUSTOMIZE_DIR / name).read_text()):
            if document:
                documents.append(document)
    return documents


MANIFESTS = _manifests()


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [m for m in MANIFESTS if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def _pod_specs() -> dict[str, dict[str, Any]]:
    specs = {}
    for manifest in MANIFESTS:
        if manifest["kind"] in ("Deployment", "Job"):
            specs[manifest["metadata"]["name"]] = manifest["spec"]["template"]["spec"]
    return specs


def test_every_listed_file_exists_and_nothing_is_left_out() -> None:
    listed = set(yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text())["resources"])
    on_disk = {p.name for p in KUSTOMIZE_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk


@pytest.mark.parametrize(
    "manifest",
    [m for m in MANIFESTS if m["apiVersion"] != "keda.sh/v1alpha1"],
    ids=lambda m: f"{m['kind']}-{m['metadata']['name']}",
)
def test_manifest_validates_against_the_kubernetes_schema(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest() -> None:
    # The schemas are really applied: a misspelt field and a wrong type both fail.
    broken = yaml.safe_load(yaml.safe_dump(_one("Deployment", "imagepipe-api")))
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = yaml.safe_load(yaml.safe_dump(_one("Deployment", "imagepipe-api")))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_keda_scaled_object_scales_the_render_workers_on_the_render_queue() -> None:
    scaled = _one("ScaledObject", "imagepipe-worker")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    assert scaled["spec"]["scaleTargetRef"]["name"] == "imagepipe-worker"
    _one("Deployment", "imagepipe-worker")
    triggers = scaled["spec"]["triggers"]
    assert {trigger["type"] for trigger in triggers} == {"redis"}
    # Every list the render queue is made of, as the application names them.
    assert [trigger["metadata"]["listName"] for trigger in triggers] == list(RENDER_LISTS)
    # Same server and database as the broker URL in the ConfigMap.
    broker = _one("ConfigMap", "imagepipe-config")["data"]["IMAGEPIPE_REDIS_URL"]
    host_port, database = broker.removeprefix("redis://").split("/")
    for trigger in triggers:
        assert trigger["metadata"]["address"] == host_port
        assert trigger["metadata"]["databaseIndex"] == database
    # KEDA owns the replica count.
    assert "replicas" not in _one("Deployment", "imagepipe-worker")["spec"]


def test_keda_scales_the_follow_up_workers_on_the_follow_up_queue() -> None:
    scaled = _one("ScaledObject", "imagepipe-follow-up-worker")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    assert scaled["spec"]["scaleTargetRef"]["name"] == "imagepipe-follow-up-worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["metadata"]["listName"] == FOLLOW_UP_QUEUE
    assert scaled["spec"]["minReplicaCount"] >= 1  # it also serves the periodic passes
    assert "replicas" not in _one("Deployment", "imagepipe-follow-up-worker")["spec"]


def test_render_and_follow_up_workers_serve_every_queue_apart() -> None:
    served: list[str] = []
    for name in ("imagepipe-worker", "imagepipe-follow-up-worker"):
        (container,) = _pod_specs()[name]["containers"]
        command = container["command"]
        served += command[command.index("--queues") + 1].split(",")
    assert sorted(served) == sorted(QUEUES)


def test_keda_schema_catches_a_non_string_trigger_value() -> None:
    scaled = yaml.safe_load(yaml.safe_dump(_one("ScaledObject", "imagepipe-worker")))
    scaled["spec"]["triggers"][0]["metadata"]["listLength"] = 4
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)


def test_api_probes_health_and_readiness() -> None:
    (api,) = _pod_specs()["imagepipe-api"]["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    for name in ("imagepipe-worker", "imagepipe-follow-up-worker", "imagepipe-beat"):
        (container,) = _pod_specs()[name]["containers"]
        assert "imagepipe-healthcheck" in " ".join(container["livenessProbe"]["exec"]["command"])


def test_every_pod_is_bounded_and_unprivileged() -> None:
    for name, spec in _pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == 10001, name  # the image's user
        assert spec["automountServiceAccountToken"] is False, name
        mounted = {volume["name"] for volume in spec.get("volumes", [])}
        for container in spec["containers"]:
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources[part].keys(), f"{name} {part}"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            # Writable scratch only in the pod's own emptyDirs: no shared volume.
            for mount in container.get("volumeMounts", []):
                assert mount["name"] in mounted
            for volume in spec.get("volumes", []):
                assert set(volume) == {"name", "emptyDir"}, f"{name}: {volume}"


def test_settings_come_from_the_configmap_and_the_secrets() -> None:
    config = _one("ConfigMap", "imagepipe-config")["data"]
    assert config["IMAGEPIPE_STORAGE_URL"].startswith("s3://")
    assert config["IMAGEPIPE_ENVIRONMENT"] == "production"
    for name, spec in _pod_specs().items():
        (container,) = spec["containers"]
        sources = container["envFrom"]
        assert {"configMapRef": {"name": "imagepipe-config"}} in sources
        secret = "imagepipe-migrate" if name == "imagepipe-migrate" else "imagepipe-app"
        assert {"secretRef": {"name": secret}} in sources, name
        # No secret value written into a manifest.
        assert "env" not in container
    # Every ConfigMap key is a setting the app reads or a standard AWS variable.
    fields = setting_names()
    for key in config:
        assert key in fields or key.startswith("AWS_"), key


def test_selectors_match_their_pods() -> None:
    labels = {
        m["metadata"]["name"]: m["spec"]["template"]["metadata"]["labels"]
        for m in MANIFESTS
        if m["kind"] == "Deployment"
    }
    for manifest in MANIFESTS:
        kind = manifest["kind"]
        if kind == "Service":
            selector = manifest["spec"]["selector"]
        elif kind in ("PodDisruptionBudget", "Deployment"):
            selector = manifest["spec"]["selector"]["matchLabels"]
        else:
            continue
        matched = [n for n, pod in labels.items() if selector.items() <= pod.items()]
        assert len(matched) == 1, f"{kind}/{manifest['metadata']['name']} selects {matched}"
    assert _one("Deployment", "imagepipe-beat")["spec"]["replicas"] == 1
    assert _one("Deployment", "imagepipe-beat")["spec"]["strategy"]["type"] == "Recreate"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_renders_the_same_resources() -> None:
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(KUSTOMIZE_DIR)], capture_output=True, text=True, check=True
    ).stdout
    documents = [d for d in yaml.safe_load_all(rendered) if d]
    assert sorted((d["kind"], d["metadata"]["name"]) for d in documents) == sorted(
        (m["kind"], m["metadata"]["name"]) for m in MANIFESTS
    )
    for document in documents:
        if document["apiVersion"] != "keda.sh/v1alpha1":
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
