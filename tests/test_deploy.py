"""The deployment files: docker-compose.yml and deploy/ are accepted by their own tools and
agree with the code (queue name, soft-shutdown time, health command)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from custsync.runtime import Runtime
from custsync.settings import Settings
from custsync.state.keys import all_queues
from custsync.targets import REGISTRY
from custsync.worker import celery_config

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy").rglob("*.yaml"))


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if path is None:
        why = f"{name} is not installed (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(why)  # a CI image without it must not pass by skipping
        pytest.skip(why)
    return path


def _documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def test_docker_compose_accepts_the_compose_file() -> None:
    checked = subprocess.run(
        [_tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def test_compose_runs_redis_without_eviction_and_a_scalable_worker() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"redis", "worker", "sandbox", "flower"} <= set(services)
    redis_args = services["redis"]["command"]
    assert redis_args[redis_args.index("--appendonly") + 1] == "yes"
    assert redis_args[redis_args.index("--maxmemory-policy") + 1] == "noeviction"
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=N works
    assert worker["environment"]["CUSTSYNC_MINTED_BASE_URL"] == "http://sandbox:8800"
    # Liveness, as in deploy/k8s/worker.yaml: the worker's own /healthz (never Redis; see
    # tests/test_worker_probes_e2e.py) on the port its metrics are served.
    port = worker["environment"]["CUSTSYNC_METRICS_PORT"]
    assert f"http://127.0.0.1:{port}/healthz" in worker["healthcheck"]["test"][-1]
    assert "0.0.0.0" in services["sandbox"]["command"]


def test_kubernetes_validate_strict_accepts_every_manifest() -> None:
    assert MANIFESTS
    checked = subprocess.run(
        [_tool("kubernetes-validate"), "--strict", *map(str, MANIFESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ERROR" not in checked.stdout
    # It has no schemas for KEDA's and the Prometheus Operator's kinds: checked below.
    unchecked = [line for line in checked.stdout.splitlines() if line.startswith("WARN")]
    assert all("keda.sh" in w or "monitoring.coreos.com" in w for w in unchecked), unchecked


# The parts of KEDA's ScaledObject and TriggerAuthentication these manifests use.
_NAME_REF = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}},
    "additionalProperties": False,
}
_SCALED_OBJECT_SPEC = {
    "type": "object",
    "required": ["scaleTargetRef", "triggers"],
    "additionalProperties": False,
    "properties": {
        "scaleTargetRef": _NAME_REF,
        "minReplicaCount": {"type": "integer", "minimum": 1},
        "maxReplicaCount": {"type": "integer"},
        "pollingInterval": {"type": "integer"},
        "cooldownPeriod": {"type": "integer"},
        "advanced": {"type": "object"},
        "triggers": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "metadata"],
                "additionalProperties": False,
                "properties": {
                    "type": {"const": "redis"},
                    "authenticationRef": _NAME_REF,
                    "metadata": {
                        "type": "object",
                        "required": ["address", "listName", "listLength"],
                        "additionalProperties": {"type": "string"},
                    },
                },
            },
        },
    },
}


def test_keda_scales_the_worker_on_the_custsync_list() -> None:
    docs = _documents()
    scaled = docs["ScaledObject/custsync-worker"]
    jsonschema.validate(scaled["spec"], _SCALED_OBJECT_SPEC)
    assert scaled["spec"]["scaleTargetRef"]["name"] in {
        d["metadata"]["name"] for k, d in docs.items() if k.startswith("Deployment/")
    }
    triggers = scaled["spec"]["triggers"]
    assert [t["metadata"]["listName"] for t in triggers] == all_queues(REGISTRY)
    trigger = triggers[0]
    auth = docs[f"TriggerAuthentication/{trigger['authenticationRef']['name']}"]
    (ref,) = auth["spec"]["secretTargetRef"]
    secret = docs[f"Secret/{ref['name']}"]
    assert ref["key"] in secret["stringData"]


def test_worker_deployment_outlives_the_soft_shutdown_and_probes_its_metrics_port() -> None:
    docs = _documents()
    spec = docs["Deployment/custsync-worker"]["spec"]["template"]["spec"]
    soft_s = celery_config(Runtime(Settings(redis_url="redis://x")))["worker_soft_shutdown_timeout"]
    assert spec["terminationGracePeriodSeconds"] > soft_s
    (container,) = spec["containers"]
    paths = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in paths.items():
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}
    (port,) = container["ports"]  # the endpoints exist only with CUSTSYNC_METRICS_PORT set
    configured = int(docs["ConfigMap/custsync-config"]["data"]["CUSTSYNC_METRICS_PORT"])
    assert (port["name"], port["containerPort"]) == ("metrics", configured)
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert docs["PodDisruptionBudget/custsync-worker"]["spec"]["maxUnavailable"] == 1


def test_the_secret_example_holds_placeholders_only() -> None:
    secret = _documents()["Secret/custsync-secrets"]
    for key, value in secret["stringData"].items():
        assert "REPLACE-ME" in value, key


def test_serve_scales_on_cpu_probes_over_http_and_never_restarts_on_a_redis_outage() -> None:
    docs = _documents()
    spec = docs["Deployment/custsync-serve"]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["args"][0] == "serve"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"  # the process only
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"  # Redis answers
    assert docs["Service/custsync-serve"]["spec"]["ports"][0]["targetPort"] == "http"
    assert docs["PodDisruptionBudget/custsync-serve"]["spec"]["maxUnavailable"] == 1
    hpa = docs["HorizontalPodAutoscaler/custsync-serve"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "custsync-serve"
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert compose["services"]["serve"]["command"][0] == "serve"


# The parts of the Prometheus Operator's ServiceMonitor these manifests use.
_SERVICE_MONITOR_SPEC = {
    "type": "object",
    "required": ["selector", "endpoints"],
    "additionalProperties": False,
    "properties": {
        "selector": {
            "type": "object",
            "required": ["matchLabels"],
            "properties": {"matchLabels": {"type": "object"}},
            "additionalProperties": False,
        },
        "endpoints": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["port", "path"],
                "additionalProperties": False,
                "properties": {
                    "port": {"type": "string"},
                    "path": {"const": "/metrics"},
                    "interval": {"type": "string", "pattern": "^[0-9]+[smh]$"},
                },
            },
        },
    },
}


@pytest.mark.parametrize("component", ["worker", "serve"])
def test_service_monitors_reach_the_metrics_port_of_the_pods(component: str) -> None:
    """ServiceMonitor -> Service (by labels, port name) -> the Deployment's named port."""
    docs = _documents()
    name = f"custsync-{component}"
    monitor = docs[f"ServiceMonitor/{name}"]["spec"]
    jsonschema.validate(monitor, _SERVICE_MONITOR_SPEC)
    service = docs[f"Service/{name}"]  # its name becomes the job label the alerts match
    assert monitor["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["endpoints"]
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    pod = docs[f"Deployment/{name}"]["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (container,) = pod["spec"]["containers"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
