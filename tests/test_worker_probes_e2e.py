"""A worker's own probes on its metrics port, counted as a kubelet counts them with the
settings of deploy/k8s/worker.yaml, through a three-minute Redis outage: liveness never
fails, readiness does, and the same process resumes by itself once Redis is back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
import yaml
from prometheus_client import CollectorRegistry

from custsync.embedded.server import EphemeralRedis
from custsync.observability import endpoints
from custsync.observability.probes import Liveness
from custsync.sandbox import Sandbox, SandboxClient
from tests.conftest import WorkerPool, apply_fresh_events, custsync_env, wait_for
from tests.operations_run import free_port

OUTAGE_S = 180.0
MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "worker.yaml"


def _get(url: str, timeout_s: float) -> tuple[int | str, Any]:
    """(status, JSON body), or (the error's name, None) when no answer came in time."""
    try:
        answer = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return type(exc).__name__, None
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, answer.text


@dataclass
class KubeletProbe:
    """One httpGet probe: a GET every period, given ``timeout_s`` to answer; 200-399 is a
    success, anything else (no answer included) a failure; failures count when consecutive."""

    url: str
    period_s: float
    timeout_s: float
    failure_threshold: int
    results: list[tuple[float, int | str, Any]] = field(default_factory=list)  # when, what, body

    @classmethod
    def from_manifest(cls, probe: dict[str, Any], port: int) -> KubeletProbe:
        return cls(
            f"http://127.0.0.1:{port}{probe['httpGet']['path']}",
            float(probe.get("periodSeconds", 10)),  # Kubernetes' defaults when absent
            float(probe.get("timeoutSeconds", 1)),
            int(probe.get("failureThreshold", 3)),
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            self.results.append((started, *_get(self.url, self.timeout_s)))
            stop.wait(max(0.0, self.period_s - (time.monotonic() - started)))

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[Any]:
        return [r for r in self.results if since <= r[0] <= until and not _success(r[1])]

    def most_consecutive_failures(self, since: float = 0.0, until: float = float("inf")) -> int:
        most = run = 0
        for when, status, _ in self.results:
            if since <= when <= until:
                run = 0 if _success(status) else run + 1
                most = max(most, run)
        return most

    def succeeded_since(self, since: float) -> bool:
        return any(when >= since and _success(status) for when, status, _ in self.results)


def _success(status: int | str) -> bool:
    return isinstance(status, int) and 200 <= status < 400


def _worker_container() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


@pytest.mark.timeout(480)
def test_a_redis_outage_makes_a_worker_unready_never_dead(
    restartable: EphemeralRedis, sandbox: Sandbox, sandbox_client: SandboxClient, tmp_path: Path
) -> None:
    port = free_port()
    env = custsync_env(restartable, sandbox, 0, CUSTSYNC_METRICS_PORT=str(port))
    pool = WorkerPool(env, tmp_path, 1).start()
    worker = pool.workers[0]
    assert worker.proc is not None
    pid = worker.proc.pid
    container = _worker_container()
    liveness = KubeletProbe.from_manifest(container["livenessProbe"], port)
    readiness = KubeletProbe.from_manifest(container["readinessProbe"], port)
    assert liveness.url.endswith("/healthz") and readiness.url.endswith("/readyz")
    stop = threading.Event()
    probes = [threading.Thread(target=p.run, args=(stop,)) for p in (liveness, readiness)]
    try:
        ready = lambda: _get(readiness.url, 5)[0] == 200 and _get(liveness.url, 5)[0] == 200  # noqa: E731
        wait_for(ready, timeout_s=30, interval_s=0.2)
        apply_fresh_events(pool, worker, sandbox_client, "Beforeoutage", 3)
        for probe in probes:
            probe.start()
        down_at = time.monotonic()
        restartable.restart(down_s=OUTAGE_S)  # the same port, or it fails
        back_at = time.monotonic()
        wait_for(lambda: readiness.succeeded_since(back_at), timeout_s=60, interval_s=0.5)
        apply_fresh_events(
            pool, worker, sandbox_client, "Afteroutage", 3
        )  # the worker resumed by itself
        alive = worker.proc.poll() is None
    finally:
        stop.set()
        for probe in probes:
            if probe.is_alive():
                probe.join(30)
        pool.stop()

    assert alive and worker.proc.pid == pid, worker.log_text()[-3000:]
    assert liveness.most_consecutive_failures() < liveness.failure_threshold
    assert liveness.failures() == []  # not even one
    assert len(liveness.results) >= OUTAGE_S / liveness.period_s  # it was asked all along
    reached = readiness.most_consecutive_failures(down_at, back_at)
    assert reached >= readiness.failure_threshold, readiness.results
    (_, status, body), *_ = readiness.failures(down_at, back_at)
    assert status == 503 and set(body["failed"]) == {"redis", "broker"}, body
    assert "connection refused" in body["failed"]["redis"]


def test_healthz_says_what_failed_and_is_503_until_the_worker_runs() -> None:
    class Poller:
        last_beat = time.monotonic()
        beat_stale_s = 60.0

        def is_alive(self) -> bool:
            return True

    liveness = Liveness()
    server = endpoints.serve(free_port(), CollectorRegistry(), liveness=liveness, addr="127.0.0.1")
    base = f"http://127.0.0.1:{server.server_address[1]}"
    executor = ThreadPoolExecutor(max_workers=2)
    try:
        status, body = _get(f"{base}/healthz", 5)
        assert (status, set(body["failed"])) == (503, {"worker"})
        poller = Poller()
        liveness.watch(SimpleNamespace(executor=executor), poller)
        executor.submit(time.sleep, 0).result()
        assert _get(f"{base}/healthz", 5) == (200, {"status": "ok"})

        poller.last_beat = time.monotonic() - 90  # a loop stuck for a minute and a half
        executor.shutdown()
        status, body = _get(f"{base}/healthz", 5)
        assert status == 503 and set(body["failed"]) == {"beat", "pool"}, body
        assert "90 s ago" in body["failed"]["beat"]

        assert _get(f"{base}/readyz", 5)[0] == 404  # no readiness check given
        assert _get(f"{base}/nothing", 5) == (404, {"error": "not found"})
        metrics = requests.get(f"{base}/metrics", timeout=5)
        assert metrics.status_code == 200 and metrics.headers["Content-Type"].startswith("text/")
    finally:
        executor.shutdown()
        server.shutdown()
        server.server_close()
